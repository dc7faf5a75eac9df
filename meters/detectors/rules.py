"""What the detectors are told: one property's tunable rules, with their defaults."""

from dataclasses import dataclass
from decimal import Decimal


class Kind:
    """Finding kinds; each is also the value of the alarm kind it raises."""

    BYPASS = "bypass"
    TAMPER = "tamper"
    REVERSE = "reverse"
    SPIKE = "spike"
    FLATLINE = "flatline"
    OVERLOAD = "overload"
    LOSS = "loss"


class Severity:
    WARNING = "warning"
    CRITICAL = "critical"


class LimitSource:
    """Where the overload detector takes a meter's power limit from."""

    METER = "meter"
    PROPERTY = "property"
    METER_OR_PROPERTY = "meter_or_property"


# The defaults, shared by the pure rules below and the per-property settings model.
MAX_GAP_MINUTES = 120
BYPASS_TOLERANCE = Decimal("0.100")
REVERSE_POWER_W = 20
REVERSE_SAMPLES = 2
EXPORT_TOLERANCE = Decimal("0.010")
SPIKE_K = Decimal("4.00")
SPIKE_MINIMUM = Decimal("0.500")
SPIKE_WEEKS = 4
SPIKE_MIN_WEEKS = 3
FLATLINE_DAYS = 3
OVERLOAD_MINUTES = 15
LOSS_PERCENT = Decimal("10.00")
LOSS_MINIMUM = Decimal("5.000")
# Consumption below this (kWh or m³) between two readings is no consumption: register noise.
ZERO = 0.0005


@dataclass(frozen=True)
class Rules:
    """One property's detector rules. Every detector can be switched off."""

    # Readings further apart than this: the consumption between them is known in total but
    # not when it happened, so no hour it touches is judged.
    max_gap_minutes: int = MAX_GAP_MINUTES
    bypass: bool = True
    # Consumption (kWh or m³) a meter may still count while its relay is confirmed open.
    bypass_tolerance: float = float(BYPASS_TOLERANCE)
    tamper: bool = True
    # Power below minus this many watts, on this many readings in a row, is reverse flow.
    reverse_power_w: float = REVERSE_POWER_W
    reverse_samples: int = REVERSE_SAMPLES
    # Export energy a meter that should not export may still count (kWh).
    export_tolerance: float = float(EXPORT_TOLERANCE)
    spike: bool = True
    # An hour above k times the account's median for that hour of the week is a spike...
    spike_k: float = float(SPIKE_K)
    # ...and above this much consumption at all (kWh or m³).
    spike_minimum: float = float(SPIKE_MINIMUM)
    # The median is taken over this many previous weeks and needs at least this many of them.
    spike_weeks: int = SPIKE_WEEKS
    spike_min_weeks: int = SPIKE_MIN_WEEKS
    flatline: bool = True
    flatline_days: int = FLATLINE_DAYS
    overload: bool = True
    overload_minutes: int = OVERLOAD_MINUTES
    # The property's limit in watts (see LimitSource), None when it sets none.
    overload_limit_w: float | None = None
    overload_limit_source: str = LimitSource.METER_OR_PROPERTY
    loss: bool = True
    loss_percent: float = float(LOSS_PERCENT)
    # A feeder day below this (kWh or m³) is too small for a percentage to mean anything.
    loss_minimum: float = float(LOSS_MINIMUM)

    @property
    def max_gap(self) -> float:
        return self.max_gap_minutes * 60.0

    def power_limit(self, meter_limit_w: float | None) -> float | None:
        """The overload limit of a meter with this contracted limit (None: not watched)."""
        if self.overload_limit_source == LimitSource.METER:
            return meter_limit_w
        if self.overload_limit_source == LimitSource.PROPERTY:
            return self.overload_limit_w
        return meter_limit_w if meter_limit_w is not None else self.overload_limit_w
