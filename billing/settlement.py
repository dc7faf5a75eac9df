"""Move-out settlement in the ledger: deposits, the last standing charges, refund or debt, and the
statement that adds it all up.

The books (signs as in `billing.models`: a posting credits its account when positive):

- A deposit taken at move-in moves money from the counter (cash, or the bank clearing account)
  into **deposits held**, a liability of the property. It is not credit: the wallet never sees it
  until move-out.
- At move-out the deposit comes back into the wallet (deposit release). What the wallet then
  holds is settled to zero: a positive balance is refunded (wallet to refunds payable, then paid
  out at the counter from cash or the bank), a negative one is a debt moved to **debtors**, the
  property's receivable from former tenants.

Every transaction of one settlement has a key derived from the account, so an account is settled
at most once whatever the caller retries. `settlement_statement` reads every figure back from the
postings, so the statement ties to the ledger to the minor unit.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import BooleanField, Case, Max, Sum, Value, When
from django.utils.translation import gettext as _

from accounts.models import Account
from accounts.selectors import holiday_calendar
from billing.charging import standing_charge_input
from billing.models import (
    Charge,
    FreezeCursor,
    LedgerAccount,
    LedgerTransaction,
    Posting,
    Receipt,
)
from billing.periods import PostingDates
from billing.services import (
    COUNTER_CHANNELS,
    Entry,
    LedgerError,
    book_account,
    charges_post,
    transaction_post,
)
from meters.models import Meter, Reading
from prepaid.money import is_whole_minor_units, quantize, to_decimal
from tariffs import pricing
from tariffs.models import Tariff
from tariffs.selectors import tariff_schedule

Kind = LedgerAccount.Kind
TxnKind = LedgerTransaction.Kind
DAY = timedelta(days=1)
ZERO = Decimal(0)


def deposit_key(account: Account) -> str:
    return f"deposit:{account.uuid}"


def settlement_key(account: Account, step: str) -> str:
    return f"settlement:{account.uuid}:{step}"


def _counter_book(*, property, channel: str) -> LedgerAccount:
    if channel not in COUNTER_CHANNELS:
        raise LedgerError({"channel": _("Choose cash or bank transfer.")})
    kind, book_channel = COUNTER_CHANNELS[channel]
    return book_account(property=property, kind=kind, channel=book_channel)


def _channel_of(book: LedgerAccount) -> str:
    return "cash" if book.kind == Kind.CASH else book.channel


# Deposits ----------------------------------------------------------------------------------------


@transaction.atomic
def deposit_take(*, account: Account, amount: Decimal, channel: str, actor) -> LedgerTransaction:
    """Take a tenancy's deposit at the counter into deposits held. One deposit per tenancy: a
    retry returns the one already taken, a different amount is refused."""
    prop = account.unit.property
    amount = to_decimal(amount)
    if amount <= 0:
        raise LedgerError({"amount": _("A deposit must be more than zero.")})
    if not is_whole_minor_units(amount, prop.currency):
        raise LedgerError(
            {
                "amount": _("Give the amount in whole %(currency)s minor units.")
                % {"currency": prop.currency}
            }
        )
    counter = _counter_book(property=prop, channel=channel)
    held = book_account(property=prop, kind=Kind.DEPOSITS_HELD)
    return transaction_post(
        property=prop,
        kind=TxnKind.DEPOSIT,
        entries=[Entry(counter, -amount), Entry(held, amount)],
        idempotency_key=deposit_key(account),
        actor=actor,
        memo=f"Deposit for {account.unit}",
    ).transaction


@dataclass(frozen=True)
class Deposit:
    amount: Decimal
    channel: str
    taken_at: datetime
    # What has gone back into the wallet at move-out, zero until then.
    returned: Decimal


def deposit_of(*, account: Account) -> Deposit | None:
    """The tenancy's deposit, read from its postings; None when none was taken."""
    keys = [deposit_key(account), settlement_key(account, "deposit")]
    postings = list(
        Posting.objects.filter(transaction__idempotency_key__in=keys)
        .select_related("ledger_account", "transaction")
        .order_by("pk")
    )
    taken = [p for p in postings if p.transaction.idempotency_key == keys[0]]
    if not taken:
        return None
    amount = next(p.amount for p in taken if p.ledger_account.kind == Kind.DEPOSITS_HELD)
    counter = next(p.ledger_account for p in taken if p.ledger_account.kind != Kind.DEPOSITS_HELD)
    returned = sum(
        (
            p.amount
            for p in postings
            if p.transaction.idempotency_key == keys[1] and p.ledger_account.kind == Kind.WALLET
        ),
        ZERO,
    )
    return Deposit(
        amount=amount,
        channel=_channel_of(counter),
        taken_at=taken[0].transaction.effective_at,
        returned=returned,
    )


# Standing charges up to the move-out moment -------------------------------------------------------


def standing_charges_until(*, account: Account, moment: datetime) -> int:
    """Post the account's standing charges from the last day posted up to `moment`, the last day
    pro-rated to the second, exactly as the daily freeze would once the account is closed then.

    Days the property has frozen are the freeze's: only later days are posted here. Each day's
    charge has the key the freeze uses, so the freeze skips it. Returns the charges recorded.
    """
    prop = account.unit.property
    zone = prop.zone
    calendar = holiday_calendar(property=prop)
    schedules = {
        tariff.utility: tariff_schedule(tariff=tariff, calendar=calendar)
        for tariff in Tariff.objects.filter(property=prop).prefetch_related("versions")
    }
    if not schedules:
        return 0
    last = Charge.objects.filter(account=account, kind=Charge.Kind.STANDING).aggregate(
        end=Max("period_end")
    )["end"]
    day = (last or account.opened_at).astimezone(zone).date()
    frozen = (
        FreezeCursor.objects.filter(property=prop).values_list("frozen_through", flat=True).first()
    )
    if frozen is not None:
        day = max(day, frozen + DAY)
    meters = list(
        Meter.objects.filter(unit_id=account.unit_id, installed_at__isnull=False).values_list(
            "utility", "installed_at", "removed_at"
        )
    )
    charges = []
    while (day_start := pricing.local_midnight(day, zone)) < moment:
        day_end = pricing.local_midnight(day + DAY, zone)
        start, end = max(day_start, account.opened_at), min(day_end, moment)
        served = {
            utility
            for utility, installed, removed in meters
            if installed < day_end and (removed is None or removed > day_start)
        }
        for utility in sorted(served & set(schedules)) if start < end else ():
            charge = standing_charge_input(
                account=account,
                utility=utility,
                day=day,
                schedule=schedules[utility],
                start=start,
                end=end,
            )
            if charge.net or charge.tax:
                charges.append(charge)
        day += DAY
    return len(charges_post(charges=charges))


# Settling the wallet -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """What settles a wallet holding `balance` with `deposit` still held."""

    refund: Decimal
    debt: Decimal


def settlement_split(*, balance: Decimal, deposit: Decimal) -> Split:
    due = balance + deposit
    return Split(refund=max(due, ZERO), debt=max(-due, ZERO))


@dataclass(frozen=True)
class Settled:
    deposit_returned: Decimal
    refund: Decimal
    debt: Decimal


@transaction.atomic
def wallet_settle(*, account: Account, channel: str, actor, moment: datetime) -> Settled:
    """Bring the wallet to zero: the deposit back into it, then the balance refunded through
    `channel` (cash or bank) or moved to debtors. The caller holds the wallet's lock.

    Posted at `moment`, or, when that is in a closed month, in the open period with a reference
    to it (`billing.periods`)."""
    prop = account.unit.property
    counter = _counter_book(property=prop, channel=channel)
    wallet = LedgerAccount.objects.select_for_update().get(pk=account.wallet_id)
    deposit = deposit_of(account=account)
    held = deposit.amount - deposit.returned if deposit else ZERO
    split = settlement_split(balance=wallet.balance, deposit=held)
    dated = PostingDates().dated(property=prop, effective_at=moment, kind=TxnKind.REFUND)
    memo = dated.memo(f"Move-out of {account.unit}", prop.zone)
    moment = dated.effective_at
    if held:
        transaction_post(
            property=prop,
            kind=TxnKind.DEPOSIT_RELEASE,
            entries=[
                Entry(book_account(property=prop, kind=Kind.DEPOSITS_HELD), -held),
                Entry(wallet, held),
            ],
            idempotency_key=settlement_key(account, "deposit"),
            actor=actor,
            memo=memo,
            effective_at=moment,
        )
    if split.refund:
        payable = book_account(property=prop, kind=Kind.REFUNDS_PAYABLE)
        transaction_post(
            property=prop,
            kind=TxnKind.REFUND,
            entries=[Entry(wallet, -split.refund), Entry(payable, split.refund)],
            idempotency_key=settlement_key(account, "refund"),
            actor=actor,
            memo=memo,
            effective_at=moment,
        )
        transaction_post(
            property=prop,
            kind=TxnKind.REFUND_PAYOUT,
            entries=[Entry(payable, -split.refund), Entry(counter, split.refund)],
            idempotency_key=settlement_key(account, "payout"),
            actor=actor,
            memo=memo,
            effective_at=moment,
        )
    if split.debt:
        transaction_post(
            property=prop,
            kind=TxnKind.DEBT_TRANSFER,
            entries=[
                Entry(wallet, split.debt),
                Entry(book_account(property=prop, kind=Kind.DEBTORS), -split.debt),
            ],
            idempotency_key=settlement_key(account, "debt"),
            actor=actor,
            memo=memo,
            effective_at=moment,
        )
    wallet.refresh_from_db(fields=["balance"])
    if wallet.balance != 0:
        raise ValidationError(_("The wallet did not settle to zero."))
    return Settled(deposit_returned=held, refund=split.refund, debt=split.debt)


# The statement -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeterSpan:
    """One meter's part in the tenancy: its registers at either end and what was charged."""

    uuid: uuid.UUID
    serial: str
    utility: str
    register_unit: str
    start: datetime
    end: datetime
    opening: Decimal | None
    final: Decimal | None
    consumption: Decimal
    replaced: bool


@dataclass(frozen=True)
class TopupLine:
    number: str
    issued_at: datetime
    amount: Decimal
    channel: str


@dataclass(frozen=True)
class SettlementStatement:
    """A tenancy's money from move-in to move-out, every figure summed from the ledger."""

    account_uuid: uuid.UUID
    tenant_name: str
    tenant_language: str
    unit_name: str
    property_name: str
    property_code: str
    property_address: str
    organisation_name: str
    currency: str
    time_zone: str
    opened_at: datetime
    closed_at: datetime
    meters: tuple[MeterSpan, ...]
    energy_net: Decimal
    energy_tax: Decimal
    standing_net: Decimal
    standing_tax: Decimal
    # The last, part day of standing charges: its fraction of a day and its exact amount.
    final_day_fraction: Decimal | None
    final_day_standing: Decimal
    topups: Decimal
    topup_lines: tuple[TopupLine, ...]
    # Refunds during the tenancy (online payments paid back), before the settlement's own.
    refunds: Decimal
    # Reversals and other corrections, signed (+ credits the wallet).
    adjustments: Decimal
    deposit: Decimal
    deposit_channel: str
    deposit_returned: Decimal
    refund: Decimal
    refund_channel: str
    debt: Decimal
    closing_balance: Decimal

    @property
    def charges(self) -> Decimal:
        return self.energy_net + self.energy_tax + self.standing_net + self.standing_tax

    @property
    def tax(self) -> Decimal:
        return self.energy_tax + self.standing_tax

    @property
    def balance_before_settlement(self) -> Decimal:
        return self.topups - self.charges - self.refunds + self.adjustments

    @property
    def due(self) -> Decimal:
        """What the tenant is owed (positive) or owes (negative) with the deposit returned."""
        return self.balance_before_settlement + self.deposit_returned


def _wallet_totals(account: Account) -> dict[tuple[str, bool], Decimal]:
    prefix = settlement_key(account, "")
    rows = (
        Posting.objects.filter(ledger_account_id=account.wallet_id)
        .annotate(
            settlement=Case(
                When(transaction__idempotency_key__startswith=prefix, then=Value(True)),
                default=Value(False),
                output_field=BooleanField(),
            )
        )
        .values_list("transaction__kind", "settlement")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    return {(kind, settlement): total for kind, settlement, total in rows}


def _charge_tax(account: Account) -> dict[str, Decimal]:
    """Tax posted with the account's charges, by transaction kind, from the tax book."""
    charged = Posting.objects.filter(
        ledger_account_id=account.wallet_id,
        transaction__kind__in=[TxnKind.CHARGE, TxnKind.STANDING_CHARGE],
    ).values("transaction_id")
    rows = (
        Posting.objects.filter(transaction_id__in=charged, ledger_account__kind=Kind.TAX_PAYABLE)
        .values_list("transaction__kind")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    return dict(rows)


def _register_at(meter: Meter, moment: datetime, *, before: bool) -> Decimal | None:
    readings = Reading.objects.filter(meter=meter).exclude(status=Reading.Status.REJECTED)
    if before:
        found = readings.filter(taken_at__lte=moment).order_by("-taken_at").first()
    else:
        found = readings.filter(taken_at__gte=moment).order_by("taken_at").first()
    return found.register if found else None


def _meter_spans(account: Account, end: datetime) -> tuple[MeterSpan, ...]:
    meters = (
        Meter.objects.filter(unit_id=account.unit_id, installed_at__lt=end)
        .exclude(removed_at__lte=account.opened_at)
        .order_by("utility", "installed_at", "pk")
    )
    consumption: dict[int, Decimal] = defaultdict(Decimal)
    for meter_id, quantity in (
        Charge.objects.filter(account=account, kind=Charge.Kind.ENERGY)
        .values_list("meter_id")
        .annotate(total=Sum("quantity"))
        .order_by()
    ):
        consumption[meter_id] = quantity
    spans = []
    for meter in meters:
        start = max(account.opened_at, meter.installed_at)
        stop = min(end, meter.removed_at) if meter.removed_at else end
        opening = _register_at(meter, start, before=True)
        if opening is None:
            opening = _register_at(meter, start, before=False)
        spans.append(
            MeterSpan(
                uuid=meter.uuid,
                serial=meter.serial,
                utility=meter.utility,
                register_unit=meter.register_unit,
                start=start,
                end=stop,
                opening=opening,
                final=_register_at(meter, stop, before=True),
                consumption=consumption[meter.pk],
                replaced=meter.removed_at is not None and meter.removed_at < end,
            )
        )
    return tuple(spans)


def _final_day(account: Account, end: datetime) -> tuple[Decimal | None, Decimal]:
    last = list(
        Charge.objects.filter(account=account, kind=Charge.Kind.STANDING, period_end=end)
        .values_list("quantity", "net", "tax")
        .order_by("pk")
    )
    if not last:
        return None, ZERO
    fraction = max(quantity for quantity, _net, _tax in last)
    amount = sum((net + tax for _quantity, net, tax in last), ZERO)
    return fraction, amount


def _settlement_channel(account: Account) -> str:
    posting = (
        Posting.objects.filter(transaction__idempotency_key=settlement_key(account, "payout"))
        .exclude(ledger_account__kind=Kind.REFUNDS_PAYABLE)
        .select_related("ledger_account")
        .first()
    )
    return _channel_of(posting.ledger_account) if posting else ""


def settlement_statement(*, account: Account) -> SettlementStatement:
    """The statement of an ended tenancy, from move-in to move-out, as the ledger stands."""
    account = Account.objects.select_related(
        "tenant", "unit__property__organisation", "wallet"
    ).get(pk=account.pk)
    if account.closed_at is None:
        raise ValueError("Only an ended tenancy has a settlement statement.")
    prop = account.unit.property
    currency = prop.currency
    end = account.closed_at
    totals = _wallet_totals(account)

    def ledger(kind: str, settlement: bool = False) -> Decimal:
        return totals.get((kind, settlement), ZERO)

    tax = _charge_tax(account)
    energy_tax = tax.get(TxnKind.CHARGE, ZERO)
    standing_tax = tax.get(TxnKind.STANDING_CHARGE, ZERO)
    regular = {
        TxnKind.TOPUP,
        TxnKind.CHARGE,
        TxnKind.STANDING_CHARGE,
        TxnKind.REFUND,
    }
    adjustments = sum(
        (
            total
            for (kind, settlement), total in totals.items()
            if not settlement and kind not in regular
        ),
        ZERO,
    )
    deposit = deposit_of(account=account)
    fraction, final_day = _final_day(account, end)
    receipts = Receipt.objects.filter(account=account).order_by("issued_at", "pk")
    return SettlementStatement(
        account_uuid=account.uuid,
        tenant_name=account.tenant.name,
        tenant_language=account.tenant.preferred_language,
        unit_name=account.unit.name,
        property_name=prop.name,
        property_code=prop.code,
        property_address=prop.address,
        organisation_name=prop.organisation.name,
        currency=currency,
        time_zone=prop.time_zone,
        opened_at=account.opened_at,
        closed_at=account.closed_at,
        meters=_meter_spans(account, end),
        energy_net=-ledger(TxnKind.CHARGE) - energy_tax,
        energy_tax=energy_tax,
        standing_net=-ledger(TxnKind.STANDING_CHARGE) - standing_tax,
        standing_tax=standing_tax,
        final_day_fraction=fraction,
        final_day_standing=quantize(final_day, currency),
        topups=ledger(TxnKind.TOPUP),
        topup_lines=tuple(
            TopupLine(
                number=f"{prop.code}-{receipt.number:08d}",
                issued_at=receipt.issued_at,
                amount=receipt.amount,
                channel=receipt.channel,
            )
            for receipt in receipts
        ),
        refunds=-ledger(TxnKind.REFUND),
        adjustments=adjustments,
        deposit=deposit.amount if deposit else ZERO,
        deposit_channel=deposit.channel if deposit else "",
        deposit_returned=ledger(TxnKind.DEPOSIT_RELEASE, True),
        refund=-ledger(TxnKind.REFUND, True),
        refund_channel=_settlement_channel(account),
        debt=ledger(TxnKind.DEBT_TRANSFER, True),
        closing_balance=account.wallet.balance,
    )
