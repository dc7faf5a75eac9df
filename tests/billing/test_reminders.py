"""Reminders of unpaid bills on the policy's schedule, once a step; late fees once a bill; and
the overdue cut-off of postpaid accounts through the control loop's protections."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from billing.control import cutoff_evaluate, restore_evaluate
from billing.models import CreditPolicy, CutoffDecision, Invoice, LedgerTransaction, Reminder
from billing.reminders import reminders_send, step_due
from billing.services import topup_record
from meters.models import RelayCommand
from notifications.models import Notification
from tests import factories
from tests.billing.bills import issued_bill

pytestmark = pytest.mark.django_db

Outcome = CutoffDecision.Outcome
# Wednesday 18 November 2026 in Shanghai (UTC+8): noon and 23:00 local.
NOON = datetime(2026, 11, 18, 4, tzinfo=UTC)
NIGHT = datetime(2026, 11, 18, 15, tzinfo=UTC)
TODAY = date(2026, 11, 18)


def bill_due_on(prop, due_on, amount="80.00"):
    bill = issued_bill(property=prop, amount=amount)
    Invoice.objects.filter(pk=bill.pk).update(due_on=due_on)
    bill.refresh_from_db()
    return bill


def test_the_latest_step_reached_is_the_one_due():
    steps = [-3, 0, 7]
    assert step_due(steps=steps, due_on=TODAY, today=TODAY - timedelta(days=4)) is None
    assert step_due(steps=steps, due_on=TODAY, today=TODAY - timedelta(days=3)) == -3
    assert step_due(steps=steps, due_on=TODAY, today=TODAY + timedelta(days=6)) == 0
    assert step_due(steps=steps, due_on=TODAY, today=TODAY + timedelta(days=30)) == 7


def test_a_bill_three_days_from_due_is_reminded_once(property_a1):
    bill = bill_due_on(property_a1, TODAY + timedelta(days=3))
    assert reminders_send(now=NOON) == {"bill_reminders": 1}
    assert reminders_send(now=NOON) == {}
    assert list(Reminder.objects.values_list("invoice", "days")) == [(bill.pk, -3)]
    reminder = Notification.objects.get(event="bill_reminder", channel="email")
    assert reminder.context["stage"] == "before"
    assert reminder.context["amount"] == "80.00"


def test_a_paid_bill_is_not_reminded(property_a1):
    bill = bill_due_on(property_a1, TODAY)
    topup_record(
        account=bill.account, amount=Decimal(80), channel="cash", actor=None, idempotency_key="p"
    )
    assert reminders_send(now=NOON) == {}


def test_a_late_fee_is_posted_once_as_its_own_transaction(property_a1):
    CreditPolicy.objects.create(
        property=property_a1, late_fee=Decimal("5.00"), late_fee_after_days=7
    )
    bill = bill_due_on(property_a1, TODAY - timedelta(days=7))
    assert reminders_send(now=NOON)["late_fees"] == 1
    assert "late_fees" not in reminders_send(now=NOON)
    fee = LedgerTransaction.objects.get(kind=LedgerTransaction.Kind.LATE_FEE)
    amounts = sorted(fee.postings.values_list("ledger_account__kind", "amount"))
    assert amounts == [("fee_revenue", Decimal("5.00")), ("wallet", Decimal("-5.00"))]
    bill.account.wallet.refresh_from_db()
    assert bill.account.wallet.balance == Decimal("-85.00")


def test_no_late_fee_before_its_day(property_a1):
    CreditPolicy.objects.create(
        property=property_a1, late_fee=Decimal("5.00"), late_fee_after_days=7
    )
    bill_due_on(property_a1, TODAY - timedelta(days=6))
    assert "late_fees" not in reminders_send(now=NOON)


@pytest.fixture
def overdue(property_a1):
    """A postpaid account with a relay, its bill 31 days past due (the default allows 30)."""
    bill = bill_due_on(property_a1, TODAY - timedelta(days=31))
    meter = factories.MeterFactory(unit=bill.account.unit, has_relay=True)
    return bill, meter


def test_a_postpaid_account_overdue_beyond_the_cutoff_days_is_cut_off(overdue):
    bill, meter = overdue
    decision = cutoff_evaluate(account_id=bill.account_id, now=NOON)
    assert decision.outcome == Outcome.CUT
    assert RelayCommand.objects.get(meter=meter).close is False


def test_an_overdue_postpaid_account_is_not_cut_off_in_a_protected_period(overdue):
    bill, meter = overdue
    decision = cutoff_evaluate(account_id=bill.account_id, now=NIGHT)
    assert decision.outcome == Outcome.DEFERRED_PROTECTED
    assert not RelayCommand.objects.filter(meter=meter).exists()


def test_an_overdue_protected_account_is_never_cut_off(overdue):
    bill, meter = overdue
    bill.account.protected = True
    bill.account.save()
    assert cutoff_evaluate(account_id=bill.account_id, now=NOON).outcome == (
        Outcome.SKIPPED_PROTECTED_ACCOUNT
    )
    assert not RelayCommand.objects.filter(meter=meter).exists()


def test_a_bill_not_yet_overdue_that_long_cuts_nothing(property_a1):
    bill = bill_due_on(property_a1, TODAY - timedelta(days=30))
    factories.MeterFactory(unit=bill.account.unit, has_relay=True)
    assert cutoff_evaluate(account_id=bill.account_id, now=NOON) is None


def test_supply_comes_back_once_no_bill_is_overdue(overdue):
    bill, _meter = overdue
    cutoff_evaluate(account_id=bill.account_id, now=NOON)
    assert restore_evaluate(account_id=bill.account_id, now=NOON) is None
    topup_record(
        account=bill.account, amount=Decimal(80), channel="cash", actor=None, idempotency_key="p"
    )
    assert restore_evaluate(account_id=bill.account_id, now=NOON).outcome == Outcome.RESTORED
