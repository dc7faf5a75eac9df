"""Warning tenants before their credit runs out.

Each warning fires once, and the record of it (`BalanceWarning.key`) is what makes it once:
- A **warning level** fires when a posting takes the balance from above the level to at or below
  it. It is recorded in the same transaction as the posting and keyed by it. The balance has to
  rise above the level again before another posting can take it through, so the level re-arms
  without any state to keep in step with the ledger.
- The **days-left** warning fires when the estimated days of credit left fall to the property's
  `warning_days`; once per top-up (the latest top-up is in its key).
- The **scheduled cut-off** warning fires when credit will run out inside the next protected
  period (a night, a weekend, a holiday): supply is then cut the moment the period ends, so the
  tenant is told to top up before it starts rather than after. Once per protected period.

Tenants are told through notifications, enqueued after the transaction commits, so a provider
that fails never holds up the money.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import DecimalField, F, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Account
from accounts.selectors import holiday_calendar
from billing.models import BalancePolicy, BalanceWarning, Charge, LedgerTransaction
from billing.protection import next_protected_period
from billing.selectors import HISTORY, balance_policy, days_of_credit_left, protected_periods
from billing.tasks import notify_warning

Kind = BalanceWarning.Kind
# Look this far ahead for the protected period credit may run out in: past a long weekend with
# a public holiday on either side.
RUN_OUT_HORIZON = timedelta(days=10)


@dataclass(frozen=True)
class Fall:
    """A posting that lowered a wallet's balance."""

    wallet_id: int
    before: Decimal
    after: Decimal
    transaction_id: int


def levels_fallen_through(*, falls: Sequence[Fall]) -> list[BalanceWarning]:
    """Record a warning for each balance these postings took down through a warning level: the
    lowest level crossed, when several were. Runs inside the posting's transaction."""
    if not falls:
        return []
    # Payments build on billing, so this one is imported when used.
    from payments.autotopup import autotopup_check

    accounts = {
        account.wallet_id: account
        for account in Account.objects.filter(
            wallet_id__in={fall.wallet_id for fall in falls}, mode=Account.Mode.PREPAID
        ).select_related("unit__property__balance_policy", "wallet")
    }
    autotopup_check(account_ids=[account.pk for account in accounts.values()])
    now = timezone.now()
    warnings = []
    for fall in falls:
        account = accounts.get(fall.wallet_id)
        if account is None:
            continue
        levels = [Decimal(level) for level in _policy(account).warning_levels]
        crossed = [level for level in levels if fall.before > level >= fall.after]
        if not crossed:
            continue
        level = min(crossed)
        warnings.append(
            BalanceWarning(
                account=account,
                kind=Kind.LEVEL,
                key=f"level:{account.pk}:{level}:{fall.transaction_id}",
                balance=fall.after,
                level=level,
                created_at=now,
            )
        )
    BalanceWarning.objects.bulk_create(warnings)
    _notify(warnings)
    return warnings


def cutoff_scheduled_record(
    *, account: Account, balance: Decimal, cutoff_at: datetime, now: datetime
) -> BalanceWarning | None:
    """Warn that supply will be cut at `cutoff_at`, when the protected period the account's
    credit runs out in ends. Once per period; None when it was already sent."""
    return _record_once(
        BalanceWarning(
            account=account,
            kind=Kind.CUTOFF_SCHEDULED,
            key=f"cutoff_scheduled:{account.pk}:{cutoff_at.isoformat()}",
            balance=balance,
            cutoff_at=cutoff_at,
            created_at=now,
        )
    )


def credit_warnings_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Send the days-left and scheduled cut-off warnings that are due. Safe to run twice."""
    now = now or timezone.now()
    counts = {Kind.DAYS.value: 0, Kind.CUTOFF_SCHEDULED.value: 0}
    accounts = _running_low(now)
    estimates = days_of_credit_left(accounts=accounts, now=now)
    for account in accounts:
        days = estimates[account.pk]
        if days is None:
            continue
        for warning in (_days_warning(account, days, now), _run_out_warning(account, days, now)):
            if warning is not None:
                counts[warning.kind] += 1
    return counts


def _running_low(now: datetime) -> list[Account]:
    """Open prepaid accounts whose balance would not last the look-ahead at the pace of their
    last two weeks: the only ones worth a forecast."""
    spent = (
        Charge.objects.filter(account=OuterRef("pk"), period_end__gt=now - HISTORY)
        .order_by()
        .values("account")
        .annotate(total=Sum(F("net") + F("tax")))
        .values("total")
    )
    zero = Value(Decimal(0), output_field=DecimalField())
    days_ahead = max([RUN_OUT_HORIZON.days, *_warning_days()])
    candidates = (
        Account.objects.filter(status=Account.Status.OPEN, mode=Account.Mode.PREPAID)
        .annotate(spent=Coalesce(Subquery(spent), zero))
        .filter(spent__gt=0, wallet__balance__lte=F("spent") * days_ahead / HISTORY.days)
        .select_related("unit__property__balance_policy", "wallet", "tenant")
        .order_by("pk")
    )
    return list(candidates)


def _warning_days() -> list[int]:
    return list(
        BalancePolicy.objects.filter(warning_days__isnull=False)
        .values_list("warning_days", flat=True)
        .distinct()
    )


def _days_warning(account: Account, days: Decimal, now: datetime) -> BalanceWarning | None:
    limit = _policy(account).warning_days
    if limit is None or days > limit or days == 0:
        return None
    last_topup = (
        LedgerTransaction.objects.filter(
            kind=LedgerTransaction.Kind.TOPUP, postings__ledger_account_id=account.wallet_id
        )
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    return _record_once(
        BalanceWarning(
            account=account,
            kind=Kind.DAYS,
            key=f"days:{account.pk}:{last_topup or 0}",
            balance=account.wallet.balance,
            days_left=days,
            created_at=now,
        )
    )


def _run_out_warning(account: Account, days: Decimal, now: datetime) -> BalanceWarning | None:
    if account.protected or days == 0:
        # A protected account is never cut off; one already out of credit is the cut-off
        # check's to decide, and it warns when it defers.
        return None
    policy = _policy(account)
    prop = account.unit.property
    period = next_protected_period(
        protected_periods(policy),
        after=now,
        zone=ZoneInfo(prop.time_zone),
        is_holiday=holiday_calendar(property=prop),
        horizon=RUN_OUT_HORIZON,
    )
    if period is None:
        return None
    start, end = period
    runs_out_at = now + timedelta(seconds=int(days * 86400))
    if not start <= runs_out_at < end:
        return None
    return cutoff_scheduled_record(
        account=account, balance=account.wallet.balance, cutoff_at=end, now=now
    )


def _policy(account: Account) -> BalancePolicy:
    return balance_policy(property=account.unit.property)


def _record_once(warning: BalanceWarning) -> BalanceWarning | None:
    try:
        with transaction.atomic():
            warning.save()
    except IntegrityError:
        # Sent before: the key is the warning's identity.
        return None
    _notify([warning])
    return warning


def _notify(warnings: Sequence[BalanceWarning]) -> None:
    for warning in warnings:
        warning_id = warning.pk
        transaction.on_commit(lambda warning_id=warning_id: notify_warning.delay(warning_id))
