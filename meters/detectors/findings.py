"""What a detector reports: a finding, with the rule that fired and the series it saw."""

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Finding:
    """One anomaly. `subject` is the meter the alarm goes on (for losses, the feeder).

    `key` names the anomaly itself, not the run that saw it: detection over the same data
    finds the same keys, which is how re-running it raises nothing new.
    """

    kind: str
    subject: int
    key: str
    start: float
    end: float
    severity: str
    # The rule that fired, with its parameters and the figures it compared (JSON-ready).
    rule: dict
    # The evidence as a chart: see `chart`.
    series: dict
    # Still going on at the end of the data.
    ongoing: bool = False


@dataclass
class Outcome:
    """A detector's findings, and the (subject, kind) pairs it saw healthy at the end of the
    data: the subject's open alarm of that kind can be cleared."""

    findings: list[Finding] = field(default_factory=list)
    healthy: set[tuple[int, str]] = field(default_factory=set)

    def add(self, other: "Outcome") -> None:
        self.findings += other.findings
        self.healthy |= other.healthy


def _rounded(value: float | None, places: int) -> float | None:
    return None if value is None else round(value, places)


def chart(
    x: Sequence[float],
    lines: dict[str, Sequence[float | None]],
    *,
    unit: str,
    style: str = "bars",
    band: tuple[float, float] | None = None,
    places: int = 4,
) -> dict:
    """Evidence as a chart: times (POSIX seconds), named series (the first is the measured
    one, the others limits or baselines drawn as lines), their unit, bars or a line, and an
    optional shaded stretch (e.g. while the relay was open)."""
    return {
        "x": [int(moment) for moment in x],
        "series": [
            {"key": key, "values": [_rounded(value, places) for value in values]}
            for key, values in lines.items()
        ],
        "unit": unit,
        "style": style,
        "band": [int(band[0]), int(band[1])] if band else None,
    }
