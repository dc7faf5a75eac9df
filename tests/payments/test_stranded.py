"""Stranded payments: an intent whose notification never came is settled from a query."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from billing.models import LedgerAccount
from payments.models import PaymentIntent, ProviderEvent, SandboxPayment
from payments.services import stranded_intents_sweep
from tests.payments.conftest import sandbox_event

pytestmark = pytest.mark.django_db

Status = PaymentIntent.Status


def _balance(account) -> Decimal:
    return LedgerAccount.objects.get(pk=account.wallet_id).balance


def _sandbox(intent, status):
    SandboxPayment.objects.filter(reference=intent.reference).update(
        status=status, transaction_id="sbx_queried"
    )


def test_a_recent_intent_is_not_asked_about(make_intent):
    make_intent("50.00")
    assert stranded_intents_sweep()["queried"] == 0


def test_a_payment_whose_notification_was_lost_is_credited_after_15_minutes(make_intent, account):
    intent = make_intent("50.00")
    _sandbox(intent, SandboxPayment.Status.PAID)
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert stranded_intents_sweep() == {"queried": 1, "credited": 1, "closed": 0, "errors": 0}
    intent.refresh_from_db()
    assert (intent.status, intent.transaction_id) == (Status.SUCCEEDED, "sbx_queried")
    assert _balance(account) == Decimal("50.00")
    assert ProviderEvent.objects.get(intent=intent).source == "query"


def test_the_late_notification_after_a_query_credits_nothing_more(make_intent, deliver, account):
    intent = make_intent("50.00")
    _sandbox(intent, SandboxPayment.Status.PAID)
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        stranded_intents_sweep()
    deliver(sandbox_event(intent))
    assert _balance(account) == Decimal("50.00")


def test_a_declined_payment_is_closed_from_the_query(make_intent, account):
    intent = make_intent("50.00")
    _sandbox(intent, SandboxPayment.Status.DECLINED)
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert stranded_intents_sweep()["closed"] == 1
    intent.refresh_from_db()
    assert intent.status == Status.FAILED
    assert _balance(account) == 0


def test_an_abandoned_checkout_expires_once_the_provider_still_knows_nothing(make_intent):
    intent = make_intent("50.00")
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        stranded_intents_sweep()
    intent.refresh_from_db()
    assert intent.status == Status.PENDING
    with time_machine.travel(intent.expires_at + timedelta(minutes=16)):
        stranded_intents_sweep()
    intent.refresh_from_db()
    assert intent.status == Status.EXPIRED


def test_an_intent_is_asked_about_again_only_after_a_pause(make_intent):
    make_intent("50.00")
    start = timezone.now() + timedelta(minutes=16)
    with time_machine.travel(start):
        assert stranded_intents_sweep()["queried"] == 1
    with time_machine.travel(start + timedelta(minutes=1)):
        assert stranded_intents_sweep()["queried"] == 0
    with time_machine.travel(start + timedelta(minutes=6)):
        assert stranded_intents_sweep()["queried"] == 1


def test_a_query_that_reports_a_different_amount_is_rejected_not_credited(make_intent, account):
    intent = make_intent("50.00")
    SandboxPayment.objects.filter(reference=intent.reference).update(
        status=SandboxPayment.Status.PAID, amount=Decimal("5.00")
    )
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        stranded_intents_sweep()
    assert _balance(account) == 0
    event = ProviderEvent.objects.get()
    assert (event.source, event.outcome, event.reason) == ("query", "rejected", "amount")
