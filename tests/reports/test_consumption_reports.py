"""The consumption reports: each unit's frozen consumption by local month, consumption while
units stood vacant, and the readings charging refused or that wrapped round."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from billing.charging import charge_new_readings
from billing.freeze import freeze_day
from meters.models import Meter, Reading
from meters.services import readings_ingest
from reports.base import Filters
from reports.catalogue import REPORTS
from tariffs.services import tariff_create
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


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


def midnight(day: date, hour: int = 0) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=SHANGHAI)


def read(meter, *points):
    readings_ingest(
        meters=Meter.objects.filter(pk=meter.pk),
        rows=[
            {"serial": meter.serial, "taken_at": moment, "register": Decimal(str(value))}
            for moment, value in points
        ],
        source=Reading.Source.HTTP,
    )


def filters(prop, start: date, end: date) -> Filters:
    return Filters(property=prop, start=start, end=end, extra={})


def with_tariff(prop, utility="electricity"):
    tariff_create(
        property=prop,
        utility=utility,
        name=f"Flat {utility}",
        actor=None,
        version={
            "effective_from": datetime(2025, 1, 1, tzinfo=UTC),
            "kind": "flat",
            "flat_price": "1.00",
            "tax_rate": "0",
        },
    )


@pytest.fixture
def metered(property_a1):
    """Unit A with an electricity and a water meter read at every local midnight from 30
    October to 2 November; unit B with a meter that reported once and is carried forward.
    The days 30 October to 1 November are frozen."""
    unit_a = factories.UnitFactory(property=property_a1, name="A-101")
    unit_b = factories.UnitFactory(property=property_a1, name="B-201")
    electricity = factories.MeterFactory(unit=unit_a, installed_at=midnight(OCT30))
    water = factories.MeterFactory(
        unit=unit_a, installed_at=midnight(OCT30), utility=Meter.Utility.WATER
    )
    silent = factories.MeterFactory(unit=unit_b, installed_at=midnight(OCT30))
    days = (OCT30, OCT31, NOV1, NOV2)
    read(electricity, *zip(map(midnight, days), ("100", "110", "125", "127.5"), strict=True))
    read(water, *zip(map(midnight, days), ("5", "5.5", "6.25", "7"), strict=True))
    read(silent, (midnight(OCT30), "40"))
    for day in (OCT30, OCT31, NOV1):
        freeze_day(property=property_a1, day=day)
    return unit_a, unit_b


def test_consumption_is_each_units_frozen_days_summed_by_local_month(metered, property_a1):
    report = REPORTS["consumption"]
    rows = list(report.rows(filters(property_a1, date(2026, 10, 1), date(2026, 11, 30))))
    assert rows == [
        ("A-101", "2026-10", Decimal("25"), Decimal("1.25"), 0),
        ("A-101", "2026-11", Decimal("2.5"), Decimal("0.75"), 0),
        ("B-201", "2026-10", Decimal("0"), Decimal("0"), 2),
        ("B-201", "2026-11", Decimal("0"), Decimal("0"), 1),
    ]
    assert report.count(filters(property_a1, date(2026, 10, 1), date(2026, 11, 30))) == 4


def test_consumption_counts_only_the_days_inside_the_range(metered, property_a1):
    rows = list(REPORTS["consumption"].rows(filters(property_a1, OCT31, OCT31)))
    assert rows[0] == ("A-101", "2026-10", Decimal("15"), Decimal("0.75"), 0)


def test_consumption_totals_and_pages_agree_with_the_rows(metered, property_a1):
    report = REPORTS["consumption"]
    chosen = filters(property_a1, date(2026, 10, 1), date(2026, 11, 30))
    assert report.totals(chosen) == ("Total", None, Decimal("27.5"), Decimal("2"), 3)
    page = list(report.rows(chosen, offset=1, limit=2))
    assert [row[:2] for row in page] == [("A-101", "2026-11"), ("B-201", "2026-10")]


def test_the_consumption_chart_has_a_bar_per_month_and_utility(metered, property_a1):
    chart = REPORTS["consumption"].chart(filters(property_a1, date(2026, 9, 1), date(2026, 11, 30)))
    assert chart.style == "bars"
    assert list(chart.labels) == ["2026-09", "2026-10", "2026-11"]
    electricity, water = chart.series
    assert list(electricity.values) == [0, Decimal("25"), Decimal("2.5")]
    assert list(water.values) == [0, Decimal("1.25"), Decimal("0.75")]


def test_another_propertys_meters_are_not_in_its_consumption(metered, property_a2):
    other = factories.MeterFactory(unit__property=property_a2, installed_at=midnight(OCT30))
    read(other, (midnight(OCT30), "1"), (midnight(OCT31), "9"))
    freeze_day(property=property_a2, day=OCT30)
    rows = list(REPORTS["consumption"].rows(filters(property_a2, OCT30, OCT31)))
    assert [(row[0], row[2]) for row in rows] == [(other.unit.name, Decimal("8"))]


# Vacant units ------------------------------------------------------------------------------------


def test_vacant_consumption_lists_what_charging_recorded_for_units_without_a_tenant(property_a1):
    with_tariff(property_a1)
    vacant = factories.MeterFactory(
        unit=factories.UnitFactory(property=property_a1, name="V-1"),
        installed_at=midnight(OCT30),
    )
    occupied = factories.MeterFactory(unit__property=property_a1, installed_at=midnight(OCT30))
    factories.AccountFactory(unit=occupied.unit, opened_at=midnight(OCT30))
    read(vacant, (midnight(OCT30), "100"), (midnight(OCT31), "110"))
    read(occupied, (midnight(OCT30), "0"), (midnight(OCT31), "7"))
    charge_new_readings()
    read(vacant, (midnight(NOV1), "125"))
    charge_new_readings()
    report = REPORTS["vacant-consumption"]
    october = filters(property_a1, date(2026, 10, 1), OCT31)
    rows = list(report.rows(october))
    assert rows == [
        ("V-1", vacant.serial, midnight(OCT30), midnight(OCT31), Decimal("10"), None),
        # Ending at the midnight that closes 31 October, it belongs to that day.
        ("V-1", vacant.serial, midnight(OCT31), midnight(NOV1), Decimal("15"), None),
    ]
    assert report.totals(october)[4:] == (Decimal("25"), Decimal("0"))
    assert report.count(filters(property_a1, NOV1, date(2026, 11, 30))) == 0


# Anomalies ---------------------------------------------------------------------------------------


def test_anomalies_list_rejected_readings_and_rollovers_with_their_reasons(property_a1):
    with_tariff(property_a1)
    start = midnight(OCT30, 8)
    faulty = factories.MeterFactory(
        unit=factories.UnitFactory(property=property_a1, name="F-1"), installed_at=start
    )
    wrapping = factories.MeterFactory(
        unit=factories.UnitFactory(property=property_a1, name="W-1"), installed_at=start
    )
    wrapping.register_rollover = Decimal(100000)
    wrapping.save(update_fields=["register_rollover"])
    hour = timedelta(hours=1)
    read(
        faulty,
        (start, "100"),
        (start + hour, "5000"),
        (start + 2 * hour, "90"),
        (start + 3 * hour, "101"),
    )
    read(wrapping, (start, "99990"), (start + hour, "5"))
    charge_new_readings()
    rows = list(REPORTS["anomalies"].rows(filters(property_a1, OCT30, OCT30)))
    assert [(row[0], row[1], row[3], row[4], row[5]) for row in rows] == [
        (start + hour, faulty.serial, Decimal("5000"), Decimal("100"), "Implausible jump"),
        (start + hour, wrapping.serial, Decimal("5"), Decimal("99990"), "Register rolled over"),
        (start + 2 * hour, faulty.serial, Decimal("90"), Decimal("100"), "Register went backwards"),
    ]
    assert rows[0][2] == "F-1"
    assert rows[0][6].startswith("implausible jump of 4900")
    assert rows[1][6] == "Wrapped round at 100000."
    assert REPORTS["anomalies"].count(filters(property_a1, OCT30, OCT30)) == 3
    assert REPORTS["anomalies"].count(filters(property_a1, OCT31, OCT31)) == 0
