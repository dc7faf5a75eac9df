"""The carbon report: each account's frozen electricity by local month times the property's grid
emission factor, in exact Decimals rounded to 0.01 kg, with the property's totals."""

from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from accounts.models import Property
from billing.freeze import freeze_day
from meters.models import Meter, Reading
from meters.services import readings_ingest
from reports import carbon
from reports.base import Filters
from reports.carbon import CarbonReport, emissions_kg
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
OCT30, OCT31, NOV1, NOV2 = (
    date(2026, 10, 30),
    date(2026, 10, 31),
    date(2026, 11, 1),
    date(2026, 11, 2),
)
REPORT = CarbonReport()


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=SHANGHAI)


def read(meter, *registers):
    days = (OCT30, OCT31, NOV1, NOV2)
    readings_ingest(
        meters=Meter.objects.filter(pk=meter.pk),
        rows=[
            {"serial": meter.serial, "taken_at": midnight(day), "register": Decimal(value)}
            for day, value in zip(days, registers, strict=True)
        ],
        source=Reading.Source.HTTP,
    )


def tenancy(prop, unit_name, tenant_name, *registers):
    unit = factories.UnitFactory(property=prop, name=unit_name)
    factories.AccountFactory(unit=unit, opened_at=midnight(OCT30), tenant__name=tenant_name)
    read(factories.MeterFactory(unit=unit, installed_at=midnight(OCT30)), *registers)


def filters(prop, start=date(2026, 10, 1), end=date(2026, 11, 30)) -> Filters:
    return Filters(property=prop, start=start, end=end, extra={})


@pytest.fixture
def frozen(property_a1):
    """Two tenants' electricity frozen from 30 October to 1 November, at 0.581 kg a kWh."""
    Property.objects.filter(pk=property_a1.pk).update(carbon_kg_per_kwh=Decimal("0.5810"))
    property_a1.refresh_from_db()
    tenancy(property_a1, "A-101", "Wang", "100", "110", "125", "127.5")
    tenancy(property_a1, "B-201", "Li", "40", "41.25", "42", "42.125")
    for day in (OCT30, OCT31, NOV1):
        freeze_day(property=property_a1, day=day)
    return property_a1


def test_each_accounts_months_are_its_frozen_electricity_times_the_factor(frozen):
    rows = list(REPORT.rows(filters(frozen)))
    assert rows == [
        # 25 kWh: 14.525 kg, to even 14.52; 2.5 kWh: 1.4525 kg.
        ("A-101", "Wang", "2026-10", Decimal("25"), Decimal("14.52")),
        ("A-101", "Wang", "2026-11", Decimal("2.5"), Decimal("1.45")),
        ("B-201", "Li", "2026-10", Decimal("2"), Decimal("1.16")),
        # 0.125 kWh: 0.072625 kg.
        ("B-201", "Li", "2026-11", Decimal("0.125"), Decimal("0.07")),
    ]
    assert all(isinstance(value, Decimal) for row in rows for value in row[3:])
    assert REPORT.count(filters(frozen)) == 4


def test_the_totals_are_the_propertys_exact_total_rounded_once(frozen):
    # 29.625 kWh is 17.212125 kg; the rounded rows would add up to 17.20.
    assert REPORT.totals(filters(frozen)) == (
        "Total",
        None,
        None,
        Decimal("29.625"),
        Decimal("17.21"),
    )


def test_a_page_of_rows_and_a_shorter_range(frozen):
    page = list(REPORT.rows(filters(frozen), offset=1, limit=2))
    assert [row[:3] for row in page] == [("A-101", "Wang", "2026-11"), ("B-201", "Li", "2026-10")]
    october_31 = list(REPORT.rows(filters(frozen, OCT31, OCT31)))
    assert [(row[0], row[3], row[4]) for row in october_31] == [
        ("A-101", Decimal("15"), Decimal("8.72")),
        ("B-201", Decimal("0.75"), Decimal("0.44")),
    ]


def test_the_chart_shows_the_propertys_emissions_per_month(frozen):
    chart = REPORT.chart(filters(frozen, date(2026, 9, 1), date(2026, 11, 30)))
    assert list(chart.labels) == ["2026-09", "2026-10", "2026-11"]
    [series] = chart.series
    # 27 kWh in October, 2.625 kWh in November.
    assert list(series.values) == [Decimal("0.00"), Decimal("15.69"), Decimal("1.53")]


def test_another_propertys_tenants_are_not_in_its_report(frozen, property_a2):
    tenancy(property_a2, "Z-1", "Zhao", "0", "8", "8", "8")
    freeze_day(property=property_a2, day=OCT30)
    assert [row[:2] for row in REPORT.rows(filters(property_a2))] == [("Z-1", "Zhao")]
    assert "Zhao" not in {row[1] for row in REPORT.rows(filters(frozen))}


def test_the_report_is_listed_for_the_catalogue():
    assert [report.slug for report in carbon.REPORTS] == ["carbon"]
    assert [column.key for column in REPORT.columns(None)] == [
        "unit",
        "tenant",
        "month",
        "electricity",
        "emissions",
    ]


def test_emissions_round_half_to_even_at_the_hundredth():
    assert emissions_kg(Decimal("12.25"), Decimal("0.5")) == Decimal("6.12")
    assert emissions_kg(Decimal("12.35"), Decimal("0.5")) == Decimal("6.18")
    assert emissions_kg(Decimal("0.1") + Decimal("0.2"), Decimal("1")) == Decimal("0.30")
