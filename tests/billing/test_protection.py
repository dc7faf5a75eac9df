from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.protection import ProtectedPeriods, next_protected_period, protected_until

SHANGHAI = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")
NIGHTS = ProtectedPeriods(daily_start=time(18), daily_end=time(8))


def no_holidays(day: date) -> bool:
    return False


def local(zone, *args) -> datetime:
    return datetime(*args, tzinfo=zone)


def test_daytime_on_a_weekday_is_not_protected():
    at = local(SHANGHAI, 2026, 11, 18, 12)  # a Wednesday
    assert protected_until(NIGHTS, at=at, zone=SHANGHAI, is_holiday=no_holidays) is None


def test_a_night_ends_at_eight_in_the_morning_local_time():
    at = local(SHANGHAI, 2026, 11, 18, 23, 30)
    end = protected_until(NIGHTS, at=at, zone=SHANGHAI, is_holiday=no_holidays)
    assert end == local(SHANGHAI, 2026, 11, 19, 8)


def test_friday_night_runs_through_the_weekend_to_monday_morning():
    periods = ProtectedPeriods(daily_start=time(18), daily_end=time(8), weekends=True)
    at = local(SHANGHAI, 2026, 11, 20, 19)  # Friday evening
    end = protected_until(periods, at=at, zone=SHANGHAI, is_holiday=no_holidays)
    assert end == local(SHANGHAI, 2026, 11, 23, 8)


def test_a_public_holiday_after_a_weekend_extends_it():
    periods = ProtectedPeriods(weekends=True, holidays=True)
    at = local(SHANGHAI, 2026, 11, 21, 10)  # Saturday, with Monday a holiday

    def monday_off(day):
        return day == date(2026, 11, 23)

    end = protected_until(periods, at=at, zone=SHANGHAI, is_holiday=monday_off)
    assert end == local(SHANGHAI, 2026, 11, 24, 0)


def test_a_night_across_the_spring_dst_change_still_ends_at_eight_local():
    at = local(LONDON, 2026, 3, 28, 22)  # the clocks go forward at 01:00 on the 29th
    end = protected_until(NIGHTS, at=at, zone=LONDON, is_holiday=no_holidays)
    assert end == datetime(2026, 3, 29, 7, tzinfo=UTC)  # 08:00 BST


def test_hours_inside_one_day_work_too():
    lunch = ProtectedPeriods(daily_start=time(12), daily_end=time(14))
    at = local(SHANGHAI, 2026, 11, 18, 13)
    assert protected_until(lunch, at=at, zone=SHANGHAI, is_holiday=no_holidays) == local(
        SHANGHAI, 2026, 11, 18, 14
    )


def test_an_always_protected_property_never_ends():
    always = ProtectedPeriods(daily_start=time(0), daily_end=time(0), holidays=True)
    at = local(SHANGHAI, 2026, 11, 18, 13)
    end = protected_until(always, at=at, zone=SHANGHAI, is_holiday=lambda day: True)
    assert end.year == 9999


def test_a_naive_moment_is_refused():
    with pytest.raises(TypeError):
        protected_until(NIGHTS, at=datetime(2026, 1, 1), zone=SHANGHAI, is_holiday=no_holidays)


@given(
    at=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1)),
    start=st.times(),
    end=st.times(),
    weekends=st.booleans(),
    zone=st.sampled_from([SHANGHAI, LONDON, ZoneInfo("America/New_York")]),
)
def test_a_protected_moment_ends_later_at_an_unprotected_one(at, start, end, weekends, zone):
    periods = ProtectedPeriods(daily_start=start, daily_end=end, weekends=weekends)
    moment = at.replace(tzinfo=UTC)
    until = protected_until(periods, at=moment, zone=zone, is_holiday=no_holidays)
    if until is None:
        assert not periods.covers(moment.astimezone(zone).replace(tzinfo=None), no_holidays)
        return
    if until.year == 9999:
        return
    assert until > moment
    after = until.astimezone(zone).replace(tzinfo=None)
    assert not periods.covers(after, no_holidays)


def _next(periods, at, zone=SHANGHAI):
    return next_protected_period(periods, after=at, zone=zone, is_holiday=no_holidays)


def test_the_next_period_of_a_weekday_afternoon_is_the_coming_night():
    start, end = _next(NIGHTS, local(SHANGHAI, 2026, 11, 18, 12))
    assert start == local(SHANGHAI, 2026, 11, 18, 18)
    assert end == local(SHANGHAI, 2026, 11, 19, 8)


def test_inside_a_period_the_next_one_is_the_rest_of_it():
    at = local(SHANGHAI, 2026, 11, 18, 23)
    assert _next(NIGHTS, at) == (at, local(SHANGHAI, 2026, 11, 19, 8))


def test_the_next_weekend_starts_at_saturday_midnight():
    weekends = ProtectedPeriods(weekends=True)
    start, end = _next(weekends, local(SHANGHAI, 2026, 11, 20, 14))
    assert start == local(SHANGHAI, 2026, 11, 21, 0)
    assert end == local(SHANGHAI, 2026, 11, 23, 0)


def test_a_night_over_the_clocks_going_back_lasts_an_hour_longer():
    # London leaves summer time at 02:00 on Sunday 25 October 2026.
    start, end = _next(NIGHTS, local(LONDON, 2026, 10, 24, 12), zone=LONDON)
    assert (end - start).total_seconds() == 15 * 3600


def test_without_protected_periods_there_is_no_next_one():
    assert _next(ProtectedPeriods(), local(SHANGHAI, 2026, 11, 18, 12)) is None
