"""Flat-lining: no consumption for days on a unit that is occupied, has credit and is
supplied (its relay not open). The meter may have failed, or been bypassed.

The zero stretch ends at the latest reading and starts after the last consumption, the last
unknown or gap interval (a meter that was silent gives no evidence of zero), the move-in and
the last time the relay was open, whichever is latest. It must reach `Rules.flatline_days`.
"""

from collections.abc import Sequence

from meters.detectors.findings import Finding, Outcome, chart
from meters.detectors.rules import ZERO, Kind, Rules, Severity
from meters.detectors.series import DAY, HOUR, Interval, buckets

# The evidence shows this much before the stretch, when the unit still consumed.
BEFORE = 2 * DAY


def zero_since(intervals: Sequence[Interval]) -> tuple[float | None, bool]:
    """Since when the intervals have counted nothing, and whether the stretch started with
    measured consumption (rather than with an unknown, a gap or the start of the data)."""
    if not intervals:
        return None, False
    for index in range(len(intervals) - 1, -1, -1):
        interval = intervals[index]
        if index + 1 < len(intervals) and intervals[index + 1].start > interval.end + 1:
            return intervals[index + 1].start, False
        if interval.quantity is None:
            return interval.end, False
        if interval.quantity > ZERO:
            return interval.end, True
        if interval.gap:
            return interval.end, False
    return intervals[0].start, False


def detect(
    subject: int,
    intervals: Sequence[Interval],
    *,
    stretches: Sequence[tuple[float, float]],
    occupied_since: float | None,
    has_credit: bool,
    register: float | None,
    rules: Rules,
    unit: str = "kWh",
) -> Outcome:
    """`intervals` are the unit's (all its meters, in time order); `stretches` are its
    relay's confirmed-open stretches; `register` is the subject meter's last register, which
    names the stretch (a meter stuck at one value is one finding however often it is seen)."""
    outcome = Outcome()
    if not rules.flatline or not intervals:
        return outcome
    end = intervals[-1].end
    since, consumed = zero_since(intervals)
    needed = rules.flatline_days * DAY
    if consumed and end - since < needed:
        outcome.healthy.add((subject, Kind.FLATLINE))
    if occupied_since is None or not has_credit:
        return outcome
    start = max(since, occupied_since)
    for _opened, closed in stretches:
        if closed > start:
            start = max(start, closed)
    if end - start < needed:
        return outcome
    spans = [
        (moment, moment + HOUR) for moment in _hours(max(intervals[0].start, start - BEFORE), end)
    ]
    shown = buckets(intervals, spans)
    outcome.findings.append(
        Finding(
            kind=Kind.FLATLINE,
            subject=subject,
            key=f"{Kind.FLATLINE}:{subject}:{register:.3f}"
            if register is not None
            else f"{Kind.FLATLINE}:{subject}:{int(start)}",
            start=start,
            end=end,
            severity=Severity.WARNING,
            rule={
                "name": Kind.FLATLINE,
                "since": int(start),
                "days": round((end - start) / DAY, 1),
                "limit_days": rules.flatline_days,
                "register": None if register is None else round(register, 3),
                "unit": unit,
            },
            series=chart(
                [low for low, _ in spans], {"consumption": shown}, unit=unit, band=(start, end)
            ),
            ongoing=True,
        )
    )
    return outcome


def _hours(low: float, high: float) -> list[float]:
    first = (low // HOUR + 1) * HOUR
    return [first + HOUR * index for index in range(int((high - first) // HOUR))]
