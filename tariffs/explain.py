"""The tariff in force at a moment, as a tenant wants to hear it: what one unit costs now, which
period and band that is, and when and to what the price changes next.

Pure, like `tariffs.pricing`: the answer comes from pricing a sliver of consumption through the
same engine that charges, so what the portal says is what the ledger will post.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from tariffs.pricing import (
    ChargeLine,
    Schedule,
    TariffKind,
    TariffVersion,
    local_midnight,
    local_month_start,
    price_interval,
)

# Small enough never to reach the next band unless already at its limit.
_SLIVER = Decimal("0.000001")
_SPAN = timedelta(seconds=1)
# How far ahead a change of price is looked for.
HORIZON = timedelta(days=2)


@dataclass(frozen=True)
class TariffNow:
    kind: TariffKind
    # The time-of-use period and day type now, or None for tariffs without periods.
    period: str | None
    day_type: str | None
    # 1-based, for people; None without bands.
    band: int | None
    band_count: int
    # Consumption left in the current band this month (None in the last band or without bands).
    band_remaining: Decimal | None
    # What one unit costs now, tax included, and the tax rate that is part of it.
    price: Decimal
    tax_rate: Decimal
    standing_charge_per_day: Decimal
    # The next change of price within HORIZON, if any.
    changes_at: datetime | None
    next_period: str | None
    next_price: Decimal | None


def _version_at(schedule: Schedule, moment: datetime) -> TariffVersion | None:
    current = None
    for version in schedule.versions:
        if version.effective_from <= moment:
            current = version
    return current


def _with_tax(version: TariffVersion, amount: Decimal) -> Decimal:
    return amount if version.prices_include_tax else amount * (1 + version.tax_rate)


def _line_at(schedule: Schedule, moment: datetime, month_to_date: Decimal) -> ChargeLine:
    charge = price_interval(
        schedule, start=moment, end=moment + _SPAN, quantity=_SLIVER, month_to_date=month_to_date
    )
    return charge.lines[0]


def _candidate_changes(schedule: Schedule, moment: datetime) -> list[datetime]:
    """Every instant within the horizon at which the price could change: local period starts
    and ends, local midnights (the day type), version starts and the next month start."""
    zone = schedule.tz
    first_day = moment.astimezone(zone).date()
    days = [first_day + timedelta(days=offset) for offset in range(HORIZON.days + 2)]
    moments: set[datetime] = {version.effective_from for version in schedule.versions}
    for day in days:
        midnight = local_midnight(day, zone)
        moments.add(midnight)
        version = _version_at(schedule, midnight) or schedule.versions[0]
        for period in version.periods_for(schedule.day_type(day)):
            for clock in (period.start, period.end):
                moments.add(_local(day, clock, midnight))
    next_month = local_month_start(moment, zone) + timedelta(days=32)
    moments.add(local_month_start(next_month, zone))
    end = moment + HORIZON
    return sorted(instant for instant in moments if moment < instant <= end)


def _local(day: date, clock: time, midnight: datetime) -> datetime:
    # Offsets from midnight, as the engine measures periods, so DST days come out as it prices.
    return midnight + timedelta(hours=clock.hour, minutes=clock.minute, seconds=clock.second)


def tariff_now(schedule: Schedule, *, moment: datetime, month_to_date: Decimal) -> TariffNow:
    """The tariff at `moment` for an account that has used `month_to_date` this local month."""
    version = _version_at(schedule, moment) or schedule.versions[0]
    line = _line_at(schedule, moment, month_to_date)
    price = _with_tax(version, line.unit_price)
    band_remaining = None
    if line.band is not None:
        limit = version.bands[line.band].limit
        band_remaining = None if limit is None else max(limit - month_to_date, Decimal(0))
    changes_at = next_period = next_price = None
    for instant in _candidate_changes(schedule, moment):
        later_version = _version_at(schedule, instant) or version
        # A new month starts the bands again.
        restarted = local_month_start(instant, schedule.tz) > local_month_start(moment, schedule.tz)
        later = _line_at(schedule, instant, Decimal(0) if restarted else month_to_date)
        later_price = _with_tax(later_version, later.unit_price)
        if (later.period, later_price) != (line.period, price):
            changes_at, next_period, next_price = instant, later.period, later_price
            break
    return TariffNow(
        kind=version.kind,
        period=line.period,
        day_type=str(line.day_type) if line.day_type is not None else None,
        band=None if line.band is None else line.band + 1,
        band_count=len(version.bands),
        band_remaining=band_remaining,
        price=price,
        tax_rate=version.tax_rate,
        standing_charge_per_day=_with_tax(version, version.standing_charge_per_day),
        changes_at=changes_at,
        next_period=next_period,
        next_price=next_price,
    )
