"""Overload: power above the unit's contracted limit for minutes on end.

Power comes from the readings' own power figures; for a meter that reports none, from the
average power of each trusted interval. An episode is a run of measurements above the limit
with no gap longer than the longest trusted gap between them, lasting at least
`Rules.overload_minutes` (from its first measurement to its last; an interval's average lasts
the whole interval). A single peak shorter than that is normal (a kettle, a motor starting).
"""

from collections.abc import Sequence
from typing import NamedTuple

from meters.detectors.findings import Finding, Outcome, chart
from meters.detectors.rules import Kind, Rules, Severity
from meters.detectors.series import HOUR, Interval, MeterSeries

CONTEXT = 3 * HOUR


class Measurement(NamedTuple):
    start: float
    end: float
    power_w: float


def measurements(series: MeterSeries, intervals: Sequence[Interval]) -> list[Measurement]:
    reported = [
        Measurement(s.at, s.at, s.power_w) for s in series.trusted() if s.power_w is not None
    ]
    if reported:
        return reported
    return [
        Measurement(i.start, i.end, i.quantity * 1000 * HOUR / (i.end - i.start))
        for i in intervals
        if i.quantity is not None and not i.gap
    ]


def detect(series: MeterSeries, intervals: Sequence[Interval], rules: Rules) -> Outcome:
    outcome = Outcome()
    limit = rules.power_limit(series.power_limit_w)
    if not rules.overload or limit is None:
        return outcome
    measured = measurements(series, intervals)
    if not measured:
        return outcome
    if measured[-1].power_w <= limit:
        outcome.healthy.add((series.meter, Kind.OVERLOAD))
    for first, last in _episodes(measured, limit, rules.max_gap):
        episode = measured[first : last + 1]
        start, end = episode[0].start, episode[-1].end
        if end - start < rules.overload_minutes * 60:
            continue
        peak = max(m.power_w for m in episode)
        shown = [m for m in measured if start - CONTEXT <= m.end <= end + CONTEXT]
        outcome.findings.append(
            Finding(
                kind=Kind.OVERLOAD,
                subject=series.meter,
                key=f"{Kind.OVERLOAD}:{series.meter}:{int(start)}",
                start=start,
                end=end,
                severity=Severity.WARNING,
                rule={
                    "name": Kind.OVERLOAD,
                    "peak_w": round(peak, 1),
                    "limit_w": limit,
                    "minutes": round((end - start) / 60),
                    "limit_minutes": rules.overload_minutes,
                },
                series=chart(
                    [m.end for m in shown],
                    {"power": [m.power_w for m in shown], "limit": [limit] * len(shown)},
                    unit="W",
                    style="line",
                    band=(start, end),
                    places=1,
                ),
                ongoing=last == len(measured) - 1,
            )
        )
    return outcome


def _episodes(measured: Sequence[Measurement], limit: float, max_gap: float):
    episodes, first = [], None
    for index, measurement in enumerate(measured):
        above = measurement.power_w > limit
        if first is not None and (
            not above or measurement.start - measured[index - 1].end > max_gap
        ):
            episodes.append((first, index - 1))
            first = None
        if above and first is None:
            first = index
    if first is not None:
        episodes.append((first, len(measured) - 1))
    return episodes
