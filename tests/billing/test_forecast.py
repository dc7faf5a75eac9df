"""Forecasts from the hour-of-week profile, weighted towards recent weeks, against series with a
known pattern; and the SQL that buckets charges against the pure bucketing it stands for."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from billing import forecast, services
from billing.forecast import (
    MINIMUM_HISTORY,
    buckets,
    credit_forecast,
    days_of_credit,
    profile,
    projected,
    run_out,
)
from billing.selectors import credit_forecasts, days_of_credit_left
from tests import factories

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 18, 4, tzinfo=UTC)  # Wednesday noon in Shanghai
WEEKS = 4


def _hourly(rate_at, *, days: int, now=NOW):
    """One charge an hour for `days` before now, of `rate_at(moment)`."""
    start = now - timedelta(days=days)
    return [
        (start + timedelta(hours=h), rate_at(start + timedelta(hours=h))) for h in range(days * 24)
    ], start


def _steady(per_hour: Decimal, days: int = 14):
    return _hourly(lambda moment: per_hour, days=days)


def _days(balance, spending, start, threshold=Decimal(0), **extra):
    return days_of_credit(
        balance=Decimal(balance),
        threshold=threshold,
        spending=spending,
        history_start=start,
        now=NOW,
        zone=SHANGHAI,
        **extra,
    )


def _forecast(balance, spending, start, **extra):
    return credit_forecast(
        balance=Decimal(balance),
        threshold=Decimal(0),
        spent=buckets(spending, now=NOW, zone=SHANGHAI),
        history_start=start,
        now=NOW,
        zone=SHANGHAI,
        **extra,
    )


def _plain_days(balance, spending, start):
    """What a plain average of the whole history would say, for comparison."""
    hours = Decimal((NOW - start) // timedelta(hours=1))
    per_hour = sum((amount for _, amount in spending), Decimal(0)) / hours
    return Decimal(balance) / per_hour / 24


def test_steady_spending_lasts_balance_over_daily_spend():
    spending, start = _steady(Decimal("0.5"))  # 12.00 a day
    assert _days("60", spending, start) == Decimal("5.0")


def test_emergency_credit_counts_down_to_the_threshold_not_to_zero():
    spending, start = _steady(Decimal("0.5"))
    assert _days("60", spending, start, threshold=Decimal("-12")) == Decimal("6.0")


def test_evening_heavy_use_runs_out_sooner_when_the_evening_comes_first():
    # 10.00 every evening 18:00-19:00 local, 0.10 in every other hour.
    spending, start = _hourly(
        lambda moment: Decimal("10") if moment.astimezone(SHANGHAI).hour == 18 else Decimal("0.1"),
        days=14,
    )
    # From Wednesday noon: 6 cheap hours (0.60), then the evening's 10.00 exhausts 10.50 early.
    days = _days("10.50", spending, start)
    assert Decimal("0.2") <= days <= Decimal("0.3")


def test_a_weekly_pattern_runs_out_at_the_hour_it_predicts():
    # Four weeks of 0.25 an hour on weekdays and 1.00 an hour at weekends.
    def weekly(moment):
        return Decimal("1.00") if moment.astimezone(SHANGHAI).weekday() >= 5 else Decimal("0.25")

    spending, start = _hourly(weekly, days=7 * WEEKS)
    # Wednesday noon to Saturday midnight: 60 hours at 0.25 = 15.00; then 12.00 of Saturday.
    result = _forecast("27.00", spending, start)
    assert result.runs_out_at == datetime(2026, 11, 21, 12, tzinfo=SHANGHAI)
    assert result.days == Decimal("3.0")


def test_a_recent_step_change_is_followed_faster_than_a_plain_average():
    # 0.25 an hour for three weeks, then 0.75 an hour in the last one.
    def stepped(moment):
        return Decimal("0.75") if NOW - moment <= timedelta(days=7) else Decimal("0.25")

    spending, start = _hourly(stepped, days=7 * WEEKS)
    # Weights 1, 1/2, 1/4, 1/8: (0.75 + 0.25 * 7/8) / (15/8) = 31/60 an hour, 12.40 a day.
    assert _days("62.00", spending, start) == Decimal("5.0")
    # The plain average (0.375 an hour) would promise almost seven days.
    assert _plain_days("62.00", spending, start).quantize(Decimal("0.1")) == Decimal("6.9")


def test_the_weighting_halves_with_each_older_week():
    # One slot spent 1.00 last week and nothing the week before: one week's weight of two-thirds.
    monday_9 = datetime(2026, 11, 16, 9, tzinfo=SHANGHAI)
    spent = buckets([(monday_9, Decimal("1.00"))], now=NOW, zone=SHANGHAI)
    rates = profile(spent=spent, start=NOW - timedelta(days=14), end=NOW, now=NOW, zone=SHANGHAI)
    assert rates[forecast.slot_of(monday_9, SHANGHAI)] == Decimal(1) / Decimal("1.5")
    assert sum(rates) == rates[forecast.slot_of(monday_9, SHANGHAI)]


def test_hours_not_yet_measured_do_not_count_as_hours_without_spending():
    spending, start = _steady(Decimal("0.5"))
    # The meter last reported two days ago: the history ends there, and so does its spending.
    until = NOW - timedelta(days=2)
    measured = [(moment, amount) for moment, amount in spending if moment < until]
    assert _days("84", measured, start, measured_until=until) == Decimal("7.0")
    # Counted as hours without spending, they would stretch the week ahead.
    assert _days("84", measured, start) > Decimal("7.5")


def test_a_projection_adds_up_the_rates_hour_by_hour():
    spending, start = _steady(Decimal("0.5"))
    rates = profile(
        spent=buckets(spending, now=NOW, zone=SHANGHAI),
        start=start,
        end=NOW,
        now=NOW,
        zone=SHANGHAI,
    )
    half_past = NOW + timedelta(minutes=30)
    assert projected(rates, start=half_past, end=half_past + timedelta(days=2), zone=SHANGHAI) == 24
    assert projected(rates, start=NOW, end=NOW, zone=SHANGHAI) == 0


def test_a_large_balance_lasts_as_long_as_a_small_one_says():
    spending, start = _steady(Decimal("0.5"))
    assert _days("3600", spending, start) == Decimal("300.0")
    far = _forecast("5000", spending, start)
    assert (far.days, far.runs_out_at) == (Decimal(366), None)


def test_running_out_within_an_hour_is_to_the_minute():
    rates = [Decimal("0.5")] * forecast.HOURS_PER_WEEK
    assert run_out(rates, left=Decimal("0.25"), start=NOW, zone=SHANGHAI) == NOW + timedelta(
        minutes=30
    )


def test_an_empty_wallet_has_no_days_left():
    spending, start = _steady(Decimal("1"))
    assert _days("0", spending, start) == Decimal(0)
    assert _forecast("0", spending, start).runs_out_at is None


def test_too_little_history_gives_no_estimate():
    spending, start = _steady(Decimal("1"), days=3)
    assert _days("50", spending, start) is None
    assert profile(spent={}, start=NOW - MINIMUM_HISTORY, end=NOW, now=NOW, zone=SHANGHAI) is None


def test_no_spending_gives_no_estimate():
    assert _days("50", [], NOW - timedelta(days=10)) is None


# The database half ------------------------------------------------------------------------


def _charged_hourly(account, start, end, amount_at):
    hours = (end - start) // timedelta(hours=1)
    services.charges_post(
        charges=[
            services.ChargeInput(
                account=account,
                kind="energy",
                idempotency_key=f"forecast:{account.pk}:{hour}",
                period_start=start + timedelta(hours=hour),
                period_end=start + timedelta(hours=hour + 1),
                quantity=Decimal(1),
                net=amount_at(start + timedelta(hours=hour)),
                tax=Decimal(0),
            )
            for hour in range(hours)
        ]
    )


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ["Europe/London", "Asia/Kolkata"])
def test_the_database_buckets_charges_as_the_pure_forecast_does(zone):
    # Across London's change to summer time, and in a zone half an hour off UTC.
    now = datetime(2026, 4, 2, 12, 20, tzinfo=UTC)
    prop = factories.PropertyFactory(time_zone=zone)
    opened = now - timedelta(days=24)
    account = factories.AccountFactory(unit__property=prop, opened_at=opened)
    factories.TopupFactory(account=account, amount=Decimal("500.00"))

    def amount_at(moment):
        local = moment.astimezone(ZoneInfo(zone))
        return Decimal(local.hour % 5 + local.weekday()) / 10

    start = opened.replace(minute=0) + timedelta(hours=1)
    _charged_hourly(account, start, now - timedelta(hours=1), amount_at)
    account.refresh_from_db()
    found = credit_forecasts(accounts=[account], now=now)[account.pk]
    hours = (now - timedelta(hours=1) - start) // timedelta(hours=1)
    moments = [start + timedelta(hours=hour) for hour in range(hours)]
    expected = credit_forecast(
        balance=account.wallet.balance,
        threshold=Decimal(0),
        spent=buckets(
            [(moment, amount_at(moment)) for moment in moments], now=now, zone=ZoneInfo(zone)
        ),
        history_start=start,
        measured_until=moments[-1] + timedelta(hours=1),
        now=now,
        zone=ZoneInfo(zone),
    )
    assert found == expected
    assert found.runs_out_at is not None
    assert days_of_credit_left(accounts=[account], now=now) == {account.pk: found.days}
