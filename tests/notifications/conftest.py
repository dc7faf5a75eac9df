import pytest
from celery.signals import before_task_publish

from tests import factories
from tests.notifications.sms_backends import RecordingSmsBackend

BACKENDS = "tests.notifications.sms_backends"


@pytest.fixture
def sms_outbox(settings):
    """SMS go to a recording backend; the list of (to, body) it took."""
    settings.SMS_BACKEND = f"{BACKENDS}.RecordingSmsBackend"
    RecordingSmsBackend.sent = []
    return RecordingSmsBackend.sent


@pytest.fixture
def sms_down(settings):
    settings.SMS_BACKEND = f"{BACKENDS}.FailingSmsBackend"


@pytest.fixture
def tenant_account(property_a1):
    """An open account whose tenant has an email address and a phone number, in English."""
    return factories.AccountFactory(
        unit__property=property_a1,
        tenant__name="Ada Lovelace",
        tenant__email="ada@example.test",
        tenant__phone="+86 138 0013 8000",
    )


@pytest.fixture
def published_tasks():
    """The tasks this test sends to the real broker, as (name, queue, args)."""
    sent = []

    def record(sender=None, headers=None, routing_key=None, **kwargs):
        sent.append((sender, routing_key, headers["argsrepr"]))

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)
