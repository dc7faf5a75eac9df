"""Spikes: an hour's consumption far above what this account usually uses at that hour of
the week.

The baseline of an hour is the median of the same local hour in each of the previous weeks
(`Rules.spike_weeks`), counting only weeks the account occupied the unit and whose hour is
known; with fewer than `Rules.spike_min_weeks` of them there is not enough history and the hour
is not judged. An hour is a spike above k times the baseline and above the minimum. Unknown
hours (gaps, replaced meters, estimated readings) are never judged and never in a baseline, nor
are hours the relay was open in (no consumption then says nothing of the household's usual).
Consecutive spike hours are one finding.
"""

from collections.abc import Mapping, Sequence
from statistics import median

from meters.detectors.findings import Finding, Outcome, chart
from meters.detectors.rules import Kind, Rules, Severity
from meters.detectors.series import HOUR, overlapping

# The evidence shows the day before the spike and a few hours after it.
BEFORE, AFTER = 24 * HOUR, 6 * HOUR


def detect(
    subject: int,
    hours: Mapping[float, float | None],
    *,
    history: Mapping[float, float | None],
    weeks_before: Mapping[float, Sequence[float]],
    occupied_since: float | None,
    rules: Rules,
    stretches: Sequence[tuple[float, float]] = (),
    unit: str = "kWh",
) -> Outcome:
    """`hours` are the hours to judge (start → consumption, None when unknown); `history`
    holds the hours the baselines come from (it may be `hours` itself) and `weeks_before`
    maps each judged hour to the same hour in the previous weeks; `stretches` are the relay's
    confirmed-open stretches."""
    outcome = Outcome()
    if not rules.spike or occupied_since is None:
        return outcome

    def cut_off(hour: float) -> bool:
        return bool(stretches) and bool(overlapping(stretches, hour, hour + HOUR))

    judged: list[tuple[float, float, float, int]] = []
    typical_of: dict[float, float] = {}
    for hour in sorted(hours):
        value = hours[hour]
        if value is None or hour < occupied_since or cut_off(hour):
            continue
        baseline = [
            history[earlier]
            for earlier in weeks_before.get(hour, ())[: rules.spike_weeks]
            if earlier >= occupied_since
            and history.get(earlier) is not None
            and not cut_off(earlier)
        ]
        if len(baseline) < rules.spike_min_weeks:
            continue
        typical = typical_of[hour] = median(baseline)
        threshold = max(rules.spike_k * typical, rules.spike_minimum)
        if value > threshold:
            judged.append((hour, value, typical, len(baseline)))
    for episode in _episodes(judged):
        outcome.findings.append(_finding(subject, episode, hours, typical_of, rules, unit))
    return outcome


def _episodes(judged):
    episodes, current = [], []
    for entry in judged:
        if current and entry[0] - current[-1][0] > HOUR:
            episodes.append(current)
            current = []
        current.append(entry)
    if current:
        episodes.append(current)
    return episodes


def _finding(subject, episode, hours, typical_of, rules: Rules, unit: str) -> Finding:
    start, end = episode[0][0], episode[-1][0] + HOUR
    peak_hour, peak, typical, weeks = max(episode, key=lambda entry: entry[1])
    shown = [hour for hour in sorted(hours) if start - BEFORE <= hour < end + AFTER]
    return Finding(
        kind=Kind.SPIKE,
        subject=subject,
        key=f"{Kind.SPIKE}:{subject}:{int(start)}",
        start=start,
        end=end,
        severity=Severity.WARNING,
        rule={
            "name": Kind.SPIKE,
            "hour": int(peak_hour),
            "quantity": round(peak, 3),
            "median": round(typical, 3),
            "k": rules.spike_k,
            "threshold": round(max(rules.spike_k * typical, rules.spike_minimum), 3),
            "minimum": rules.spike_minimum,
            "weeks": weeks,
            "hours": len(episode),
            "unit": unit,
        },
        series=chart(
            shown,
            {
                "consumption": [hours[hour] for hour in shown],
                "threshold": [
                    max(rules.spike_k * typical_of[hour], rules.spike_minimum)
                    if hour in typical_of
                    else None
                    for hour in shown
                ],
            },
            unit=unit,
            band=(start, end),
        ),
        ongoing=False,
    )
