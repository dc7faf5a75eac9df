"""Losses: a feeder meter (a property's main meter, or a group's feeder) against the sum of
the meters it feeds, over each local day.

A day is judged only when every meter involved covered the whole day (`series.bounds`). A gap
inside the day changes nothing; one across a midnight leaves the day's consumption between two
bounds, and the day's loss with a margin. Some loss is normal (cables, the feeder's own
accuracy); a loss above `Rules.loss_percent` of what the feeder measured, even at the end of
its margin most in the meters' favour, on a feeder day of at least `Rules.loss_minimum`, raises
an alarm, whose evidence is the loss trend over the days before. A day is healthy when even the
other end of its margin is under the threshold.
"""

from collections.abc import Iterable, Sequence
from datetime import date
from typing import NamedTuple

from meters.detectors.findings import Finding, Outcome, chart
from meters.detectors.rules import Kind, Rules, Severity

# Days of trend shown with a loss alarm.
TREND_DAYS = 14


class LossDay(NamedTuple):
    day: date
    # The day's local midnight (POSIX seconds), for charts.
    start: float
    # The middle of what the feeder, and the meters it feeds together, can have counted...
    feeder: float
    fed: float
    # ...and how far the loss can be from feeder - fed either way (gaps across a midnight).
    margin: float = 0.0

    @property
    def loss(self) -> float:
        return self.feeder - self.fed

    def _percent(self, loss: float) -> float | None:
        return loss / self.feeder * 100 if self.feeder > 0 else None

    @property
    def percent(self) -> float | None:
        return self._percent(self.loss)

    @property
    def least_percent(self) -> float | None:
        return self._percent(self.loss - self.margin)

    @property
    def most_percent(self) -> float | None:
        return self._percent(self.loss + self.margin)


Bounds = tuple[float, float] | None


def loss_day(
    day: date, start: float, feeder: Iterable[Bounds], fed: Iterable[Bounds]
) -> LossDay | None:
    """The day's loss from each meter's bounds (`series.bounds`), or None when any meter's
    consumption that day is unknown."""
    feeder, fed = list(feeder), list(fed)
    if not feeder or None in feeder or None in fed:
        return None
    feeder_low, feeder_high = sum(b[0] for b in feeder), sum(b[1] for b in feeder)
    fed_low, fed_high = sum(b[0] for b in fed), sum(b[1] for b in fed)
    return LossDay(
        day,
        start,
        round((feeder_low + feeder_high) / 2, 6),
        round((fed_low + fed_high) / 2, 6),
        round((feeder_high - feeder_low + fed_high - fed_low) / 2, 6),
    )


def detect(
    subject: int,
    feeder: int,
    days: Sequence[LossDay],
    *,
    judged: Iterable[date],
    rules: Rules,
    unit: str = "kWh",
) -> Outcome:
    """`days` is the feeder's known days in order (the trend); `judged` the days this run
    decides on. `feeder` names the feeder (its unit) in the findings' keys."""
    outcome = Outcome()
    if not rules.loss:
        return outcome
    judged = set(judged)
    by_day = {entry.day: index for index, entry in enumerate(days)}
    latest = None
    for day in sorted(judged):
        if day not in by_day:
            continue
        entry = days[by_day[day]]
        latest = entry
        least = entry.least_percent
        if entry.feeder < rules.loss_minimum or least is None or least <= rules.loss_percent:
            continue
        percent = entry.percent
        trend = days[max(0, by_day[day] - TREND_DAYS + 1) : by_day[day] + 1]
        outcome.findings.append(
            Finding(
                kind=Kind.LOSS,
                subject=subject,
                key=f"{Kind.LOSS}:{feeder}:{day.isoformat()}",
                start=entry.start,
                end=entry.start + 86400,
                severity=Severity.CRITICAL if least >= 2 * rules.loss_percent else Severity.WARNING,
                rule={
                    "name": Kind.LOSS,
                    "day": day.isoformat(),
                    "feeder": round(entry.feeder, 3),
                    "fed": round(entry.fed, 3),
                    "loss": round(entry.loss, 3),
                    "margin": round(entry.margin, 3),
                    "percent": round(percent, 1),
                    "limit_percent": rules.loss_percent,
                    "unit": unit,
                },
                series=chart(
                    [d.start for d in trend],
                    {
                        "loss_percent": [d.percent for d in trend],
                        "limit": [rules.loss_percent] * len(trend),
                    },
                    unit="%",
                    places=2,
                ),
                ongoing=True,
            )
        )
    if (
        latest is not None
        and latest.percent is not None
        and (latest.percent <= rules.loss_percent or latest.feeder < rules.loss_minimum)
    ):
        outcome.healthy.add((subject, Kind.LOSS))
    return outcome
