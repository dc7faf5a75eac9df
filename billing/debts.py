"""Debts of open accounts: raised by staff, lent as emergency credit, moved in from an earlier
tenancy, and recovered from top-ups, a percentage of each or by an instalment plan.

The books (signs as in `billing.models`: a posting credits its account when positive). A debt is
a receivable of the property, held in its **debtors** book beside former tenants' arrears
(`billing.settlement`). It is never the wallet: a tenant's credit and what they owe are shown
apart, and the wallet pays the debt back a part at a time.

- Raised by staff (`debt_raise`): debtors -X against opening balances (arrears brought from a
  previous system) or fee revenue (a charge) +X. The wallet is untouched.
- Emergency credit (`emergency_credit_take`): debtors -X, wallet +X. An advance, repaid first.
- Recovered from a top-up (`topup_recover`): wallet -r, debtors +r, one transaction per top-up.
- An instalment billed onto a postpaid wallet (`instalments_bill`): wallet -a, debtors +a, so
  it is part of the wallet's debt that the next bill asks for.
- Moved in from an earlier tenancy of the same tenant in the same property (`debts_move_in`):
  nothing is posted, the debt stays in the same debtors book; only who owes it moves.

So the debtors book always equals what former tenants' unmoved debt transfers and all debts
still owe (`check_debts` proves it). Every change to an account's debts, plans and instalments
is made under its wallet's lock, taken first (the lock order of `billing.services`), so a
recovery and a staff change never interleave, and every posting has a deterministic key.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from itertools import pairwise

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import (
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Account, Property
from billing.credit_policy import credit_policy
from billing.models import (
    CreditPolicy,
    Debt,
    DebtRecovery,
    Instalment,
    InstalmentPlan,
    LedgerAccount,
    LedgerTransaction,
    Posting,
)
from billing.periods import month_of
from billing.selectors import balance_policy
from billing.services import (
    Entry,
    _entries_fingerprint,
    _post_locked,
    book_account,
    transaction_post,
)
from billing.tasks import restore_supply
from prepaid.audit.services import acting_user, audit_record
from prepaid.inserts import insert
from prepaid.money import (
    AMOUNT_DECIMAL_PLACES,
    AMOUNT_MAX_DIGITS,
    is_whole_minor_units,
    minor_unit,
    to_decimal,
)
from tariffs.pricing import local_midnight

Book = LedgerAccount.Kind
TxnKind = LedgerTransaction.Kind
Source = Debt.Source
ZERO = Decimal(0)
HUNDRED = Decimal(100)
DAY = timedelta(days=1)
# The books a staff-raised debt is set against (`debt_raise(counter=...)`).
COUNTERS = {"opening_balances": Book.OPENING_BALANCES, "fees": Book.FEE_REVENUE}
MAX_INSTALMENTS = 60


class DebtError(ValidationError):
    pass


def local_today(*, property: Property, now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(property.zone).date()


def outstanding(debt: Debt) -> Decimal:
    return debt.amount - debt.recovered


def _amount(value, currency: str, field: str = "amount") -> Decimal:
    try:
        amount = to_decimal(value)
    except (TypeError, ValueError):
        raise DebtError({field: _("Give the amount as a number, such as 50 or 50.00.")}) from None
    if amount <= 0:
        raise DebtError({field: _("The amount must be more than zero.")})
    if not is_whole_minor_units(amount, currency):
        raise DebtError(
            {
                field: _("Give the amount in whole %(currency)s minor units.")
                % {"currency": currency}
            }
        )
    return amount


def _lock(account: Account) -> tuple[LedgerAccount, Account]:
    """The account's wallet, locked, then the account as it stands under that lock (a move-out
    or a mode switch locks the wallet first too)."""
    wallet = LedgerAccount.objects.select_for_update().get(pk=account.wallet_id)
    account = Account.objects.select_related("unit__property__credit_policy", "tenant").get(
        pk=account.pk
    )
    return wallet, account


def _open_account(account: Account) -> None:
    if account.status != Account.Status.OPEN:
        raise DebtError(_("This tenancy has ended: its debts can no longer change."))


# Raising a debt ----------------------------------------------------------------------------------


@transaction.atomic
def debt_raise(
    *,
    account: Account,
    amount: Decimal,
    reason: str,
    counter: str,
    actor,
    idempotency_key: str,
) -> Debt:
    """A debt staff raise on an open account, with the reason, set against opening balances
    (arrears from a previous system) or fee revenue. The same key returns the same debt."""
    reason = reason.strip()
    if not reason:
        raise DebtError({"reason": _("Give the reason for the debt.")})
    if counter not in COUNTERS:
        raise DebtError({"counter": _("Choose opening balances or fees.")})
    _wallet, account = _lock(account)
    prop = account.unit.property
    amount = _amount(amount, prop.currency)
    key = f"debt-raise:{account.uuid}:{idempotency_key}"
    existing = Debt.objects.filter(transaction__idempotency_key=key).first()
    if existing is not None:
        if (existing.amount, existing.reason) != (amount, reason[:300]):
            raise DebtError(_("This form was already used for another debt. Reload the page."))
        return existing
    _open_account(account)
    posted = transaction_post(
        property=prop,
        kind=TxnKind.DEBT_RAISED,
        entries=[
            Entry(book_account(property=prop, kind=Book.DEBTORS), -amount),
            Entry(book_account(property=prop, kind=COUNTERS[counter]), amount),
        ],
        idempotency_key=key,
        actor=actor,
        memo=reason,
    )
    debt = Debt.objects.create(
        property=prop,
        account=account,
        source=Source.ADJUSTMENT,
        reason=reason[:300],
        currency=prop.currency,
        amount=amount,
        transaction=posted.transaction,
        created_at=posted.transaction.created_at,
        created_by=acting_user(actor),
    )
    audit_record(
        organisation_id=prop.organisation_id,
        property_id=prop.pk,
        actor=actor,
        action="debt.raise",
        instance=debt,
        object_repr=str(account),
        after={"amount": str(amount), "counter": counter, "account": str(account.uuid)},
        reason=reason,
    )
    return debt


# Emergency credit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmergencyOffer:
    """Whether the account may take emergency credit now, and if not, why."""

    amount: Decimal
    available: bool
    reason: str
    taken: Debt | None


def emergency_credit_offer(
    *, account: Account, by_tenant: bool, now: datetime | None = None
) -> EmergencyOffer:
    """What `emergency_credit_take` would decide now (read without locks, for display)."""
    prop = account.unit.property
    policy = credit_policy(property=prop)
    month = month_of(now or timezone.now(), prop.zone)
    taken = Debt.objects.filter(
        account=account, source=Source.EMERGENCY_CREDIT, month=month
    ).first()
    reason = _emergency_refusal(
        account=account, policy=policy, balance=account.wallet.balance, by_tenant=by_tenant
    )
    if taken is not None:
        reason = _("Emergency credit was already taken this month.")
    return EmergencyOffer(
        amount=policy.emergency_credit_amount, available=not reason, reason=reason, taken=taken
    )


def _emergency_refusal(
    *, account: Account, policy: CreditPolicy, balance: Decimal, by_tenant: bool
) -> str:
    if policy.emergency_credit_amount <= 0:
        return _("This property does not offer emergency credit.")
    if by_tenant and not policy.emergency_credit_self_service:
        return _("Ask the property's office for emergency credit.")
    if account.status != Account.Status.OPEN:
        return _("This tenancy has ended.")
    if account.mode != Account.Mode.PREPAID:
        return _("Emergency credit is for prepaid accounts.")
    if balance >= policy.emergency_credit_below:
        return _("Emergency credit is for balances below %(level)s.") % {
            "level": policy.emergency_credit_below
        }
    return ""


@transaction.atomic
def emergency_credit_take(
    *, account: Account, actor, by_tenant: bool, now: datetime | None = None
) -> Debt:
    """Lend the property's emergency credit to a prepaid account whose balance is low, once per
    local month, as a debt repaid first from the next top-up. Supply comes back on commit when
    it lifts the balance above the restore threshold."""
    now = now or timezone.now()
    wallet, account = _lock(account)
    prop = account.unit.property
    policy = credit_policy(property=prop)
    refusal = _emergency_refusal(
        account=account, policy=policy, balance=wallet.balance, by_tenant=by_tenant
    )
    if refusal:
        raise DebtError(refusal)
    month = month_of(now, prop.zone)
    if Debt.objects.filter(account=account, source=Source.EMERGENCY_CREDIT, month=month).exists():
        raise DebtError(_("Emergency credit was already taken this month."))
    amount = policy.emergency_credit_amount
    before = wallet.balance
    try:
        # The key names the month, so even a request that slipped past the checks above posts
        # at most once; the unique constraint on the debt says the same for the row.
        with transaction.atomic():
            posted = transaction_post(
                property=prop,
                kind=TxnKind.EMERGENCY_CREDIT,
                entries=[
                    Entry(book_account(property=prop, kind=Book.DEBTORS), -amount),
                    Entry(wallet, amount),
                ],
                idempotency_key=f"emergency-credit:{account.uuid}:{month:%Y-%m}",
                actor=actor,
                memo=f"Emergency credit {month:%Y-%m}",
            )
            if not posted.created:
                raise DebtError(_("Emergency credit was already taken this month."))
            debt = Debt.objects.create(
                property=prop,
                account=account,
                source=Source.EMERGENCY_CREDIT,
                currency=prop.currency,
                amount=amount,
                transaction=posted.transaction,
                month=month,
                created_at=posted.transaction.created_at,
                created_by=acting_user(actor),
            )
    except IntegrityError:
        raise DebtError(_("Emergency credit was already taken this month.")) from None
    audit_record(
        organisation_id=prop.organisation_id,
        property_id=prop.pk,
        actor=actor,
        action="debt.emergency_credit",
        instance=debt,
        object_repr=str(account),
        after={
            "amount": str(amount),
            "month": f"{month:%Y-%m}",
            "by_tenant": by_tenant,
            "account": str(account.uuid),
        },
    )
    threshold = balance_policy(property=prop).restore_threshold
    if before <= threshold < before + amount:
        account_id = account.pk
        transaction.on_commit(lambda: restore_supply.delay(account_id))
    return debt


# Recovery from a top-up --------------------------------------------------------------------------


def recovery_key(topup: LedgerTransaction) -> str:
    """The recovery's key, derived from the top-up it takes from (its uuid: top-up keys may
    already be as long as a key can be)."""
    return f"debt-recovery:{topup.uuid}"


@dataclass(frozen=True)
class RecoverySplit:
    """What one top-up recovers, per debt, and what that collects per instalment."""

    takes: dict[int, Decimal]
    collected: dict[int, Decimal]

    @property
    def total(self) -> Decimal:
        return sum(self.takes.values(), ZERO)


def recovery_split(
    *,
    amount: Decimal,
    currency: str,
    policy: CreditPolicy,
    debts: Sequence[Debt],
    instalments: Sequence[Instalment],
    today: date,
    recovered_today: Decimal,
) -> RecoverySplit:
    """How much of a top-up of `amount` goes to each open debt (oldest first), without the ORM.

    Of the top-up, `recovery_energy_minimum` always goes to energy; from the rest, in order:
    emergency credit in full; the instalments due by `today` of debts under an active plan, in
    full; then the other debts at `recovery_percent` of the top-up, rounded down to the minor
    unit, within what is left of `recovery_daily_cap` after `recovered_today`. Never more than a
    debt or an instalment still owes. Every amount is whole minor units, so nothing is rounded
    away: what is not recovered stays in the wallet.
    """
    budget = max(amount - policy.recovery_energy_minimum, ZERO)
    left = {debt.pk: outstanding(debt) for debt in debts}
    takes: dict[int, Decimal] = {}
    collected: dict[int, Decimal] = {}
    planned = {instalment.plan.debt_id for instalment in instalments}

    def take(debt_id: int, most: Decimal) -> Decimal:
        nonlocal budget
        taken = min(most, left[debt_id], budget)
        if taken > 0:
            takes[debt_id] = takes.get(debt_id, ZERO) + taken
            left[debt_id] -= taken
            budget -= taken
        return max(taken, ZERO)

    for debt in debts:
        if debt.source == Source.EMERGENCY_CREDIT and debt.pk not in planned:
            take(debt.pk, left[debt.pk])
    for instalment in instalments:
        if instalment.due_on <= today and instalment.outstanding > 0:
            taken = take(instalment.plan.debt_id, instalment.outstanding)
            if taken:
                collected[instalment.pk] = taken
    share = (amount * policy.recovery_percent / HUNDRED).quantize(
        minor_unit(currency), rounding=ROUND_DOWN
    )
    if policy.recovery_daily_cap is not None:
        share = min(share, max(policy.recovery_daily_cap - recovered_today, ZERO))
    for debt in debts:
        if debt.source != Source.EMERGENCY_CREDIT and debt.pk not in planned and share > 0:
            share -= take(debt.pk, share)
    return RecoverySplit(takes=takes, collected=collected)


def _percentage_recovered_on(*, account_id: int, property: Property, day: date) -> Decimal:
    """What top-ups recovered from the account's percentage-recovered debts on a local day:
    neither emergency credit nor debts under an instalment plan count towards the daily cap."""
    zone = property.zone
    return (
        DebtRecovery.objects.filter(
            debt__account_id=account_id,
            topup__isnull=False,
            transaction__effective_at__gte=local_midnight(day, zone),
            transaction__effective_at__lt=local_midnight(day + DAY, zone),
        )
        .exclude(debt__source=Source.EMERGENCY_CREDIT)
        .exclude(
            debt__plans__status__in=[InstalmentPlan.Status.ACTIVE, InstalmentPlan.Status.COMPLETED]
        )
        .aggregate(total=Sum("amount"))["total"]
        or ZERO
    )


def topup_recover(
    *, account: Account, wallet: LedgerAccount, topup: LedgerTransaction, actor
) -> Decimal:
    """Recover the account's open debts from a top-up just posted, under the wallet's lock the
    top-up holds: one DEBT_RECOVERY transaction, and `wallet.balance` lowered by what it took.
    Returns the amount recovered (zero posts nothing)."""
    debts = list(
        Debt.objects.select_for_update()
        .filter(account_id=account.pk, status=Debt.Status.OPEN)
        .order_by("created_at", "id")
    )
    if not debts:
        return ZERO
    prop = Property.objects.select_related("credit_policy").get(pk=topup.property_id)
    policy = credit_policy(property=prop)
    amount = Posting.objects.get(transaction=topup, ledger_account_id=wallet.pk).amount
    instalments = _active_instalments([debt.pk for debt in debts])
    today = topup.effective_at.astimezone(prop.zone).date()
    recovered_today = ZERO
    if policy.recovery_daily_cap is not None:
        recovered_today = _percentage_recovered_on(account_id=account.pk, property=prop, day=today)
    split = recovery_split(
        amount=amount,
        currency=topup.currency,
        policy=policy,
        debts=debts,
        instalments=instalments,
        today=today,
        recovered_today=recovered_today,
    )
    total = split.total
    if not total:
        return ZERO
    entries = [
        Entry(wallet, -total),
        Entry(book_account(property=prop, kind=Book.DEBTORS), total),
    ]
    txn = _post_locked(
        organisation_id=topup.organisation_id,
        property_id=topup.property_id,
        kind=TxnKind.DEBT_RECOVERY,
        currency=topup.currency,
        entries=entries,
        wallets={wallet.pk: wallet},
        idempotency_key=recovery_key(topup),
        fingerprint=_entries_fingerprint(TxnKind.DEBT_RECOVERY, entries, str(topup.uuid)),
        actor=actor,
        memo="Debt recovered from a top-up",
        effective_at=topup.effective_at,
    )
    _apply(debts=debts, instalments=instalments, split=split, transaction=txn, topup=topup)
    return total


def recovery_undo(*, topup: LedgerTransaction, actor, reason: str) -> None:
    """A top-up being reversed gives back what its recovery took: the recovery is reversed too
    (debtors back to the wallet), its debts reopen by what it took, and instalments it collected
    are uncollected, latest first (collection fills them earliest first). The caller reverses
    the top-up in the same transaction and holds the wallet's lock.

    Refused when a plan was made for one of its debts after it: the plan split what the debt
    owed then, and giving the recovery back would leave the plan short of the debt."""
    recovery = LedgerTransaction.objects.filter(idempotency_key=recovery_key(topup)).first()
    if recovery is None:
        return
    taken = dict(DebtRecovery.objects.filter(transaction=recovery).values_list("debt_id", "amount"))
    if InstalmentPlan.objects.filter(
        debt_id__in=taken, created_at__gt=recovery.created_at
    ).exists():
        raise ValidationError(
            _(
                "Part of this top-up went to a debt that has been put on an instalment plan "
                "since. Cancel the plan first, then reverse the top-up."
            )
        )
    posted = transaction_post(
        property=recovery.property,
        kind=TxnKind.REVERSAL,
        entries=[
            Entry(posting.ledger_account, -posting.amount)
            for posting in recovery.postings.select_related("ledger_account").order_by("pk")
        ],
        idempotency_key=f"debt-recovery-reversal:{topup.uuid}",
        actor=actor,
        memo=reason,
        reverses=recovery,
    )
    if not posted.created:
        return
    insert(
        *(
            DebtRecovery(debt_id=debt_id, transaction=posted.transaction, amount=-amount)
            for debt_id, amount in taken.items()
        )
    )
    debts = list(Debt.objects.select_for_update().filter(pk__in=taken).order_by("pk"))
    for debt in debts:
        debt.recovered -= taken[debt.pk]
        debt.status = Debt.Status.OPEN
    Debt.objects.bulk_update(debts, ["recovered", "status"])
    _uncollect(taken)


def _uncollect(taken: dict[int, Decimal]) -> None:
    """Take `taken` per debt back off its plan's collected instalments, latest first, and
    reopen a plan that was completed."""
    plans = InstalmentPlan.objects.filter(debt_id__in=taken).exclude(
        status=InstalmentPlan.Status.CANCELLED
    )
    for plan in plans.select_for_update():
        left = taken[plan.debt_id]
        changed = []
        for instalment in plan.instalments.filter(collected__gt=0).order_by("-number"):
            if left <= 0:
                break
            back = min(left, instalment.collected)
            instalment.collected -= back
            left -= back
            changed.append(instalment)
        Instalment.objects.bulk_update(changed, ["collected"])
        if plan.status == InstalmentPlan.Status.COMPLETED:
            plan.status = InstalmentPlan.Status.ACTIVE
            plan.save(update_fields=["status"])


def _active_instalments(debt_ids: Sequence[int]) -> list[Instalment]:
    """The instalments of the active plans of these debts, oldest debt and earliest first."""
    return list(
        Instalment.objects.filter(
            plan__debt_id__in=debt_ids, plan__status=InstalmentPlan.Status.ACTIVE
        )
        .select_related("plan")
        .order_by("plan__debt__created_at", "plan__debt_id", "number")
    )


def _apply(
    *,
    debts: Sequence[Debt],
    instalments: Sequence[Instalment],
    split: RecoverySplit,
    transaction: LedgerTransaction,
    topup: LedgerTransaction | None,
) -> None:
    """Record what a recovery took: a DebtRecovery per debt, the debts' and instalments'
    progress, and plans completed by it."""
    by_pk = {debt.pk: debt for debt in debts}
    insert(
        *(
            DebtRecovery(debt_id=debt_id, transaction=transaction, topup=topup, amount=taken)
            for debt_id, taken in split.takes.items()
        )
    )
    changed = []
    for debt_id, taken in split.takes.items():
        debt = by_pk[debt_id]
        debt.recovered += taken
        if debt.recovered == debt.amount:
            debt.status = Debt.Status.CLEARED
        changed.append(debt)
    Debt.objects.bulk_update(changed, ["recovered", "status"])
    touched = [i for i in instalments if i.pk in split.collected]
    for instalment in touched:
        instalment.collected += split.collected[instalment.pk]
    Instalment.objects.bulk_update(touched, ["collected"])
    plans = {instalment.plan_id for instalment in touched}
    done = [
        plan_id
        for plan_id in plans
        if all(i.collected == i.amount for i in instalments if i.plan_id == plan_id)
    ]
    InstalmentPlan.objects.filter(pk__in=done).update(status=InstalmentPlan.Status.COMPLETED)


# Instalment plans --------------------------------------------------------------------------------


@transaction.atomic
def instalment_plan_create(
    *,
    debt: Debt,
    instalments: Sequence[tuple[date, Decimal]],
    actor,
    now: datetime | None = None,
) -> InstalmentPlan:
    """Split an open debt into dated instalments that add up exactly to what it still owes.
    While the plan is active, top-ups collect its due instalments instead of a percentage."""
    _wallet, account = _lock(debt.account)
    debt = Debt.objects.select_for_update().get(pk=debt.pk)
    prop = account.unit.property
    _open_account(account)
    if debt.status != Debt.Status.OPEN:
        raise DebtError(_("This debt is no longer open."))
    if InstalmentPlan.objects.filter(debt=debt, status=InstalmentPlan.Status.ACTIVE).exists():
        raise DebtError(_("This debt already has an active plan. Cancel it first."))
    if not instalments:
        raise DebtError({"instalments": _("Give at least one instalment.")})
    if len(instalments) > MAX_INSTALMENTS:
        raise DebtError(
            {"instalments": _("A plan has at most %(count)d instalments.") % {"count": 60}}
        )
    today = local_today(property=prop, now=now)
    dates = [day for day, _amount_ in instalments]
    if dates[0] < today:
        raise DebtError({"instalments": _("An instalment cannot fall due in the past.")})
    if any(later <= earlier for earlier, later in pairwise(dates)):
        raise DebtError({"instalments": _("Each instalment must fall due after the one before.")})
    amounts = [_amount(value, prop.currency, "instalments") for _day, value in instalments]
    total, owed = sum(amounts, ZERO), outstanding(debt)
    if total > owed:
        raise DebtError(
            {
                "instalments": _(
                    "The instalments add up to %(total)s, more than the %(owed)s the debt still "
                    "owes: a plan cannot exceed its debt."
                )
                % {"total": total, "owed": owed}
            }
        )
    if total < owed:
        raise DebtError(
            {
                "instalments": _(
                    "The instalments add up to %(total)s; they must add up to the %(owed)s the "
                    "debt still owes."
                )
                % {"total": total, "owed": owed}
            }
        )
    plan = InstalmentPlan.objects.create(
        debt=debt, created_at=now or timezone.now(), created_by=acting_user(actor)
    )
    Instalment.objects.bulk_create(
        Instalment(plan=plan, number=number, due_on=day, amount=amount)
        for number, (day, amount) in enumerate(zip(dates, amounts, strict=True), start=1)
    )
    audit_record(
        organisation_id=prop.organisation_id,
        property_id=prop.pk,
        actor=actor,
        action="debt.plan_create",
        instance=plan,
        object_repr=str(account),
        after={
            "debt": str(debt.uuid),
            "instalments": [
                [day.isoformat(), str(amount)] for day, amount in zip(dates, amounts, strict=True)
            ],
        },
    )
    return plan


@transaction.atomic
def instalment_plan_cancel(*, plan: InstalmentPlan, actor, reason: str) -> InstalmentPlan:
    """End an active plan: its debt goes back to recovery by a percentage of each top-up.
    What its instalments collected stays collected."""
    reason = reason.strip()
    if not reason:
        raise DebtError({"reason": _("Give the reason for cancelling the plan.")})
    _wallet, account = _lock(plan.debt.account)
    plan = InstalmentPlan.objects.select_for_update().get(pk=plan.pk)
    if plan.status != InstalmentPlan.Status.ACTIVE:
        raise DebtError(_("This plan is no longer active."))
    plan.status = InstalmentPlan.Status.CANCELLED
    plan.save(update_fields=["status"])
    prop = account.unit.property
    audit_record(
        organisation_id=prop.organisation_id,
        property_id=prop.pk,
        actor=actor,
        action="debt.plan_cancel",
        instance=plan,
        object_repr=str(account),
        before={"status": InstalmentPlan.Status.ACTIVE},
        after={"status": InstalmentPlan.Status.CANCELLED},
        reason=reason,
    )
    return plan


def instalment_billed_key(instalment: Instalment) -> str:
    return f"instalment-billed:{instalment.plan.uuid}:{instalment.number}"


@transaction.atomic
def instalments_bill(*, account_id: int, now: datetime | None = None) -> int:
    """Bill a postpaid account's instalments that have fallen due onto its wallet, each as its
    own INSTALMENT_BILLED transaction, so they are on the next bill. What a prepaid top-up
    already collected of one is not billed again. Returns how many were billed; safe to repeat."""
    now = now or timezone.now()
    wallet, account = _lock(Account.objects.get(pk=account_id))
    if account.status != Account.Status.OPEN or account.mode != Account.Mode.POSTPAID:
        return 0
    prop = account.unit.property
    today = local_today(property=prop, now=now)
    debts = list(
        Debt.objects.select_for_update()
        .filter(account=account, status=Debt.Status.OPEN)
        .order_by("created_at", "id")
    )
    instalments = _active_instalments([debt.pk for debt in debts])
    by_pk = {debt.pk: debt for debt in debts}
    debtors = book_account(property=prop, kind=Book.DEBTORS)
    billed = 0
    for instalment in instalments:
        owed = min(instalment.outstanding, outstanding(by_pk[instalment.plan.debt_id]))
        if instalment.due_on > today or owed <= 0:
            continue
        posted = transaction_post(
            property=prop,
            kind=TxnKind.INSTALMENT_BILLED,
            entries=[Entry(debtors, owed), Entry(wallet, -owed)],
            idempotency_key=instalment_billed_key(instalment),
            memo=f"Instalment {instalment.number} due {instalment.due_on.isoformat()}",
        )
        if not posted.created:
            continue
        split = RecoverySplit(
            takes={instalment.plan.debt_id: owed}, collected={instalment.pk: owed}
        )
        _apply(
            debts=[by_pk[instalment.plan.debt_id]],
            instalments=instalments,
            split=split,
            transaction=posted.transaction,
            topup=None,
        )
        billed += 1
    return billed


def instalments_due_accounts(*, now: datetime | None = None) -> list[int]:
    """Postpaid open accounts with an active plan's instalment possibly due: due by the latest
    local date anywhere (UTC+14); `instalments_bill` checks each against its own zone."""
    latest = ((now or timezone.now()) + timedelta(hours=14)).date()
    due = Instalment.objects.filter(
        plan__debt__account=OuterRef("pk"),
        plan__status=InstalmentPlan.Status.ACTIVE,
        due_on__lte=latest,
        collected__lt=F("amount"),
    )
    return list(
        Account.objects.filter(status=Account.Status.OPEN, mode=Account.Mode.POSTPAID)
        .filter(Exists(due))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# Moving a debt in from an earlier tenancy --------------------------------------------------------


def _transfer_owed(transfer_id: int) -> Decimal:
    """What a move-out's debt transfer put on the debtors book, less any reversal of it."""
    owed = Posting.objects.filter(
        Q(transaction_id=transfer_id) | Q(transaction__reverses_id=transfer_id),
        ledger_account__kind=Book.DEBTORS,
    ).aggregate(total=Sum("amount"))["total"]
    return -(owed or ZERO)


@dataclass(frozen=True)
class EarlierDebt:
    """What an earlier, closed tenancy of the same tenant still owes, to offer moving in."""

    account: Account
    amount: Decimal


def earlier_debts(*, account: Account) -> list[EarlierDebt]:
    """The tenant's closed tenancies in the same property that still owe something: open debts
    and the move-out's debt transfer not moved on yet."""
    earlier = (
        Account.objects.filter(
            tenant_id=account.tenant_id,
            unit__property_id=account.unit.property_id,
            status=Account.Status.CLOSED,
        )
        .exclude(pk=account.pk)
        .select_related("unit")
    )
    found = []
    for other in earlier.order_by("closed_at", "pk"):
        amount = sum((owed for _kind, owed in _movable(other)), ZERO)
        if amount > 0:
            found.append(EarlierDebt(other, amount))
    return found


def _movable(earlier: Account) -> Iterator[tuple[Debt | LedgerTransaction, Decimal]]:
    for debt in Debt.objects.filter(account=earlier, status=Debt.Status.OPEN).order_by(
        "created_at", "id"
    ):
        yield debt, outstanding(debt)
    transfers = LedgerTransaction.objects.filter(
        kind=TxnKind.DEBT_TRANSFER,
        postings__ledger_account_id=earlier.wallet_id,
    ).exclude(Exists(Debt.objects.filter(transaction_id=OuterRef("pk"))))
    for transfer in transfers.order_by("pk"):
        owed = _transfer_owed(transfer.pk)
        if owed > 0:
            yield transfer, owed


@transaction.atomic
def debts_move_in(*, account: Account, earlier: Account, actor) -> list[Debt]:
    """Move what an earlier, closed tenancy of the same tenant at the same property still owes
    into this open one, to be recovered from its top-ups: each open debt, and the debt its
    move-out left on the debtors book. Nothing is posted: the debtors book is the same. A debt
    never moves across properties, whose books are separate. Moving again moves nothing."""
    if earlier.unit.property_id != account.unit.property_id:
        raise DebtError(
            _(
                "A debt stays in the books of the property where it arose: a debt from a "
                "tenancy at another property cannot be moved here."
            )
        )
    if earlier.tenant_id != account.tenant_id:
        raise DebtError(_("Only the same tenant's own earlier debt can be moved in."))
    wallets = sorted([account.wallet_id, earlier.wallet_id])
    list(LedgerAccount.objects.select_for_update().filter(pk__in=wallets).order_by("pk"))
    account = Account.objects.select_related("unit__property").get(pk=account.pk)
    earlier = Account.objects.get(pk=earlier.pk)
    _open_account(account)
    if earlier.status != Account.Status.CLOSED:
        raise DebtError(_("Only the debt of a tenancy that has ended can be moved in."))
    prop = account.unit.property
    now = timezone.now()
    moved = []
    for source, owed in list(_movable(earlier)):
        if isinstance(source, Debt):
            Debt.objects.filter(pk=source.pk).update(status=Debt.Status.TRANSFERRED)
            fields = {"transferred_from": source, "reason": source.reason}
        else:
            fields = {"transaction": source, "reason": source.memo}
        moved.append(
            Debt.objects.create(
                property=prop,
                account=account,
                source=Source.MOVE_IN_TRANSFER,
                currency=prop.currency,
                amount=owed,
                created_at=now,
                created_by=acting_user(actor),
                **fields,
            )
        )
    if moved:
        audit_record(
            organisation_id=prop.organisation_id,
            property_id=prop.pk,
            actor=actor,
            action="debt.move_in",
            instance=account,
            after={
                "from": str(earlier.uuid),
                "debts": [str(debt.uuid) for debt in moved],
                "amount": str(sum((debt.amount for debt in moved), ZERO)),
            },
        )
    return moved


# Selectors ---------------------------------------------------------------------------------------


def account_debts(*, account: Account) -> QuerySet[Debt]:
    """The account's debts, oldest first, with their plans and instalments."""
    return Debt.objects.filter(account=account).prefetch_related(
        Prefetch(
            "plans",
            queryset=InstalmentPlan.objects.prefetch_related("instalments"),
        )
    )


@dataclass(frozen=True)
class DebtSummary:
    # Oldest first, each with `active_plan` set (None when it has none).
    debts: list[Debt]
    outstanding: Decimal

    @property
    def open(self) -> list[Debt]:
        return [debt for debt in self.debts if debt.status == Debt.Status.OPEN]


def debt_summary(*, account: Account) -> DebtSummary:
    debts = list(account_debts(account=account))
    for debt in debts:
        debt.active_plan = next(
            (plan for plan in debt.plans.all() if plan.status == InstalmentPlan.Status.ACTIVE),
            None,
        )
    owed = sum((outstanding(debt) for debt in debts if debt.status == Debt.Status.OPEN), ZERO)
    return DebtSummary(debts=debts, outstanding=owed)


def debt_history(*, debt: Debt) -> QuerySet[DebtRecovery]:
    """What recovered the debt, newest first, with the top-up each came from."""
    return (
        DebtRecovery.objects.filter(debt=debt)
        .select_related("transaction", "topup__receipt__property")
        .order_by("-transaction__created_at", "-id")
    )


def account_recoveries(*, account: Account) -> QuerySet:
    """What recovered the account's debts, one row per recovery transaction, newest first: a
    top-up's split (its receipt, amount and what went to debts) or an instalment billed."""
    return (
        DebtRecovery.objects.filter(debt__account=account)
        .values(
            "transaction_id",
            "transaction__created_at",
            "topup__receipt__uuid",
            "topup__receipt__number",
            "topup__receipt__amount",
        )
        .annotate(total=Sum("amount"))
        .annotate(energy=F("topup__receipt__amount") - F("total"))
        .order_by("-transaction__created_at", "-transaction_id")
    )


def recovered_from_topup(*, topup_id: int) -> Decimal:
    """What a top-up's recovery took for debts (zero when it took nothing)."""
    total = DebtRecovery.objects.filter(topup_id=topup_id).aggregate(total=Sum("amount"))
    return total["total"] or ZERO


def recovery_transaction_id(*, topup: LedgerTransaction) -> int | None:
    return (
        LedgerTransaction.objects.filter(idempotency_key=recovery_key(topup))
        .values_list("pk", flat=True)
        .first()
    )


def debts_owed_at(*, property: Property, end: datetime) -> QuerySet[Debt]:
    """The property's debts as they stood at `end`, annotated with `owed` then: raised before
    it, less what was recovered before it, and nothing for one moved on to a later tenancy
    before it (its successor owes it). Only those still owing something."""
    recovered = (
        DebtRecovery.objects.filter(debt_id=OuterRef("pk"), transaction__created_at__lt=end)
        .values("debt_id")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    moved_on = Debt.objects.filter(transferred_from_id=OuterRef("pk"), created_at__lt=end)
    amount = DecimalField(max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES)
    return (
        Debt.objects.filter(property=property, created_at__lt=end)
        .annotate(
            recovered_then=Coalesce(Subquery(recovered, output_field=amount), Value(ZERO)),
            owed=ExpressionWrapper(F("amount") - F("recovered_then"), output_field=amount),
        )
        .exclude(Exists(moved_on))
        .filter(owed__gt=0)
    )


def transfers_moved_by(*, end: datetime) -> QuerySet[Debt]:
    """Debts that took over a move-out's debt transfer before `end` (for the arrears report:
    from then on the open tenancy's debt carries it, not the former tenant's row)."""
    return Debt.objects.filter(transaction__kind=TxnKind.DEBT_TRANSFER, created_at__lt=end)


# The invariants ----------------------------------------------------------------------------------


def check_debts() -> Iterator[str]:
    """The debts' invariants, over all the data, for `verify_ledger`:

    - a debt's `recovered` is the sum of its recoveries, and only a debt fully recovered is
      cleared (and every fully recovered one is);
    - a recovery, its reversal or a billed instalment moved exactly its recovery rows' total
      into (or out of) debtors;
    - a debt raised by its own transaction put exactly its amount on the debtors book;
    - an active plan's instalments still owe exactly what its debt owes, a completed plan's
      are all collected;
    - each property's debtors book equals minus what its open debts and its former tenants'
      unmoved debt transfers still owe.
    """
    summed = dict(
        DebtRecovery.objects.values_list("debt_id").annotate(total=Sum("amount")).order_by()
    )
    for debt in Debt.objects.order_by("pk").iterator(chunk_size=2000):
        if debt.recovered != summed.get(debt.pk, ZERO):
            summed_up = summed.get(debt.pk, ZERO)
            yield f"debt {debt.pk}: recovered {debt.recovered}, recoveries sum {summed_up}"
        if debt.status == Debt.Status.OPEN and debt.recovered == debt.amount:
            yield f"debt {debt.pk}: recovered in full but still open"
    rows = dict(
        DebtRecovery.objects.values_list("transaction_id").annotate(total=Sum("amount")).order_by()
    )
    moved = (
        Posting.objects.filter(
            Q(transaction__kind__in=[TxnKind.DEBT_RECOVERY, TxnKind.INSTALMENT_BILLED])
            | Q(transaction__reverses__kind=TxnKind.DEBT_RECOVERY),
            ledger_account__kind=Book.DEBTORS,
        )
        .values_list("transaction_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    for txn_id, total in moved:
        if rows.pop(txn_id, ZERO) != total:
            yield f"transaction {txn_id}: {total} to debtors, recovery rows differ"
    for txn_id in rows:
        yield f"transaction {txn_id}: recovery rows without a recovery posting"
    raised = Debt.objects.filter(
        transaction__kind__in=[TxnKind.DEBT_RAISED, TxnKind.EMERGENCY_CREDIT]
    ).annotate(
        booked=Sum(
            "transaction__postings__amount",
            filter=Q(transaction__postings__ledger_account__kind=Book.DEBTORS),
        )
    )
    for debt in raised.order_by("pk"):
        if debt.booked != -debt.amount:
            yield f"debt {debt.pk}: {debt.amount} owed, {debt.booked} posted to debtors"
    for plan in (
        InstalmentPlan.objects.exclude(status=InstalmentPlan.Status.CANCELLED)
        .annotate(due=Sum(F("instalments__amount") - F("instalments__collected")))
        .select_related("debt")
    ):
        if plan.status == InstalmentPlan.Status.ACTIVE and plan.due != outstanding(plan.debt):
            yield f"plan {plan.pk}: instalments owe {plan.due}, its debt {outstanding(plan.debt)}"
        if plan.status == InstalmentPlan.Status.COMPLETED and plan.due != 0:
            yield f"plan {plan.pk}: completed with {plan.due} not collected"
    yield from _debtors_books_off()


def _debtors_books_off() -> Iterator[str]:
    books = dict(
        Posting.objects.filter(ledger_account__kind=Book.DEBTORS)
        .values_list("ledger_account__property_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    owed: dict[int, Decimal] = {}
    for property_id, debt_amount, debt_recovered in Debt.objects.filter(
        status=Debt.Status.OPEN
    ).values_list("property_id", "amount", "recovered"):
        owed[property_id] = owed.get(property_id, ZERO) + debt_amount - debt_recovered
    unmoved = (
        Posting.objects.filter(ledger_account__kind=Book.DEBTORS)
        .filter(
            Q(transaction__kind=TxnKind.DEBT_TRANSFER)
            | Q(transaction__reverses__kind=TxnKind.DEBT_TRANSFER)
        )
        .exclude(Exists(Debt.objects.filter(transaction_id=OuterRef("transaction_id"))))
        .exclude(Exists(Debt.objects.filter(transaction_id=OuterRef("transaction__reverses_id"))))
        .values_list("ledger_account__property_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    for property_id, total in unmoved:
        owed[property_id] = owed.get(property_id, ZERO) - total
    for property_id in sorted(set(books) | set(owed)):
        book, due = books.get(property_id, ZERO), owed.get(property_id, ZERO)
        if book != -due:
            yield f"property {property_id}: debtors book {book}, debts owe {due}"
