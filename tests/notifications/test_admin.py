"""The notification log in the admin: read-only, with a retry for failed messages."""

import pytest
from django.urls import reverse

from notifications.models import Notification
from notifications.services import notification_send
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(db):
    return factories.UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def failed_sms(account, settings):
    settings.SMS_BACKEND = "tests.notifications.sms_backends.RefusingSmsBackend"
    factories.NotificationFactory(account=account)
    sms = Notification.objects.get(account=account, channel="sms")
    notification_send(notification_id=sms.pk)
    return sms


def test_the_log_and_the_channels_are_shown_but_not_editable(client, superuser, failed_sms):
    client.force_login(superuser)
    changelist = reverse("admin:notifications_notification_changelist")
    assert client.get(changelist).status_code == 200
    detail = reverse("admin:notifications_notification_change", args=[failed_sms.pk])
    client.post(detail, {"status": "sent"})
    failed_sms.refresh_from_db()
    assert failed_sms.status == "failed"
    assert (
        client.get(reverse("admin:notifications_channelpreference_changelist")).status_code == 200
    )


def test_staff_retry_failed_messages_from_the_log(
    client, superuser, failed_sms, django_capture_on_commit_callbacks
):
    client.force_login(superuser)
    with django_capture_on_commit_callbacks() as enqueued:
        response = client.post(
            reverse("admin:notifications_notification_changelist"),
            {"action": "retry", "_selected_action": [failed_sms.pk]},
            follow=True,
        )
    assert "1 notification(s) queued again." in response.content.decode()
    failed_sms.refresh_from_db()
    assert (failed_sms.status, failed_sms.attempts) == ("queued", 0)
    assert len(enqueued) == 1
    assert AuditLog.objects.get(action="notification.retry").actor == superuser
