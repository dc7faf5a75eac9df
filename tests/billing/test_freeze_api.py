"""Frozen days over the API: read-only, scoped, filtered by property, account or meter and days."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from billing.freeze import freeze_due
from meters.models import Meter
from meters.services import readings_ingest
from tests import factories

pytestmark = pytest.mark.django_db

DAILY = reverse("daily-freeze-list")
METERS = reverse("meter-freeze-list")
DAY1, DAY2, DAY3 = date(2026, 10, 5), date(2026, 10, 6), date(2026, 10, 7)
# The caller's membership and its properties, then the page.
LIST_QUERIES = 3


def local(day: date, hour: int = 0) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


@pytest.fixture
def frozen(property_a1):
    """Three frozen days of an account with a meter that reported at each midnight but the
    second, and a top-up on the first day."""
    meter = factories.MeterFactory(unit__property=property_a1, installed_at=local(DAY1))
    account = factories.AccountFactory(unit=meter.unit, opened_at=local(DAY1))
    with time_machine.travel(local(DAY1, 9), tick=False):
        factories.TopupFactory(account=account, amount=Decimal("50.00"))
    readings_ingest(
        meters=Meter.objects.filter(pk=meter.pk),
        rows=[
            {"serial": meter.serial, "taken_at": moment, "register": Decimal(value)}
            for moment, value in [
                (local(DAY1), 0),
                (local(DAY2), 10),
                (local(DAY2, 12), 20),
                (local(DAY3 + timedelta(days=1)), 40),
            ]
        ],
        source="http",
    )
    freeze_due(now=local(DAY3 + timedelta(days=1), 1))
    return account, meter


def test_accountants_read_each_days_balances_and_money(frozen, accountant_a, api_as):
    account, _ = frozen
    response = api_as(accountant_a).get(DAILY, {"account": str(account.uuid)})
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["day"] for row in rows] == ["2026-10-07", "2026-10-06", "2026-10-05"]
    first = rows[-1]
    assert first["account"] == str(account.uuid)
    assert (first["opening_balance"], first["topups"], first["closing_balance"]) == (
        "0.00",
        "50.00",
        "50.00",
    )
    assert (first["electricity"], first["currency"], first["month_end"]) == (
        "10.000000",
        "CNY",
        False,
    )


def test_daily_freezes_filter_by_days(frozen, owner_a, api_as):
    account, _ = frozen
    response = api_as(owner_a).get(
        DAILY, {"account": str(account.uuid), "since": "2026-10-06", "until": "2026-10-07"}
    )
    assert [row["day"] for row in response.json()["results"]] == ["2026-10-06"]


def test_meter_freezes_say_how_each_register_was_found(frozen, owner_a, api_as):
    _, meter = frozen
    rows = api_as(owner_a).get(METERS, {"meter": str(meter.uuid)}).json()["results"]
    found = [(row["day"], row["register"], row["method"], row["estimated"]) for row in rows]
    assert found == [
        ("2026-10-07", "40.000000", "actual", False),
        ("2026-10-06", "26.666667", "interpolated", True),
        ("2026-10-05", "10.000000", "actual", False),
    ]
    assert (rows[0]["serial"], rows[0]["unit"]) == (meter.serial, "kWh")
    estimated = api_as(owner_a).get(METERS, {"estimated": "false"}).json()["results"]
    assert [row["day"] for row in estimated] == ["2026-10-07", "2026-10-05"]


def test_frozen_days_cannot_be_written(frozen, owner_a, api_as):
    api = api_as(owner_a)
    assert api.post(DAILY, {}).status_code == 405
    assert api.post(METERS, {}).status_code == 405


def test_listing_takes_a_fixed_number_of_queries(
    frozen, owner_a, api_as, django_assert_max_num_queries
):
    api = api_as(owner_a)
    for url in (DAILY, METERS):
        with django_assert_max_num_queries(LIST_QUERIES):
            assert api.get(url).status_code == 200
