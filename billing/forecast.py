"""Forecasts from how an account, or a whole property, spends by hour of the week.

Pure: no ORM. A household spends differently at 19:00 on a Friday than at 03:00 on a Tuesday,
so the history is summed per hour of the week (168 slots, in the property's local time) and the
future is run slot by slot from now.

**Recent weighting.** Each week of history counts half as much as the week after it: a
half-life of one week (`WEEKLY_WEIGHT`). A moment's age is the number of whole weeks between it
and now (0 for the seven days up to now), and it weighs `WEEKLY_WEIGHT ** age`. A slot's rate
is the weighted amount spent in it over the weighted hours of history that fall in it, so a
tenant whose habits changed last week is followed faster than a plain average would, a steady
tenant comes out at exactly their steady rate, and a slot's older weeks still count for
something. The weights are exact powers of one half: no rounding comes in before the division.

The history is summed into `Bucket`s, (slot, age) pairs, by `buckets` here or by the same
grouping in SQL (`billing.selectors`), which puts each charge in the slot it starts in. Hours of
the week the history does not cover at all count at the history's overall weighted rate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

HOURS_PER_WEEK = 7 * 24
HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)
# Less history than this says too little about a week to forecast from.
MINIMUM_HISTORY = timedelta(days=7)
# Beyond a year, "days left" means nothing to a tenant; the estimate stops there.
LONGEST = timedelta(days=366)
# A half-life of one week: each older week weighs half the week after it.
WEEKLY_WEIGHT = Decimal("0.5")
TENTH = Decimal("0.1")
_ZERO = Decimal(0)
_MICROSECONDS_PER_HOUR = Decimal(3_600_000_000)
_MICROSECONDS_PER_DAY = Decimal(86_400_000_000)

# An hour of the week (0 is Monday 00:00-01:00 local time) and an age in whole weeks.
Bucket = tuple[int, int]
Rates = Sequence[Decimal]


def slot_of(moment: datetime, zone: ZoneInfo) -> int:
    """The hour of the week of `moment` in `zone`: 0 for Monday 00:00-01:00, 167 for Sunday
    23:00-24:00."""
    local = moment.astimezone(zone)
    return local.weekday() * 24 + local.hour


def age_of(moment: datetime, now: datetime) -> int:
    """Whole weeks between `moment` and `now`: 0 for [now - 7 days, now), 1 for the week before
    that, and so on."""
    return -((moment - now) // WEEK) - 1


def weight_of(age: int) -> Decimal:
    return WEEKLY_WEIGHT**age


def buckets(
    spending: Iterable[tuple[datetime, Decimal]], *, now: datetime, zone: ZoneInfo
) -> dict[Bucket, Decimal]:
    """(moment, amount) pairs summed by the slot and age of their moment, the way
    `billing.selectors` groups charges in SQL."""
    summed: dict[Bucket, Decimal] = defaultdict(Decimal)
    for moment, amount in spending:
        summed[(slot_of(moment, zone), age_of(moment, now))] += amount
    return dict(summed)


def _hours(span: timedelta) -> Decimal:
    return Decimal(span // timedelta(microseconds=1)) / _MICROSECONDS_PER_HOUR


def _next_local_hour(moment: datetime, zone: ZoneInfo) -> datetime:
    local = moment.astimezone(zone)
    floor = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return floor + HOUR


def _slices(start: datetime, end: datetime, zone: ZoneInfo) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) cut at every local hour, so each piece lies in one slot. Stepping in UTC
    keeps every whole piece an hour long, also across a change to or from summer time."""
    moment = start.astimezone(UTC)
    end = end.astimezone(UTC)
    while moment < end:
        cut = min(_next_local_hour(moment, zone), end)
        yield moment, cut
        moment = cut


def profile(
    *,
    spent: Mapping[Bucket, Decimal],
    start: datetime,
    end: datetime,
    now: datetime,
    zone: ZoneInfo,
) -> tuple[Decimal, ...] | None:
    """The weighted rate per hour of each of the 168 slots, from what was `spent` by bucket over
    the history [start, end). None when the history is shorter than MINIMUM_HISTORY or nothing
    was spent in it: there is nothing to forecast from."""
    if end - start < MINIMUM_HISTORY:
        return None
    amounts = [_ZERO] * HOURS_PER_WEEK
    for (slot, age), amount in spent.items():
        amounts[slot] += amount * weight_of(age)
    if sum(amounts, _ZERO) <= 0:
        return None
    exposure = [_ZERO] * HOURS_PER_WEEK
    # Also cut at each whole week back from now, so a piece of history has a single age.
    edges = sorted({start, end, *(now - WEEK * age for age in range(age_of(start, now) + 1))})
    for low, high in pairwise(edges):
        if not start <= low < high <= end:
            continue
        weight = weight_of(age_of(low, now))
        for piece_start, piece_end in _slices(low, high, zone):
            exposure[slot_of(piece_start, zone)] += _hours(piece_end - piece_start) * weight
    overall = sum(amounts, _ZERO) / sum(exposure, _ZERO)
    return tuple(
        amount / hours if hours else overall
        for amount, hours in zip(amounts, exposure, strict=True)
    )


def projected(rates: Rates, *, start: datetime, end: datetime, zone: ZoneInfo) -> Decimal:
    """What the rates add up to over [start, end), slot by slot (0 when end is not after start)."""
    return sum(
        (rates[slot_of(low, zone)] * _hours(high - low) for low, high in _slices(start, end, zone)),
        _ZERO,
    )


def run_out(
    rates: Rates, *, left: Decimal, start: datetime, zone: ZoneInfo, longest: timedelta = LONGEST
) -> datetime | None:
    """When spending at the rates from `start` uses up `left`; None if not within `longest`.

    Whole weeks are skipped at the weekly total while more than two of them are left, so a
    large balance costs no more than a small one; across a change of summer time such a week
    is an hour longer or shorter than its slots, which moves the answer by at most that hour.
    """
    if left <= 0:
        return start
    weekly = sum(rates, _ZERO)
    if weekly <= 0:
        return None
    moment = start
    whole_weeks = int(left // weekly) - 1
    if whole_weeks > 0:
        if whole_weeks * WEEK.days >= longest.days:
            return None
        moment += WEEK * whole_weeks
        left -= weekly * whole_weeks
    limit = start + longest
    for low, high in _slices(moment, limit, zone):
        rate = rates[slot_of(low, zone)]
        cost = rate * _hours(high - low)
        if cost >= left:
            microseconds = (left / rate * _MICROSECONDS_PER_HOUR).to_integral_value()
            return low + timedelta(microseconds=int(microseconds))
        left -= cost
    return None


@dataclass(frozen=True)
class CreditForecast:
    """How long a balance lasts: days to a tenth (0 when it has run out already, LONGEST's days
    when it outlasts that) and the moment it runs out (None in both of those cases)."""

    days: Decimal
    runs_out_at: datetime | None


def credit_forecast(
    *,
    balance: Decimal,
    threshold: Decimal,
    spent: Mapping[Bucket, Decimal],
    history_start: datetime,
    now: datetime,
    zone: ZoneInfo,
    measured_until: datetime | None = None,
) -> CreditForecast | None:
    """When the balance reaches `threshold` at the pace of what was `spent` (by bucket) over
    [history_start, measured_until), measured_until being now unless the charges stop earlier.
    None when the history is too short or nothing was spent."""
    if balance <= threshold:
        return CreditForecast(days=_ZERO, runs_out_at=None)
    rates = profile(
        spent=spent,
        start=history_start,
        end=min(measured_until or now, now),
        now=now,
        zone=zone,
    )
    if rates is None:
        return None
    when = run_out(rates, left=balance - threshold, start=now, zone=zone)
    if when is None:
        return CreditForecast(days=Decimal(LONGEST.days), runs_out_at=None)
    micro = Decimal((when - now) // timedelta(microseconds=1))
    return CreditForecast(days=(micro / _MICROSECONDS_PER_DAY).quantize(TENTH), runs_out_at=when)


def days_of_credit(
    *,
    balance: Decimal,
    threshold: Decimal,
    spending: Iterable[tuple[datetime, Decimal]],
    history_start: datetime,
    now: datetime,
    zone: ZoneInfo,
    measured_until: datetime | None = None,
) -> Decimal | None:
    """Days until the balance reaches `threshold`, to a tenth of a day; 0 when it has already.

    `spending` is (moment, amount) of each charge since `history_start`. None when there is
    less than MINIMUM_HISTORY of it or nothing was spent: there is nothing to estimate from.
    """
    forecast = credit_forecast(
        balance=balance,
        threshold=threshold,
        spent=buckets(spending, now=now, zone=zone),
        history_start=history_start,
        now=now,
        zone=zone,
        measured_until=measured_until,
    )
    return None if forecast is None else forecast.days
