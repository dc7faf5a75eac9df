"""Postpaid bills: issued at the month-end freeze (and a final one at a switch to prepaid or a
move-out), numbered gapless per property, explained line by line, emailed as a PDF.

A bill is a document of what the ledger already holds. Its figures are the wallet's postings
over the billed period, by book time exactly as the daily freeze counts them (`billing.freeze`:
a transaction's creation, a standing charge's `effective_at`), so a monthly bill ties to the
month's `DailyFreeze` rows to the minor unit: previous balance = the first day's opening,
payments = the days' top-ups, charges = their energy and standing charges with tax, adjustments
= their adjustments less refunds, closing balance = the last day's closing.

What a bill asks for (`Invoice.amount`) is what the wallet owed at the period's end less what
the earlier bills still had open then, never below zero. Payments that arrived between the
period's end and the issue (the freeze runs a few minutes after midnight) and that the earlier
bills could not take are allocated to the new bill as it is issued. So the open bills together
never ask for more than the wallet owes (`billing.allocation` keeps that true as money moves).

Lock order: the wallet, then the property's invoice sequence (as receipts: last, and briefly).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Account, Property
from billing.credit_policy import credit_policy
from billing.models import (
    Charge,
    FreezeCursor,
    Invoice,
    InvoiceAllocation,
    LedgerAccount,
    LedgerTransaction,
    Posting,
)
from billing.periods import month_bounds, month_of
from notifications.events import Event
from notifications.services import notify
from notifications.texts import language_for
from prepaid.audit.models import AuditLog
from prepaid.money import quantize
from tariffs.pricing import STANDING, local_midnight

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
DAY = timedelta(days=1)
TxnKind = LedgerTransaction.Kind
Book = LedgerAccount.Kind
Status = Invoice.Status
# Recorded in the audit log when an account changes mode (billing.modes); a bill of a postpaid
# stretch starts no earlier than the switch that began it.
MODE_SWITCH = "account.mode_switch"
UNITS = {"electricity": "kWh", "water": "m³"}


def invoice_display_number(invoice: Invoice) -> str:
    return f"{invoice.property.code}-INV-{invoice.number:06d}"


# Figures from the ledger -------------------------------------------------------------------------


def _booked(start: datetime, end: datetime) -> Q:
    """Transactions booked in [start, end), as the daily freeze books them."""
    standing = Q(transaction__kind=TxnKind.STANDING_CHARGE)
    return (~standing & Q(transaction__created_at__gte=start, transaction__created_at__lt=end)) | (
        standing & Q(transaction__effective_at__gt=start, transaction__effective_at__lte=end)
    )


def _booked_before(moment: datetime) -> Q:
    standing = Q(transaction__kind=TxnKind.STANDING_CHARGE)
    return (~standing & Q(transaction__created_at__lt=moment)) | (
        standing & Q(transaction__effective_at__lte=moment)
    )


@dataclass(frozen=True)
class Figures:
    """The wallet over a period, signed as in DailyFreeze (+ credits the wallet)."""

    previous_balance: Decimal
    payments: Decimal
    charges: Decimal
    tax: Decimal
    refunds: Decimal
    adjustments: Decimal
    closing_balance: Decimal
    # The period's charge transactions, for the lines.
    charge_transactions: tuple[int, ...]


def period_figures(*, wallet_id: int, start: datetime, end: datetime) -> Figures:
    """The wallet's money over [start, end), component by component, as the freeze splits it:
    top-ups; energy and standing charges with the tax book's share; refunds (through refunds
    payable); everything else as adjustments."""
    wallet = Posting.objects.filter(ledger_account_id=wallet_id)
    previous = wallet.filter(_booked_before(start)).aggregate(total=Sum("amount"))["total"] or ZERO
    moved = list(
        wallet.filter(_booked(start, end)).values_list(
            "transaction_id", "transaction__kind", "amount"
        )
    )
    ids = {txn_id for txn_id, _kind, _amount in moved}
    books = Posting.objects.filter(transaction_id__in=ids).exclude(ledger_account__kind=Book.WALLET)
    tax = dict(
        books.filter(ledger_account__kind=Book.TAX_PAYABLE)
        .values_list("transaction_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    refunded = set(
        books.filter(ledger_account__kind=Book.REFUNDS_PAYABLE).values_list(
            "transaction_id", flat=True
        )
    )
    charge_kinds = {TxnKind.CHARGE, TxnKind.STANDING_CHARGE}
    payments = charges = taxes = refunds = adjustments = ZERO
    for txn_id, kind, amount in moved:
        if kind == TxnKind.TOPUP:
            payments += amount
        elif kind in charge_kinds:
            charges -= amount
            taxes += tax.get(txn_id, ZERO)
        elif txn_id in refunded and kind != TxnKind.REVERSAL:
            refunds -= amount
        else:
            adjustments += amount
    return Figures(
        previous_balance=previous,
        payments=payments,
        charges=charges,
        tax=taxes,
        refunds=refunds,
        adjustments=adjustments,
        closing_balance=previous + payments - charges - refunds + adjustments,
        charge_transactions=tuple(
            sorted(txn_id for txn_id, kind, _amount in moved if kind in charge_kinds)
        ),
    )


def _line_key(charge: Charge, line: dict) -> tuple:
    standing = charge.kind == Charge.Kind.STANDING
    return (
        charge.kind,
        charge.meter.utility if charge.meter_id else "",
        None if standing else line.get("period"),
        None if standing else line.get("band"),
        line.get("unit_price"),
    )


def _line_label(kind: str, utility: str, period: str | None, band: int | None) -> str:
    if kind == Charge.Kind.STANDING:
        return _("Standing charge")
    parts = [{"electricity": _("Electricity"), "water": _("Water")}.get(utility, _("Supply"))]
    if period and period != STANDING:
        parts.append(period)
    if band is not None:
        parts.append(_("band %(band)d") % {"band": band + 1})
    return ", ".join(parts)


def invoice_lines(
    *, account: Account, figures: Figures, start: datetime, end: datetime, currency: str
) -> list[dict]:
    """The period's charges line by line: energy per time-of-use period, tier band and price,
    and standing charges, each with net and tax. Lines are rounded to the minor unit one by one;
    the charges' sub-minor remainders, carried between postings (`charges_post`), make up a last
    rounding line, so the lines add up to the charges posted."""
    charges = Charge.objects.filter(account=account).filter(
        Q(transaction_id__in=figures.charge_transactions)
        | Q(transaction__isnull=True, created_at__gte=start, created_at__lt=end)
    )
    grouped: dict[tuple, dict[str, Decimal]] = defaultdict(
        lambda: {"quantity": ZERO, "net": ZERO, "tax": ZERO}
    )
    for charge in charges.select_related("meter").order_by("period_start", "pk"):
        if not charge.lines and not (charge.quantity or charge.net or charge.tax):
            # Readings that showed no consumption: the engine priced nothing, and an empty
            # line would only stand beside the real ones.
            continue
        for line in charge.lines or [
            {"quantity": str(charge.quantity), "net": str(charge.net), "tax": str(charge.tax)}
        ]:
            sums = grouped[_line_key(charge, line)]
            for name in ("quantity", "net", "tax"):
                sums[name] += Decimal(line[name])
    lines = []
    for (kind, utility, period, band, price), sums in grouped.items():
        lines.append(
            {
                "component": "standing" if kind == Charge.Kind.STANDING else "energy",
                "label": _line_label(kind, utility, period, band),
                "quantity": str(sums["quantity"].quantize(Decimal("0.001"))),
                "unit": _("days") if kind == Charge.Kind.STANDING else UNITS.get(utility, ""),
                "price": price or "",
                "net": str(quantize(sums["net"], currency)),
                "tax": str(quantize(sums["tax"], currency)),
            }
        )
    lines.sort(key=lambda line: (line["component"] != "energy", line["label"], line["price"]))
    net = sum((Decimal(line["net"]) for line in lines), ZERO)
    tax = sum((Decimal(line["tax"]) for line in lines), ZERO)
    rest_net, rest_tax = figures.charges - figures.tax - net, figures.tax - tax
    if rest_net or rest_tax:
        lines.append(
            {
                "component": "rounding",
                "label": _("Rounding carried between charges"),
                "quantity": "",
                "unit": "",
                "price": "",
                "net": str(rest_net),
                "tax": str(rest_tax),
            }
        )
    return lines


# Issuing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    invoice: Invoice
    created: bool


_NEXT_NUMBER_SQL = (
    "INSERT INTO billing_invoicesequence (property_id, last_number) VALUES (%s, 1) "
    "ON CONFLICT (property_id) DO UPDATE "
    "SET last_number = billing_invoicesequence.last_number + 1 RETURNING last_number"
)


def _next_number(property_id: int) -> int:
    """The property's next invoice number. The sequence row stays locked until commit, so a
    rolled-back bill gives its number back and numbers are gapless."""
    with connection.cursor() as cursor:
        cursor.execute(_NEXT_NUMBER_SQL, [property_id])
        return cursor.fetchone()[0]


def billing_start(*, account: Account) -> datetime:
    """Where the account's next bill starts: the end of its last bill, or the move-in, or the
    switch to postpaid that began this postpaid stretch, whichever is latest."""
    moments = [account.opened_at]
    last = account.invoices.order_by("-period_end").values_list("period_end", flat=True).first()
    if last is not None:
        moments.append(last)
    switched = (
        AuditLog.objects.filter(
            object_id=str(account.uuid), action=MODE_SWITCH, after__mode=Account.Mode.POSTPAID
        )
        .order_by("-pk")
        .values_list("after__at", flat=True)
        .first()
    )
    if switched:
        moments.append(datetime.fromisoformat(switched))
    return max(moments)


def _open_at(invoices: QuerySet[Invoice], moment: datetime) -> Decimal:
    """What these bills had open at `moment`: their amounts less what was allocated to them by
    transactions booked before it."""
    amounts = invoices.aggregate(total=Sum("amount"))["total"] or ZERO
    allocated = (
        InvoiceAllocation.objects.filter(
            invoice__in=invoices, transaction__created_at__lt=moment
        ).aggregate(total=Sum("amount"))["total"]
        or ZERO
    )
    return amounts - allocated


def _credit_since(*, wallet_id: int, moment: datetime) -> list[tuple[int, Decimal]]:
    """Money into the wallet booked since `moment` and not allocated to a bill yet, oldest
    first: (transaction id, unallocated amount). A reversed credit has nothing left."""
    credits = (
        Posting.objects.filter(
            ledger_account_id=wallet_id, amount__gt=0, transaction__created_at__gte=moment
        )
        .exclude(transaction__kind=TxnKind.STANDING_CHARGE)
        .filter(transaction__reversed_by__isnull=True)
        .values_list("transaction_id")
        .annotate(total=Sum("amount"))
        .order_by("transaction_id")
    )
    credited = dict(credits)
    allocated = dict(
        InvoiceAllocation.objects.filter(transaction_id__in=credited)
        .values_list("transaction_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    rest = [(txn_id, total - allocated.get(txn_id, ZERO)) for txn_id, total in credited.items()]
    return [(txn_id, amount) for txn_id, amount in rest if amount > 0]


@transaction.atomic
def invoice_issue(
    *, account: Account, period_end: datetime, kind: str = Invoice.Kind.MONTHLY, actor=None
) -> Issued:
    """Issue the account's bill for the period from `billing_start` to `period_end`, number it
    and email it with its PDF. Issuing again for the same period end finds the first bill."""
    wallet = LedgerAccount.objects.select_for_update().get(pk=account.wallet_id)
    existing = Invoice.objects.filter(account=account, period_end=period_end).first()
    if existing is not None:
        return Issued(existing, created=False)
    account = Account.objects.select_related("tenant", "unit__property").get(pk=account.pk)
    prop = account.unit.property
    policy = credit_policy(property=prop)
    start = billing_start(account=account)
    figures = period_figures(wallet_id=wallet.pk, start=start, end=period_end)
    earlier = Invoice.objects.filter(account=account).exclude(status=Status.TRANSFERRED)
    amount = max(ZERO, -figures.closing_balance - _open_at(earlier, period_end))
    now = timezone.now()
    zone = prop.zone
    issued_on = now.astimezone(zone).date()
    invoice = Invoice(
        property=prop,
        account=account,
        kind=kind,
        status=Status.OPEN if amount else Status.PAID,
        # The month of the period's last instant.
        month=month_of(period_end - timedelta(microseconds=1), zone),
        period_start=start,
        period_end=period_end,
        issued_at=now,
        due_on=issued_on + timedelta(days=policy.bill_due_days),
        currency=prop.currency,
        previous_balance=figures.previous_balance,
        payments=figures.payments,
        charges=figures.charges,
        adjustments=figures.adjustments - figures.refunds,
        closing_balance=figures.closing_balance,
        amount=amount,
        lines=invoice_lines(
            account=account, figures=figures, start=start, end=period_end, currency=prop.currency
        ),
        language=language_for(account.tenant.preferred_language),
    )
    invoice.number = _next_number(prop.pk)
    invoice.save()
    if amount:
        _allocate_credit_since(invoice=invoice, wallet=wallet, earlier=earlier)
    _notify_issued(invoice)
    return Issued(invoice, created=True)


def _allocate_credit_since(*, invoice: Invoice, wallet: LedgerAccount, earlier) -> None:
    """Meet the new bill from money paid since its period ended that the earlier bills did not
    take, so the open bills never ask for more than the wallet owes now."""
    still_open = (
        earlier.filter(status=Status.OPEN)
        .exclude(pk=invoice.pk)
        .aggregate(total=Sum("amount") - Sum("paid"))["total"]
        or ZERO
    )
    excess = min(invoice.amount, still_open + invoice.amount - max(ZERO, -wallet.balance))
    for txn_id, available in _credit_since(wallet_id=wallet.pk, moment=invoice.period_end):
        if excess <= 0:
            break
        share = min(available, excess)
        InvoiceAllocation.objects.create(invoice=invoice, transaction_id=txn_id, amount=share)
        invoice.paid += share
        excess -= share
    if invoice.paid == invoice.amount:
        invoice.status = Status.PAID
    invoice.save(update_fields=["paid", "status"])


def due_at(invoice: Invoice) -> datetime:
    """The due day's local midnight, for texts that show the date in the property's zone."""
    return local_midnight(invoice.due_on, invoice.property.zone)


def _notify_issued(invoice: Invoice) -> None:
    notify(
        account_id=invoice.account_id,
        event=Event.BILL_ISSUED,
        context={
            "amount": str(quantize(invoice.amount, invoice.currency)),
            "currency": invoice.currency,
            "number": invoice_display_number(invoice),
            "due_at": due_at(invoice).isoformat(),
            "invoice_uuid": str(invoice.uuid),
        },
        idempotency_key=f"bill:{invoice.uuid}",
    )


def month_end_bills_issue(*, property: Property, month: date) -> int:
    """The monthly bill of every postpaid account of the property open at the month's end,
    each in its own transaction. Safe to run again: a bill issued before is found. Returns how
    many bills were issued now."""
    _start, end = month_bounds(property=property, month=month)
    accounts = Account.objects.filter(
        unit__property=property,
        mode=Account.Mode.POSTPAID,
        status=Account.Status.OPEN,
        opened_at__lt=end,
    ).exclude(invoices__period_end__gte=end)
    issued = 0
    for account in accounts.order_by("pk").iterator(chunk_size=500):
        if billing_start(account=account) >= end:
            # Switched to postpaid since the month ended: its first bill is next month's.
            continue
        try:
            if invoice_issue(account=account, period_end=end).created:
                issued += 1
        except IntegrityError:
            # Another worker issued it at the same moment; its bill stands.
            logger.info("Bill of %s for %s issued concurrently.", account.uuid, month)
    if issued:
        logger.info("Issued %d bills for %s %s.", issued, property.code, f"{month:%Y-%m}")
    return issued


def ended_month(frozen_through: date) -> date:
    """The latest month whose every day is frozen, given the last frozen day."""
    if (frozen_through + DAY).day == 1:
        return frozen_through.replace(day=1)
    return (frozen_through.replace(day=1) - DAY).replace(day=1)


def bills_issue_due() -> int:
    """For every property, the bills of the latest month frozen to its last day: the catch-up
    for a freeze whose completion hook was lost. Returns how many bills were issued."""
    issued = 0
    for prop in Property.objects.order_by("pk"):
        frozen = (
            FreezeCursor.objects.filter(property=prop)
            .values_list("frozen_through", flat=True)
            .first()
        )
        if frozen is not None:
            issued += month_end_bills_issue(property=prop, month=ended_month(frozen))
    return issued


def invoices_settle_at_move_out(*, account: Account) -> None:
    """After a postpaid move-out's settlement: the deposit returned into the wallet meets the
    open bills like a payment, and what they still ask for went to the debtors book with the
    rest of the balance (`billing.settlement`), so they are marked as moved to that debt. The
    caller holds the wallet's lock."""
    # Imported here: allocation and settlement both post through billing.services.
    from billing.allocation import payment_allocate
    from billing.settlement import settlement_key

    release = (
        Posting.objects.filter(
            ledger_account_id=account.wallet_id,
            transaction__idempotency_key=settlement_key(account, "deposit"),
        )
        .select_related("transaction")
        .first()
    )
    if release is not None:
        payment_allocate(account_id=account.pk, payment=release.transaction, amount=release.amount)
    Invoice.objects.filter(account=account, status=Status.OPEN).update(status=Status.TRANSFERRED)


# Selectors ---------------------------------------------------------------------------------------


def property_invoices(
    *, property: Property, status: str | None = None, month: date | None = None
) -> QuerySet[Invoice]:
    invoices = (
        Invoice.objects.filter(property=property)
        .select_related("account__tenant", "account__unit", "property")
        .annotate(open_amount=F("amount") - F("paid"))
    )
    if status:
        invoices = invoices.filter(status=status)
    if month:
        invoices = invoices.filter(month=month)
    return invoices.order_by("-month", "-number")


def account_invoices(*, account: Account) -> QuerySet[Invoice]:
    return Invoice.objects.filter(account=account).select_related("property").order_by("-number")


def open_amount(*, account: Account) -> Decimal:
    """What the account's open bills still ask for."""
    totals = Invoice.objects.filter(account=account, status=Status.OPEN).aggregate(
        amount=Sum("amount"), paid=Sum("paid")
    )
    return (totals["amount"] or ZERO) - (totals["paid"] or ZERO)


def next_due_invoice(*, account: Account) -> Invoice | None:
    """The open bill that falls due first."""
    return (
        Invoice.objects.filter(account=account, status=Status.OPEN)
        .select_related("property")
        .order_by("due_on", "number")
        .first()
    )


def earlier_open(*, invoice: Invoice) -> Decimal:
    """What the account's bills issued before this one still ask for."""
    totals = Invoice.objects.filter(
        account_id=invoice.account_id, status=Status.OPEN, number__lt=invoice.number
    ).aggregate(amount=Sum("amount"), paid=Sum("paid"))
    return (totals["amount"] or ZERO) - (totals["paid"] or ZERO)
