"""The control loop's decisions: cut supply off when credit runs out, or, for a postpaid
account, when a bill is overdue beyond the credit policy's cut-off days (never in a protected
period, never for a protected account), and restore it as soon as credit is back or no bill is
overdue that long any more.

Each decision locks the wallet first (the lock order of billing.services), so it sees the
latest balance: a top-up that commits first wins. Switching goes through the RelayCommand
state machine, so the relay state shown is always the confirmed one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Account, Property
from accounts.selectors import holiday_calendar
from billing.allocation import overdue_for_cutoff
from billing.credit_policy import credit_policy
from billing.models import BalancePolicy, CutoffDecision, Invoice, LedgerAccount
from billing.protection import protected_until
from billing.selectors import balance_policy, protected_periods
from billing.warnings import cutoff_scheduled_record
from meters.models import Meter, RelayCommand
from meters.relay import relay_command_issue
from prepaid.audit.services import only_fields, update_audited
from prepaid.money import is_whole_minor_units, quantize, to_decimal

Outcome = CutoffDecision.Outcome
DEFERRALS = (Outcome.DEFERRED_GRACE, Outcome.DEFERRED_PROTECTED)


def _switchable_meters(account: Account) -> list[Meter]:
    return list(
        Meter.objects.filter(unit_id=account.unit_id, removed_at__isnull=True, has_relay=True)
        .select_related("unit")
        .order_by("pk")
    )


def _wanted_open(meter: Meter) -> bool:
    """Whether the meter is cut off, or being cut off."""
    active = RelayCommand.objects.filter(meter=meter, state__in=RelayCommand.ACTIVE).first()
    if active is not None:
        return not active.close
    return meter.relay_closed is False


def bills_overdue(*, account: Account, now: datetime) -> bool:
    """Whether a postpaid account has a bill open longer past its due date than its property's
    credit policy allows before a cut-off."""
    prop = account.unit.property
    return overdue_for_cutoff(
        invoices=Invoice.objects.filter(account=account, status=Invoice.Status.OPEN),
        policy=credit_policy(property=prop),
        today=now.astimezone(prop.zone).date(),
    )


def _decide(account: Account, outcome: str, balance: Decimal, now: datetime, **fields):
    return CutoffDecision.objects.create(
        account=account, outcome=outcome, balance=balance, decided_at=now, **fields
    )


@transaction.atomic
def cutoff_evaluate(*, account_id: int, now: datetime | None = None) -> CutoffDecision | None:
    """Cut the account's supply off if its credit has run out and nothing protects it now.
    Records what it decided and why; None when there was nothing to decide."""
    now = now or timezone.now()
    account = Account.objects.select_related("unit__property__balance_policy").get(pk=account_id)
    wallet = LedgerAccount.objects.select_for_update().get(pk=account.wallet_id)
    policy = balance_policy(property=account.unit.property)
    last = CutoffDecision.objects.filter(account=account).first()
    # Postpaid accounts run up a bill: what cuts them off is a bill left unpaid too long.
    postpaid = account.mode == Account.Mode.POSTPAID
    if account.status != Account.Status.OPEN or (
        not bills_overdue(account=account, now=now)
        if postpaid
        else wallet.balance > policy.cutoff_threshold
    ):
        if last is not None and last.outcome in DEFERRALS:
            return _decide(account, Outcome.SKIPPED_RECOVERED, wallet.balance, now)
        return None
    meters = [meter for meter in _switchable_meters(account) if not _wanted_open(meter)]
    if not meters:
        return None
    if account.protected:
        if last is not None and last.outcome == Outcome.SKIPPED_PROTECTED_ACCOUNT:
            return None
        return _decide(account, Outcome.SKIPPED_PROTECTED_ACCOUNT, wallet.balance, now)
    if policy.grace_minutes:
        # Grace starts with the first deferral since the balance ran out.
        if last is None or last.outcome not in DEFERRALS:
            until = now + timedelta(minutes=policy.grace_minutes)
            cutoff_scheduled_record(
                account=account, balance=wallet.balance, cutoff_at=until, now=now
            )
            return _decide(account, Outcome.DEFERRED_GRACE, wallet.balance, now, until=until)
        if last.outcome == Outcome.DEFERRED_GRACE and last.until > now:
            return None
    prop = account.unit.property
    until = protected_until(
        protected_periods(policy),
        at=now,
        zone=ZoneInfo(prop.time_zone),
        is_holiday=holiday_calendar(property=prop),
    )
    if until is not None:
        if last is not None and last.outcome == Outcome.DEFERRED_PROTECTED and last.until == until:
            return None
        cutoff_scheduled_record(account=account, balance=wallet.balance, cutoff_at=until, now=now)
        return _decide(account, Outcome.DEFERRED_PROTECTED, wallet.balance, now, until=until)
    decision = None
    reason = (
        "A bill is overdue beyond the cut-off days."
        if postpaid
        else f"Balance {wallet.balance} is at or below {policy.cutoff_threshold}."
    )
    for meter in meters:
        command = relay_command_issue(meter=meter, close=False, actor=None, reason=reason)
        decision = _decide(account, Outcome.CUT, wallet.balance, now, command=command)
    return decision


@transaction.atomic
def restore_evaluate(*, account_id: int, now: datetime | None = None) -> CutoffDecision | None:
    """Restore the account's supply if it is cut off (or being cut) and its credit is above
    the restore threshold again. None when there was nothing to restore."""
    now = now or timezone.now()
    account = Account.objects.select_related("unit__property__balance_policy").get(pk=account_id)
    wallet = LedgerAccount.objects.select_for_update().get(pk=account.wallet_id)
    policy = balance_policy(property=account.unit.property)
    if account.status != Account.Status.OPEN:
        return None
    if account.mode == Account.Mode.POSTPAID:
        if bills_overdue(account=account, now=now):
            return None
        reason = "No bill is overdue beyond the cut-off days any more."
    elif wallet.balance <= policy.restore_threshold:
        return None
    else:
        reason = f"Balance {wallet.balance} is above {policy.restore_threshold} again."
    decision = None
    for meter in _switchable_meters(account):
        if not _wanted_open(meter):
            continue
        command = relay_command_issue(meter=meter, close=True, actor=None, reason=reason)
        decision = _decide(account, Outcome.RESTORED, wallet.balance, now, command=command)
    return decision


POLICY_FIELDS = (
    "warning_levels",
    "warning_days",
    "cutoff_threshold",
    "restore_threshold",
    "grace_minutes",
    "protected_from",
    "protected_to",
    "protect_weekends",
    "protect_holidays",
)


@transaction.atomic
def balance_policy_update(*, property: Property, actor, **changes) -> BalancePolicy:
    """Change a property's prepaid rules; audited. Levels are amounts in the property's
    currency, kept highest first."""
    only_fields(changes, POLICY_FIELDS)
    policy = BalancePolicy.objects.select_for_update().filter(property=property).first()
    if policy is None:
        policy = BalancePolicy.objects.create(property=property)
    if "warning_levels" in changes:
        changes["warning_levels"] = _levels(changes["warning_levels"], property.currency)
    for name in ("cutoff_threshold", "restore_threshold"):
        if name in changes:
            changes[name] = _amount(name, changes[name], property.currency)
    days = changes.get("warning_days")
    if days is not None and not 1 <= days <= 60:
        raise ValidationError({"warning_days": "Warn between 1 and 60 days ahead, or not at all."})
    if changes.get("grace_minutes", 0) > 24 * 60:
        raise ValidationError({"grace_minutes": "A grace of more than a day is not a grace."})
    update_audited(
        instance=policy,
        changes=changes,
        actor=actor,
        action="balance_policy.update",
        organisation_id=property.organisation_id,
        property_id=property.pk,
    )
    return policy


def _levels(levels, currency: str) -> list[str]:
    if not isinstance(levels, list) or len(levels) > 10:
        raise ValidationError({"warning_levels": "Give a list of at most 10 amounts."})
    amounts = {_amount("warning_levels", level, currency) for level in levels}
    if any(amount <= 0 for amount in amounts):
        raise ValidationError({"warning_levels": "Warning levels are above zero."})
    return [str(quantize(amount, currency)) for amount in sorted(amounts, reverse=True)]


def _amount(field: str, value, currency: str) -> Decimal:
    try:
        amount = to_decimal(value)
    except (TypeError, ValueError):
        raise ValidationError({field: f"{value!r} is not an amount."}) from None
    if not is_whole_minor_units(amount, currency):
        raise ValidationError({field: f"Give {amount} in whole {currency} minor units."})
    return amount
