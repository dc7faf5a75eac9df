"""Tests for the tariff pricing engine. Expected amounts are worked out by hand in the comments."""

import io
import struct
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tariffs.pricing import (
    STANDING,
    Band,
    DayType,
    IntervalCharge,
    Period,
    Schedule,
    TariffError,
    TariffKind,
    TariffVersion,
    all_day_types,
    local_month_start,
    price_interval,
    price_series,
    standing_charges,
)

D = Decimal
SHANGHAI = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
SINCE = datetime(2020, 1, 1, tzinfo=UTC)


def posix_zone(rule: str) -> ZoneInfo:
    """A zone defined only by a POSIX TZ rule, for transitions real zones rarely have."""
    header = b"TZif2" + bytes(15) + struct.pack(">6l", 0, 0, 0, 0, 1, 4)
    block = struct.pack(">lbB", 0, 0, 0) + b"UTC\0"  # one UTC type, no transitions
    data = header + block + header + block + b"\n" + rule.encode() + b"\n"
    return ZoneInfo.from_file(io.BytesIO(data), key=rule)


# UTC+1, summer UTC+2. Midnight is skipped on the last Sunday of March (00:00 -> 01:00); on the
# last Sunday of October clocks go back from 00:30 to 23:30 of the previous day.
EXOTIC = posix_zone("XST-1XDT,M3.5.0/0,M10.5.0/0:30")

PEAK = Period("peak", time(6), time(22), D("0.617"))
VALLEY = Period("valley", time(22), time(6), D("0.307"))
WEEKEND_FLAT = Period("flat", time(0), time(0), D("0.50"))
HOLIDAY_FLAT = Period("holiday", time(0), time(0), D("0.20"))
LADDER = (Band(D(100), D("1.00")), Band(None, D("1.50")))
SURCHARGES = (Band(D(260), D(0)), Band(D(400), D("0.05")), Band(None, D("0.30")))


def flat(price: str, **options) -> TariffVersion:
    return TariffVersion(effective_from=SINCE, kind=TariffKind.FLAT, flat_price=D(price), **options)


def tou(**options) -> TariffVersion:
    periods = {
        DayType.WEEKDAY: (PEAK, VALLEY),
        DayType.WEEKEND: (WEEKEND_FLAT,),
        DayType.HOLIDAY: (HOLIDAY_FLAT,),
    }
    return TariffVersion(effective_from=SINCE, kind=TariffKind.TOU, periods=periods, **options)


def schedule(*versions: TariffVersion, tz: ZoneInfo = SHANGHAI, **options) -> Schedule:
    return Schedule(versions=versions, tz=tz, **options)


def summary(charge: IntervalCharge) -> list[tuple]:
    return [
        (line.period, line.day_type, line.band, line.quantity, line.unit_price, line.net, line.tax)
        for line in charge.lines
    ]


def price(tariff: Schedule, start: datetime, end: datetime, quantity, month_to_date=0):
    return price_interval(
        tariff, start=start, end=end, quantity=D(quantity), month_to_date=D(month_to_date)
    )


# --- Flat ---------------------------------------------------------------------------------------


def test_a_flat_tariff_charges_quantity_times_price():
    charge = price(
        schedule(flat("0.50")),
        datetime(2026, 3, 10, 8, tzinfo=SHANGHAI),
        datetime(2026, 3, 10, 9, tzinfo=SHANGHAI),
        10,
    )
    assert summary(charge) == [(None, None, None, D(10), D("0.5"), D(5), D(0))]
    assert (charge.net, charge.tax, charge.total) == (D(5), D(0), D(5))
    assert charge.lines[0].start == datetime(2026, 3, 10, 0, tzinfo=UTC)
    assert charge.lines[0].end == datetime(2026, 3, 10, 1, tzinfo=UTC)
    assert charge.month_to_date_after == D(10)


def test_tax_exclusive_prices_add_tax_on_top_of_the_net_amount():
    # 10 kWh at 0.50 = 5.00 net; 13% of it is 0.65 tax.
    charge = price(
        schedule(flat("0.50", tax_rate=D("0.13"))),
        datetime(2026, 3, 10, 8, tzinfo=SHANGHAI),
        datetime(2026, 3, 10, 9, tzinfo=SHANGHAI),
        10,
    )
    assert (charge.net, charge.tax, charge.total) == (D("5"), D("0.65"), D("5.65"))
    assert (charge.lines[0].net, charge.lines[0].tax) == (D(5), D("0.65"))


def test_tax_inclusive_prices_split_the_gross_amount_into_net_and_tax():
    # 10 kWh at 1.13 = 11.30 gross = 10.00 net + 1.30 tax at 13%.
    charge = price(
        schedule(flat("1.13", tax_rate=D("0.13"), prices_include_tax=True)),
        datetime(2026, 3, 10, 8, tzinfo=SHANGHAI),
        datetime(2026, 3, 10, 9, tzinfo=SHANGHAI),
        10,
    )
    assert (charge.net, charge.tax, charge.total) == (D(10), D("1.3"), D("11.3"))
    assert charge.lines[0].unit_price == D("1.13")


def test_non_terminating_amounts_are_quantized_to_12_places_while_totals_stay_exact():
    # 1 kWh at 1.00 including 13% tax: net = 100/113 = 0.884955752212|389...,
    # tax = 13/113 = 0.115044247787|610...
    charge = price(
        schedule(flat("1", tax_rate=D("0.13"), prices_include_tax=True)),
        datetime(2026, 3, 10, 8, tzinfo=SHANGHAI),
        datetime(2026, 3, 10, 9, tzinfo=SHANGHAI),
        1,
    )
    assert charge.net == D("0.884955752212")
    assert charge.tax == D("0.115044247788")
    assert charge.total == D(1)


# --- Tiered -------------------------------------------------------------------------------------


def test_consumption_crossing_a_band_limit_is_split_at_the_limit():
    # 90 already used, 20 more: 10 up to the 100 limit at 1.00, then 10 at 1.50.
    tariff = schedule(TariffVersion(effective_from=SINCE, kind=TariffKind.TIERED, bands=LADDER))
    charge = price(
        tariff,
        datetime(2026, 3, 10, 8, tzinfo=SHANGHAI),
        datetime(2026, 3, 10, 10, tzinfo=SHANGHAI),
        20,
        month_to_date=90,
    )
    assert summary(charge) == [
        (None, None, 0, D(10), D(1), D(10), D(0)),
        (None, None, 1, D(10), D("1.5"), D(15), D(0)),
    ]
    assert charge.total == D(25)
    assert charge.month_to_date_after == D(110)


def test_one_reading_can_cross_several_band_limits():
    # Bands 0-10 at 1, 10-20 at 2, above at 3; 5 used, 30 more: 5 at 1, 10 at 2, 15 at 3 = 70.
    bands = (Band(D(10), D(1)), Band(D(20), D(2)), Band(None, D(3)))
    tariff = schedule(TariffVersion(effective_from=SINCE, kind=TariffKind.TIERED, bands=bands))
    charge = price(
        tariff,
        datetime(2026, 3, 10, 8, tzinfo=SHANGHAI),
        datetime(2026, 3, 10, 9, tzinfo=SHANGHAI),
        30,
        month_to_date=5,
    )
    assert [(line.band, line.quantity) for line in charge.lines] == [(0, 5), (1, 10), (2, 15)]
    assert charge.total == D(70)


def test_tiers_reset_at_the_local_month_start_in_shanghai():
    # 23:00-01:00 Shanghai across 1 February (16:00 UTC): 10 kWh in each hour. January had 95,
    # so 5 at 1.00 and 5 at 1.50; February starts over in band 0: 10 at 1.00. 5 + 7.5 + 10.
    tariff = schedule(TariffVersion(effective_from=SINCE, kind=TariffKind.TIERED, bands=LADDER))
    charge = price(
        tariff,
        datetime(2026, 1, 31, 15, tzinfo=UTC),
        datetime(2026, 1, 31, 17, tzinfo=UTC),
        20,
        month_to_date=95,
    )
    assert summary(charge) == [
        (None, None, 0, D(5), D(1), D(5), D(0)),
        (None, None, 1, D(5), D("1.5"), D("7.5"), D(0)),
        (None, None, 0, D(10), D(1), D(10), D(0)),
    ]
    # January's 10 kWh arrive evenly over 15:00-16:00 UTC, so band 1 fills at 15:30.
    assert [(line.start.time(), line.end.time()) for line in charge.lines] == [
        (time(15), time(15, 30)),
        (time(15, 30), time(16)),
        (time(16), time(17)),
    ]
    assert charge.total == D("22.5")
    assert charge.month_to_date_after == D(10)


def test_a_band_crossing_is_dated_identically_however_the_readings_are_chunked():
    # 0.512 units a minute with 0.001 left in band 0: the limit is crossed 0.001 / 0.512 min
    # = 117187.5 us in, an exact half microsecond; both chunkings must floor it to 117187 us.
    tariff = schedule(TariffVersion(effective_from=SINCE, kind=TariffKind.TIERED, bands=LADDER))
    start = datetime(2026, 3, 10, tzinfo=UTC)
    end = start + timedelta(minutes=1)
    whole = price_series(
        tariff, readings=[(start, D(0)), (end, D("0.512"))], month_to_date=D("99.999")
    )
    # 3 us in, the register has advanced 0.512 x 3 / 60,000,000 = 0.0000000256.
    chunked = price_series(
        tariff,
        readings=[
            (start, D(0)),
            (start + timedelta(microseconds=3), D("2.56e-8")),
            (end, D("0.512")),
        ],
        month_to_date=D("99.999"),
    )
    assert chunked == whole
    assert whole.lines[0].end == whole.lines[1].start == start + timedelta(microseconds=117187)


def test_month_to_date_after_is_zero_when_an_interval_ends_exactly_at_a_month_start():
    tariff = schedule(TariffVersion(effective_from=SINCE, kind=TariffKind.TIERED, bands=LADDER))
    charge = price(
        tariff,
        datetime(2026, 1, 31, 23, tzinfo=SHANGHAI),
        datetime(2026, 2, 1, tzinfo=SHANGHAI),
        20,
        month_to_date=95,
    )
    # 95 used: 5 at 1.00 + 15 at 1.50 = 27.5, then February starts at zero.
    assert charge.total == D("27.5")
    assert charge.month_to_date_after == D(0)


def test_zero_consumption_gives_no_lines_but_still_resets_the_month():
    tariff = schedule(TariffVersion(effective_from=SINCE, kind=TariffKind.TIERED, bands=LADDER))
    charge = price(
        tariff,
        datetime(2026, 1, 31, 23, tzinfo=SHANGHAI),
        datetime(2026, 2, 1, 1, tzinfo=SHANGHAI),
        0,
        month_to_date=95,
    )
    assert charge.lines == ()
    assert (charge.total, charge.month_to_date_after) == (D(0), D(0))


def test_local_month_start_is_local_midnight_on_the_first():
    assert local_month_start(datetime(2026, 2, 15, 12, tzinfo=UTC), SHANGHAI) == datetime(
        2026, 1, 31, 16, tzinfo=UTC
    )
    # 31 January 17:00 UTC is already 1 February in Shanghai.
    assert local_month_start(datetime(2026, 1, 31, 17, tzinfo=UTC), SHANGHAI) == datetime(
        2026, 1, 31, 16, tzinfo=UTC
    )
    assert local_month_start(datetime(2026, 4, 1, tzinfo=LONDON), LONDON) == datetime(
        2026, 3, 31, 23, tzinfo=UTC
    )


# --- Time of use --------------------------------------------------------------------------------


def test_an_interval_spanning_peak_and_valley_is_split_in_proportion_to_time():
    # Tuesday 21:30-23:00: 30 min peak, 60 min valley, so 9 kWh splits 3 + 6.
    # 3 x 0.617 = 1.851; 6 x 0.307 = 1.842.
    charge = price(
        schedule(tou()),
        datetime(2026, 3, 10, 21, 30, tzinfo=SHANGHAI),
        datetime(2026, 3, 10, 23, tzinfo=SHANGHAI),
        9,
    )
    assert summary(charge) == [
        ("peak", DayType.WEEKDAY, None, D(3), D("0.617"), D("1.851"), D(0)),
        ("valley", DayType.WEEKDAY, None, D(6), D("0.307"), D("1.842"), D(0)),
    ]
    assert charge.lines[0].end == charge.lines[1].start == datetime(2026, 3, 10, 14, tzinfo=UTC)
    assert charge.total == D("3.693")


def test_a_valley_wrapping_midnight_between_weekdays_is_one_line():
    # Tuesday 23:00 to Wednesday 07:00: 7 h valley (14 kWh) and 1 h peak (2 kWh).
    # 14 x 0.307 = 4.298; 2 x 0.617 = 1.234.
    charge = price(
        schedule(tou()),
        datetime(2026, 3, 10, 23, tzinfo=SHANGHAI),
        datetime(2026, 3, 11, 7, tzinfo=SHANGHAI),
        16,
    )
    assert summary(charge) == [
        ("valley", DayType.WEEKDAY, None, D(14), D("0.307"), D("4.298"), D(0)),
        ("peak", DayType.WEEKDAY, None, D(2), D("0.617"), D("1.234"), D(0)),
    ]
    assert charge.total == D("5.532")


def test_weekend_periods_apply_from_local_midnight_on_saturday():
    # Friday 23:00 to Saturday 01:00: 2 kWh Friday valley (0.614), 2 kWh weekend flat (1.00).
    charge = price(
        schedule(tou()),
        datetime(2026, 3, 13, 23, tzinfo=SHANGHAI),
        datetime(2026, 3, 14, 1, tzinfo=SHANGHAI),
        4,
    )
    assert summary(charge) == [
        ("valley", DayType.WEEKDAY, None, D(2), D("0.307"), D("0.614"), D(0)),
        ("flat", DayType.WEEKEND, None, D(2), D("0.5"), D(1), D(0)),
    ]
    assert charge.total == D("1.614")


def test_holidays_from_is_holiday_take_precedence_over_the_weekday_periods():
    # Tuesday 10 March declared a holiday: 10 kWh at the holiday price 0.20 = 2.00.
    start = datetime(2026, 3, 10, 12, tzinfo=SHANGHAI)
    end = datetime(2026, 3, 10, 14, tzinfo=SHANGHAI)
    for is_holiday in ({date(2026, 3, 10)}, lambda day: day == date(2026, 3, 10)):
        charge = price(schedule(tou(), is_holiday=is_holiday), start, end, 10)
        assert summary(charge) == [
            ("holiday", DayType.HOLIDAY, None, D(10), D("0.2"), D(2), D(0)),
        ]


def test_a_holidays_calendar_object_can_serve_as_is_holiday():
    # 1 October 2026 (a Thursday) is China's National Day.
    tariff = schedule(tou(), is_holiday=holidays.country_holidays("CN", years=2026))
    charge = price(
        tariff,
        datetime(2026, 10, 1, 12, tzinfo=SHANGHAI),
        datetime(2026, 10, 1, 13, tzinfo=SHANGHAI),
        1,
    )
    assert charge.lines[0].day_type == DayType.HOLIDAY


def test_shanghai_style_tariff_adds_band_surcharges_to_period_prices():
    # Tuesday 21:00-23:00, 40 kWh: 20 peak then 20 valley; 250 already used this month.
    # Peak 250->260 band 1: 10 x 0.617 = 6.17; peak 260->270 band 2: 10 x 0.667 = 6.67;
    # valley 270->290 band 2: 20 x 0.357 = 7.14. Total 19.98.
    combined = TariffVersion(
        effective_from=SINCE,
        kind=TariffKind.TOU_TIERED,
        bands=SURCHARGES,
        periods=all_day_types(PEAK, VALLEY),
    )
    charge = price(
        schedule(combined),
        datetime(2026, 3, 10, 21, tzinfo=SHANGHAI),
        datetime(2026, 3, 10, 23, tzinfo=SHANGHAI),
        40,
        month_to_date=250,
    )
    assert summary(charge) == [
        ("peak", DayType.WEEKDAY, 0, D(10), D("0.617"), D("6.17"), D(0)),
        ("peak", DayType.WEEKDAY, 1, D(10), D("0.667"), D("6.67"), D(0)),
        ("valley", DayType.WEEKDAY, 1, D(20), D("0.357"), D("7.14"), D(0)),
    ]
    assert charge.total == D("19.98")
    assert charge.month_to_date_after == D(290)


def test_shanghai_style_tariff_reaches_the_top_band_mid_period():
    # Same hours, 390 used: peak 390->400 at 0.667 = 6.67, peak 400->410 at 0.917 = 9.17,
    # valley 410->430 at 0.607 = 12.14. Total 27.98.
    combined = TariffVersion(
        effective_from=SINCE,
        kind=TariffKind.TOU_TIERED,
        bands=SURCHARGES,
        periods=all_day_types(PEAK, VALLEY),
    )
    charge = price(
        schedule(combined),
        datetime(2026, 3, 10, 21, tzinfo=SHANGHAI),
        datetime(2026, 3, 10, 23, tzinfo=SHANGHAI),
        40,
        month_to_date=390,
    )
    assert [(line.band, line.unit_price, line.net) for line in charge.lines] == [
        (1, D("0.667"), D("6.67")),
        (2, D("0.917"), D("9.17")),
        (2, D("0.607"), D("12.14")),
    ]
    assert charge.total == D("27.98")


# --- Versions -----------------------------------------------------------------------------------


def test_a_version_change_mid_interval_splits_energy_in_proportion_to_time():
    # 10:00-13:00 UTC, 30 kWh, price change at 12:00: 20 kWh at 1.00 + 10 kWh at 2.00 = 40.
    change = datetime(2026, 3, 10, 12, tzinfo=UTC)
    later = TariffVersion(effective_from=change, kind=TariffKind.FLAT, flat_price=D(2))
    charge = price(
        schedule(flat("1"), later),
        datetime(2026, 3, 10, 10, tzinfo=UTC),
        datetime(2026, 3, 10, 13, tzinfo=UTC),
        30,
    )
    assert summary(charge) == [
        (None, None, None, D(20), D(1), D(20), D(0)),
        (None, None, None, D(10), D(2), D(20), D(0)),
    ]
    assert [line.version_effective_from for line in charge.lines] == [SINCE, change]
    assert charge.lines[0].end == charge.lines[1].start == change
    assert charge.total == D(40)


def test_the_monthly_tier_counter_carries_across_a_version_change():
    # 95 used; 20 kWh over two hours with new prices after the first hour.
    # Old: 5 at 1.00 + 5 at 1.50 = 12.5; new: the counter is past 100, so 10 at 3.00 = 30.
    change = datetime(2026, 3, 10, 9, tzinfo=UTC)
    old = TariffVersion(effective_from=SINCE, kind=TariffKind.TIERED, bands=LADDER)
    new = TariffVersion(
        effective_from=change,
        kind=TariffKind.TIERED,
        bands=(Band(D(100), D(2)), Band(None, D(3))),
    )
    charge = price(
        schedule(old, new),
        datetime(2026, 3, 10, 8, tzinfo=UTC),
        datetime(2026, 3, 10, 10, tzinfo=UTC),
        20,
        month_to_date=95,
    )
    assert [(line.band, line.quantity, line.net) for line in charge.lines] == [
        (0, D(5), D(5)),
        (1, D(5), D("7.5")),
        (1, D(10), D(30)),
    ]
    assert charge.total == D("42.5")


def test_a_schedule_sorts_its_versions():
    later = TariffVersion(
        effective_from=datetime(2026, 1, 1, tzinfo=UTC), kind=TariffKind.FLAT, flat_price=D(2)
    )
    tariff = Schedule(versions=(later, flat("1")), tz=SHANGHAI)
    assert [version.flat_price for version in tariff.versions] == [D(1), D(2)]


# --- Daylight saving time -----------------------------------------------------------------------

NIGHT = Period("night", time(22), time(7), D("0.10"))
DAY = Period("day", time(7), time(22), D("0.30"))
EARLY = Period("early", time(0), time(1, 30), D(1))
REST = Period("rest", time(1, 30), time(0), D(2))


def london_tou(*periods: Period) -> Schedule:
    version = TariffVersion(
        effective_from=SINCE,
        kind=TariffKind.TOU,
        periods=all_day_types(*periods),
        standing_charge_per_day=D("0.50"),
    )
    return schedule(version, tz=LONDON)


def test_tou_on_the_23_hour_london_day_uses_real_elapsed_time():
    # 29 March 2026 00:00 GMT to 08:00 BST is 7 real hours (00:00-07:00 UTC) for 70 kWh.
    # Night runs to 07:00 BST = 06:00 UTC: 6 h = 60 kWh x 0.10 = 6; day 1 h = 10 x 0.30 = 3.
    charge = price(
        london_tou(NIGHT, DAY),
        datetime(2026, 3, 29, tzinfo=LONDON),
        datetime(2026, 3, 29, 8, tzinfo=LONDON),
        70,
    )
    assert [(line.period, line.quantity, line.net) for line in charge.lines] == [
        ("night", D(60), D(6)),
        ("day", D(10), D(3)),
    ]
    assert charge.lines[0].end == datetime(2026, 3, 29, 6, tzinfo=UTC)
    assert charge.total == D(9)


def test_a_boundary_inside_the_spring_forward_gap_falls_on_the_transition():
    # 01:30 does not exist on 29 March; "early" ends when the clock jumps at 01:00 UTC.
    # 00:00-02:00 UTC, 2 kWh: 1 kWh early at 1 + 1 kWh rest at 2 = 3.
    charge = price(
        london_tou(EARLY, REST),
        datetime(2026, 3, 29, tzinfo=UTC),
        datetime(2026, 3, 29, 2, tzinfo=UTC),
        2,
    )
    assert [(line.period, line.quantity) for line in charge.lines] == [("early", 1), ("rest", 1)]
    assert charge.lines[0].end == datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert charge.total == D(3)


def test_tou_on_the_25_hour_london_day_uses_real_elapsed_time():
    # 25 October 2026 00:00 BST (24 Oct 23:00 UTC) to 08:00 GMT is 9 real hours for 90 kWh.
    # Night runs to 07:00 GMT = 07:00 UTC: 8 h = 80 kWh x 0.10 = 8; day 10 kWh x 0.30 = 3.
    charge = price(
        london_tou(NIGHT, DAY),
        datetime(2026, 10, 25, tzinfo=LONDON),
        datetime(2026, 10, 25, 8, tzinfo=LONDON),
        90,
    )
    assert [(line.period, line.quantity, line.net) for line in charge.lines] == [
        ("night", D(80), D(8)),
        ("day", D(10), D(3)),
    ]
    assert charge.total == D(11)


def test_the_repeated_fall_back_hour_stays_in_the_period_that_was_running():
    # 01:30 first occurs at 01:30 BST = 00:30 UTC; the repeated 01:00-02:00 GMT stays "rest".
    # 23:00-03:00 UTC, 40 kWh: early 1.5 h = 15 kWh at 1, rest 2.5 h = 25 kWh at 2. 15 + 50.
    charge = price(
        london_tou(EARLY, REST),
        datetime(2026, 10, 24, 23, tzinfo=UTC),
        datetime(2026, 10, 25, 3, tzinfo=UTC),
        40,
    )
    assert [(line.period, line.quantity) for line in charge.lines] == [("early", 15), ("rest", 25)]
    assert charge.lines[0].end == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert charge.total == D(65)


@pytest.mark.parametrize(
    ("first_day", "short_or_long_day"),
    [
        (
            date(2026, 3, 28),
            (datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 3, 29, 23, tzinfo=UTC)),
        ),
        (
            date(2026, 10, 24),
            (datetime(2026, 10, 24, 23, tzinfo=UTC), datetime(2026, 10, 26, tzinfo=UTC)),
        ),
    ],
)
def test_standing_charges_on_23_and_25_hour_days_are_exactly_one_day_each(
    first_day, short_or_long_day
):
    start = datetime.combine(first_day, time(), tzinfo=LONDON)
    lines = standing_charges(london_tou(NIGHT, DAY), start=start, end=start + timedelta(days=3))
    assert [(line.period, line.quantity, line.net) for line in lines] == [
        (STANDING, D(1), D("0.5")),
        (STANDING, D(1), D("0.5")),
        (STANDING, D(1), D("0.5")),
    ]
    assert (lines[1].start, lines[1].end) == short_or_long_day


def test_part_of_the_25_hour_day_is_pro_rated_by_real_seconds():
    # 5 of the day's 25 real hours: 0.2 day x 0.50 = 0.10.
    lines = standing_charges(
        london_tou(NIGHT, DAY),
        start=datetime(2026, 10, 24, 23, tzinfo=UTC),
        end=datetime(2026, 10, 25, 4, tzinfo=UTC),
    )
    assert [(line.quantity, line.net) for line in lines] == [(D("0.2"), D("0.1"))]


def test_a_day_whose_midnight_is_skipped_starts_at_the_transition():
    # 29 March: 00:00 XST never shows; the day runs from the jump (23:00 UTC) for 23 hours.
    lines = standing_charges(
        schedule(flat("1", standing_charge_per_day=D(1)), tz=EXOTIC),
        start=datetime(2026, 3, 27, 23, tzinfo=UTC),
        end=datetime(2026, 3, 29, 22, tzinfo=UTC),
    )
    assert [(line.start, line.end, line.quantity) for line in lines] == [
        (datetime(2026, 3, 27, 23, tzinfo=UTC), datetime(2026, 3, 28, 23, tzinfo=UTC), D(1)),
        (datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC), D(1)),
    ]


def test_a_fall_back_across_midnight_keeps_the_repeated_half_hour_in_the_new_day():
    # 25 October (a holiday here) begins at 00:00 XDT = 24 Oct 22:00 UTC; at 22:30 UTC the clock
    # shows 23:30 on the 24th again, but the holiday has begun. 21:00-23:00 UTC, 4 kWh:
    # Saturday 1 h = 2 kWh at 0.50 = 1.00, holiday 1 h = 2 kWh at 0.20 = 0.40.
    tariff = schedule(tou(), tz=EXOTIC, is_holiday={date(2026, 10, 25)})
    charge = price(
        tariff, datetime(2026, 10, 24, 21, tzinfo=UTC), datetime(2026, 10, 24, 23, tzinfo=UTC), 4
    )
    assert summary(charge) == [
        ("flat", DayType.WEEKEND, None, D(2), D("0.5"), D(1), D(0)),
        ("holiday", DayType.HOLIDAY, None, D(2), D("0.2"), D("0.4"), D(0)),
    ]
    assert charge.lines[1].start == datetime(2026, 10, 24, 22, tzinfo=UTC)


def test_a_standing_charge_starting_in_the_repeated_half_hour_belongs_to_the_new_day():
    # 25 October lasts 25 h (24 Oct 22:00 to 25 Oct 23:00 UTC); from 22:45 UTC that is 24.25 h.
    lines = standing_charges(
        schedule(flat("1", standing_charge_per_day=D(1)), tz=EXOTIC),
        start=datetime(2026, 10, 24, 22, 45, tzinfo=UTC),
        end=datetime(2026, 10, 26, tzinfo=EXOTIC),
    )
    assert [(line.end, line.quantity) for line in lines] == [
        (datetime(2026, 10, 25, 23, tzinfo=UTC), D("0.97")),
    ]


# --- Standing charges ---------------------------------------------------------------------------


def test_standing_charges_are_pro_rated_over_partial_local_days():
    # 10 Jan 12:00 to 12 Jan 06:00 Shanghai at 0.80/day: 0.5 day, 1 day, 0.25 day.
    lines = standing_charges(
        schedule(flat("1", standing_charge_per_day=D("0.80"))),
        start=datetime(2026, 1, 10, 12, tzinfo=SHANGHAI),
        end=datetime(2026, 1, 12, 6, tzinfo=SHANGHAI),
    )
    assert [(line.quantity, line.net) for line in lines] == [
        (D("0.5"), D("0.4")),
        (D(1), D("0.8")),
        (D("0.25"), D("0.2")),
    ]
    assert lines[0].start == datetime(2026, 1, 10, 4, tzinfo=UTC)
    assert lines[1].start == datetime(2026, 1, 10, 16, tzinfo=UTC)


def test_standing_charges_split_at_a_version_change_and_carry_tax():
    # 11 Jan: half a day at 0.80 (0.40 + 13% = 0.052 tax), half at 1.00 (0.50 + 0.065 tax).
    change = datetime(2026, 1, 11, 12, tzinfo=SHANGHAI)
    later = TariffVersion(
        effective_from=change,
        kind=TariffKind.FLAT,
        flat_price=D(1),
        standing_charge_per_day=D("1.00"),
        tax_rate=D("0.13"),
    )
    lines = standing_charges(
        schedule(flat("1", standing_charge_per_day=D("0.80"), tax_rate=D("0.13")), later),
        start=datetime(2026, 1, 11, tzinfo=SHANGHAI),
        end=datetime(2026, 1, 12, tzinfo=SHANGHAI),
    )
    assert [(line.quantity, line.unit_price, line.net, line.tax) for line in lines] == [
        (D("0.5"), D("0.8"), D("0.4"), D("0.052")),
        (D("0.5"), D(1), D("0.5"), D("0.065")),
    ]


# --- explain() ----------------------------------------------------------------------------------


def test_explain_mentions_the_period_day_type_band_and_price():
    combined = TariffVersion(
        effective_from=SINCE,
        kind=TariffKind.TOU_TIERED,
        bands=SURCHARGES,
        periods=all_day_types(PEAK, VALLEY),
        tax_rate=D("0.13"),
    )
    charge = price(
        schedule(combined),
        datetime(2026, 3, 10, 21, tzinfo=SHANGHAI),
        datetime(2026, 3, 10, 22, tzinfo=SHANGHAI),
        20,
        month_to_date=250,
    )
    # 10 kWh band 2 at 0.617 + 0.05 = 0.667: 6.67 net, 13% = 0.8671 tax.
    assert charge.lines[1].explain() == (
        "10 kWh peak (weekday), band 2, at 0.667: net 6.67 + tax 0.8671"
    )
    assert charge.lines[1].explain(unit="m3").startswith("10 m3 peak")


def test_explain_describes_a_standing_charge_line():
    lines = standing_charges(
        schedule(flat("1", standing_charge_per_day=D("0.80"))),
        start=datetime(2026, 1, 10, 12, tzinfo=SHANGHAI),
        end=datetime(2026, 1, 11, tzinfo=SHANGHAI),
    )
    assert lines[0].explain() == "0.5 day standing charge, at 0.8: net 0.4 + tax 0"


# --- Validation ---------------------------------------------------------------------------------


def tou_version(weekday: tuple[Period, ...]) -> TariffVersion:
    periods = {
        DayType.WEEKDAY: weekday,
        DayType.WEEKEND: (WEEKEND_FLAT,),
        DayType.HOLIDAY: (HOLIDAY_FLAT,),
    }
    return TariffVersion(effective_from=SINCE, kind=TariffKind.TOU, periods=periods)


def test_a_gap_between_tou_periods_is_rejected():
    early = Period("night", time(0), time(6), D(1))
    late = Period("day", time(7), time(0), D(1))
    with pytest.raises(TariffError, match="weekday periods leave 06:00-07:00 uncovered"):
        tou_version((early, late)).validate()


def test_overlapping_tou_periods_are_rejected():
    early = Period("night", time(0), time(8), D(1))
    late = Period("day", time(7), time(0), D(1))
    with pytest.raises(TariffError, match="'night' and 'day' overlap during 07:00-08:00"):
        tou_version((early, late)).validate()


def test_a_wrapping_period_that_overlaps_the_next_morning_is_rejected():
    valley = Period("valley", time(22), time(7), D(1))
    with pytest.raises(TariffError, match="overlap during 06:00-07:00"):
        tou_version((PEAK, valley)).validate()


def test_a_day_type_without_periods_is_rejected():
    version = TariffVersion(
        effective_from=SINCE,
        kind=TariffKind.TOU,
        periods={DayType.WEEKDAY: (PEAK, VALLEY)},
    )
    with pytest.raises(TariffError, match="ToU periods missing for weekend, holiday"):
        version.validate()


@pytest.mark.parametrize(
    ("bands", "problem"),
    [
        ((Band(D(100), D(1)), Band(D(100), D(2)), Band(None, D(3))), "strictly increasing"),
        ((Band(D(0), D(1)), Band(None, D(2))), "positive and strictly increasing"),
        ((Band(None, D(1)), Band(D(100), D(2))), "band 1 is open-ended but is not the last"),
        ((Band(D(100), D(1)), Band(D(200), D(2))), "last band must be open-ended"),
        ((Band(D(100), D(1)), Band(None, D(-2))), "band 2 price -2 is negative"),
        ((), "needs at least one band"),
    ],
)
def test_bad_bands_are_rejected(bands, problem):
    with pytest.raises(TariffError, match=problem):
        TariffVersion(effective_from=SINCE, kind=TariffKind.TIERED, bands=bands).validate()


def test_all_problems_of_a_version_are_listed_together():
    version = TariffVersion(
        effective_from=SINCE,
        kind=TariffKind.FLAT,
        bands=LADDER,
        standing_charge_per_day=D(-1),
    )
    with pytest.raises(TariffError) as raised:
        version.validate()
    message = str(raised.value)
    assert "standing charge -1 is negative" in message
    assert "a flat tariff needs a flat_price" in message
    assert "a flat tariff takes no bands" in message


def test_negative_period_prices_are_rejected():
    cheap = Period("valley", time(22), time(6), D("-0.1"))
    with pytest.raises(TariffError, match=r"'valley' price -0\.1 is negative"):
        tou_version((PEAK, cheap)).validate()


def test_the_standing_period_name_is_reserved_for_standing_charge_lines():
    standing = Period(STANDING, time(22), time(6), D(1))
    with pytest.raises(TariffError, match="'standing' is reserved"):
        tou_version((PEAK, standing)).validate()


def test_a_schedule_validates_its_versions():
    with pytest.raises(TariffError, match="needs a flat_price"):
        schedule(TariffVersion(effective_from=SINCE, kind=TariffKind.FLAT))


def test_two_versions_taking_effect_at_the_same_moment_are_rejected():
    with pytest.raises(TariffError, match="Two tariff versions take effect"):
        schedule(flat("1"), flat("2"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: Band(limit=100.0, price=D(1)),
        lambda: Band(limit=None, price=1.5),
        lambda: Period("peak", time(6), time(22), 0.617),
        lambda: TariffVersion(effective_from=SINCE, kind=TariffKind.FLAT, flat_price=0.5),
        lambda: flat("1", standing_charge_per_day=0.8),
        lambda: flat("1", tax_rate=0.13),
        lambda: price_interval(
            schedule(flat("1")),
            start=SINCE,
            end=SINCE + timedelta(hours=1),
            quantity=1.5,
            month_to_date=D(0),
        ),
        lambda: price_interval(
            schedule(flat("1")),
            start=SINCE,
            end=SINCE + timedelta(hours=1),
            quantity=D(1),
            month_to_date=0.0,
        ),
        lambda: price_series(
            schedule(flat("1")), readings=[(SINCE, D(0)), (SINCE + timedelta(hours=1), 1.5)]
        ),
    ],
)
def test_floats_are_rejected_wherever_money_or_quantity_is_accepted(make):
    with pytest.raises(TypeError, match="must be a Decimal or int"):
        make()


def test_naive_datetimes_are_rejected():
    with pytest.raises(TariffError, match="timezone-aware"):
        price(schedule(flat("1")), datetime(2026, 1, 1), datetime(2026, 1, 2), 1)
    with pytest.raises(TariffError, match="timezone-aware"):
        schedule(TariffVersion(effective_from=datetime(2026, 1, 1), kind="flat", flat_price=1))


def test_consumption_before_the_first_version_is_rejected():
    with pytest.raises(TariffError, match="No tariff version is in force"):
        price(schedule(flat("1")), SINCE - timedelta(hours=1), SINCE, 1)


@pytest.mark.parametrize(
    ("offset", "quantity", "problem"),
    [
        (timedelta(0), 1, "over an empty interval"),
        (timedelta(hours=-1), 0, "is after its end"),
        (timedelta(hours=1), -1, "is negative"),
    ],
)
def test_impossible_intervals_are_rejected(offset, quantity, problem):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(TariffError, match=problem):
        price(schedule(flat("1")), start, start + offset, quantity)


def test_a_register_going_backwards_is_rejected():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [(start, D(10)), (start + timedelta(hours=1), D(9))]
    with pytest.raises(TariffError, match="register went backwards"):
        price_series(schedule(flat("1")), readings=readings)


# --- Properties ---------------------------------------------------------------------------------

# Per zone, UTC moments where things tend to break: DST transitions and local month starts.
ANCHORS = {
    SHANGHAI: ((2026, 1, 31, 16), (2026, 2, 28, 16), (2026, 12, 31, 16)),
    LONDON: ((2026, 3, 29, 1), (2026, 10, 25, 1), (2026, 3, 31, 23), (2026, 11, 1, 0)),
    NEW_YORK: ((2026, 3, 8, 7), (2026, 11, 1, 6), (2026, 11, 1, 4), (2026, 4, 1, 4)),
    EXOTIC: ((2026, 3, 28, 23), (2026, 10, 24, 22, 30), (2026, 10, 31, 23)),
}
TAX_RATES = (D(0), D("0.05"), D("0.13"), D("0.2"))
NAMES = ("peak", "shoulder", "valley")


def half_hour(index: int) -> time:
    return time(index // 2, 30 * (index % 2))


@st.composite
def day_periods(draw) -> tuple[Period, ...]:
    cuts = sorted(draw(st.sets(st.integers(0, 47), min_size=1, max_size=5)))
    periods = []
    for position, cut in enumerate(cuts):
        following = cuts[(position + 1) % len(cuts)]
        name = draw(st.sampled_from(NAMES))
        periods.append(Period(name, half_hour(cut), half_hour(following), draw(prices())))
    return tuple(periods)


def prices():
    return st.integers(0, 3000).map(lambda milli: D(milli).scaleb(-3))


@st.composite
def band_tables(draw) -> tuple[Band, ...]:
    limits = sorted(draw(st.sets(st.integers(1, 2_000_000), max_size=3)))
    limits_and_open = [D(limit).scaleb(-2) for limit in limits] + [None]
    return tuple(Band(limit, draw(prices())) for limit in limits_and_open)


@st.composite
def versions(draw, effective_from: datetime, kinds=tuple(TariffKind)) -> TariffVersion:
    kind = draw(st.sampled_from(kinds))
    options = {}
    if kind is TariffKind.FLAT:
        options["flat_price"] = draw(prices())
    if kind in (TariffKind.TIERED, TariffKind.TOU_TIERED):
        options["bands"] = draw(band_tables())
    if kind in (TariffKind.TOU, TariffKind.TOU_TIERED):
        options["periods"] = {day_type: draw(day_periods()) for day_type in DayType}
    return TariffVersion(
        effective_from=effective_from,
        kind=kind,
        tax_rate=draw(st.sampled_from(TAX_RATES)),
        prices_include_tax=draw(st.booleans()),
        **options,
    )


@st.composite
def scenarios(draw, max_minutes: int, kinds=tuple(TariffKind), max_versions: int = 3):
    """A schedule, a start at a whole minute, a length in minutes and a rate in units/1000/min.

    Every boundary then falls on a whole minute, so exact expectations are easy to compute.
    """
    tz = draw(st.sampled_from(tuple(ANCHORS)))
    if draw(st.booleans()):
        anchor = datetime(*draw(st.sampled_from(ANCHORS[tz])), tzinfo=UTC)
        start = anchor + timedelta(minutes=draw(st.integers(-4320, 4320)))
    else:
        start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 10**6)))
    minutes = draw(st.integers(1, max_minutes))
    first = start - timedelta(minutes=draw(st.integers(0, 100_000)))
    changes = draw(st.sets(st.integers(1, minutes + 60), max_size=max_versions - 1))
    moments = [first] + [start + timedelta(minutes=change) for change in sorted(changes)]
    local_start = start.astimezone(tz).date()
    holiday_offsets = draw(st.sets(st.integers(-1, minutes // 1440 + 1), max_size=4))
    holiday_dates = {local_start + timedelta(days=offset) for offset in holiday_offsets}
    tariff = Schedule(
        versions=tuple(draw(versions(moment, kinds)) for moment in moments),
        tz=tz,
        is_holiday=holiday_dates,
    )
    rate = draw(st.integers(1, 5000))
    month_to_date = D(draw(st.integers(0, 50_000))).scaleb(-2)
    return tariff, holiday_dates, start, minutes, rate, month_to_date


def readings_at(draw, start: datetime, minutes: int, rate: int) -> list[tuple[datetime, Decimal]]:
    """Register readings at a random subset of whole minutes, always the first and the last."""
    inner = draw(st.sets(st.integers(1, max(1, minutes - 1)), max_size=30)) - {minutes}
    points = sorted({0, minutes} | inner)
    return [(start + timedelta(minutes=m), D(rate * m).scaleb(-3)) for m in points]


def fraction_sum(values) -> Fraction:
    return sum((Fraction(value) for value in values), Fraction(0))


@settings(max_examples=200, deadline=None)
@given(scenario=scenarios(max_minutes=70 * 1440), data=st.data())
def test_chunking_a_uniform_rate_into_more_readings_never_changes_the_result(scenario, data):
    tariff, _, start, minutes, rate, month_to_date = scenario
    end = start + timedelta(minutes=minutes)
    consumed = D(rate * minutes).scaleb(-3)
    whole = price_series(
        tariff, readings=[(start, D(0)), (end, consumed)], month_to_date=month_to_date
    )
    for _ in range(2):
        readings = readings_at(data.draw, start, minutes, rate)
        chunked = price_series(tariff, readings=readings, month_to_date=month_to_date)
        assert (chunked.total, chunked.net, chunked.tax) == (whole.total, whole.net, whole.tax)
        assert chunked == whole
    assert fraction_sum(line.quantity for line in whole.lines) == Fraction(consumed)
    assert fraction_sum(line.net + line.tax for line in whole.lines) == Fraction(whole.total)
    assert whole.net + whole.tax == whole.total


def brute_force(tariff: Schedule, holiday_dates, start, minutes, rate, month_to_date):
    """Price minute by minute, reading the local clock directly: net, tax and month-to-date.

    The clock used is the latest local time shown so far, so that a repeated fall-back hour stays
    in the period that was running (the engine's documented rule).
    """
    tz = tariff.tz
    per_minute = Fraction(rate, 1000)
    clock = max(
        (start - timedelta(minutes=back)).astimezone(tz).replace(tzinfo=None) for back in range(181)
    )
    month = (clock.year, clock.month)
    used, net, tax = Fraction(month_to_date), Fraction(0), Fraction(0)
    for minute in range(minutes + 1):
        moment = start + timedelta(minutes=minute)
        clock = max(clock, moment.astimezone(tz).replace(tzinfo=None))
        if (clock.year, clock.month) != month:
            month, used = (clock.year, clock.month), Fraction(0)
        if minute == minutes:
            break
        version = [v for v in tariff.versions if v.effective_from <= moment][-1]
        day = clock.date()
        if day in holiday_dates:
            day_type = DayType.HOLIDAY
        else:
            day_type = DayType.WEEKEND if day.weekday() >= 5 else DayType.WEEKDAY
        base = Fraction(version.flat_price or 0)
        for period in version.periods_for(day_type):
            now = clock.time()
            if period.start == period.end:
                inside = True
            elif period.start < period.end:
                inside = period.start <= now < period.end
            else:
                inside = now >= period.start or now < period.end
            if inside:
                base = Fraction(period.price)
        parts = [(base, per_minute)]
        if version.bands:
            parts, remaining = [], per_minute
            for band in version.bands:
                room = remaining if band.limit is None else max(0, Fraction(band.limit) - used)
                take = min(remaining, room)
                if take:
                    parts.append((base + Fraction(band.price), take))
                    used += take
                    remaining -= take
        else:
            used += per_minute
        for unit_price, quantity in parts:
            amount = unit_price * quantity
            rate_of_tax = Fraction(version.tax_rate)
            if version.prices_include_tax:
                net += amount / (1 + rate_of_tax)
                tax += amount - amount / (1 + rate_of_tax)
            else:
                net += amount
                tax += amount * rate_of_tax
    return net, tax, used


def as_output(value: Fraction) -> Decimal:
    """The engine's documented conversion, done another way: exact, else 12 places half-even."""
    with localcontext() as context:
        context.prec = 80
        exact = Decimal(value.numerator) / Decimal(value.denominator)
        if Fraction(exact) == value:
            return exact
        return exact.quantize(D("1e-12"), rounding=ROUND_HALF_EVEN)


@settings(max_examples=200, deadline=None)
@given(scenario=scenarios(max_minutes=3 * 1440), data=st.data())
def test_prices_match_a_minute_by_minute_brute_force_oracle(scenario, data):
    tariff, holiday_dates, start, minutes, rate, month_to_date = scenario
    charge = price_series(
        tariff,
        readings=readings_at(data.draw, start, minutes, rate),
        month_to_date=month_to_date,
    )
    net, tax, used = brute_force(tariff, holiday_dates, start, minutes, rate, month_to_date)
    assert charge.net == as_output(net)
    assert charge.tax == as_output(tax)
    assert charge.total == as_output(net + tax)
    assert charge.month_to_date_after == as_output(used)


def ladder_cost(bands: tuple[Band, ...], before: Fraction, after: Fraction) -> Fraction:
    """Cost of raising the month's consumption from ``before`` to ``after``."""
    cost, floor = Fraction(0), Fraction(0)
    for band in bands:
        ceiling = after if band.limit is None else Fraction(band.limit)
        low, high = max(before, floor), min(after, ceiling)
        if high > low:
            cost += (high - low) * Fraction(band.price)
        floor = ceiling
    return cost


@settings(max_examples=150, deadline=None)
@given(
    scenario=scenarios(max_minutes=100 * 1440, kinds=(TariffKind.TIERED,), max_versions=1),
    data=st.data(),
)
def test_tiered_consumption_over_several_months_restarts_the_ladder_each_local_month(
    scenario, data
):
    tariff, _, start, minutes, rate, month_to_date = scenario
    (version,) = tariff.versions
    tz = tariff.tz
    end = start + timedelta(minutes=minutes)
    charge = price_series(
        tariff,
        readings=readings_at(data.draw, start, minutes, rate),
        month_to_date=month_to_date,
    )
    # Per local month: consumption = rate x minutes inside it, priced up the ladder from the
    # month-to-date (given for the first month, zero afterwards). Midnight on the 1st exists and
    # is unique in all the zones drawn, so local month starts are plain aware datetimes.
    local = start.astimezone(tz)
    month_start = datetime(local.year, local.month, 1, tzinfo=tz)
    gross, before = Fraction(0), Fraction(month_to_date)
    while month_start < end:
        following = datetime(
            month_start.year + month_start.month // 12, month_start.month % 12 + 1, 1, tzinfo=tz
        )
        # In UTC: subtracting two datetimes of the same zone would give wall-clock time.
        inside = min(end, following).astimezone(UTC) - max(start, month_start).astimezone(UTC)
        after = before + Fraction(rate, 1000) * int(inside.total_seconds() // 60)
        gross += ladder_cost(version.bands, before, after)
        month_start, before = following, Fraction(0)
    used = after if end < month_start else Fraction(0)
    assert Fraction(charge.total) == gross * (
        1 if version.prices_include_tax else 1 + Fraction(version.tax_rate)
    )
    assert Fraction(charge.month_to_date_after) == used
