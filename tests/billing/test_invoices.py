"""Issuing postpaid bills: figures tied to the ledger and the daily freeze, lines, numbering,
idempotency, the email with its PDF."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db.models import Sum

from billing.freeze import freeze_due
from billing.invoices import invoice_issue, month_end_bills_issue
from billing.models import DailyFreeze, Invoice
from billing.services import topup_record
from notifications.models import Notification
from notifications.services import notification_send
from tests.billing.bills import charge, issued_bill, postpaid_account
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db

# Shanghai: local midnight of 1 December 2026 is 16:00 UTC on 30 November.
DEC_1 = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
NOV_1 = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)


def pay(account, amount, key):
    return topup_record(
        account=account, amount=Decimal(amount), channel="cash", actor=None, idempotency_key=key
    )


def test_a_bill_asks_for_what_the_wallet_owes_and_is_due_after_the_policy_days(property_a1):
    bill = issued_bill(property=property_a1, amount="80.00")
    assert bill.amount == Decimal("80.00")
    assert bill.status == Invoice.Status.OPEN
    assert bill.closing_balance == Decimal("-80.00")
    assert bill.charges == Decimal("80.00")
    assert (bill.due_on - bill.issued_at.astimezone(property_a1.zone).date()).days == 14


def test_issuing_twice_for_the_same_period_finds_the_first_bill(property_a1):
    bill = issued_bill(property=property_a1)
    again = invoice_issue(account=bill.account, period_end=bill.period_end)
    assert (again.created, again.invoice.pk) == (False, bill.pk)
    assert Invoice.objects.filter(account=bill.account).count() == 1


def test_numbers_are_gapless_per_property(property_a1, property_a2):
    numbers = [issued_bill(property=property_a1).number for _ in range(3)]
    other = issued_bill(property=property_a2).number
    assert numbers == [1, 2, 3]
    assert other == 1


def test_a_second_bill_asks_only_for_what_the_first_did_not(property_a1):
    first = issued_bill(property=property_a1, amount="80.00")
    charge(first.account, "30.00")
    second = invoice_issue(account=first.account, period_end=first.period_end + timedelta(hours=1))
    assert second.invoice.previous_balance == Decimal("-80.00")
    assert second.invoice.closing_balance == Decimal("-110.00")
    assert second.invoice.amount == Decimal("30.00")


def test_a_bill_in_credit_asks_for_nothing_and_is_paid(property_a1):
    account = postpaid_account(property=property_a1)
    pay(account, "100.00", "credit")
    charge(account, "30.00")
    bill = invoice_issue(account=account, period_end=datetime.now(UTC)).invoice
    assert (bill.amount, bill.status, bill.closing_balance) == (
        Decimal(0),
        Invoice.Status.PAID,
        Decimal("70.00"),
    )


def test_lines_add_up_to_the_charges_with_the_rounding_carried(property_a1):
    """Net and tax of 0.006 each: the ledger posts 0.01 in all (tax 0.01, net 0.00), while the
    line alone rounds to 0.01 + 0.01."""
    account = postpaid_account(property=property_a1)
    charge(account, "0.006", tax="0.006")
    bill = invoice_issue(account=account, period_end=datetime.now(UTC)).invoice
    net = sum(Decimal(line["net"]) for line in bill.lines)
    tax = sum(Decimal(line["tax"]) for line in bill.lines)
    assert net + tax == bill.charges == Decimal("0.01")
    assert any(line["component"] == "rounding" for line in bill.lines)


def test_the_bill_is_emailed_with_its_pdf(property_a1, mailoutbox):
    bill = issued_bill(property=property_a1, amount="80.00")
    notification = Notification.objects.get(account=bill.account, channel="email")
    assert notification.event == "bill_issued"
    assert notification.context["invoice_uuid"] == str(bill.uuid)
    assert notification_send(notification_id=notification.pk) == Notification.Status.SENT
    (message,) = mailoutbox
    assert message.subject.startswith("Your bill A1-INV-000001: CN¥80.00 due by")
    (name, content, mimetype) = message.attachments[0]
    assert name.endswith(".pdf")
    assert content.startswith(b"%PDF")
    assert mimetype == "application/pdf"


def test_a_payment_between_the_month_end_and_the_issue_meets_the_new_bill(property_a1):
    with time_machine.travel(NOV_1 + timedelta(days=3), tick=False):
        account = postpaid_account(property=property_a1, opened_at=NOV_1)
        charge(account, "50.00")
    with time_machine.travel(DEC_1 + timedelta(minutes=5), tick=False):
        pay(account, "20.00", "early")
        bill = invoice_issue(account=account, period_end=DEC_1).invoice
    assert bill.closing_balance == Decimal("-50.00")
    assert (bill.amount, bill.paid) == (Decimal("50.00"), Decimal("20.00"))


def test_the_monthly_bill_ties_to_the_month_of_daily_freezes(property_a1):
    """Top-ups, charges and a standing day, frozen day by day through November; the month-end
    bill's figures are the frozen month's, to the cent."""
    with time_machine.travel(NOV_1, tick=False):
        account = postpaid_account(property=property_a1, opened_at=NOV_1)
        AccountFactory(unit__property=property_a1, opened_at=NOV_1)
    for day, amount in ((2, "12.34"), (10, "40.01"), (25, "7.77")):
        with time_machine.travel(NOV_1 + timedelta(days=day, hours=3), tick=False):
            charge(account, amount, tax="0.55")
    with time_machine.travel(NOV_1 + timedelta(days=12), tick=False):
        pay(account, "30.00", "mid")
    with time_machine.travel(DEC_1 + timedelta(minutes=20), tick=False):
        freeze_due()
        month_end_bills_issue(property=property_a1, month=date(2026, 11, 1))
    bill = Invoice.objects.get(account=account)
    days = DailyFreeze.objects.filter(account=account, day__month=11).order_by("day")
    totals = days.aggregate(
        topups=Sum("topups"),
        energy=Sum("energy_net") + Sum("energy_tax") + Sum("standing_net") + Sum("standing_tax"),
        adjustments=Sum("adjustments") - Sum("refunds"),
    )
    assert bill.previous_balance == days.first().opening_balance == Decimal(0)
    assert bill.payments == totals["topups"] == Decimal("30.00")
    assert bill.charges == totals["energy"] == Decimal("61.77")
    assert bill.adjustments == totals["adjustments"]
    assert bill.closing_balance == days.last().closing_balance == Decimal("-31.77")
    assert bill.amount == Decimal("31.77")
    assert bill.period_end == DEC_1


def test_month_end_bills_are_for_postpaid_accounts_only(property_a1):
    with time_machine.travel(NOV_1, tick=False):
        postpaid = postpaid_account(property=property_a1, opened_at=NOV_1)
        prepaid = AccountFactory(unit__property=property_a1, opened_at=NOV_1)
    with time_machine.travel(DEC_1 + timedelta(minutes=20), tick=False):
        freeze_due()
        issued = month_end_bills_issue(property=property_a1, month=date(2026, 11, 1))
        again = month_end_bills_issue(property=property_a1, month=date(2026, 11, 1))
    assert (issued, again) == (1, 0)
    assert Invoice.objects.filter(account=postpaid).exists()
    assert not Invoice.objects.filter(account=prepaid).exists()


def test_a_postpaid_move_out_issues_a_final_bill_and_moves_the_open_bills_to_the_debt(
    property_a1,
):
    from accounts.lifecycle import move_out

    bill = issued_bill(property=property_a1, amount="80.00")
    charge(bill.account, "15.00")
    move_out(
        account=bill.account,
        actor=None,
        idempotency_key="out",
        moved_out_at=datetime.now(UTC),
    )
    final = Invoice.objects.get(account=bill.account, kind=Invoice.Kind.FINAL)
    assert final.amount == Decimal("15.00")
    assert set(Invoice.objects.filter(account=bill.account).values_list("status", flat=True)) == {
        Invoice.Status.TRANSFERRED
    }
