"""Payments against postpaid bills: oldest first, reversals and refunds give back newest first,
and a payment that clears the overdue bills of a cut-off account restores its supply."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.allocation import payment_allocate
from billing.invoices import invoice_issue, open_amount
from billing.models import Invoice, InvoiceAllocation, LedgerTransaction
from billing.services import topup_record, transaction_reverse
from tests.billing.bills import charge, postpaid_account

pytestmark = pytest.mark.django_db


def pay(account, amount, key):
    return topup_record(
        account=account, amount=Decimal(amount), channel="cash", actor=None, idempotency_key=key
    )


@pytest.fixture
def three_bills(property_a1):
    """Three bills of 50.00, 30.00 and 20.00, issued an hour apart, nothing paid."""
    account = postpaid_account(property=property_a1)
    start = timezone.now()
    bills = []
    for hour, amount in enumerate(("50.00", "30.00", "20.00"), start=1):
        charge(account, amount)
        bills.append(
            invoice_issue(account=account, period_end=start + timedelta(hours=hour)).invoice
        )
    return account, bills


def state(bills):
    for bill in bills:
        bill.refresh_from_db()
    return [(bill.paid, bill.status) for bill in bills]


OPEN, PAID = Invoice.Status.OPEN, Invoice.Status.PAID


def test_a_payment_across_three_bills_meets_the_oldest_first(three_bills):
    """Hand-computed: 65.00 pays the 50.00 bill, 15.00 of the 30.00 and nothing of the 20.00."""
    account, bills = three_bills
    pay(account, "65.00", "p1")
    assert state(bills) == [
        (Decimal("50.00"), PAID),
        (Decimal("15.00"), OPEN),
        (Decimal("0.00"), OPEN),
    ]
    assert open_amount(account=account) == Decimal("35.00")
    pay(account, "40.00", "p2")
    assert state(bills) == [
        (Decimal("50.00"), PAID),
        (Decimal("30.00"), PAID),
        (Decimal("20.00"), PAID),
    ]
    # 5.00 of the second payment is credit, owed to no bill.
    account.wallet.refresh_from_db()
    assert account.wallet.balance == Decimal("5.00")


def test_a_reversed_payment_gives_its_allocations_back_newest_bill_first(three_bills):
    account, bills = three_bills
    pay(account, "50.00", "first")
    second = pay(account, "40.00", "second")
    assert state(bills)[1:] == [(Decimal("30.00"), PAID), (Decimal("10.00"), OPEN)]
    transaction_reverse(
        original=second.receipt.transaction, actor=None, reason="bounced", idempotency_key="rev"
    )
    assert state(bills) == [
        (Decimal("50.00"), PAID),
        (Decimal("0.00"), OPEN),
        (Decimal("0.00"), OPEN),
    ]
    given_back = InvoiceAllocation.objects.filter(amount__lt=0)
    assert sorted(row.amount for row in given_back) == [Decimal("-30.00"), Decimal("-10.00")]


def test_a_reversal_covered_by_credit_gives_nothing_back(property_a1):
    account = postpaid_account(property=property_a1)
    charge(account, "30.00")
    bill = invoice_issue(account=account, period_end=timezone.now()).invoice
    paid = pay(account, "100.00", "big")
    pay(account, "100.00", "more")
    transaction_reverse(
        original=paid.receipt.transaction, actor=None, reason="duplicate", idempotency_key="rev"
    )
    bill.refresh_from_db()
    assert (bill.paid, bill.status) == (Decimal("30.00"), PAID)


def test_an_allocation_beyond_the_bill_is_refused_by_the_database(three_bills):
    account, bills = three_bills
    payment = pay(account, "10.00", "p").receipt.transaction
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=bills[2].pk).update(paid=Decimal("25.00"))
    assert payment_allocate(account_id=account.pk, payment=payment, amount=Decimal(0)) == 0


def test_paying_the_overdue_bill_of_a_cut_off_account_restores_supply(
    property_a1, django_capture_on_commit_callbacks, monkeypatch
):
    account = postpaid_account(property=property_a1)
    charge(account, "30.00")
    bill = invoice_issue(account=account, period_end=timezone.now()).invoice
    Invoice.objects.filter(pk=bill.pk).update(due_on=bill.due_on - timedelta(days=60))
    restored = []
    monkeypatch.setattr("billing.allocation.restore_supply.delay", restored.append)
    with django_capture_on_commit_callbacks(execute=True):
        pay(account, "30.00", "settle")
    assert restored == [account.pk]


def test_a_payment_that_leaves_a_bill_overdue_restores_nothing(
    property_a1, django_capture_on_commit_callbacks, monkeypatch
):
    account = postpaid_account(property=property_a1)
    charge(account, "30.00")
    bill = invoice_issue(account=account, period_end=timezone.now()).invoice
    Invoice.objects.filter(pk=bill.pk).update(due_on=bill.due_on - timedelta(days=60))
    restored = []
    monkeypatch.setattr("billing.allocation.restore_supply.delay", restored.append)
    with django_capture_on_commit_callbacks(execute=True):
        pay(account, "10.00", "part")
    assert restored == []
    assert LedgerTransaction.objects.filter(kind="topup").count() == 1
