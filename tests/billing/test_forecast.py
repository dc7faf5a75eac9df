from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from billing.forecast import days_of_credit

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 18, 4, tzinfo=UTC)  # Wednesday noon in Shanghai


def _steady(per_hour: Decimal, days: int = 14):
    start = NOW - timedelta(days=days)
    return [(start + timedelta(hours=h), per_hour) for h in range(days * 24)], start


def _days(balance, spending, start, threshold=Decimal(0)):
    return days_of_credit(
        balance=Decimal(balance),
        threshold=threshold,
        spending=spending,
        history_start=start,
        now=NOW,
        zone=SHANGHAI,
    )


def test_steady_spending_lasts_balance_over_daily_spend():
    spending, start = _steady(Decimal("0.5"))  # 12.00 a day
    assert _days("60", spending, start) == Decimal("5.0")


def test_emergency_credit_counts_down_to_the_threshold_not_to_zero():
    spending, start = _steady(Decimal("0.5"))
    assert _days("60", spending, start, threshold=Decimal("-12")) == Decimal("6.0")


def test_evening_heavy_use_runs_out_sooner_when_the_evening_comes_first():
    start = NOW - timedelta(days=14)
    # 10.00 every evening 18:00-19:00 local, 0.10 in every other hour.
    spending = []
    for h in range(14 * 24):
        moment = start + timedelta(hours=h)
        evening = moment.astimezone(SHANGHAI).hour == 18
        spending.append((moment, Decimal("10") if evening else Decimal("0.1")))
    # From Wednesday noon: 6 cheap hours (0.60), then the evening's 10.00 exhausts 10.50 early.
    days = _days("10.50", spending, start)
    assert Decimal("0.2") <= days <= Decimal("0.3")


def test_an_empty_wallet_has_no_days_left():
    spending, start = _steady(Decimal("1"))
    assert _days("0", spending, start) == Decimal(0)


def test_too_little_history_gives_no_estimate():
    spending, start = _steady(Decimal("1"), days=3)
    assert _days("50", spending, start) is None


def test_no_spending_gives_no_estimate():
    assert _days("50", [], NOW - timedelta(days=10)) is None
