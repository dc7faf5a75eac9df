"""Payments against postpaid bills: every payment, from any channel, meets the oldest open bill
first; money taken back out of the wallet for a payment (its reversal, a refund of it) gives
that payment's allocations back, newest bill first.

The invariant: for every postpaid account, the open bills together ask for no more than the
wallet owes (sum of `amount - paid` of open bills <= max(0, -balance)). A payment of P lowers
what is owed by P and meets min(P, open) of the bills; a payment taken back by R raises what is
owed by what the wallet's credit could not cover, R - max(balance before, 0), and gives back
at most that. Everything here runs under the wallet's lock, which the caller holds, so bills
change in the order their wallet's money moved.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import Account
from billing.credit_policy import credit_policy
from billing.models import (
    CreditPolicy,
    Invoice,
    InvoiceAllocation,
    LedgerAccount,
    LedgerTransaction,
)
from billing.tasks import restore_supply
from payments.models import Refund

ZERO = Decimal(0)
Status = Invoice.Status


def overdue_for_cutoff(*, invoices, policy: CreditPolicy, today: date) -> bool:
    """Whether any of these open bills is overdue beyond the policy's cut-off days."""
    if policy.overdue_cutoff_days is None:
        return False
    limit = today - timedelta(days=policy.overdue_cutoff_days)
    return any(invoice.status == Status.OPEN and invoice.due_on < limit for invoice in invoices)


def payment_allocate(*, account_id: int, payment: LedgerTransaction, amount: Decimal) -> Decimal:
    """Meet the account's open bills, oldest first, from `amount` of `payment` just credited to
    its wallet. Once the payment clears every bill that had the account cut off, supply is
    restored after commit. Returns what was allocated."""
    bills = list(
        Invoice.objects.filter(account_id=account_id, status=Status.OPEN)
        .select_related("property")
        .order_by("period_end", "number")
    )
    if not bills:
        return ZERO
    prop = bills[0].property
    policy = credit_policy(property=prop)
    today = timezone.now().astimezone(prop.zone).date()
    was_overdue = overdue_for_cutoff(invoices=bills, policy=policy, today=today)
    left = amount
    rows = []
    for bill in bills:
        if left <= 0:
            break
        share = min(left, bill.amount - bill.paid)
        bill.paid += share
        if bill.paid == bill.amount:
            bill.status = Status.PAID
        rows.append(InvoiceAllocation(invoice=bill, transaction=payment, amount=share))
        left -= share
    InvoiceAllocation.objects.bulk_create(rows)
    Invoice.objects.bulk_update([row.invoice for row in rows], ["paid", "status"])
    if was_overdue and not overdue_for_cutoff(invoices=bills, policy=policy, today=today):
        transaction.on_commit(lambda: restore_supply.delay(account_id))
    return amount - left


def _given_back(payment: LedgerTransaction) -> dict[int, Decimal]:
    """Per bill, what was given back of `payment`'s allocations before: by its reversal, or by
    refunds of the online payment it credited."""
    holds = Refund.objects.filter(intent__receipt__transaction=payment).values(
        "hold_transaction_id"
    )
    return dict(
        InvoiceAllocation.objects.filter(amount__lt=0)
        .filter(Q(transaction__reverses=payment) | Q(transaction_id__in=holds))
        .values_list("invoice_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )


def allocations_give_back(
    *, payment: LedgerTransaction, by: LedgerTransaction, amount: Decimal, balance_before: Decimal
) -> Decimal:
    """`amount` of `payment` was taken back out of the wallet by `by`, from `balance_before`:
    give back as much of the payment's allocations as the wallet's credit could not cover,
    newest bill first, with negative rows. Returns what was given back."""
    need = amount - max(balance_before, ZERO)
    if need <= 0:
        return ZERO
    allocated = dict(
        InvoiceAllocation.objects.filter(transaction=payment, amount__gt=0)
        .values_list("invoice_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    if not allocated:
        return ZERO
    back = _given_back(payment)
    bills = (
        Invoice.objects.filter(pk__in=allocated)
        .exclude(status=Status.TRANSFERRED)
        .order_by("-period_end", "-number")
    )
    rows = []
    for bill in bills:
        if need <= 0:
            break
        share = min(need, allocated[bill.pk] + back.get(bill.pk, ZERO), bill.paid)
        if share <= 0:
            continue
        bill.paid -= share
        bill.status = Status.OPEN
        rows.append(InvoiceAllocation(invoice=bill, transaction=by, amount=-share))
        need -= share
    InvoiceAllocation.objects.bulk_create(rows)
    Invoice.objects.bulk_update([row.invoice for row in rows], ["paid", "status"])
    return sum((-row.amount for row in rows), ZERO)


def wallet_movement_allocate(
    *, movement: LedgerTransaction, payment: LedgerTransaction | None = None
) -> None:
    """Keep a postpaid account's bills in step with a movement of its wallet other than a
    top-up, which allocates itself: money back into the wallet (a reversed debit, a refund the
    provider failed) meets the bills like a payment; money taken out of it for `payment` (its
    reversal, a refund of it) gives that payment's allocations back. The caller holds the
    wallet's lock; a prepaid account's wallet has no bills and is left alone."""
    posting = (
        movement.postings.filter(ledger_account__kind=LedgerAccount.Kind.WALLET)
        .select_related("ledger_account")
        .first()
    )
    if posting is None:
        return
    account = Account.objects.filter(wallet_id=posting.ledger_account_id).first()
    if account is None or account.mode != Account.Mode.POSTPAID:
        return
    if posting.amount > 0:
        payment_allocate(account_id=account.pk, payment=movement, amount=posting.amount)
    elif payment is not None:
        allocations_give_back(
            payment=payment,
            by=movement,
            amount=-posting.amount,
            balance_before=posting.ledger_account.balance - posting.amount,
        )
