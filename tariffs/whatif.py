"""What one tariff version would have charged over a past local month, beside what was charged.

Pure, like `tariffs.pricing`: the caller reads the month's accepted readings, the tenancies and
the actual charges (see `tariffs.selectors.what_if_inputs`) and this prices the same readings
again through the same engine, the way `billing.charging` does:

- each meter's accepted readings become cumulative consumption (a register that wraps at its
  rollover keeps counting);
- the consumption is split at move-ins and move-outs, interpolating the register there;
- each account's pieces are priced in time order with `pricing.price_series`, its month's tier
  counter threaded from one piece to the next;
- standing charges run for each local day, for the part of it the account was open, when a
  meter of the utility served its unit that day.

The readings just before the month and just after it are included, so intervals that straddle
the month's edges are priced whole, and only the lines inside the month are kept. The engine
cuts every line at local month starts, so nothing is counted twice or lost at the edges.

The version is priced as if it were in force for the whole month, whatever its own start.

`change_distribution` then says how the accounts' changes spread across bands of percentage
change, with the smallest, median and largest change.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from itertools import pairwise
from zoneinfo import ZoneInfo

from tariffs import pricing

# Interpolated registers at move-ins and move-outs, to the precision readings are stored with
# (as `billing.charging` does).
REGISTER_PLACES = Decimal("0.000001")
RATE_PLACES = Decimal("0.0001")
_ZERO = Decimal(0)


@dataclass(frozen=True)
class MeterHistory:
    """A meter of the utility in one of the property's units, with its accepted readings in
    time order: the last one before the month, those inside it and the first one after it."""

    meter_id: int
    unit_id: int
    installed_at: datetime
    removed_at: datetime | None
    rollover: Decimal | None
    readings: tuple[tuple[datetime, Decimal], ...]


@dataclass(frozen=True)
class Tenancy:
    account_id: int
    unit_id: int
    opened_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True)
class Amounts:
    """Exact, unrounded charges of one account (or of all of them) over the month."""

    quantity: Decimal = _ZERO
    energy_net: Decimal = _ZERO
    energy_tax: Decimal = _ZERO
    standing_net: Decimal = _ZERO
    standing_tax: Decimal = _ZERO

    @property
    def net(self) -> Decimal:
        return self.energy_net + self.standing_net

    @property
    def tax(self) -> Decimal:
        return self.energy_tax + self.standing_tax

    @property
    def total(self) -> Decimal:
        return self.net + self.tax

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(
            quantity=self.quantity + other.quantity,
            energy_net=self.energy_net + other.energy_net,
            energy_tax=self.energy_tax + other.energy_tax,
            standing_net=self.standing_net + other.standing_net,
            standing_tax=self.standing_tax + other.standing_tax,
        )


@dataclass(frozen=True)
class Comparison:
    """Would-be against actual: the difference of the totals rounded to the currency's minor
    unit, and that difference as a share of the actual total (None when nothing was charged)."""

    would: Amounts
    actual: Amounts
    difference: Decimal
    rate: Decimal | None


@dataclass(frozen=True)
class AccountComparison(Comparison):
    account_id: int


@dataclass(frozen=True)
class WhatIf:
    accounts: tuple[AccountComparison, ...]
    total: Comparison


def _compare(would: Amounts, actual: Amounts, minor_unit: Decimal) -> dict:
    would_total = would.total.quantize(minor_unit, rounding=ROUND_HALF_EVEN)
    actual_total = actual.total.quantize(minor_unit, rounding=ROUND_HALF_EVEN)
    difference = would_total - actual_total
    rate = None
    if actual_total:
        rate = (difference / actual_total).quantize(RATE_PLACES, rounding=ROUND_HALF_EVEN)
    return {"would": would, "actual": actual, "difference": difference, "rate": rate}


def what_if(
    *,
    version: pricing.TariffVersion,
    tz: ZoneInfo,
    is_holiday: Callable[[date], bool],
    month_start: datetime,
    month_end: datetime,
    meters: Sequence[MeterHistory],
    tenancies: Sequence[Tenancy],
    actual: Mapping[int, Amounts],
    minor_unit: Decimal,
) -> WhatIf:
    """Each account's would-be charges under `version` for [month_start, month_end), beside
    `actual` (by account id), in the order of `tenancies`."""
    earliest = min([month_start, *(m.readings[0][0] for m in meters if m.readings)])
    schedule = pricing.Schedule(
        versions=(replace(version, effective_from=earliest),), tz=tz, is_holiday=is_holiday
    )
    would: dict[int, Amounts] = defaultdict(Amounts)
    for account_id, energy in _energy(schedule, meters, tenancies, month_start, month_end).items():
        would[account_id] += energy
    for tenancy in tenancies:
        would[tenancy.account_id] += _standing(
            schedule, tenancy, meters, month_start=month_start, month_end=month_end
        )
    order = list(dict.fromkeys([t.account_id for t in tenancies] + sorted(actual)))
    rows = tuple(
        AccountComparison(
            account_id=account_id,
            **_compare(would[account_id], actual.get(account_id, Amounts()), minor_unit),
        )
        for account_id in order
    )
    total_would = sum((row.would for row in rows), Amounts())
    total_actual = sum((row.actual for row in rows), Amounts())
    return WhatIf(
        accounts=rows, total=Comparison(**_compare(total_would, total_actual, minor_unit))
    )


# Energy -----------------------------------------------------------------------------------------


def _consumption(meter: MeterHistory) -> list[tuple[datetime, Decimal]]:
    """(time, cumulative consumption) from the meter's accepted registers."""
    points: list[tuple[datetime, Decimal]] = []
    consumed, previous = _ZERO, None
    for taken_at, register in meter.readings:
        if previous is not None:
            delta = register - previous
            if delta < 0:
                if meter.rollover is None or previous >= meter.rollover:
                    continue
                delta = meter.rollover - previous + register
            consumed += delta
        previous = register
        points.append((taken_at, consumed))
    return points


def _interpolate(points, moment: datetime) -> Decimal:
    times = [point[0] for point in points]
    index = bisect_right(times, moment)
    (t0, c0), (t1, c1) = points[index - 1], points[index]
    share = Decimal((moment - t0).total_seconds()) / Decimal((t1 - t0).total_seconds())
    return (c0 + (c1 - c0) * share).quantize(REGISTER_PLACES)


def _occupant(tenancies: Iterable[Tenancy], start: datetime, end: datetime) -> int | None:
    for tenancy in tenancies:
        if tenancy.opened_at <= start and (tenancy.closed_at is None or end <= tenancy.closed_at):
            return tenancy.account_id
    return None


def _by_account(points, tenancies: Sequence[Tenancy]):
    """Split a meter's points at move-ins and move-outs: (account id or None, points)."""
    start, end = points[0][0], points[-1][0]
    known = {point[0] for point in points}
    cuts = sorted(
        {
            moment
            for tenancy in tenancies
            for moment in (tenancy.opened_at, tenancy.closed_at)
            if moment and start < moment < end and moment not in known
        }
    )
    series = sorted([*points, *((moment, _interpolate(points, moment)) for moment in cuts)])
    pieces: list[tuple[int | None, list]] = []
    for point_start, point_end in pairwise(series):
        account = _occupant(tenancies, point_start[0], point_end[0])
        if pieces and pieces[-1][0] == account:
            pieces[-1][1].append(point_end)
        else:
            pieces.append((account, [point_start, point_end]))
    return pieces


def _energy(
    schedule: pricing.Schedule,
    meters: Sequence[MeterHistory],
    tenancies: Sequence[Tenancy],
    month_start: datetime,
    month_end: datetime,
) -> dict[int, Amounts]:
    by_unit: dict[int, list[Tenancy]] = defaultdict(list)
    for tenancy in sorted(tenancies, key=lambda tenancy: tenancy.opened_at):
        by_unit[tenancy.unit_id].append(tenancy)
    pieces: dict[int, list[list]] = defaultdict(list)
    for meter in meters:
        points = _consumption(meter)
        if len(points) < 2:
            continue
        for account_id, series in _by_account(points, by_unit[meter.unit_id]):
            if account_id is not None:
                pieces[account_id].append(series)
    amounts: dict[int, Amounts] = {}
    for account_id, series_list in pieces.items():
        month_to_date, month_of_counter = _ZERO, None
        total = Amounts()
        for series in sorted(series_list, key=lambda series: series[0][0]):
            if pricing.local_month_start(series[0][0], schedule.tz) != month_of_counter:
                month_to_date = _ZERO
            charged = pricing.price_series(
                schedule,
                readings=series,
                month_to_date=month_to_date,
            )
            month_to_date = charged.month_to_date_after
            month_of_counter = pricing.local_month_start(series[-1][0], schedule.tz)
            inside = [line for line in charged.lines if month_start <= line.start < month_end]
            total += Amounts(
                quantity=sum((line.quantity for line in inside), _ZERO),
                energy_net=sum((line.net for line in inside), _ZERO),
                energy_tax=sum((line.tax for line in inside), _ZERO),
            )
        amounts[account_id] = total
    return amounts


# Standing charges -------------------------------------------------------------------------------


def _standing(
    schedule: pricing.Schedule,
    tenancy: Tenancy,
    meters: Sequence[MeterHistory],
    *,
    month_start: datetime,
    month_end: datetime,
) -> Amounts:
    """The standing charges of the local days the account was open and its unit metered."""
    unit_meters = [meter for meter in meters if meter.unit_id == tenancy.unit_id]
    spans: list[list[datetime]] = []
    day = month_start.astimezone(schedule.tz).date()
    day_start = pricing.local_midnight(day, schedule.tz)
    while day_start < month_end:
        day_end = pricing.local_midnight(day + timedelta(days=1), schedule.tz)
        open_in_day = tenancy.opened_at < day_end and (
            tenancy.closed_at is None or tenancy.closed_at > day_start
        )
        metered = any(
            meter.installed_at < day_end
            and (meter.removed_at is None or meter.removed_at > day_start)
            for meter in unit_meters
        )
        if open_in_day and metered:
            start = max(day_start, tenancy.opened_at)
            end = min(day_end, tenancy.closed_at or day_end)
            if spans and spans[-1][1] == start:
                spans[-1][1] = end
            else:
                spans.append([start, end])
        day, day_start = day + timedelta(days=1), day_end
    lines = [
        line
        for start, end in spans
        for line in pricing.standing_charges(schedule, start=start, end=end)
    ]
    return Amounts(
        standing_net=sum((line.net for line in lines), _ZERO),
        standing_tax=sum((line.tax for line in lines), _ZERO),
    )


# The distribution of changes ----------------------------------------------------------------

# Where the bands of change part, as shares of what was actually charged.
SMALL_CHANGE = Decimal("0.05")
LARGE_CHANGE = Decimal("0.10")


class Band(StrEnum):
    """A band of change, symmetric about no change: up to 5% either way is small, over 5% and up
    to 10% is moderate, over 10% is large. Exactly -5% is a small fall, exactly -10% a moderate
    one, as +5% and +10% are a small and a moderate rise."""

    LARGE_FALL = "large_fall"  # below -10%
    FALL = "fall"  # -10% to below -5%
    SMALL_FALL = "small_fall"  # -5% to below 0
    NONE = "none"  # exactly 0
    SMALL_RISE = "small_rise"  # above 0 to 5%
    RISE = "rise"  # above 5% to 10%
    LARGE_RISE = "large_rise"  # above 10%


def band_of(rate: Decimal) -> Band:
    size = abs(rate)
    if size == 0:
        return Band.NONE
    rising = rate > 0
    if size <= SMALL_CHANGE:
        return Band.SMALL_RISE if rising else Band.SMALL_FALL
    if size <= LARGE_CHANGE:
        return Band.RISE if rising else Band.FALL
    return Band.LARGE_RISE if rising else Band.LARGE_FALL


@dataclass(frozen=True)
class Distribution:
    """How the accounts' changes spread: how many fall in each band (every band, in order from
    the largest fall to the largest rise), and the smallest, median and largest change. Accounts
    with nothing actually charged have no change as a share and are only counted apart."""

    bands: tuple[tuple[Band, int], ...]
    compared: int
    without_rate: int
    minimum: Decimal | None
    median: Decimal | None
    maximum: Decimal | None


def change_distribution(comparisons: Iterable[Comparison]) -> Distribution:
    """The distribution of the comparisons' changes (`Comparison.rate`)."""
    rates: list[Decimal] = []
    without_rate = 0
    for comparison in comparisons:
        if comparison.rate is None:
            without_rate += 1
        else:
            rates.append(comparison.rate)
    rates.sort()
    counts = dict.fromkeys(Band, 0)
    for rate in rates:
        counts[band_of(rate)] += 1
    median = None
    if rates:
        middle = len(rates) // 2
        median = rates[middle] if len(rates) % 2 else (rates[middle - 1] + rates[middle]) / 2
    return Distribution(
        bands=tuple(counts.items()),
        compared=len(rates),
        without_rate=without_rate,
        minimum=rates[0] if rates else None,
        median=median,
        maximum=rates[-1] if rates else None,
    )
