"""The daily freeze report: one row per account and frozen local day, registers and consumption,
top-ups by channel, energy by time-of-use period and tier band, and rows that tie."""

import inspect
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from accounts.selectors import scope_for_user
from billing.charging import charge_new_readings
from billing.freeze import freeze_day
from billing.services import payment_topup_record, transaction_reverse
from meters.models import Meter, Reading
from meters.services import readings_ingest
from reports.base import Filters
from reports.catalogue import REPORTS
from tariffs.services import tariff_create
from tests import factories

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY1, DAY2, DAY3 = date(2026, 10, 5), date(2026, 10, 6), date(2026, 10, 7)
NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
REPORT = REPORTS["daily-freeze"]
# Peak and valley prices with a tier surcharge above 8 kWh a month, tax on top, and a standing
# charge: prices to the tenth of a cent, so the lines' own rounding shows.
TARIFF = {
    "effective_from": datetime(2026, 1, 1, tzinfo=UTC),
    "kind": "tou_tiered",
    "periods": {
        day: [
            {"name": "peak", "start": "06:00", "end": "22:00", "price": "1.001"},
            {"name": "valley", "start": "22:00", "end": "06:00", "price": "0.501"},
        ]
        for day in ("weekday", "weekend", "holiday")
    },
    "bands": [{"limit": "8", "price": "0"}, {"limit": None, "price": "0.19925"}],
    "tax_rate": "0.13",
    "prices_include_tax": False,
    "standing_charge_per_day": "1.00",
}


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


def local(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI)


def at(day: date, hour: int, minute: int = 0):
    return time_machine.travel(local(day, hour, minute), tick=False)


def read(meter, *points):
    readings_ingest(
        meters=Meter.objects.filter(pk=meter.pk),
        rows=[
            {"serial": meter.serial, "taken_at": moment, "register": Decimal(str(value))}
            for moment, value in points
        ],
        source=Reading.Source.HTTP,
    )


def freeze(prop, *days):
    for day in days:
        with at(day + timedelta(days=1), 0, 20):
            freeze_day(property=prop, day=day)


def filters(prop, start=DAY1, end=DAY2) -> Filters:
    return Filters(property=prop, start=start, end=end, extra={})


def rows_by_key(prop, start=DAY1, end=DAY2) -> list[dict]:
    found = filters(prop, start, end)
    keys = [column.key for column in REPORT.columns(found)]
    return [dict(zip(keys, row, strict=True)) for row in REPORT.rows(found)]


def money(value: str) -> Decimal:
    return Decimal(value)


@pytest.fixture
def tenancy(property_a1):
    """Two days of one tenancy on the peak/valley tariff: readings charged as they come, top-ups
    by cash, bank transfer and Stripe, and the bank top-up reversed on the second day."""
    tariff_create(
        property=property_a1, utility="electricity", name="Residential", actor=None, version=TARIFF
    )
    meter = factories.MeterFactory(unit__property=property_a1, installed_at=local(DAY1))
    account = factories.AccountFactory(
        unit=meter.unit, opened_at=local(DAY1), tenant__name="Li Wei"
    )
    with at(DAY1, 9):
        factories.TopupFactory(account=account, amount=Decimal(100), channel="cash")
    with at(DAY1, 10):
        bank = factories.TopupFactory(account=account, amount=Decimal(50), channel="bank")
    # 4 kWh in the valley before 06:00, 20 kWh at peak to 22:00 (4 in band 1, 16 above it).
    read(meter, (local(DAY1), 100), (local(DAY1, 6), 104), (local(DAY1, 22), 124))
    with at(DAY1, 22, 30):
        charge_new_readings()
    read(meter, (local(DAY2), 126))
    with at(DAY2, 0, 30):
        charge_new_readings()
    with at(DAY2, 12):
        payment_topup_record(
            account=account,
            amount=Decimal(30),
            currency="CNY",
            provider="stripe",
            idempotency_key="stripe-1",
            reference="pi_1",
        )
    with at(DAY2, 15):
        transaction_reverse(
            original=bank.transaction, actor=None, reason="Entered twice", idempotency_key="rev-1"
        )
    read(meter, (local(DAY3), 134))
    freeze(property_a1, DAY1, DAY2)
    return account


def test_the_columns_name_each_channel_and_each_period_and_band_that_occurs(tenancy):
    found = filters(tenancy.unit.property)
    columns = {column.key: str(column.label) for column in REPORT.columns(found)}
    assert [label for key, label in columns.items() if key.startswith("topups_")] == [
        "Top-ups: cash",
        "Top-ups: bank transfer",
        "Top-ups: Stripe Checkout",
    ]
    assert [label for key, label in columns.items() if key.startswith("energy_")][:-1] == [
        "Energy peak band 1",
        "Energy peak band 2",
        "Energy valley band 1",
        "Energy valley band 2",
        "Energy rounding",
    ]


def test_each_row_has_the_exact_money_by_component(tenancy):
    day1, day2 = rows_by_key(tenancy.unit.property)
    assert (day1["unit"], day1["tenant"], day1["day"]) == (tenancy.unit.name, "Li Wei", DAY1)
    assert [day1[key] for key in ("topups_cash", "topups_bank", "topups_stripe", "topups")] == [
        money("100.00"),
        money("50.00"),
        money("0.00"),
        money("150.00"),
    ]
    # Lines: valley 4 x 0.501 = 2.004, peak 4 x 1.001 = 4.004 and 16 x 1.20025 = 19.204; the
    # ledger posted their exact total 25.212 plus 13% tax (3.27756) rounded: 28.49 - 3.28.
    assert [day1[f"energy_{n}"] for n in (1, 2, 3, 4)] == [
        money("4.00"),
        money("19.20"),
        money("2.00"),
        money("0.00"),
    ]
    assert (day1["energy_rounding"], day1["energy_net"]) == (money("0.01"), money("25.21"))
    assert (day1["standing_net"], day1["tax"], day1["charges"]) == (
        money("1.00"),
        money("3.41"),
        money("29.62"),
    )
    assert (day1["opening_balance"], day1["closing_balance"]) == (money("0.00"), money("120.38"))
    # Day 2: 2 kWh in the valley above band 1, at 0.70025; the Stripe payment; the reversal.
    assert (day2["topups_stripe"], day2["topups_cash"], day2["topups"]) == (
        money("30.00"),
        money("0.00"),
        money("30.00"),
    )
    assert (day2["energy_4"], day2["energy_rounding"], day2["energy_net"]) == (
        money("1.40"),
        money("0.00"),
        money("1.40"),
    )
    assert (day2["tax"], day2["adjustments"], day2["refunds"]) == (
        money("0.31"),
        money("-50.00"),
        money("0.00"),
    )
    assert (day2["opening_balance"], day2["closing_balance"]) == (money("120.38"), money("97.67"))


def test_each_row_carries_the_registers_at_both_midnights_and_the_consumption(tenancy):
    day1, day2 = rows_by_key(tenancy.unit.property)
    assert [day1[key] for key in ("electricity_opening", "electricity_closing", "electricity")] == [
        Decimal(100),
        Decimal(126),
        Decimal(26),
    ]
    assert [day2[key] for key in ("electricity_opening", "electricity_closing", "electricity")] == [
        Decimal(126),
        Decimal(134),
        Decimal(8),
    ]
    assert (day1["water_opening"], day1["water_closing"], day1["water"]) == (None, None, 0)


def test_every_row_ties_and_its_energy_columns_add_up_to_the_energy_net(tenancy):
    found = filters(tenancy.unit.property)
    keys = [column.key for column in REPORT.columns(found)]
    for row in rows_by_key(tenancy.unit.property):
        parts = [key for key in keys if key.startswith("energy_") and key != "energy_net"]
        assert sum(row[key] for key in parts) == row["energy_net"]
        assert row["charges"] == row["energy_net"] + row["standing_net"] + row["tax"]
        channels = sum(row[key] for key in keys if key.startswith("topups_"))
        assert channels == row["topups"]
        assert (
            row["opening_balance"]
            + row["topups"]
            - row["charges"]
            - row["refunds"]
            + row["adjustments"]
            == row["closing_balance"]
        )


def test_the_totals_add_up_the_rows_and_open_and_close_with_the_range(tenancy):
    found = filters(tenancy.unit.property)
    keys = [column.key for column in REPORT.columns(found)]
    totals = dict(zip(keys, REPORT.totals(found), strict=True))
    rows = rows_by_key(tenancy.unit.property)
    assert totals["unit"] == "Total"
    for key in keys[keys.index("topups_cash") : keys.index("closing_balance")]:
        assert totals[key] == sum(row[key] for row in rows), key
    assert (totals["opening_balance"], totals["closing_balance"]) == (
        money("0.00"),
        money("97.67"),
    )
    assert (totals["electricity"], totals["electricity_opening"]) == (Decimal(34), None)


def test_amounts_are_decimals_quantized_to_the_currency(tenancy):
    found = filters(tenancy.unit.property)
    kinds = [column.kind for column in REPORT.columns(found)]
    for row in [*REPORT.rows(found), REPORT.totals(found)]:
        for kind, value in zip(kinds, row, strict=True):
            if kind == "money":
                assert isinstance(value, Decimal)
                assert value.as_tuple().exponent == -2


def test_a_day_not_frozen_yet_has_no_row_and_its_money_no_column(tenancy, property_a1):
    with at(DAY3, 9):
        payment_topup_record(
            account=tenancy,
            amount=Decimal(20),
            currency="CNY",
            provider="wechat",
            idempotency_key="wechat-1",
            reference="wx_1",
        )
    found = filters(property_a1, DAY1, DAY3)
    assert "topups_wechat" not in [column.key for column in REPORT.columns(found)]
    assert [row["day"] for row in rows_by_key(property_a1, DAY1, DAY3)] == [DAY1, DAY2]
    assert REPORT.count(found) == 2


def _many(prop, count: int):
    accounts = []
    for _ in range(count):
        meter = factories.MeterFactory(unit__property=prop, installed_at=local(DAY1))
        accounts.append(factories.AccountFactory(unit=meter.unit, opened_at=local(DAY1)))
        read(meter, (local(DAY1), 0), (local(DAY1, 12), 5), (local(DAY2), 9))
    with at(DAY2, 0, 5):
        charge_new_readings()
    for number, account in enumerate(accounts):
        with at(DAY1, 9):
            factories.TopupFactory(account=account, amount=Decimal(50), channel="cash")
        with at(DAY1, 11):
            factories.TopupFactory(
                account=account, amount=Decimal(20), channel="bank" if number % 2 else "cash"
            )
    freeze(prop, DAY1, DAY2)


@pytest.mark.parametrize("count", [2, 12])
def test_reading_every_row_takes_the_same_queries_however_many_rows(
    property_a1, count, django_assert_num_queries
):
    tariff_create(
        property=property_a1, utility="electricity", name="Residential", actor=None, version=TARIFF
    )
    _many(property_a1, count)
    found = filters(property_a1)
    # The range's frozen days counted, the breakdown's columns, the frozen days, the energy
    # and the top-ups. The breakdown is read once: frozen days never change.
    with django_assert_num_queries(5):
        assert len(list(REPORT.rows(found))) == count * 2
    with django_assert_num_queries(4):
        assert len(list(REPORT.rows(found, offset=1, limit=3))) == 3
    with django_assert_num_queries(2):
        REPORT.totals(found)


def test_rows_stream_from_a_generator_and_pages_are_slices_of_them(property_a1):
    tariff_create(
        property=property_a1, utility="electricity", name="Residential", actor=None, version=TARIFF
    )
    _many(property_a1, 3)
    found = filters(property_a1)
    streamed = REPORT.rows(found)
    assert inspect.isgenerator(streamed)
    every = list(streamed)
    assert len(every) == REPORT.count(found) == 6
    assert list(REPORT.rows(found, offset=1, limit=2)) == every[1:3]
    assert list(REPORT.rows(found, offset=3)) == every[3:]
    assert list(REPORT.rows(found, offset=6, limit=10)) == []
    assert [(row[0], row[2]) for row in every] == sorted((row[0], row[2]) for row in every)


def test_a_day_frozen_later_in_the_range_is_read_afresh(property_a1):
    """A day frozen out of order, and the gap before it frozen afterwards: the breakdown read
    before the gap was frozen does not hide the gap's money."""
    account = factories.AccountFactory(unit__property=property_a1, opened_at=local(DAY1))
    with at(DAY1, 9):
        factories.TopupFactory(account=account, amount=Decimal(10), channel="cash")
    with at(DAY2, 9):
        factories.TopupFactory(account=account, amount=Decimal(20), channel="bank")
    with at(DAY3, 9):
        factories.TopupFactory(account=account, amount=Decimal(30), channel="cash")
    freeze(property_a1, DAY1, DAY3)
    found = filters(property_a1, DAY1, DAY3)
    assert [row["topups_bank"] for row in rows_by_key(property_a1, DAY1, DAY3)] == [0, 0]
    freeze(property_a1, DAY2)
    assert [row["topups_bank"] for row in rows_by_key(property_a1, DAY1, DAY3)] == [0, 20, 0]
    assert REPORT.totals(found)[11] == Decimal(20)


def test_an_empty_range_has_no_rows_and_zero_totals(property_a1):
    found = filters(property_a1)
    assert list(REPORT.rows(found)) == []
    assert REPORT.count(found) == 0
    totals = REPORT.totals(found)
    assert totals[0] == "Total"
    assert all(value in (None, 0, "Total") for value in totals)


def test_the_form_offers_only_the_properties_in_scope(manager_a1, owner_a, property_a1):
    third = factories.PropertyFactory(organisation=property_a1.organisation, code="A3")
    other = factories.PropertyFactory(code="B9")
    limited = REPORT.form_class(scope=scope_for_user(user=manager_a1))
    assert list(limited.fields["property"].queryset) == [property_a1]
    everyone = REPORT.form_class(scope=scope_for_user(user=owner_a))
    assert third in everyone.fields["property"].queryset
    assert other not in everyone.fields["property"].queryset
    refused = REPORT.form_class(
        {"property": str(other.uuid), "start": "2026-10-05", "end": "2026-10-06"},
        scope=scope_for_user(user=owner_a),
    )
    assert not refused.is_valid()
    assert "property" in refused.errors


def test_the_chart_shows_each_days_top_ups_and_charges(tenancy):
    chart = REPORT.chart(filters(tenancy.unit.property))
    assert chart.labels == ["2026-10-05", "2026-10-06"]
    top_ups, charges = chart.series
    assert top_ups.values == [money("150.00"), money("30.00")]
    assert charges.values == [money("29.62"), money("2.71")]
