"""Tamper and reverse signals the meter gives itself: its alarm flags (cover open, reverse
connection), power flowing backwards, and export energy on a meter that should not export.

A flag raises one finding per episode: from the first reading that carries it to the first
that does not. Reverse power needs several readings in a row, so one glitch does not count.
Meters allowed to export (solar) are not judged on power or export, only on their flags.
"""

from collections.abc import Sequence
from itertools import pairwise

from meters.detectors.findings import Finding, Outcome, chart
from meters.detectors.rules import Kind, Rules, Severity
from meters.detectors.series import HOUR, MeterSeries, Sample

# Flags as devices name them, normalised (lower case, words joined by "_").
TAMPER_FLAGS = frozenset(
    {
        "tamper",
        "cover_open",
        "terminal_cover_open",
        "case_open",
        "cover",
        "magnetic",
        "magnet",
        "magnetic_field",
    }
)
REVERSE_FLAGS = frozenset(
    {"reverse", "reversed", "reverse_connection", "reverse_current", "reverse_power"}
)
CONTEXT = 6 * HOUR


def flag_kind(flag: str) -> str | None:
    """The finding kind a meter's flag stands for; None for flags that are no tamper or
    reverse signal (low battery, over-voltage...)."""
    name = "_".join(flag.strip().lower().replace("-", " ").split())
    if name in TAMPER_FLAGS:
        return Kind.TAMPER
    if name in REVERSE_FLAGS:
        return Kind.REVERSE
    return None


def detect(series: MeterSeries, rules: Rules) -> Outcome:
    outcome = Outcome()
    if not rules.tamper:
        return outcome
    samples = [s for s in series.samples if not s.estimated]
    if not samples:
        return outcome
    for kind in (Kind.TAMPER, Kind.REVERSE):
        outcome.findings += _flag_episodes(series, samples, kind)
    if not series.exports:
        outcome.findings += _reverse_power(series, samples, rules)
        export = _export(series, samples, rules)
        if export is not None:
            outcome.findings.append(export)
    return outcome


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """(first, last) indexes of each run of True."""
    runs, first = [], None
    for index, flagged in enumerate(flags):
        if flagged and first is None:
            first = index
        elif not flagged and first is not None:
            runs.append((first, index - 1))
            first = None
    if first is not None:
        runs.append((first, len(flags) - 1))
    return runs


def _window(samples: Sequence[Sample], low: float, high: float) -> list[Sample]:
    return [s for s in samples if low - CONTEXT <= s.at <= high + CONTEXT]


def _flag_episodes(series: MeterSeries, samples: Sequence[Sample], kind: str) -> list[Finding]:
    marked = [any(flag_kind(flag) == kind for flag in s.flags) for s in samples]
    findings = []
    for first, last in _runs(marked):
        start, end = samples[first].at, samples[last].at
        flags = sorted(
            {flag for s in samples[first : last + 1] for flag in s.flags if flag_kind(flag) == kind}
        )
        shown = _window(samples, start, end)
        findings.append(
            Finding(
                kind=kind,
                subject=series.meter,
                key=f"{kind}:{series.meter}:flag:{int(start)}",
                start=start,
                end=end,
                severity=Severity.CRITICAL,
                rule={"name": f"{kind}_flag", "flags": flags, "readings": last - first + 1},
                series=chart(
                    [s.at for s in shown],
                    {
                        "flagged": [
                            1.0 if any(flag in flags for flag in s.flags) else 0.0 for s in shown
                        ]
                    },
                    unit="",
                    style="steps",
                    band=(start, end),
                ),
                ongoing=last == len(samples) - 1,
            )
        )
    return findings


def _reverse_power(series: MeterSeries, samples: Sequence[Sample], rules: Rules) -> list[Finding]:
    powered = [s for s in samples if s.power_w is not None]
    below = [s.power_w < -rules.reverse_power_w for s in powered]
    findings = []
    for first, last in _runs(below):
        if last - first + 1 < rules.reverse_samples:
            continue
        start, end = powered[first].at, powered[last].at
        lowest = min(s.power_w for s in powered[first : last + 1])
        shown = [s for s in powered if start - CONTEXT <= s.at <= end + CONTEXT]
        findings.append(
            Finding(
                kind=Kind.REVERSE,
                subject=series.meter,
                key=f"{Kind.REVERSE}:{series.meter}:power:{int(start)}",
                start=start,
                end=end,
                severity=Severity.CRITICAL,
                rule={
                    "name": "reverse_power",
                    "lowest_w": round(lowest, 1),
                    "limit_w": -rules.reverse_power_w,
                    "readings": last - first + 1,
                },
                series=chart(
                    [s.at for s in shown],
                    {
                        "power": [s.power_w for s in shown],
                        "limit": [-rules.reverse_power_w] * len(shown),
                    },
                    unit="W",
                    style="line",
                    band=(start, end),
                    places=1,
                ),
                ongoing=last == len(powered) - 1,
            )
        )
    return findings


def _export(series: MeterSeries, samples: Sequence[Sample], rules: Rules) -> Finding | None:
    """Energy counted on the export register. A register that goes backwards restarts the
    count (a reset, not export); the first increase dates the finding."""
    exported = [s for s in samples if s.export is not None]
    total, first_rise, rising, points = 0.0, None, False, []
    for previous, sample in pairwise(exported):
        delta = sample.export - previous.export
        rising = delta > 0
        if rising:
            total += delta
            if first_rise is None:
                first_rise = previous.at
        points.append((sample.at, round(total, 6)))
    if first_rise is None or total <= rules.export_tolerance:
        return None
    return Finding(
        kind=Kind.REVERSE,
        subject=series.meter,
        key=f"{Kind.REVERSE}:{series.meter}:export:{int(first_rise)}",
        start=first_rise,
        end=exported[-1].at,
        severity=Severity.WARNING,
        rule={
            "name": "export",
            "quantity": round(total, 3),
            "tolerance": rules.export_tolerance,
            "unit": "kWh",
        },
        series=chart(
            [at for at, _ in points],
            {"exported": [value for _, value in points]},
            unit="kWh",
            style="line",
        ),
        ongoing=rising,
    )
