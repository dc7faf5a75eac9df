"""The overview's monthly forecast: each property's charged consumption and revenue so far in
its local month, and the whole month's forecast from its recent hour-of-week profile."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from accounts.selectors import scope_for_user
from billing import services
from billing.selectors import month_forecasts
from tests import factories

pytestmark = pytest.mark.django_db

# Monday 16 November 2026, noon in Shanghai: 15.5 days of November gone, 14.5 to come.
NOW = datetime(2026, 11, 16, 4, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


def _tenancy(prop, *, days: int):
    account = factories.AccountFactory(unit__property=prop, opened_at=NOW - timedelta(days=days))
    meter = factories.MeterFactory(unit=account.unit, installed_at=account.opened_at)
    return account, meter


def _hourly(account, meter, *, hours: int, kwh="1", net="0.50"):
    services.charges_post(
        charges=[
            services.ChargeInput(
                account=account,
                kind="energy",
                idempotency_key=f"hourly:{meter.pk}:{hour}",
                period_start=NOW - timedelta(hours=hour + 1),
                period_end=NOW - timedelta(hours=hour),
                quantity=Decimal(kwh),
                net=Decimal(net),
                tax=Decimal("0.13") * Decimal(net),
                meter_id=meter.pk,
            )
            for hour in range(hours)
        ]
    )


def _standing(account, *, days: int, net="1.00"):
    """A standing charge for each of the last `days` whole local days, up to today."""
    today = NOW.astimezone(account.unit.property.zone).replace(hour=0)
    services.charges_post(
        charges=[
            services.ChargeInput(
                account=account,
                kind="standing",
                idempotency_key=f"standing:{account.pk}:{day}",
                period_start=today - timedelta(days=day + 1),
                period_end=today - timedelta(days=day),
                quantity=Decimal(1),
                net=Decimal(net),
                tax=Decimal(0),
            )
            for day in range(days)
        ]
    )


def _scope(user):
    return scope_for_user(user=user)


def test_a_steady_property_is_forecast_at_its_pace_for_the_rest_of_the_month(owner_a, property_a1):
    account, meter = _tenancy(property_a1, days=40)
    _hourly(account, meter, hours=40 * 24)
    _standing(account, days=40)
    [row] = month_forecasts(scope=_scope(owner_a), properties=[property_a1]).rows
    assert row.month == date(2026, 11, 1)
    # 372 hours of November so far at 1 kWh and 0.50; the month's 720 hours.
    [electricity] = row.consumption
    assert (electricity.so_far, electricity.forecast) == (Decimal(372), Decimal(720))
    # Fifteen standing charges of 1.00 so far, for the days up to yesterday; thirty in all.
    assert row.revenue.so_far == Decimal("186.00") + Decimal("15.00")
    assert row.revenue.forecast == Decimal("360.00") + Decimal("30.00")


def test_a_weekly_pattern_and_a_recent_rise_shape_the_forecast(owner_a, property_a1):
    account, meter = _tenancy(property_a1, days=40)
    # 1 kWh an hour, and 2 kWh an hour more at weekends in the last week only.
    _hourly(account, meter, hours=40 * 24)
    weekend = [
        NOW - timedelta(hours=hour + 1)
        for hour in range(7 * 24)
        if (NOW - timedelta(hours=hour + 1)).astimezone(property_a1.zone).weekday() >= 5
    ]
    services.charges_post(
        charges=[
            services.ChargeInput(
                account=account,
                kind="energy",
                idempotency_key=f"weekend:{moment.isoformat()}",
                period_start=moment,
                period_end=moment + timedelta(hours=1),
                quantity=Decimal(2),
                net=Decimal(0),
                tax=Decimal(0),
                meter_id=meter.pk,
            )
            for moment in weekend
        ]
    )
    [row] = month_forecasts(scope=_scope(owner_a), properties=[property_a1]).rows
    [electricity] = row.consumption
    # So far: 372 hours and last weekend's 48 hours at 2 more.
    assert electricity.so_far == Decimal(372 + 96)
    # Weekend hours seen four times, weighted 1, 1/2, 1/4, 1/8: 1 + 2 * 8/15 an hour. Two
    # weekends remain (21-22 and 28-29 November), 96 hours.
    weekend_rate = 1 + Decimal(2) / (Decimal(15) / 8)
    expected = 372 + 96 + (348 - 96) + 96 * weekend_rate
    places = Decimal("0.000001")
    assert electricity.forecast.quantize(places) == expected.quantize(places)


def test_a_property_with_too_little_history_has_no_forecast(client, owner_a, property_a2):
    account, meter = _tenancy(property_a2, days=3)
    _hourly(account, meter, hours=3 * 24)
    [row] = month_forecasts(scope=_scope(owner_a), properties=[property_a2]).rows
    assert row.revenue == type(row.revenue)(so_far=Decimal("36.00"), forecast=None)
    assert row.consumption[0].forecast is None
    client.force_login(owner_a)
    body = client.get(reverse("overview"), {"property": property_a2.uuid}).content.decode()
    assert 'data-testid="month-forecast"' in body
    assert "not enough history" in body


def test_the_overview_shows_each_propertys_month_in_its_money(
    client, owner_a, property_a1, property_a2
):
    account, meter = _tenancy(property_a1, days=40)
    _hourly(account, meter, hours=40 * 24)
    client.force_login(owner_a)
    response = client.get(reverse("overview"))
    body = response.content.decode()
    # Both of org A's properties; A Two has charged nothing and expects nothing.
    assert body.count('data-testid="forecast-row"') == 2
    assert "¥186.00" in body
    assert "¥360.00" in body
    assert "720.0" in body


def test_a_manager_sees_only_the_properties_they_manage(
    client, manager_a1, property_a1, property_a2
):
    for prop in (property_a1, property_a2):
        account, meter = _tenancy(prop, days=10)
        _hourly(account, meter, hours=24)
    client.force_login(manager_a1)
    forecasts = client.get(reverse("overview")).context["forecasts"]
    assert [row.property for row in forecasts.rows] == [property_a1]


def test_the_forecast_is_read_with_the_page_not_with_each_refresh(
    client, owner_a, property_a1, monkeypatch
):
    def refused(**kwargs):
        raise AssertionError("The refresh read the forecast.")

    monkeypatch.setattr("prepaid.views.month_forecasts", refused)
    client.force_login(owner_a)
    response = client.get(reverse("overview"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert 'data-testid="month-forecast"' not in response.content.decode()


def test_the_forecast_takes_as_many_queries_for_many_properties_as_for_one(
    client, owner_a, org_a, property_a1, django_assert_max_num_queries
):
    def add(prop, accounts):
        for _ in range(accounts):
            account, meter = _tenancy(prop, days=10)
            _hourly(account, meter, hours=8 * 24)
            _standing(account, days=8)

    add(property_a1, 1)
    with django_assert_max_num_queries(4) as few:
        month_forecasts(scope=_scope(owner_a), properties=[property_a1])
    props = [property_a1, *(factories.PropertyFactory(organisation=org_a) for _ in range(4))]
    for prop in props:
        add(prop, 3)
    with django_assert_max_num_queries(len(few.captured_queries)):
        rows = month_forecasts(scope=_scope(owner_a), properties=props).rows
    assert all(row.revenue.forecast is not None for row in rows)
