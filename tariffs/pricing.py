"""Tariff pricing engine: turns metered consumption into exact, explainable charge lines.

Pure Python (no ORM, no I/O), so it can be reasoned about and property-tested on its own.

Splitting. A reading interval ``[start, end)`` with consumption ``E`` is cut into stretches over
which every pricing attribute is constant: the tariff version, the property's local month (tier
counters reset there) and, for time-of-use kinds, the local day type and ToU period. ``E`` is
apportioned to the stretches in proportion to their real elapsed time (UTC seconds). Within a
stretch, energy that carries the month's cumulative consumption across a band limit is split at
the limit; each band's line is dated by when the crossing happens under the same time-proportional
assumption (floored to the microsecond; amounts are unaffected), so lines tile time. Adjacent
stretches with identical attributes form one line, e.g. a valley period running from 22:00 on one
weekday into 06:00 of the next weekday; a change of day type at midnight always starts a new line.

Local time. Period boundaries, midnights and month starts are local wall-clock times in the
schedule's zone. Each resolves to the first instant at which the local clock shows that time or
later: a boundary inside a spring-forward gap falls on the transition itself, and one inside a
repeated fall-back hour falls on its first occurrence (the repeated hour stays in the period that
was running). Local days therefore follow one another without gaps or overlaps, lasting as many
real hours as the clock gives them (23 or 25 on the usual DST days). Weekend means local
Saturday or Sunday; holidays come from the schedule's ``is_holiday`` and take precedence.

Exactness and rounding. All arithmetic uses ``fractions.Fraction``, so splitting an interval
anywhere, or reading the meter more often at a uniform rate, gives identical totals. Every Decimal
this module returns is the exact value of its Fraction when that has a terminating decimal
expansion, otherwise the value quantized to 12 decimal places with ROUND_HALF_EVEN. Interval totals
are converted from the exact sums, not added up from converted lines, so a sum of lines can differ
from a total by half a unit in the 12th decimal place per line. This engine never rounds to the
currency's minor unit: the ledger does that, carrying the remainders.

Inputs. Datetimes must be timezone-aware (any zone); returned datetimes are UTC. Prices,
quantities and limits must be Decimal or int: floats raise TypeError.
"""

from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from itertools import pairwise
from typing import cast
from zoneinfo import ZoneInfo

_DAY = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)
_DECIMAL_PLACES = 12
STANDING = "standing"


class TariffError(ValueError):
    """A tariff or a pricing request that cannot be priced as given."""


class DayType(StrEnum):
    WEEKDAY = "weekday"
    WEEKEND = "weekend"
    HOLIDAY = "holiday"


class TariffKind(StrEnum):
    FLAT = "flat"
    TIERED = "tiered"
    TOU = "tou"
    TOU_TIERED = "tou_tiered"


_KINDS_WITH_BANDS = frozenset({TariffKind.TIERED, TariffKind.TOU_TIERED})
_KINDS_WITH_PERIODS = frozenset({TariffKind.TOU, TariffKind.TOU_TIERED})


def _decimal(value: object, what: str) -> Decimal:
    # bool is an int subclass, but True as a price is always a bug.
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{what} must be a Decimal or int, not {type(value).__name__}.")
    result = Decimal(value)
    if not result.is_finite():
        raise TariffError(f"{what} must be a finite number, not {value}.")
    return result


def _utc(moment: object, what: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(moment).__name__}.")
    if moment.utcoffset() is None:
        raise TariffError(f"{what} must be timezone-aware, got naive {moment.isoformat()}.")
    return moment.astimezone(UTC)


def _to_decimal(value: Fraction) -> Decimal:
    denominator, twos, fives = value.denominator, 0, 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator == 1:
        places = max(twos, fives)
        coefficient = value.numerator * 10**places // value.denominator
    else:
        places = _DECIMAL_PLACES
        coefficient = round(value * 10**places)  # Fraction rounds half to even.
    # Built from a string so the context precision cannot round it.
    return Decimal(f"{coefficient}e-{places}")


def _plain(value: Decimal) -> str:
    return format(value, "f")


def _micros(span: timedelta) -> int:
    return span // _MICROSECOND


@dataclass(frozen=True)
class Band:
    """A block of monthly cumulative consumption.

    ``limit`` is the band's upper bound of monthly cumulative consumption (None: open-ended, last
    band only). ``price`` is the unit price for tiered tariffs and the surcharge added to the
    period price for tou_tiered tariffs.
    """

    limit: Decimal | None
    price: Decimal

    def __post_init__(self) -> None:
        if self.limit is not None:
            object.__setattr__(self, "limit", _decimal(self.limit, "Band limit"))
        object.__setattr__(self, "price", _decimal(self.price, "Band price"))


@dataclass(frozen=True)
class Period:
    """A named time-of-use period: local times, ``end`` exclusive, may wrap past midnight.

    ``end == start`` means the whole day.
    """

    name: str
    start: time
    end: time
    price: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"Period name must be a str, not {type(self.name).__name__}.")
        for what in ("start", "end"):
            if not isinstance(getattr(self, what), time):
                raise TypeError(f"Period {what} must be a datetime.time.")
        object.__setattr__(self, "price", _decimal(self.price, f"Price of period {self.name!r}"))

    def _spans(self) -> tuple[tuple[timedelta, timedelta], ...]:
        """The period as offsets from local midnight, split at midnight when it wraps."""
        start, end = _offset(self.start), _offset(self.end)
        if start < end:
            return ((start, end),)
        pieces = ((start, _DAY), (timedelta(0), end))
        return tuple((a, b) for a, b in pieces if a < b)


def _offset(moment: time) -> timedelta:
    return timedelta(
        hours=moment.hour,
        minutes=moment.minute,
        seconds=moment.second,
        microseconds=moment.microsecond,
    )


def _clock(offset: timedelta) -> str:
    minutes, seconds = divmod(int(offset.total_seconds()), 60)
    text = f"{minutes // 60:02d}:{minutes % 60:02d}"
    return f"{text}:{seconds:02d}" if seconds or offset.microseconds else text


PeriodTable = tuple[tuple[DayType, tuple[Period, ...]], ...]


def all_day_types(*periods: Period) -> dict[DayType, tuple[Period, ...]]:
    """The same ToU periods for weekdays, weekends and holidays."""
    return {day_type: periods for day_type in DayType}


@dataclass(frozen=True)
class TariffVersion:
    """One version of a tariff, in force from ``effective_from`` until the next version.

    ``periods`` may be given as a mapping of day type to periods; it is stored as a tuple of
    ``(DayType, periods)`` pairs so versions stay hashable. Read it with ``periods_for``.
    """

    effective_from: datetime
    kind: TariffKind
    flat_price: Decimal | None = None
    bands: tuple[Band, ...] = ()
    periods: PeriodTable | Mapping[DayType, Sequence[Period]] = ()
    standing_charge_per_day: Decimal = Decimal(0)
    tax_rate: Decimal = Decimal(0)
    prices_include_tax: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.effective_from, datetime):
            raise TypeError("effective_from must be a datetime.")
        try:
            object.__setattr__(self, "kind", TariffKind(self.kind))
        except ValueError:
            raise TariffError(f"Unknown tariff kind {self.kind!r}.") from None
        if self.flat_price is not None:
            object.__setattr__(self, "flat_price", _decimal(self.flat_price, "flat_price"))
        object.__setattr__(
            self,
            "standing_charge_per_day",
            _decimal(self.standing_charge_per_day, "Standing charge"),
        )
        object.__setattr__(self, "tax_rate", _decimal(self.tax_rate, "tax_rate"))
        if not isinstance(self.prices_include_tax, bool):
            raise TypeError("prices_include_tax must be a bool.")
        bands = tuple(self.bands)
        if not all(isinstance(band, Band) for band in bands):
            raise TypeError("bands must contain Band instances.")
        object.__setattr__(self, "bands", bands)
        pairs = self.periods.items() if isinstance(self.periods, Mapping) else self.periods
        table: dict[DayType, tuple[Period, ...]] = {}
        for key, periods in pairs:
            try:
                day_type = DayType(key)
            except ValueError:
                raise TariffError(f"Unknown day type {key!r}.") from None
            if day_type in table:
                raise TariffError(f"Periods for {day_type} are given twice.")
            table[day_type] = tuple(periods)
            if not all(isinstance(period, Period) for period in table[day_type]):
                raise TypeError(f"Periods for {day_type} must be Period instances.")
        ordered = tuple((day_type, table[day_type]) for day_type in DayType if day_type in table)
        object.__setattr__(self, "periods", ordered)

    def periods_for(self, day_type: DayType) -> tuple[Period, ...]:
        return dict(cast(PeriodTable, self.periods)).get(day_type, ())

    def validate(self) -> None:
        """Raise TariffError listing every problem that would make this version unpriceable."""
        problems: list[str] = []
        if self.effective_from.utcoffset() is None:
            problems.append("effective_from must be timezone-aware")
        for what, amount in (
            ("flat_price", self.flat_price),
            ("standing charge", self.standing_charge_per_day),
            ("tax rate", self.tax_rate),
        ):
            if amount is not None and amount < 0:
                problems.append(f"{what} {amount} is negative")
        if self.kind is TariffKind.FLAT and self.flat_price is None:
            problems.append("a flat tariff needs a flat_price")
        if self.kind is not TariffKind.FLAT and self.flat_price is not None:
            problems.append(f"a {self.kind} tariff takes no flat_price")
        if self.kind in _KINDS_WITH_BANDS:
            problems.extend(self._band_problems())
        elif self.bands:
            problems.append(f"a {self.kind} tariff takes no bands")
        if self.kind in _KINDS_WITH_PERIODS:
            problems.extend(self._period_problems())
        elif self.periods:
            problems.append(f"a {self.kind} tariff takes no ToU periods")
        if problems:
            raise TariffError(
                f"Tariff version effective {self.effective_from.isoformat()} is invalid: "
                + "; ".join(problems)
                + "."
            )

    def _band_problems(self) -> Iterator[str]:
        if not self.bands:
            yield f"a {self.kind} tariff needs at least one band"
            return
        previous = Decimal(0)
        for number, band in enumerate(self.bands, start=1):
            if band.price < 0:
                yield f"band {number} price {band.price} is negative"
            last = number == len(self.bands)
            if band.limit is None:
                if not last:
                    yield f"band {number} is open-ended but is not the last band"
                continue
            if last:
                yield f"the last band must be open-ended (limit None), not {band.limit}"
            if band.limit <= previous:
                yield (
                    f"band limits must be positive and strictly increasing: band {number} limit "
                    f"{band.limit} follows {previous}"
                )
            previous = band.limit

    def _period_problems(self) -> Iterator[str]:
        table = dict(cast(PeriodTable, self.periods))
        missing = [str(day_type) for day_type in DayType if not table.get(day_type)]
        if missing:
            yield f"ToU periods missing for {', '.join(missing)}"
        for day_type, periods in table.items():
            for period in periods:
                if not period.name:
                    yield f"{day_type} has a period without a name"
                if period.name == STANDING:
                    yield f"the period name {STANDING!r} is reserved for standing charge lines"
                if period.price < 0:
                    yield f"{day_type} period {period.name!r} price {period.price} is negative"
                if period.start.tzinfo is not None or period.end.tzinfo is not None:
                    yield f"{day_type} period {period.name!r} times must be naive local times"
            yield from _coverage_problems(day_type, periods)


def _coverage_problems(day_type: DayType, periods: Sequence[Period]) -> Iterator[str]:
    """Report gaps and overlaps so that each moment of the day is in exactly one period."""
    spans = sorted((a, b, period.name) for period in periods for a, b in period._spans())
    covered_until, covered_by = timedelta(0), ""
    for start, end, name in spans:
        if start > covered_until:
            yield f"{day_type} periods leave {_clock(covered_until)}-{_clock(start)} uncovered"
        elif start < covered_until:
            yield (
                f"{day_type} periods {covered_by!r} and {name!r} overlap during "
                f"{_clock(start)}-{_clock(min(end, covered_until))}"
            )
        if end > covered_until:
            covered_until, covered_by = end, name
    if spans and covered_until < _DAY:
        yield f"{day_type} periods leave {_clock(covered_until)}-24:00 uncovered"


def _no_holidays(day: date) -> bool:
    return False


@dataclass(frozen=True)
class Schedule:
    """A tariff's versions, the property's time zone and its holiday calendar.

    Versions are sorted by ``effective_from`` and validated on construction. ``is_holiday`` may be
    a callable or any container of dates (a set, or a ``holidays`` calendar object).
    """

    versions: tuple[TariffVersion, ...]
    tz: ZoneInfo
    is_holiday: Callable[[date], bool] | Container[date] = _no_holidays

    def __post_init__(self) -> None:
        if not isinstance(self.tz, ZoneInfo):
            raise TypeError("tz must be a zoneinfo.ZoneInfo.")
        versions = tuple(self.versions)
        if not versions:
            raise TariffError("A schedule needs at least one tariff version.")
        if not all(isinstance(version, TariffVersion) for version in versions):
            raise TypeError("versions must contain TariffVersion instances.")
        for version in versions:
            version.validate()
        versions = tuple(sorted(versions, key=lambda version: version.effective_from))
        for earlier, later in pairwise(versions):
            if earlier.effective_from == later.effective_from:
                raise TariffError(
                    f"Two tariff versions take effect at {later.effective_from.isoformat()}."
                )
        object.__setattr__(self, "versions", versions)
        if not callable(self.is_holiday):
            if not isinstance(self.is_holiday, Container):
                raise TypeError("is_holiday must be a callable or a container of dates.")
            object.__setattr__(self, "is_holiday", self.is_holiday.__contains__)

    def day_type(self, day: date) -> DayType:
        if cast(Callable[[date], bool], self.is_holiday)(day):
            return DayType.HOLIDAY
        return DayType.WEEKEND if day.weekday() >= 5 else DayType.WEEKDAY


@dataclass(frozen=True)
class ChargeLine:
    """One priced piece of consumption, or one day's (part of a) standing charge."""

    start: datetime
    end: datetime
    version_effective_from: datetime
    period: str | None
    day_type: DayType | None
    band: int | None
    quantity: Decimal
    unit_price: Decimal
    net: Decimal
    tax: Decimal

    def explain(self, unit: str = "kWh") -> str:
        """E.g. "12.5 kWh peak (weekday), band 2, at 1.05: net 13.125 + tax 1.70625".

        Band numbers are 1-based here, for people; ``band`` itself is 0-based.
        """
        if self.period == STANDING:
            what = f"{_plain(self.quantity)} day standing charge"
        else:
            what = f"{_plain(self.quantity)} {unit}"
            if self.period is not None:
                what += f" {self.period}"
            if self.day_type is not None:
                what += f" ({self.day_type})"
            if self.band is not None:
                what += f", band {self.band + 1}"
        return (
            f"{what}, at {_plain(self.unit_price)}: net {_plain(self.net)} + tax {_plain(self.tax)}"
        )


@dataclass(frozen=True)
class IntervalCharge:
    """The lines of one or more intervals, with totals converted from the exact sums.

    ``month_to_date_after`` is the cumulative consumption of the local month containing the
    instant ``end`` (0 when ``end`` is exactly a local month start), ready to pass as the next
    interval's ``month_to_date``.
    """

    lines: tuple[ChargeLine, ...]
    net: Decimal
    tax: Decimal
    total: Decimal
    month_to_date_after: Decimal


# --- Local time ---------------------------------------------------------------------------------


def _wall(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def _reach(wall: datetime, tz: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the local clock shows ``wall`` or later."""
    earliest = wall.replace(tzinfo=tz).astimezone(UTC)  # fold=0: first of a repeated time
    if _wall(earliest, tz) == wall:
        return earliest
    # ``wall`` is skipped by a spring-forward gap: the clock jumps past it at the transition,
    # which lies between the two fold resolutions. Bisect for it to the microsecond.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    below, at_or_after = 0, _micros(earliest - low)
    while at_or_after - below > 1:
        middle = (below + at_or_after) // 2
        if _wall(low + middle * _MICROSECOND, tz) >= wall:
            at_or_after = middle
        else:
            below = middle
    return low + at_or_after * _MICROSECOND


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return _reach(datetime.combine(day, time()), tz)


def _local_date(moment: datetime, tz: ZoneInfo) -> date:
    """The local day containing ``moment``, consistent with ``_reach`` after a fall-back."""
    day = _wall(moment, tz).date()
    while local_midnight(day + _DAY, tz) <= moment:
        day += _DAY
    return day


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def local_month_start(moment: datetime, tz: ZoneInfo) -> datetime:
    """The start (UTC) of the local month containing ``moment``."""
    day = _local_date(_utc(moment, "moment"), tz)
    return local_midnight(day.replace(day=1), tz)


# --- Splitting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stretch:
    """A part of an interval over which every pricing attribute is constant."""

    start: datetime
    end: datetime
    version: int
    month: date  # first day of the local month
    day_type: DayType | None
    period: int | None  # index into the version's periods for ``day_type``

    def key(self) -> tuple[object, ...]:
        return (self.version, self.month, self.day_type, self.period)


def _version_spans(
    schedule: Schedule, start: datetime, end: datetime
) -> Iterator[tuple[int, datetime, datetime]]:
    versions = schedule.versions
    if start < versions[0].effective_from:
        raise TariffError(
            f"No tariff version is in force at {start.isoformat()}; the first takes effect at "
            f"{versions[0].effective_from.isoformat()}."
        )
    for index, version in enumerate(versions):
        span_start = max(start, version.effective_from)
        span_end = end
        if index + 1 < len(versions):
            span_end = min(end, versions[index + 1].effective_from.astimezone(UTC))
        if span_start < span_end:
            yield index, span_start.astimezone(UTC), span_end


def _month_stretches(
    schedule: Schedule, version: int, start: datetime, end: datetime
) -> Iterator[_Stretch]:
    tz = schedule.tz
    month = _local_date(start, tz).replace(day=1)
    month_start = local_midnight(month, tz)
    while month_start < end:
        following = _next_month(month)
        month_end = local_midnight(following, tz)
        yield _Stretch(max(start, month_start), min(end, month_end), version, month, None, None)
        month, month_start = following, month_end


def _tou_stretches(
    schedule: Schedule, version: int, start: datetime, end: datetime
) -> Iterator[_Stretch]:
    tz = schedule.tz
    tariff = schedule.versions[version]
    day = _local_date(start, tz)
    while local_midnight(day, tz) < end:
        day_type = schedule.day_type(day)
        midnight = datetime.combine(day, time())
        for index, period in enumerate(tariff.periods_for(day_type)):
            for offset_start, offset_end in period._spans():
                piece_start = max(start, _reach(midnight + offset_start, tz))
                piece_end = min(end, _reach(midnight + offset_end, tz))
                if piece_start < piece_end:
                    yield _Stretch(
                        piece_start, piece_end, version, day.replace(day=1), day_type, index
                    )
        day += _DAY


def _stretches(schedule: Schedule, start: datetime, end: datetime) -> list[_Stretch]:
    stretches: list[_Stretch] = []
    for version, span_start, span_end in _version_spans(schedule, start, end):
        if schedule.versions[version].kind in _KINDS_WITH_PERIODS:
            pieces = sorted(
                _tou_stretches(schedule, version, span_start, span_end),
                key=lambda stretch: stretch.start,
            )
        else:
            pieces = list(_month_stretches(schedule, version, span_start, span_end))
        for piece in pieces:
            previous = stretches[-1] if stretches else None
            if previous and previous.end == piece.start and previous.key() == piece.key():
                stretches[-1] = replace(previous, end=piece.end)
            else:
                stretches.append(piece)
    return stretches


# --- Pricing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    """A charge line with exact amounts; converted to a ChargeLine only for output."""

    start: datetime
    end: datetime
    key: tuple[object, ...]  # touching lines with equal keys merge
    version: TariffVersion
    period: str | None
    day_type: DayType | None
    band: int | None
    quantity: Fraction
    unit_price: Fraction
    net: Fraction
    tax: Fraction

    def output(self) -> ChargeLine:
        return ChargeLine(
            start=self.start,
            end=self.end,
            version_effective_from=self.version.effective_from.astimezone(UTC),
            period=self.period,
            day_type=self.day_type,
            band=self.band,
            quantity=_to_decimal(self.quantity),
            unit_price=_to_decimal(self.unit_price),
            net=_to_decimal(self.net),
            tax=_to_decimal(self.tax),
        )


def _amounts(
    version: TariffVersion, price: Fraction, quantity: Fraction
) -> tuple[Fraction, Fraction]:
    amount = price * quantity
    rate = Fraction(version.tax_rate)
    if version.prices_include_tax:
        net = amount / (1 + rate)
        return net, amount - net
    return amount, amount * rate


def _band_parts(
    bands: Sequence[Band], month_to_date: Fraction, energy: Fraction
) -> Iterator[tuple[int, Band, Fraction, Fraction]]:
    """Split ``energy`` consumed on top of ``month_to_date`` at the band limits.

    Yields each band touched with where its part starts and ends, as offsets into ``energy``.
    """
    floor = Fraction(0)
    for index, band in enumerate(bands):
        ceiling = None if band.limit is None else Fraction(band.limit) - month_to_date
        low, high = max(floor, Fraction(0)), energy if ceiling is None else min(energy, ceiling)
        if high > low:
            yield index, band, low, high
        if ceiling is None or energy <= ceiling:
            return
        floor = ceiling


def _instant(stretch: _Stretch, share: Fraction) -> datetime:
    """The microsecond in which ``share`` of the stretch has elapsed.

    Flooring, unlike rounding half to even, gives the same instant whichever stretch start it is
    measured from, so lines of differently chunked readings still meet and merge.
    """
    return stretch.start + (share * _micros(stretch.end - stretch.start)) // 1 * _MICROSECOND


def _interval_lines(
    schedule: Schedule,
    start: datetime,
    end: datetime,
    quantity: Fraction,
    month_to_date: Fraction,
) -> tuple[list[_Line], Fraction]:
    """Exact lines for one interval and the month-to-date consumption at ``end``."""
    if start > end:
        raise TariffError(f"Interval start {start.isoformat()} is after its end {end.isoformat()}.")
    if quantity < 0:
        raise TariffError(f"Consumption {_plain(_to_decimal(quantity))} is negative.")
    if month_to_date < 0:
        raise TariffError(f"month_to_date {_plain(_to_decimal(month_to_date))} is negative.")
    if start == end:
        if quantity:
            raise TariffError(
                f"Consumption {_plain(_to_decimal(quantity))} over an empty interval at "
                f"{start.isoformat()}."
            )
        return [], month_to_date
    tz = schedule.tz
    duration = _micros(end - start)
    lines: list[_Line] = []
    stretches = _stretches(schedule, start, end)
    month, cumulative = stretches[0].month, month_to_date
    for stretch in stretches:
        if stretch.month != month:
            month, cumulative = stretch.month, Fraction(0)
        version = schedule.versions[stretch.version]
        energy = quantity * Fraction(_micros(stretch.end - stretch.start), duration)
        period = None
        base_price = Fraction(version.flat_price or 0)
        if stretch.day_type is not None and stretch.period is not None:
            period = version.periods_for(stretch.day_type)[stretch.period]
            base_price = Fraction(period.price)
        if version.kind in _KINDS_WITH_BANDS:
            parts = list(_band_parts(version.bands, cumulative, energy))
        else:
            parts = [(None, None, Fraction(0), energy)] if energy else []
        for band_index, band, low, high in parts:
            # Tiered bands carry the unit price; tou_tiered bands a surcharge on the period price.
            price = base_price + Fraction(band.price) if band is not None else base_price
            part = high - low
            net, tax = _amounts(version, price, part)
            lines.append(
                _Line(
                    # Consumption is uniform within a stretch, which dates a band crossing.
                    start=_instant(stretch, low / energy),
                    end=_instant(stretch, high / energy),
                    key=(*stretch.key(), band_index),
                    version=version,
                    period=period.name if period else None,
                    day_type=stretch.day_type,
                    band=band_index,
                    quantity=part,
                    unit_price=price,
                    net=net,
                    tax=tax,
                )
            )
        cumulative += energy
    if _local_date(end, tz).replace(day=1) != month:
        cumulative = Fraction(0)
    return lines, cumulative


def _merge(lines: list[_Line], new: Sequence[_Line]) -> None:
    for line in new:
        previous = lines[-1] if lines else None
        if previous and previous.end == line.start and previous.key == line.key:
            lines[-1] = replace(
                previous,
                end=line.end,
                quantity=previous.quantity + line.quantity,
                net=previous.net + line.net,
                tax=previous.tax + line.tax,
            )
        else:
            lines.append(line)


def _charge(lines: Sequence[_Line], month_to_date: Fraction) -> IntervalCharge:
    net = sum((line.net for line in lines), Fraction(0))
    tax = sum((line.tax for line in lines), Fraction(0))
    return IntervalCharge(
        lines=tuple(line.output() for line in lines),
        net=_to_decimal(net),
        tax=_to_decimal(tax),
        total=_to_decimal(net + tax),
        month_to_date_after=_to_decimal(month_to_date),
    )


def price_interval(
    schedule: Schedule,
    *,
    start: datetime,
    end: datetime,
    quantity: Decimal,
    month_to_date: Decimal,
) -> IntervalCharge:
    """Price ``quantity`` consumed over ``[start, end)``.

    ``month_to_date`` is the consumption already charged in the local month containing ``start``.
    """
    lines, after = _interval_lines(
        schedule,
        _utc(start, "start"),
        _utc(end, "end"),
        Fraction(_decimal(quantity, "quantity")),
        Fraction(_decimal(month_to_date, "month_to_date")),
    )
    return _charge(lines, after)


def price_series(
    schedule: Schedule,
    *,
    readings: Sequence[tuple[datetime, Decimal]],
    month_to_date: Decimal = Decimal(0),
) -> IntervalCharge:
    """Price consecutive intervals between ``(time, cumulative register)`` readings.

    ``month_to_date`` applies to the local month of the first reading and is threaded exactly
    through the intervals. Touching lines with identical attributes are merged, so a uniform
    consumption rate gives the same lines however often the meter was read.
    """
    points = [
        (_utc(moment, "reading time"), Fraction(_decimal(register, "register")))
        for moment, register in readings
    ]
    cumulative = Fraction(_decimal(month_to_date, "month_to_date"))
    lines: list[_Line] = []
    for (start, low), (end, high) in pairwise(points):
        if end <= start:
            raise TariffError(
                f"Reading times must increase: {end.isoformat()} follows {start.isoformat()}."
            )
        if high < low:
            raise TariffError(
                f"The register went backwards from {_plain(_to_decimal(low))} to "
                f"{_plain(_to_decimal(high))} "
                f"at {end.isoformat()}."
            )
        new, cumulative = _interval_lines(schedule, start, end, high - low, cumulative)
        _merge(lines, new)
    return _charge(lines, cumulative)


def standing_charges(
    schedule: Schedule, *, start: datetime, end: datetime
) -> tuple[ChargeLine, ...]:
    """One line per local day (and tariff version) overlapped by ``[start, end)``.

    Each is pro-rated by the real seconds covered over that local day's real length, so a
    23- or 25-hour day still costs exactly one day's charge.
    """
    start, end = _utc(start, "start"), _utc(end, "end")
    if start > end:
        raise TariffError(f"Start {start.isoformat()} is after end {end.isoformat()}.")
    tz = schedule.tz
    lines: list[ChargeLine] = []
    for index, span_start, span_end in _version_spans(schedule, start, end):
        version = schedule.versions[index]
        day = _local_date(span_start, tz)
        day_start = local_midnight(day, tz)
        while day_start < span_end:
            day_end = local_midnight(day + _DAY, tz)
            covered = min(span_end, day_end) - max(span_start, day_start)
            fraction = Fraction(_micros(covered), _micros(day_end - day_start))
            price = Fraction(version.standing_charge_per_day)
            net, tax = _amounts(version, price, fraction)
            lines.append(
                _Line(
                    start=max(span_start, day_start),
                    end=min(span_end, day_end),
                    key=(),
                    version=version,
                    period=STANDING,
                    day_type=None,
                    band=None,
                    quantity=fraction,
                    unit_price=price,
                    net=net,
                    tax=tax,
                ).output()
            )
            day, day_start = day + _DAY, day_end
    return tuple(lines)
