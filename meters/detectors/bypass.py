"""Consumption while the relay is confirmed open: the supply is cut off, yet the meter counts.
Either the relay is bridged (a bypass) or it has failed closed."""

from bisect import bisect_left
from collections.abc import Sequence

from meters.detectors.findings import Finding, Outcome, chart
from meters.detectors.rules import Kind, Rules, Severity
from meters.detectors.series import HOUR, Interval, MeterSeries

# The evidence shows this much before the relay opened, for comparison.
CONTEXT = 6 * HOUR


def detect(
    series: MeterSeries,
    intervals: Sequence[Interval],
    stretches: Sequence[tuple[float, float]],
    rules: Rules,
    *,
    unit: str = "kWh",
) -> Outcome:
    """One finding per open stretch in which more than the tolerance was counted. Only
    intervals wholly inside the stretch count, so a reading taken just before the cut-off or
    just after the restore never makes consumption appear."""
    outcome = Outcome()
    if not rules.bypass or not series.has_relay:
        return outcome
    starts = [interval.start for interval in intervals]
    for since, until in stretches:
        first = bisect_left(starts, since)
        inside = []
        for interval in intervals[first:]:
            if interval.end > until:
                break
            inside.append(interval)
        counted = [i for i in inside if i.quantity is not None]
        total = round(sum(i.quantity for i in counted), 6)
        if total <= rules.bypass_tolerance:
            continue
        shown = [
            i
            for i in intervals[bisect_left(starts, since - CONTEXT) :]
            if i.end <= until and i.quantity is not None
        ]
        outcome.findings.append(
            Finding(
                kind=Kind.BYPASS,
                subject=series.meter,
                key=f"{Kind.BYPASS}:{series.meter}:{int(since)}",
                start=since,
                end=counted[-1].end,
                severity=Severity.CRITICAL,
                rule={
                    "name": Kind.BYPASS,
                    "open_since": int(since),
                    "open_until": int(until),
                    "quantity": round(total, 3),
                    "tolerance": rules.bypass_tolerance,
                    "readings": len(counted),
                    "unit": unit,
                },
                series=chart(
                    [i.end for i in shown],
                    {"consumption": [i.quantity for i in shown]},
                    unit=unit,
                    band=(since, until),
                ),
                ongoing=until >= intervals[-1].end,
            )
        )
    return outcome
