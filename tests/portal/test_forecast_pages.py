"""What the portal tells a tenant about the future and about carbon: when the credit runs out at
the recent pace, and the estimated emissions of this month and the months before."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from accounts.models import Property
from billing import services
from meters.models import Meter
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 18, 4, tzinfo=UTC)  # Wednesday 18 November, noon in Shanghai


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def tenant_user(db):
    return factories.UserFactory(username="zhang")


def _account(prop, user, *, days: int):
    account = factories.AccountFactory(unit__property=prop, opened_at=NOW - timedelta(days=days))
    account.tenant.user = user
    account.tenant.save()
    return account


def _spend_steadily(account, *, days: int, per_hour: str, meter=None):
    """One charge an hour for `days` up to now."""
    services.charges_post(
        charges=[
            services.ChargeInput(
                account=account,
                kind="energy",
                idempotency_key=f"steady:{account.pk}:{hour}",
                period_start=NOW - timedelta(hours=hour + 1),
                period_end=NOW - timedelta(hours=hour),
                quantity=Decimal(1),
                net=Decimal(per_hour),
                tax=Decimal(0),
                meter_id=meter.pk if meter else None,
            )
            for hour in range(days * 24)
        ]
    )


def _left_with(account, balance: str, *, spent: str):
    factories.TopupFactory(account=account, amount=Decimal(spent) + Decimal(balance))


def _home(client, account, **headers):
    return client.get(reverse("portal:home", args=[account.uuid]), **headers)


@pytest.fixture
def spender(client, tenant_user, property_a1):
    """A tenant who spent 0.50 an hour for two weeks, signed in."""
    account = _account(property_a1, tenant_user, days=15)
    _spend_steadily(account, days=14, per_hour="0.50")
    client.force_login(tenant_user)
    return account


@pytest.mark.parametrize(
    ("balance", "sentence"),
    [
        # 81.4 hours: Saturday 21:24, around 21:00.
        ("40.70", "At this rate your credit runs out on Saturday around 21:00."),
        # 5.8 hours: 17:48 today, around 18:00.
        ("2.90", "At this rate your credit runs out today around 18:00."),
        # 25 hours: Thursday 13:00.
        ("12.50", "At this rate your credit runs out tomorrow around 13:00."),
        # 12 days: Monday 30 November at noon; a weekday alone would not say which.
        ("144.00", "At this rate your credit runs out on November 30 around 12:00."),
    ],
)
def test_the_home_page_says_when_the_credit_runs_out_in_local_time(
    client, spender, balance, sentence
):
    _left_with(spender, balance, spent="168.00")
    body = _home(client, spender).content.decode()
    assert sentence in body


def test_the_weekday_is_in_the_tenants_language(client, spender):
    _left_with(spender, "40.70", spent="168.00")
    body = _home(client, spender, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "星期六" in body
    assert "Saturday" not in body


def test_nothing_is_said_without_a_week_of_history_or_without_credit(client, property_a1, spender):
    _left_with(spender, "0.00", spent="168.00")
    assert 'data-testid="run-out"' not in _home(client, spender).content.decode()
    newcomer_login = factories.UserFactory(username="li")
    newcomer = _account(property_a1, newcomer_login, days=3)
    _spend_steadily(newcomer, days=3, per_hour="0.50")
    _left_with(newcomer, "40.00", spent="36.00")
    client.force_login(newcomer_login)
    response = _home(client, newcomer)
    assert response.context["run_out"] is None
    assert 'data-testid="run-out"' not in response.content.decode()


# Carbon ---------------------------------------------------------------------------------------


@pytest.fixture
def metered(client, tenant_user, property_a1):
    Property.objects.filter(pk=property_a1.pk).update(carbon_kg_per_kwh=Decimal("0.5810"))
    account = _account(property_a1, tenant_user, days=60)
    meter = factories.MeterFactory(unit=account.unit, installed_at=account.opened_at)
    client.force_login(tenant_user)
    return account, meter


def _used(account, meter, *, start, kwh: str):
    services.charges_post(
        charges=[
            services.ChargeInput(
                account=account,
                kind="energy",
                idempotency_key=f"used:{meter.pk}:{start.isoformat()}",
                period_start=start,
                period_end=start + timedelta(minutes=15),
                quantity=Decimal(kwh),
                net=Decimal(kwh),
                tax=Decimal(0),
                meter_id=meter.pk,
            )
        ]
    )


def test_the_usage_page_estimates_this_months_and_last_months_emissions(client, metered):
    account, meter = metered
    # 1 November 00:10 in Shanghai is still October in UTC: it counts in November.
    _used(account, meter, start=datetime(2026, 10, 31, 16, 10, tzinfo=UTC), kwh="3")
    _used(account, meter, start=datetime(2026, 11, 17, 1, tzinfo=UTC), kwh="0.125")
    _used(account, meter, start=datetime(2026, 10, 20, 1, tzinfo=UTC), kwh="10")
    response = client.get(reverse("portal:usage", args=[account.uuid]))
    carbon = response.context["carbon"]
    months = [(row.month.isoformat(), row.current, row.kwh, row.kg) for row in carbon.months]
    # 3.125 kWh at 0.581: 1.815625 kg, shown as 1.82; 10 kWh: 5.81 kg.
    assert months == [
        ("2026-11-01", True, Decimal("3.125"), Decimal("1.82")),
        ("2026-10-01", False, Decimal("10"), Decimal("5.81")),
        ("2026-09-01", False, Decimal(0), Decimal("0.00")),
    ]
    body = response.content.decode()
    assert "This month so far: about 1.82 kg CO₂ from 3.1 kWh of electricity." in body
    assert body.count('data-testid="carbon-month"') == 3


def test_emissions_are_exact_decimals_rounded_half_to_even(client, metered):
    account, meter = metered
    Property.objects.filter(pk=account.unit.property_id).update(carbon_kg_per_kwh=Decimal("0.5"))
    # 0.1 + 0.2 kWh is exactly 0.3; 12.25 kWh at 0.5 is 6.125 kg, rounded to 6.12, not 6.13.
    for hour, kwh in enumerate(["0.1", "0.2", "11.95"]):
        _used(account, meter, start=NOW - timedelta(hours=hour + 1), kwh=kwh)
    response = client.get(reverse("portal:usage", args=[account.uuid]))
    current = response.context["carbon"].months[0]
    assert (current.kwh, current.kg) == (Decimal("12.25"), Decimal("6.12"))


def test_a_unit_with_only_water_shows_no_carbon(client, tenant_user, property_a1):
    account = _account(property_a1, tenant_user, days=5)
    factories.MeterFactory(unit=account.unit, utility=Meter.Utility.WATER)
    client.force_login(tenant_user)
    response = client.get(reverse("portal:usage", args=[account.uuid]))
    assert response.context["carbon"] is None
    assert 'data-testid="carbon"' not in response.content.decode()


def test_the_chart_alone_is_sent_to_htmx_without_the_carbon_table(client, metered):
    account, _meter = metered
    response = client.get(
        reverse("portal:usage", args=[account.uuid]), {"period": "month"}, HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<section class="card chart"')
    assert 'data-testid="carbon"' not in body
