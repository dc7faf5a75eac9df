"""Every movement of money: balanced, immutable, idempotent ledger transactions.

Lock order, everywhere: tenant wallets by primary key, then charge totals by primary key, then the
property's receipt sequence. Taking locks in one order means concurrent postings queue instead of
deadlocking. A posting dated before the current local month also takes its property's period
cursor in share mode (`billing.periods`); closing a month takes nothing else, so nothing waits on
it the other way round.

Nothing is posted dated in a closed month: `transaction_post` refuses it, and charges for the
past are dated at the open period instead (see `billing.periods`).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Account, Property
from billing.models import (
    BalancePolicy,
    Charge,
    ChargeTotals,
    Debt,
    LedgerAccount,
    LedgerTransaction,
    Posting,
    Receipt,
    TopupLimits,
)
from billing.periods import PostingDates
from billing.tasks import notify_topup, restore_supply
from billing.warnings import Fall, levels_fallen_through
from prepaid.audit.services import acting_user, audit_record
from prepaid.inserts import insert
from prepaid.money import is_whole_minor_units, quantize, to_decimal

Kind = LedgerAccount.Kind


class LedgerError(ValidationError):
    pass


class IdempotencyConflict(LedgerError):
    """The key was used before for a different request."""


@dataclass(frozen=True)
class Entry:
    account: LedgerAccount
    amount: Decimal


@dataclass(frozen=True)
class Posted:
    transaction: LedgerTransaction
    created: bool


def wallet_create(*, property: Property) -> LedgerAccount:
    """A new, empty wallet in the property's currency for a tenant account."""
    return LedgerAccount.objects.create(
        organisation_id=property.organisation_id,
        property=property,
        kind=Kind.WALLET,
        currency=property.currency,
    )


def book_account(*, property: Property, kind: str, channel: str = "") -> LedgerAccount:
    """One of the property's books, created on first use (safe when two requests race)."""
    lookup = {"property": property, "kind": kind, "channel": channel}
    found = LedgerAccount.objects.filter(**lookup).order_by().first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(
                organisation_id=property.organisation_id, currency=property.currency, **lookup
            )
    except IntegrityError:
        return LedgerAccount.objects.get(**lookup)


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()


def _entries_fingerprint(kind: str, entries: Sequence[Entry], extra: str) -> str:
    canonical = sorted(
        (entry.account.pk, str(to_decimal(entry.amount).normalize())) for entry in entries
    )
    return _fingerprint(kind, canonical, extra)


def _lock_wallets(wallet_ids: Iterable[int]) -> dict[int, LedgerAccount]:
    ids = sorted(set(wallet_ids))
    if not ids:
        return {}
    locked = LedgerAccount.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    return {wallet.pk: wallet for wallet in locked}


def _existing(idempotency_key: str, fingerprint: str) -> LedgerTransaction | None:
    # Unique key: no ordering needed, and skipping it keeps this hot-path query cheap.
    found = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).order_by().first()
    if found is not None and found.fingerprint != fingerprint:
        raise _key_reused()
    return found


def _key_reused() -> IdempotencyConflict:
    return IdempotencyConflict(
        {"idempotency_key": "This idempotency key was already used for a different request."}
    )


def _validate_entries(entries: Sequence[Entry]) -> str:
    if len(entries) < 2:
        raise LedgerError("A transaction needs at least two postings.")
    currencies = {entry.account.currency for entry in entries}
    if len(currencies) != 1:
        raise LedgerError(f"A transaction must be in one currency, not {sorted(currencies)}.")
    currency = currencies.pop()
    for entry in entries:
        if not is_whole_minor_units(entry.amount, currency):
            raise LedgerError(f"{entry.amount} is not a whole number of {currency} minor units.")
    if sum((entry.amount for entry in entries), Decimal(0)) != 0:
        raise LedgerError("A transaction's postings must sum to zero.")
    return currency


@transaction.atomic
def transaction_post(
    *,
    property: Property,
    kind: str,
    entries: Sequence[Entry],
    idempotency_key: str,
    actor=None,
    memo: str = "",
    effective_at: datetime | None = None,
    reverses: LedgerTransaction | None = None,
    fingerprint_extra: str = "",
) -> Posted:
    """Post a balanced transaction once. A retry with the same key returns the original."""
    currency = _validate_entries(entries)
    if reverses is not None:
        # What is reversed is part of the request: the mirrors of two identical top-ups have the
        # same entries, and a key reused for the second must not pass for the first.
        fingerprint_extra = f"{fingerprint_extra}\x1freverses:{reverses.pk}"
    fingerprint = _entries_fingerprint(kind, entries, fingerprint_extra)
    wallets = _lock_wallets(e.account.pk for e in entries if e.account.kind == Kind.WALLET)
    existing = _existing(idempotency_key, fingerprint)
    if existing is not None:
        return Posted(existing, created=False)
    if effective_at is not None:
        _refuse_closed(property=property, effective_at=effective_at, kind=kind)
    txn = _post_locked(
        organisation_id=property.organisation_id,
        property_id=property.pk,
        kind=kind,
        currency=currency,
        entries=entries,
        wallets=wallets,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        actor=actor,
        memo=memo,
        effective_at=effective_at,
        reverses=reverses,
    )
    return Posted(txn, created=True)


def _refuse_closed(*, property: Property, effective_at: datetime, kind: str) -> None:
    """Refuse a posting dated in a closed month. Postings dated now never are, and skip this."""
    closed = PostingDates().closed_month(property=property, effective_at=effective_at, kind=kind)
    if closed is not None:
        raise LedgerError(
            {
                "effective_at": _(
                    "%(month)s is closed for %(property)s: nothing more can be posted dated in "
                    "it. Post the correction in the open period."
                )
                % {"month": f"{closed:%Y-%m}", "property": property.name}
            }
        )


def _post_locked(
    *,
    organisation_id: int,
    property_id: int,
    kind: str,
    currency: str,
    entries: Sequence[Entry],
    wallets: dict[int, LedgerAccount],
    idempotency_key: str,
    fingerprint: str,
    actor=None,
    memo: str = "",
    effective_at: datetime | None = None,
    reverses: LedgerTransaction | None = None,
) -> LedgerTransaction:
    """Write a validated transaction whose wallets are locked and whose key is unused."""
    txn = LedgerTransaction(
        organisation_id=organisation_id,
        property_id=property_id,
        kind=kind,
        currency=currency,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        reverses=reverses,
        effective_at=effective_at or timezone.now(),
        actor=acting_user(actor),
        memo=memo[:300],
    )
    insert(txn)
    insert(
        *(
            Posting(transaction=txn, ledger_account_id=entry.account.pk, amount=entry.amount)
            for entry in entries
        )
    )
    lowered = _apply_to_wallets(wallets, entries)
    levels_fallen_through(
        falls=[Fall(pk, before, after, txn.pk) for pk, (before, after) in lowered.items()]
    )
    return txn


def _apply_to_wallets(
    wallets: dict[int, LedgerAccount], entries: Iterable[Entry]
) -> dict[int, tuple[Decimal, Decimal]]:
    """Update the locked wallets' balances; returns (before, after) of those that went down."""
    changes: dict[int, Decimal] = defaultdict(Decimal)
    for entry in entries:
        if entry.account.pk in wallets:
            changes[entry.account.pk] += entry.amount
    lowered = {}
    # The rows are locked, so the values read under the lock plus the changes are exact.
    for wallet_id, change in changes.items():
        before = wallets[wallet_id].balance
        wallets[wallet_id].balance += change
        if change < 0:
            lowered[wallet_id] = (before, wallets[wallet_id].balance)
    balance = LedgerAccount._meta.get_field("balance")
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE billing_ledgeraccount SET balance = %s WHERE id = %s",
            [
                (balance.get_db_prep_save(wallets[pk].balance, connection), pk)
                for pk in sorted(changes)
            ],
        )
    return lowered


REVERSIBLE = {LedgerTransaction.Kind.TOPUP, LedgerTransaction.Kind.ADJUSTMENT}


@transaction.atomic
def transaction_reverse(
    *, original: LedgerTransaction, actor, reason: str, idempotency_key: str
) -> Posted:
    """Undo a posted transaction with one that posts the exact opposite and points at it."""
    if not reason.strip():
        raise LedgerError({"reason": "Give a reason for the reversal."})
    if original.kind not in REVERSIBLE:
        raise LedgerError(f"A {original.get_kind_display().lower()} cannot be reversed here.")
    receipt = Receipt.objects.filter(transaction=original).first()
    if receipt is not None and receipt.channel not in COUNTER_CHANNELS:
        # The provider holds that money: only a refund through it pays the tenant back.
        raise LedgerError("Refund an online payment through the payment, not by a reversal.")
    entries = [
        Entry(posting.ledger_account, -posting.amount)
        for posting in original.postings.select_related("ledger_account").order_by("pk")
    ]
    # Under the wallets' locks, so a concurrent reversal under another key is seen and refused
    # here, not left to fail on the unique `reverses` column.
    _lock_wallets(e.account.pk for e in entries if e.account.kind == Kind.WALLET)
    already = LedgerTransaction.objects.filter(reverses=original).first()
    if already is not None and already.idempotency_key != idempotency_key:
        raise LedgerError("This transaction has already been reversed.")
    posted = transaction_post(
        property=original.property,
        kind=LedgerTransaction.Kind.REVERSAL,
        entries=entries,
        idempotency_key=idempotency_key,
        actor=actor,
        memo=reason,
        reverses=original,
    )
    if posted.created:
        # Imported here: both post through this module.
        from billing.allocation import wallet_movement_allocate
        from billing.debts import recovery_undo

        # A postpaid payment taken back reopens the bills it had met, newest first.
        wallet_movement_allocate(movement=posted.transaction, payment=original)
        # What a prepaid top-up recovered of a debt goes back to the debt.
        recovery_undo(topup=original, actor=actor, reason=reason)
        audit_record(
            organisation_id=original.organisation_id,
            property_id=original.property_id,
            actor=actor,
            action="ledger.reverse",
            instance=original,
            after={"reversal": str(posted.transaction.uuid)},
            reason=reason,
        )
    return posted


# Counter top-ups ---------------------------------------------------------------------------------

COUNTER_CHANNELS = {"cash": (Kind.CASH, ""), "bank": (Kind.CLEARING, "bank")}


@dataclass(frozen=True)
class TopupResult:
    receipt: Receipt
    created: bool


_NEXT_RECEIPT_NUMBER_SQL = (
    "INSERT INTO billing_receiptsequence (property_id, last_number) VALUES (%s, 1) "
    "ON CONFLICT (property_id) DO UPDATE "
    "SET last_number = billing_receiptsequence.last_number + 1 RETURNING last_number"
)
_RECEIPT_ISSUE_SQL = (
    "WITH seq AS (INSERT INTO billing_receiptsequence (property_id, last_number) VALUES (%s, 1) "
    "ON CONFLICT (property_id) DO UPDATE "
    "SET last_number = billing_receiptsequence.last_number + 1 RETURNING last_number) "
    "INSERT INTO billing_receipt (uuid, property_id, number, transaction_id, account_id, "
    "amount, currency, channel, reference, issued_at) "
    "SELECT %s, %s, last_number, %s, %s, %s, %s, %s, %s, %s FROM seq RETURNING id, number"
)


def _receipt_issue(receipt: Receipt) -> None:
    """Number the receipt from its property's sequence and insert it.

    The sequence row stays locked until commit, so numbers are gapless (a rolled-back top-up
    gives its number back) and every top-up of the property queues on it. On PostgreSQL both
    happen in one statement, so the lock is held for a single round trip before the commit.
    SQLite runs one write transaction at a time anyway.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_NEXT_RECEIPT_NUMBER_SQL, [receipt.property_id])
            receipt.number = cursor.fetchone()[0]
        insert(receipt)
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _RECEIPT_ISSUE_SQL,
            [
                receipt.property_id,
                receipt.uuid,
                receipt.property_id,
                receipt.transaction_id,
                receipt.account_id,
                receipt.amount,
                receipt.currency,
                receipt.channel,
                receipt.reference,
                receipt.issued_at,
            ],
        )
        receipt.pk, receipt.number = cursor.fetchone()
    receipt._state.adding = False
    receipt._state.db = connection.alias


@dataclass(frozen=True)
class _TopupContext:
    """What a top-up checks, read in one statement under the wallet's lock."""

    status: str
    account_repr: str
    organisation_id: int
    property_id: int
    currency: str
    limits: TopupLimits
    book_id: int | None
    replayed_id: int | None
    replayed_fingerprint: str | None
    restore_threshold: Decimal
    mode: str
    # Whether the account has an open debt for the top-up to recover (billing.debts).
    owes: bool


# Top-ups are the hottest money path (`make bench topups`): its reads are plain SQL because
# compiling the equivalent ORM queries cost several times the database's own work.
_TOPUP_CONTEXT_SQL = """
SELECT a.status, t.name, u.name, p.code, p.id, p.organisation_id, p.currency,
       l.minimum, l.maximum, l.max_balance, b.id, x.id, x.fingerprint, bp.restore_threshold,
       a.mode, EXISTS (SELECT 1 FROM billing_debt d WHERE d.account_id = a.id AND d.status = %s)
FROM accounts_account a
JOIN accounts_tenant t ON t.id = a.tenant_id
JOIN accounts_unit u ON u.id = a.unit_id
JOIN accounts_property p ON p.id = u.property_id
LEFT JOIN billing_topuplimits l ON l.property_id = p.id
LEFT JOIN billing_ledgeraccount b ON b.property_id = p.id AND b.kind = %s AND b.channel = %s
LEFT JOIN billing_ledgertransaction x ON x.idempotency_key = %s
LEFT JOIN billing_balancepolicy bp ON bp.property_id = p.id
WHERE a.id = %s
"""


def _lock_wallet(wallet_id: int) -> LedgerAccount:
    """Lock one wallet and read its balance and currency."""
    # SQLite has no row locks; its write transactions are serial anyway (IMMEDIATE).
    sql = "SELECT balance, currency FROM billing_ledgeraccount WHERE id = %s"
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [wallet_id])
        balance, currency = cursor.fetchone()
    return LedgerAccount(
        pk=wallet_id, kind=Kind.WALLET, currency=currency, balance=_amount(balance)
    )


def _amount(value) -> Decimal | None:
    # SQLite hands back numeric columns as floats; an amount field (every money column is one)
    # turns them back as the ORM would.
    if value is None:
        return None
    return LedgerAccount._meta.get_field("balance").to_python(value)


def _topup_context(
    *, account_id: int, book_kind: str, book_channel: str, idempotency_key: str
) -> _TopupContext:
    with connection.cursor() as cursor:
        cursor.execute(
            _TOPUP_CONTEXT_SQL,
            [Debt.Status.OPEN, book_kind, book_channel, idempotency_key, account_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise LedgerError({"account": "There is no such account."})
    status, tenant, unit, code, prop_id, org_id, currency, *limits = row[:10]
    book, replayed, fp, restore, mode, owes = row[10:]
    minimum, maximum, max_balance = (_amount(value) for value in limits)
    return _TopupContext(
        status=status,
        account_repr=f"{tenant} @ {code} {unit}",  # as Account.__str__ shows it
        organisation_id=org_id,
        property_id=prop_id,
        currency=currency,
        limits=TopupLimits(property_id=prop_id)
        if minimum is None
        else TopupLimits(
            property_id=prop_id, minimum=minimum, maximum=maximum, max_balance=max_balance
        ),
        book_id=book,
        replayed_id=replayed,
        replayed_fingerprint=fp,
        restore_threshold=BalancePolicy().restore_threshold
        if restore is None
        else _amount(restore),
        mode=mode,
        owes=bool(owes),
    )


@transaction.atomic
def topup_record(
    *,
    account: Account,
    amount: Decimal,
    channel: str,
    actor,
    idempotency_key: str,
    reference: str = "",
    currency: str | None = None,
) -> TopupResult:
    """Money in at the counter (cash or bank transfer): wallet credited, receipt numbered.

    The same idempotency key returns the original receipt; reused with a different amount or
    account it is refused.
    """
    if channel not in COUNTER_CHANNELS:
        raise LedgerError({"channel": f"Choose one of {', '.join(COUNTER_CHANNELS)}."})
    book_kind, book_channel = COUNTER_CHANNELS[channel]
    return _topup(
        account=account,
        amount=to_decimal(amount),
        channel=channel,
        book=(book_kind, book_channel),
        actor=actor,
        idempotency_key=idempotency_key,
        reference=reference,
        currency=currency,
        enforce_limits=True,
    )


# No savepoint: its caller (a payment's notification) rolls back whole on any error, and the
# savepoint's release would be one more round trip under the receipt-number lock.
@transaction.atomic(savepoint=False)
def payment_topup_record(
    *,
    account: Account,
    amount: Decimal,
    currency: str,
    provider: str,
    idempotency_key: str,
    reference: str,
    actor=None,
) -> TopupResult:
    """Money in through an online payment: provider clearing account to wallet, receipt
    numbered, supply restored.

    The provider already holds the money, so neither the top-up limits nor a move-out since the
    checkout may refuse it: refusing would lose a payment. Limits are checked at checkout, and
    credit on a closed account is there for staff to refund. Inside a transaction it takes no
    savepoint: an error here spoils the caller's whole transaction.
    """
    return _topup(
        account=account,
        amount=to_decimal(amount),
        channel=provider,
        book=(Kind.CLEARING, provider),
        actor=actor,
        idempotency_key=idempotency_key,
        reference=reference,
        currency=currency,
        enforce_limits=False,
    )


def _topup(
    *,
    account: Account,
    amount: Decimal,
    channel: str,
    book: tuple[str, str],
    actor,
    idempotency_key: str,
    reference: str,
    currency: str | None,
    enforce_limits: bool,
) -> TopupResult:
    book_kind, book_channel = book
    # Lock the wallet alone, then read the account in a new statement: a move-out locks the
    # wallet first too, so once we hold it the status read here is the latest. (Columns joined
    # into the locking statement would come from its older snapshot.) Charge runs, which only
    # reference the account, never wait on us.
    wallet = _lock_wallet(account.wallet_id)
    context = _topup_context(
        account_id=account.pk,
        book_kind=book_kind,
        book_channel=book_channel,
        idempotency_key=idempotency_key,
    )
    prop_currency = context.currency
    if currency is not None and currency != prop_currency:
        raise LedgerError({"currency": f"This property takes {prop_currency}, not {currency}."})
    topup_amount_check(amount=amount, currency=prop_currency)
    if context.book_id is None:
        book_account_row = book_account(
            property=Property.objects.get(pk=context.property_id),
            kind=book_kind,
            channel=book_channel,
        )
    else:
        book_account_row = LedgerAccount(
            pk=context.book_id, kind=book_kind, channel=book_channel, currency=prop_currency
        )
    entries = [Entry(wallet, amount), Entry(book_account_row, -amount)]
    fingerprint = _entries_fingerprint(LedgerTransaction.Kind.TOPUP, entries, reference)
    if context.replayed_id is not None:
        if context.replayed_fingerprint != fingerprint:
            raise _key_reused()
        return TopupResult(Receipt.objects.get(transaction_id=context.replayed_id), created=False)
    if enforce_limits:
        topup_limits_check(
            status=context.status,
            limits=context.limits,
            balance=wallet.balance,
            amount=amount,
            currency=prop_currency,
        )
    before = wallet.balance
    txn = _post_locked(
        organisation_id=context.organisation_id,
        property_id=context.property_id,
        kind=LedgerTransaction.Kind.TOPUP,
        currency=prop_currency,
        entries=entries,
        wallets={wallet.pk: wallet},
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        actor=actor,
        memo=f"{channel} {reference}".strip(),
    )
    receipt = Receipt(
        property_id=context.property_id,
        transaction=txn,
        account=account,
        amount=amount,
        currency=prop_currency,
        channel=channel,
        reference=reference,
        issued_at=txn.created_at,
    )
    audit_record(
        organisation_id=context.organisation_id,
        property_id=context.property_id,
        actor=actor,
        action="topup.record",
        instance=account,
        object_repr=context.account_repr,
        after={"amount": str(amount), "channel": channel, "receipt": str(receipt.uuid)},
    )
    # Imported here: both post through this module.
    from billing import allocation, debts

    if context.mode == Account.Mode.POSTPAID:
        allocation.payment_allocate(account_id=account.pk, payment=txn, amount=amount)
    elif context.owes:
        # Posts the recovery under the wallet lock we hold, and lowers `wallet.balance` by it.
        debts.topup_recover(account=account, wallet=wallet, topup=txn, actor=actor)
    # Last, so the property-wide sequence lock is held for as short a time as possible.
    _receipt_issue(receipt)
    if before <= context.restore_threshold < wallet.balance:
        # Credit is back: restore supply the moment this commits, not at the next sweep.
        account_id = account.pk
        transaction.on_commit(lambda: restore_supply.delay(account_id))
    receipt_id, balance = receipt.pk, str(wallet.balance)
    transaction.on_commit(lambda: notify_topup.delay(receipt_id, balance))
    return TopupResult(receipt, created=True)


def topup_amount_check(*, amount: Decimal, currency: str) -> None:
    """What any top-up amount must be, at the counter or online. Messages are in the caller's
    language: tenants read them on the portal."""
    if amount <= 0:
        raise LedgerError({"amount": _("A top-up must be more than zero.")})
    if not is_whole_minor_units(amount, currency):
        raise LedgerError(
            {
                "amount": _("Give the amount in whole %(currency)s minor units.")
                % {"currency": currency}
            }
        )


def topup_limits_check(
    *, status: str, limits: TopupLimits, balance: Decimal, amount: Decimal, currency: str
) -> None:
    """The property's limits on a top-up to an account holding `balance`."""
    if status != Account.Status.OPEN:
        raise LedgerError(_("Top-ups go to open accounts only."))
    if amount < limits.minimum:
        raise LedgerError(
            {
                "amount": _("The smallest top-up is %(minimum)s %(currency)s.")
                % {"minimum": limits.minimum, "currency": currency}
            }
        )
    if amount > limits.maximum:
        raise LedgerError(
            {
                "amount": _("The largest top-up is %(maximum)s %(currency)s.")
                % {"maximum": limits.maximum, "currency": currency}
            }
        )
    if balance + amount > limits.max_balance:
        room = max(limits.max_balance - balance, Decimal(0))
        raise LedgerError(
            {
                "amount": _("A wallet may hold at most %(limit)s; at most %(room)s fits.")
                % {"limit": limits.max_balance, "room": room}
            }
        )


# Charges -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChargeInput:
    """An exact charge to post, as the pricing engine computed it."""

    account: Account
    kind: str
    idempotency_key: str
    period_start: datetime
    period_end: datetime
    quantity: Decimal
    net: Decimal
    tax: Decimal
    meter_id: int | None = None
    lines: list = field(default_factory=list)


REVENUE_BOOK = {
    Charge.Kind.ENERGY: Kind.ENERGY_REVENUE,
    Charge.Kind.STANDING: Kind.STANDING_REVENUE,
}
TRANSACTION_KIND = {
    Charge.Kind.ENERGY: LedgerTransaction.Kind.CHARGE,
    Charge.Kind.STANDING: LedgerTransaction.Kind.STANDING_CHARGE,
}


@transaction.atomic
def charges_post(*, charges: Sequence[ChargeInput]) -> list[Charge]:
    """Record exact charges and post their rounded effect on each wallet, in bulk.

    Per account and kind, the ledger receives the running exact total, rounded, minus what was
    already posted, so charging a period in one piece or in a thousand posts the same total to
    the minor unit. A charge whose key was recorded before is skipped: retries and replays post
    nothing twice.
    Returns the charges newly recorded.
    """
    if not charges:
        return []
    accounts = {charge.account.pk: charge.account for charge in charges}
    wallets = _lock_wallets(account.wallet_id for account in accounts.values())
    totals = _lock_totals({(charge.account.pk, charge.kind) for charge in charges})
    seen = set(
        Charge.objects.filter(
            idempotency_key__in=[charge.idempotency_key for charge in charges]
        ).values_list("idempotency_key", flat=True)
    )
    fresh: list[ChargeInput] = []
    for charge in charges:
        if charge.idempotency_key not in seen:
            seen.add(charge.idempotency_key)
            fresh.append(charge)
    by_group: dict[tuple[int, str], list[ChargeInput]] = defaultdict(list)
    for charge in fresh:
        by_group[(charge.account.pk, charge.kind)].append(charge)

    books = _books_for(accounts.values(), {kind for _, kind in by_group})
    # A charge for a span in a closed month (a late reading, a standing charge) is dated at the
    # open period with a reference to it; the Charge rows keep their true period.
    dates = PostingDates()
    rows: list[Charge] = []
    entries_by_txn: list[tuple[LedgerTransaction, list[Entry]]] = []
    for (account_id, kind), group in by_group.items():
        account = accounts[account_id]
        total = totals[(account_id, kind)]
        currency = wallets[account.wallet_id].currency
        posted_before = total.posted_net + total.posted_tax
        posted_tax_before = total.posted_tax
        for charge in group:
            total.exact_net += charge.net
            total.exact_tax += charge.tax
        total.posted_tax = quantize(total.exact_tax, currency)
        total.posted_net = quantize(total.exact_net + total.exact_tax, currency) - total.posted_tax
        wallet_change = total.posted_net + total.posted_tax - posted_before
        tax_change = total.posted_tax - posted_tax_before
        txn = None
        if wallet_change or tax_change:
            prop_books = books[account.unit.property_id]
            entries = [
                Entry(wallets[account.wallet_id], -wallet_change),
                Entry(prop_books[REVENUE_BOOK[kind]], wallet_change - tax_change),
                Entry(prop_books[Kind.TAX_PAYABLE], tax_change),
            ]
            entries = [entry for entry in entries if entry.amount]
            first = group[0]
            prop = account.unit.property
            dated = dates.dated(
                property=prop,
                effective_at=max(charge.period_end for charge in group),
                kind=TRANSACTION_KIND[kind],
            )
            txn = LedgerTransaction(
                organisation_id=account.unit.property.organisation_id,
                property_id=account.unit.property_id,
                kind=TRANSACTION_KIND[kind],
                currency=currency,
                idempotency_key=f"charges:{first.idempotency_key}",
                fingerprint=_fingerprint(*(charge.idempotency_key for charge in group)),
                effective_at=dated.effective_at,
                memo=dated.memo("", prop.zone),
            )
            _validate_entries(entries)
            entries_by_txn.append((txn, entries))
        rows.extend(
            Charge(
                account_id=account_id,
                meter_id=charge.meter_id,
                kind=kind,
                idempotency_key=charge.idempotency_key,
                period_start=charge.period_start,
                period_end=charge.period_end,
                quantity=charge.quantity,
                net=charge.net,
                tax=charge.tax,
                lines=charge.lines,
                transaction=txn,
            )
            for charge in group
        )

    LedgerTransaction.objects.bulk_create([txn for txn, _ in entries_by_txn])
    Posting.objects.bulk_create(
        Posting(transaction=txn, ledger_account=entry.account, amount=entry.amount)
        for txn, entries in entries_by_txn
        for entry in entries
    )
    lowered = _apply_to_wallets(
        wallets, (entry for _, entries in entries_by_txn for entry in entries)
    )
    # A wallet charged for energy and a standing charge in one run: the later posting is the
    # one that took it through a level.
    last_posting = {
        entry.account.pk: txn.pk
        for txn, entries in entries_by_txn
        for entry in entries
        if entry.account.pk in lowered
    }
    levels_fallen_through(
        falls=[Fall(pk, before, after, last_posting[pk]) for pk, (before, after) in lowered.items()]
    )
    ChargeTotals.objects.bulk_update(
        [totals[key] for key in by_group], ["exact_net", "exact_tax", "posted_net", "posted_tax"]
    )
    return Charge.objects.bulk_create(rows)


def _lock_totals(keys: set[tuple[int, str]]) -> dict[tuple[int, str], ChargeTotals]:
    ChargeTotals.objects.bulk_create(
        [ChargeTotals(account_id=account_id, kind=kind) for account_id, kind in keys],
        ignore_conflicts=True,
    )
    account_ids = sorted({account_id for account_id, _ in keys})
    locked = (
        ChargeTotals.objects.select_for_update().filter(account_id__in=account_ids).order_by("pk")
    )
    return {(row.account_id, row.kind): row for row in locked if (row.account_id, row.kind) in keys}


def _books_for(accounts: Iterable[Account], kinds: set[str]) -> dict[int, dict[str, LedgerAccount]]:
    books: dict[int, dict[str, LedgerAccount]] = {}
    # In a fixed order (property, then kind): batches that create the same books on first use
    # then queue on them instead of deadlocking.
    for account in sorted(accounts, key=lambda account: account.unit.property_id):
        prop = account.unit.property
        if prop.pk not in books:
            needed = sorted({REVENUE_BOOK[kind] for kind in kinds} | {Kind.TAX_PAYABLE})
            books[prop.pk] = {kind: book_account(property=prop, kind=kind) for kind in needed}
    return books
