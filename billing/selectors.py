"""Reads about money that several screens and endpoints show."""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from django.db.models import DateTimeField, F, Func, IntegerField, Max, Min, Q, QuerySet, Sum, Value
from django.utils import timezone

# As a module: accounts.selectors imports this one, so its names are looked up when called.
from accounts import selectors as accounts_selectors
from accounts.models import Account, Property
from billing.forecast import CreditForecast, credit_forecast, profile, projected
from billing.models import (
    BalancePolicy,
    Charge,
    CutoffDecision,
    LedgerAccount,
    TopupLimits,
)
from billing.protection import ProtectedPeriods, next_protected_period
from meters.models import Meter, RelayCommand
from prepaid.scoping import Scope

# The Control loop's warnings pick the accounts worth a forecast by their spending over this.
HISTORY = timedelta(days=14)
# Forecasts learn from this much history: four weeks, the older ones weighing less.
FORECAST_HISTORY = timedelta(days=28)


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


class _LocalSlot(Func):
    """The hour of the week (0 for Monday 00:00-01:00) of a moment, in the time zone a column
    names, as `billing.forecast.slot_of` reckons it."""

    arg_joiner = " AT TIME ZONE "
    template = (
        "((EXTRACT(ISODOW FROM (%(expressions)s))::integer - 1) * 24"
        " + EXTRACT(HOUR FROM (%(expressions)s))::integer)"
    )
    output_field = IntegerField()


class _WeeksAgo(Func):
    """Whole weeks between a moment and now, as `billing.forecast.age_of` reckons them."""

    template = "(CEIL(EXTRACT(EPOCH FROM (%(expressions)s)) / 604800)::integer - 1)"
    output_field = IntegerField()


def _bucketed(charges: QuerySet, *, now: datetime, since: datetime) -> QuerySet:
    """Charges that started in [since, now), with the forecast bucket they start in."""
    return charges.filter(period_start__gte=since, period_start__lt=now).annotate(
        slot=_LocalSlot(F("period_start"), F("account__unit__property__time_zone")),
        age=_WeeksAgo(Value(now, output_field=DateTimeField()) - F("period_start")),
    )


def credit_forecasts(
    *, accounts: Sequence[Account], now: datetime | None = None
) -> dict[int, CreditForecast | None]:
    """Each account's credit forecast (None when there is too little history): the days left
    and when the credit runs out, from the last FORECAST_HISTORY of its charges weighted towards
    the recent weeks, in two queries for all of them. The accounts must come with `wallet` and
    `unit__property` loaded."""
    now = now or timezone.now()
    since = now - FORECAST_HISTORY
    spent: dict[int, dict[tuple[int, int], Decimal]] = defaultdict(dict)
    first: dict[int, datetime] = {}
    last: dict[int, datetime] = {}
    rows = (
        _bucketed(Charge.objects.filter(account__in=accounts), now=now, since=since)
        .values("account_id", "slot", "age")
        .annotate(
            amount=Sum(F("net") + F("tax")),
            first=Min("period_start"),
            last=Max("period_end"),
        )
        .order_by()
    )
    for row in rows:
        account_id = row["account_id"]
        spent[account_id][(row["slot"], row["age"])] = row["amount"]
        first[account_id] = min(first.get(account_id, row["first"]), row["first"])
        last[account_id] = max(last.get(account_id, row["last"]), row["last"])
    property_ids = {account.unit.property_id for account in accounts}
    policies = {
        policy.property_id: policy
        for policy in BalancePolicy.objects.filter(property_id__in=property_ids)
    }
    forecasts = {}
    for account in accounts:
        prop = account.unit.property
        policy = policies.get(prop.pk) or BalancePolicy(property=prop)
        forecasts[account.pk] = credit_forecast(
            balance=account.wallet.balance,
            threshold=policy.cutoff_threshold,
            spent=spent[account.pk],
            # The history starts when the account and its measurements both do.
            history_start=max(since, account.opened_at, first.get(account.pk, since)),
            measured_until=last.get(account.pk, now),
            now=now,
            zone=ZoneInfo(prop.time_zone),
        )
    return forecasts


def days_of_credit_left(
    *, accounts: Sequence[Account], now: datetime | None = None
) -> dict[int, Decimal | None]:
    """Each account's estimated days of credit left (None when there is too little history);
    see `credit_forecasts`. The accounts must come with `wallet` and `unit__property` loaded."""
    return {
        account_id: None if forecast is None else forecast.days
        for account_id, forecast in credit_forecasts(accounts=accounts, now=now).items()
    }


@dataclass(frozen=True)
class MonthFigure:
    """A month's figure: so far, and forecast for the whole month (None when there is too
    little history to forecast from)."""

    so_far: Decimal
    forecast: Decimal | None


@dataclass(frozen=True)
class PropertyMonthForecast:
    property: Property
    # The first day of the property's current local month.
    month: date
    currency: str
    # Before tax, as the overview's revenue tile.
    revenue: MonthFigure
    # In the order of `MonthForecasts.utilities`; None where the property has none of it.
    consumption: list[MonthFigure | None]


@dataclass(frozen=True)
class MonthForecasts:
    # (utility, unit) of every utility any of the properties consumed.
    utilities: list[tuple[str, str]]
    rows: list[PropertyMonthForecast]


def _month_start(now: datetime, zone: ZoneInfo) -> datetime:
    """The local midnight starting the month `now` is in."""
    local = now.astimezone(zone)
    return datetime(local.year, local.month, 1, tzinfo=zone)


def _next_month(start: datetime) -> datetime:
    year, month = (start.year, start.month + 1) if start.month < 12 else (start.year + 1, 1)
    return start.replace(year=year, month=month)


_MEASURES = ("quantity", "net")


@dataclass
class _Series:
    """One kind of charge of one property, consumption of a utility or standing charges: its
    month so far and its history by forecast bucket, of each measure."""

    so_far: dict[str, Decimal] = field(default_factory=dict)
    spent: dict[str, dict[tuple[int, int], Decimal]] = field(
        default_factory=lambda: {measure: {} for measure in _MEASURES}
    )
    first: datetime | None = None
    last: datetime | None = None

    def add_history(self, row: dict) -> None:
        for measure in _MEASURES:
            self.spent[measure][(row["slot"], row["age"])] = row[measure]
        self.first = min(self.first or row["first"], row["first"])
        self.last = max(self.last or row["last"], row["last"])

    def rest(
        self, measure: str, *, since: datetime, now: datetime, zone: ZoneInfo, month_end: datetime
    ) -> Decimal | None:
        """The forecast from where these charges stop to the end of the month; None when their
        history is too short to forecast from."""
        if self.first is None or self.last is None:
            return Decimal(0)
        until = min(now, self.last)
        rates = profile(
            spent=self.spent[measure], start=max(since, self.first), end=until, now=now, zone=zone
        )
        if rates is None:
            return None
        month_start = _month_start(now, zone)
        return projected(rates, start=max(until, month_start), end=month_end, zone=zone)


def _month_figure(series: Sequence[_Series], measure: str, **context) -> MonthFigure:
    done = sum((one.so_far.get(measure, Decimal(0)) for one in series), Decimal(0))
    ahead = [one.rest(measure, **context) for one in series]
    if None in ahead:
        return MonthFigure(so_far=done, forecast=None)
    return MonthFigure(so_far=done, forecast=done + sum(ahead, Decimal(0)))


def month_forecasts(
    *, scope: Scope, properties: Sequence[Property], now: datetime | None = None
) -> MonthForecasts:
    """Each property's charged consumption (per utility) and revenue before tax in its current
    local month: so far, and forecast for the whole month.

    The rest of the month is projected from the hour-of-week profile of the property's charges
    over the last FORECAST_HISTORY, weighted towards the recent weeks, from where its charges of
    each kind stop (consumption is charged a reading at a time, standing charges a day at a
    time), so nothing is counted twice. Charges count in the month and the hour they start in.
    Two queries whatever the number of properties."""
    now = now or timezone.now()
    since = now - FORECAST_HISTORY
    charges = Charge.objects.for_scope(scope).filter(
        account__unit__property__in=[prop.pk for prop in properties]
    )
    this_month = Q(pk__in=[])
    for prop in properties:
        this_month |= Q(
            account__unit__property_id=prop.pk,
            period_start__gte=_month_start(now, ZoneInfo(prop.time_zone)),
        )
    keys = ("account__unit__property_id", "kind", "meter__utility")
    found: dict[tuple, _Series] = defaultdict(_Series)
    for row in (
        charges.filter(this_month, period_start__lt=now)
        .values(*keys)
        .annotate(quantity=Sum("quantity"), net=Sum("net"))
        .order_by()
    ):
        found[tuple(row[key] for key in keys)].so_far = {m: row[m] for m in _MEASURES}
    for row in (
        _bucketed(charges, now=now, since=since)
        .values(*keys, "slot", "age")
        .annotate(
            quantity=Sum("quantity"),
            net=Sum("net"),
            first=Min("period_start"),
            last=Max("period_end"),
        )
        .order_by()
    ):
        found[tuple(row[key] for key in keys)].add_history(row)
    present = {utility for (_, kind, utility) in found if kind == Charge.Kind.ENERGY}
    utilities = [utility for utility in Meter.Utility.values if utility in present]
    rows = []
    for prop in properties:
        zone = ZoneInfo(prop.time_zone)
        month_start = _month_start(now, zone)
        context = {"since": since, "now": now, "zone": zone, "month_end": _next_month(month_start)}
        mine = {key[1:]: one for key, one in found.items() if key[0] == prop.pk}
        consumption = [
            _month_figure([mine[key]], "quantity", **context) if key in mine else None
            for key in ((Charge.Kind.ENERGY, utility) for utility in utilities)
        ]
        rows.append(
            PropertyMonthForecast(
                property=prop,
                month=month_start.date(),
                currency=prop.currency,
                revenue=_month_figure(list(mine.values()), "net", **context),
                consumption=consumption,
            )
        )
    return MonthForecasts(
        utilities=[(utility, Meter.REGISTER_UNITS[utility]) for utility in utilities],
        rows=rows,
    )


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
