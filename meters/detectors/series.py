"""Meter series as the detectors see them.

A meter reports a cumulative register. Consumption is the difference between two readings of
the same meter, and the series handling is what keeps bad input from looking like an anomaly:

- **Estimated readings** (someone's estimate, a meter's substitute value) are never used: the
  consumption is measured between the trusted readings either side.
- **Rollovers**: a register that wraps at the meter's rollover value counts on from zero.
- A register that goes backwards without a rollover, or jumps more than the meter can
  plausibly count, makes that interval **unknown**.
- **Gaps**: readings further apart than the longest trusted gap give an interval whose total is
  known but whose spread is not, so no hour it crosses is judged; a day that holds it whole is,
  and a day it crosses has bounds (`bounds`): all of the gap's consumption, or none, may be in it.
- **Replaced meters**: each meter's intervals run from its installation to its removal and are
  never differenced against another meter's register. A unit's consumption is the sum of its
  meters' intervals; an hour is known only when trusted intervals cover it completely.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY


class Sample(NamedTuple):
    """One reading."""

    at: float
    register: float
    estimated: bool = False
    power_w: float | None = None
    relay_closed: bool | None = None
    # The export register (kWh back into the grid), when the meter reports one.
    export: float | None = None
    # The meter's own alarm flags with this reading ("cover_open", "reverse"...).
    flags: tuple[str, ...] = ()


@dataclass
class MeterSeries:
    """One meter's readings in time order, and what the detectors need to know about it."""

    meter: int
    samples: list[Sample] = field(default_factory=list)
    unit: int | None = None
    installed: float | None = None
    removed: float | None = None
    rollover: float | None = None
    # More than this per hour between two readings is a fault, not consumption.
    max_per_hour: float | None = None
    has_relay: bool = False
    # It may put energy back into the grid (solar): export and reverse power are normal.
    exports: bool = False
    power_limit_w: float | None = None

    def trusted(self) -> list[Sample]:
        """The readings consumption is measured from: not estimated, taken in service."""
        low = self.installed if self.installed is not None else float("-inf")
        high = self.removed if self.removed is not None else float("inf")
        return [s for s in self.samples if not s.estimated and low <= s.at <= high]


class Interval(NamedTuple):
    """Consumption between two consecutive trusted readings of one meter."""

    start: float
    end: float
    # None: not known (the register went backwards, or jumped implausibly).
    quantity: float | None
    # The readings are further apart than the longest trusted gap.
    gap: bool = False


def intervals(series: MeterSeries, *, max_gap: float) -> list[Interval]:
    """The meter's consumption intervals, rollovers counted on, faults made unknown."""
    result: list[Interval] = []
    previous: Sample | None = None
    wrap = series.rollover
    limit = series.max_per_hour
    for sample in series.trusted():
        if previous is not None:
            span = sample.at - previous.at
            if span <= 0:
                continue
            delta: float | None = sample.register - previous.register
            if delta < 0:
                delta = wrap - previous.register + sample.register if wrap else None
                if delta is not None and delta < 0:
                    delta = None
            if delta is not None and limit is not None and delta > limit * span / HOUR:
                delta = None
            if delta is not None:
                delta = round(delta, 6)
            result.append(Interval(previous.at, sample.at, delta, span > max_gap))
        previous = sample
    return result


def merged(parts: Iterable[Sequence[Interval]]) -> list[Interval]:
    """Several meters' intervals (a unit's meters before and after a replacement) as one
    series in time order."""
    return sorted((interval for part in parts for interval in part), key=lambda i: i.start)


def buckets(series: Sequence[Interval], spans: Sequence[tuple[float, float]]) -> list[float | None]:
    """Consumption in each span (sorted, not overlapping), spread over time within each
    interval; None for a span not covered completely by trusted intervals, or touched by an
    unknown interval, or crossed by a gap."""
    result: list[float | None] = []
    ends = [interval.end for interval in series]
    for low, high in spans:
        index = bisect_right(ends, low)
        total = covered = 0.0
        known = True
        while index < len(series) and series[index].start < high:
            interval = series[index]
            index += 1
            overlap = min(high, interval.end) - max(low, interval.start)
            if overlap <= 0:
                continue
            covered += overlap
            if interval.quantity is None:
                known = False
                break
            inside = interval.start >= low and interval.end <= high
            if interval.gap and not inside:
                known = False
                break
            total += (
                interval.quantity
                if inside
                else interval.quantity * overlap / (interval.end - interval.start)
            )
        result.append(total if known and covered >= high - low - 1 else None)
    return result


def bounds(
    series: Sequence[Interval], spans: Sequence[tuple[float, float]]
) -> list[tuple[float, float] | None]:
    """The least and the most consumption each span (sorted, not overlapping) can have held:
    a gap crossing its edge may have put all of its consumption in the span or none; anything
    else is spread as in `buckets`. None for a span not covered completely (gaps count as
    covering), or touched by an unknown interval."""
    result: list[tuple[float, float] | None] = []
    ends = [interval.end for interval in series]
    for low, high in spans:
        index = bisect_right(ends, low)
        least = most = covered = 0.0
        known = True
        while index < len(series) and series[index].start < high:
            interval = series[index]
            index += 1
            overlap = min(high, interval.end) - max(low, interval.start)
            if overlap <= 0:
                continue
            covered += overlap
            if interval.quantity is None:
                known = False
                break
            if interval.start >= low and interval.end <= high:
                least += interval.quantity
                most += interval.quantity
            elif interval.gap:
                most += interval.quantity
            else:
                share = interval.quantity * overlap / (interval.end - interval.start)
                least += share
                most += share
        result.append((least, most) if known and covered >= high - low - 1 else None)
    return result


def consumption(series: Sequence[Interval], low: float, high: float) -> float | None:
    """Consumption between two moments, or None when it is not known."""
    return buckets(series, [(low, high)])[0]


def local_hours(start: float, end: float, zone: ZoneInfo) -> list[tuple[float, float]]:
    """The property's local clock hours that lie wholly between two moments."""
    first = datetime.fromtimestamp(start, zone).replace(minute=0, second=0, microsecond=0)
    moment = first.timestamp()
    if moment < start:
        moment += HOUR
    hours = []
    while moment + HOUR <= end:
        hours.append((moment, moment + HOUR))
        moment += HOUR
    return hours


def local_midnight(day: date, zone: ZoneInfo) -> float:
    return datetime.combine(day, time(), tzinfo=zone).timestamp()


def local_days(start: float, end: float, zone: ZoneInfo) -> list[tuple[date, float, float]]:
    """The property's local days (23 to 25 hours long) that lie wholly between two moments."""
    day = datetime.fromtimestamp(start, zone).date()
    days = []
    while True:
        low, high = local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)
        if high > end:
            return days
        if low >= start:
            days.append((day, low, high))
        day += timedelta(days=1)


def weeks_before(hours: Iterable[float], zone: ZoneInfo, weeks: int) -> dict[float, list[float]]:
    """For each local hour, the same local hour of the week in each of the `weeks` weeks
    before it (wall-clock weeks, so a DST change does not shift the hour)."""
    result = {}
    for hour in hours:
        local = datetime.fromtimestamp(hour, zone)
        result[hour] = [(local - timedelta(weeks=week)).timestamp() for week in range(1, weeks + 1)]
    return result


# The relay ---------------------------------------------------------------------------------------

OPEN, CLOSED, UNKNOWN = "open", "closed", "unknown"


class RelayEvent(NamedTuple):
    """What is known of a relay from a moment on: confirmed open or closed, or unknown (a
    switch was asked for and not yet confirmed, or it failed)."""

    at: float
    state: str


def relay_events(samples: Iterable[Sample]) -> list[RelayEvent]:
    """The relay states the meter reported with its readings."""
    return [
        RelayEvent(sample.at, CLOSED if sample.relay_closed else OPEN)
        for sample in samples
        if sample.relay_closed is not None
    ]


def open_stretches(events: Iterable[RelayEvent], *, end: float) -> list[tuple[float, float]]:
    """The stretches during which the relay was confirmed open: from a confirmation (or a
    reading saying so) until anything else is known or asked for."""
    stretches = []
    since = None
    for event in sorted(events):
        if event.at > end:
            break
        if event.state == OPEN:
            if since is None:
                since = event.at
        elif since is not None:
            if event.at > since:
                stretches.append((since, event.at))
            since = None
    if since is not None and end > since:
        stretches.append((since, end))
    return stretches


def overlapping(
    stretches: Sequence[tuple[float, float]], low: float, high: float
) -> list[tuple[float, float]]:
    starts = [stretch[0] for stretch in stretches]
    return [s for s in stretches[: bisect_left(starts, high)] if s[1] > low]
