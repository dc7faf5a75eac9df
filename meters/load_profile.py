"""A household's electricity use through the day: the demo's and the simulator's meters.

Deterministic for a given seed, so restarting never makes a register run backwards and tests
can predict what a meter reports. No ORM: the simulator uses it too.
"""

import math
import random
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

SLOT = timedelta(minutes=15)
RESOLUTION = Decimal("0.001")  # kWh shown by a typical register


def power_kw(seed: int, moment: datetime, zone: ZoneInfo) -> float:
    """Average power over the 15-minute slot holding `moment`: a base load, a morning and a
    bigger evening peak, and per-household, per-slot noise."""
    local = moment.astimezone(zone)
    hour = local.hour + local.minute / 60
    household = random.Random(seed)  # noqa: S311 - simulation, not security
    base = 0.12 + household.random() * 0.25
    evening = 1.2 * household.uniform(0.5, 1.5) * math.exp(-((hour - 20) ** 2) / 4)
    morning = 0.5 * household.uniform(0.5, 1.5) * math.exp(-((hour - 7.5) ** 2) / 1.5)
    slot = int(moment.timestamp() // SLOT.total_seconds())
    noise = random.Random(seed * 1_000_003 + slot).uniform(0.8, 1.2)  # noqa: S311
    return (base + evening + morning) * noise


def slot_energy(seed: int, slot_start: datetime, zone: ZoneInfo) -> Decimal:
    kwh = power_kw(seed, slot_start, zone) * SLOT.total_seconds() / 3600
    return Decimal(str(kwh)).quantize(RESOLUTION)


def register_series(
    seed: int, start: datetime, end: datetime, zone: ZoneInfo, opening: Decimal
) -> list[tuple[datetime, Decimal]]:
    """Register readings every 15 minutes from `start` (on a slot boundary) to `end`."""
    readings = [(start, opening)]
    register = opening
    moment = start
    while moment + SLOT <= end:
        register += slot_energy(seed, moment, zone)
        moment += SLOT
        readings.append((moment, register))
    return readings
