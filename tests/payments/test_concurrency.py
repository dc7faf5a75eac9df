"""Payments under real concurrency: threads with their own connections, committing."""

from decimal import Decimal

import pytest

from billing.models import LedgerAccount, Receipt
from billing.verification import ledger_violations
from payments.models import ProviderConfig, ProviderEvent
from payments.services import notification_receive, provider_for
from tests.payments.conftest import sandbox_event
from tests.threads import run_together

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_same_notification_sent_5_times_at_once_credits_once(make_intent, account):
    intent = make_intent("50.00")
    config = ProviderConfig.objects.get(pk=intent.config_id)
    body = sandbox_event(intent)
    headers = provider_for(config).sign(body)

    def deliver(_):
        return notification_receive(
            config=ProviderConfig.objects.get(pk=config.pk), body=body, headers=headers
        ).status

    assert run_together(deliver, 5) == [200] * 5
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance == Decimal("50.00")
    assert Receipt.objects.filter(account=account).count() == 1
    assert ProviderEvent.objects.count() == 1
    assert not any(ledger_violations().values())


def test_different_events_for_one_payment_at_once_credit_once(make_intent, account):
    intent = make_intent("50.00")
    config = ProviderConfig.objects.get(pk=intent.config_id)
    kinds = ["payment.succeeded", "payment.failed", "payment.succeeded", "payment.expired"]

    def deliver(n):
        body = sandbox_event(intent, event_type=kinds[n], event_id=f"evt_{n}")
        return notification_receive(
            config=ProviderConfig.objects.get(pk=config.pk),
            body=body,
            headers=provider_for(config).sign(body),
        ).status

    assert run_together(deliver, len(kinds)) == [200] * len(kinds)
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance == Decimal("50.00")
    intent.refresh_from_db()
    assert intent.status == "succeeded"
