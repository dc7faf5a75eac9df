"""Reads about money that several screens and endpoints show."""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from django.db.models import F
from django.utils import timezone

# As a module: accounts.selectors imports this one, so its names are looked up when called.
from accounts import selectors as accounts_selectors
from accounts.models import Account, Property
from billing.forecast import days_of_credit
from billing.models import (
    BalancePolicy,
    Charge,
    CutoffDecision,
    LedgerAccount,
    TopupLimits,
)
from billing.protection import ProtectedPeriods, next_protected_period
from meters.models import Meter, RelayCommand

HISTORY = timedelta(days=14)


def balance_policy(*, property: Property) -> BalancePolicy:
    """The property's policy; the defaults when it has set none."""
    try:
        return property.balance_policy
    except BalancePolicy.DoesNotExist:
        return BalancePolicy(property=property)


def protected_periods(policy: BalancePolicy) -> ProtectedPeriods:
    return ProtectedPeriods(
        daily_start=policy.protected_from,
        daily_end=policy.protected_to,
        weekends=policy.protect_weekends,
        holidays=policy.protect_holidays,
    )


def days_of_credit_left(
    *, accounts: Sequence[Account], now: datetime | None = None
) -> dict[int, Decimal | None]:
    """Each account's estimated days of credit left (None when there is too little history),
    from the last two weeks of its charges, in one query for all of them. The accounts must
    come with `wallet` and `unit__property` loaded."""
    now = now or timezone.now()
    since = now - HISTORY
    spending: dict[int, list[tuple[datetime, Decimal]]] = defaultdict(list)
    rows = (
        Charge.objects.filter(account__in=accounts, period_end__gt=since)
        .annotate(amount=F("net") + F("tax"))
        .values_list("account_id", "period_end", "amount")
    )
    for account_id, moment, amount in rows:
        spending[account_id].append((moment, amount))
    property_ids = {account.unit.property_id for account in accounts}
    policies = {
        policy.property_id: policy
        for policy in BalancePolicy.objects.filter(property_id__in=property_ids)
    }
    estimates = {}
    for account in accounts:
        prop = account.unit.property
        policy = policies.get(prop.pk) or BalancePolicy(property=prop)
        estimates[account.pk] = days_of_credit(
            balance=account.wallet.balance,
            threshold=policy.cutoff_threshold,
            spending=spending[account.pk],
            history_start=max(since, account.opened_at),
            now=now,
            zone=ZoneInfo(prop.time_zone),
        )
    return estimates


# The counter and the policies editor ------------------------------------------------------------


def topup_limits(*, property: Property) -> TopupLimits:
    """The property's top-up limits; the defaults when it has set none."""
    try:
        return property.topup_limits
    except TopupLimits.DoesNotExist:
        return TopupLimits(property=property)


class Supply(StrEnum):
    ON = "on"
    OFF = "off"
    RESTORING = "restoring"
    CUTTING = "cutting"
    UNKNOWN = "unknown"
    # The unit has no meter with a relay or valve: nothing to switch.
    UNSWITCHED = "unswitched"


@dataclass(frozen=True)
class SupplyState:
    """An account's supply as the counter shows it, read fresh."""

    supply: Supply
    balance: Decimal
    currency: str
    restore_threshold: Decimal
    # The command on its way to a meter, if any.
    pending: RelayCommand | None
    # The control loop's last decision about this account, if any.
    decision: CutoffDecision | None


def supply_state(*, account: Account) -> SupplyState:
    """Balance, relay state and the pending relay command of the account's meters, in four
    queries whatever the number of meters. The account must come with `unit__property`."""
    wallet = LedgerAccount.objects.only("balance", "currency").get(pk=account.wallet_id)
    meters = list(
        Meter.objects.filter(unit_id=account.unit_id, removed_at__isnull=True, has_relay=True)
    )
    pending = (
        RelayCommand.objects.filter(meter__in=meters, state__in=RelayCommand.ACTIVE)
        .order_by("-created_at")
        .first()
        if meters
        else None
    )
    decision = CutoffDecision.objects.filter(account=account).first()
    policy = balance_policy(property=account.unit.property)
    return SupplyState(
        supply=_supply(meters, pending),
        balance=wallet.balance,
        currency=wallet.currency,
        restore_threshold=policy.restore_threshold,
        pending=pending,
        decision=decision,
    )


def _supply(meters: Sequence[Meter], pending: RelayCommand | None) -> Supply:
    if not meters:
        return Supply.UNSWITCHED
    if pending is not None:
        return Supply.RESTORING if pending.close else Supply.CUTTING
    states = {meter.relay_closed for meter in meters}
    if False in states:
        return Supply.OFF
    if None in states:
        return Supply.UNKNOWN
    return Supply.ON


@dataclass(frozen=True)
class ProtectedWindow:
    """One protected period: when it starts and ends (None: it never ends), whether it is
    running now, and the weekend days and holidays it covers."""

    start: datetime
    end: datetime | None
    running: bool
    weekend: bool
    holidays: tuple[date, ...]


# How far ahead the preview looks for the next protected period.
WINDOW_HORIZON = timedelta(days=62)
ONE_DAY = timedelta(days=1)
# What billing.protection gives as the end of protection that never ends.
NO_END = datetime.max.replace(tzinfo=UTC)


def protected_windows(
    *,
    property: Property,
    periods: ProtectedPeriods,
    now: datetime | None = None,
    count: int = 5,
) -> list[ProtectedWindow]:
    """The protected period running now, if any, and the next ones, up to `count` of them
    within about two months, by the property's clock and holiday calendar."""
    now = now or timezone.now()
    zone = ZoneInfo(property.time_zone)
    is_holiday = accounts_selectors.holiday_calendar(property=property)
    windows: list[ProtectedWindow] = []
    after = now
    while len(windows) < count:
        found = next_protected_period(
            periods, after=after, zone=zone, is_holiday=is_holiday, horizon=WINDOW_HORIZON
        )
        if found is None:
            break
        start, end = found
        endless = end == NO_END
        days = _days_covered(start, None if endless else end, zone)
        windows.append(
            ProtectedWindow(
                start=start,
                end=None if endless else end,
                running=start <= now,
                weekend=periods.weekends and any(day.weekday() >= 5 for day in days),
                holidays=tuple(day for day in days if periods.holidays and is_holiday(day)),
            )
        )
        if endless:
            break
        after = end
    return windows


def _days_covered(start: datetime, end: datetime | None, zone: ZoneInfo) -> list[date]:
    """The local days a window touches (none for a window without end)."""
    if end is None:
        return []
    first = start.astimezone(zone).date()
    last_moment = end.astimezone(zone)
    last = last_moment.date() if last_moment.time() != time() else last_moment.date() - ONE_DAY
    return [first + ONE_DAY * offset for offset in range((last - first).days + 1)]
