"""What a tariff version would have charged over a past month, beside what was charged.

The pure arithmetic is checked against figures worked out by hand; the database half against
real charging: the same tariff as the one that charged gives no difference, and nothing is
written.
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Account
from accounts.selectors import scope_for_user
from accounts.services import account_close
from billing.charging import charge_new_readings, standing_charges_post
from billing.models import Charge, TierUsage
from meters.models import Meter, Reading
from meters.services import readings_ingest
from prepaid.audit.models import AuditLog
from tariffs import pricing
from tariffs.models import TariffVersion
from tariffs.selectors import month_bounds, past_months, tariff_for_page, tariff_what_if
from tariffs.services import tariff_create
from tariffs.stored import pricing_version, stored_pricing_version
from tariffs.whatif import Amounts, MeterHistory, Tenancy, what_if
from tests import factories

SHANGHAI = ZoneInfo("Asia/Shanghai")
CENT = Decimal("0.01")
# November 2026 in Shanghai.
NOV_START = datetime(2026, 11, 1, tzinfo=SHANGHAI)
NOV_END = datetime(2026, 12, 1, tzinfo=SHANGHAI)
BEFORE = datetime(2026, 10, 1, tzinfo=SHANGHAI)


def local(month, day, hour=0):
    return datetime(2026, month, day, hour, tzinfo=SHANGHAI)


def flat(price="1.00", **extra):
    return pricing_version(effective_from=BEFORE, kind="flat", flat_price=price, **extra)


def meter(*readings, unit=1, meter_id=1, installed=BEFORE, removed=None, rollover=None):
    return MeterHistory(
        meter_id=meter_id,
        unit_id=unit,
        installed_at=installed,
        removed_at=removed,
        rollover=None if rollover is None else Decimal(rollover),
        readings=tuple((moment, Decimal(str(register))) for moment, register in readings),
    )


def tenancy(account=1, unit=1, opened=BEFORE, closed=None):
    return Tenancy(account_id=account, unit_id=unit, opened_at=opened, closed_at=closed)


def november(version, meters, tenancies, actual=None):
    return what_if(
        version=version,
        tz=SHANGHAI,
        is_holiday=lambda day: False,
        month_start=NOV_START,
        month_end=NOV_END,
        meters=meters,
        tenancies=tenancies,
        actual=actual or {},
        minor_unit=CENT,
    )


def cents(value):
    return value.quantize(CENT)


# The arithmetic -------------------------------------------------------------------------------


def test_a_flat_month_counts_only_the_consumption_inside_it_plus_standing_charges_and_tax():
    # 48 hours either side of each month edge: half of each interval falls in November.
    readings = meter(
        (local(10, 31), 100), (local(11, 2), 120), (local(11, 30), 200), (local(12, 2), 220)
    )
    version = flat("1.00", tax_rate="0.13", standing_charge_per_day="0.50")
    result = november(version, [readings], [tenancy()])
    (row,) = result.accounts
    assert row.would.quantity == 100  # 10 + 80 + 10
    assert (cents(row.would.energy_net), cents(row.would.energy_tax)) == (100, 13)
    # 30 days at 0.50, tax on top.
    assert (cents(row.would.standing_net), cents(row.would.standing_tax)) == (15, Decimal("1.95"))
    assert cents(row.would.total) == Decimal("129.95")


def test_prices_that_include_tax_have_the_tax_taken_out_of_them():
    readings = meter((local(11, 1), 0), (local(11, 11), 100))
    version = flat("1.13", tax_rate="0.13", prices_include_tax=True)
    (row,) = november(version, [readings], [tenancy()]).accounts
    assert (cents(row.would.net), cents(row.would.tax), cents(row.would.total)) == (100, 13, 113)


def test_time_of_use_prices_each_period_and_day_type():
    weekday = [
        {"name": "valley", "start": "22:00", "end": "08:00", "price": "0.50"},
        {"name": "peak", "start": "08:00", "end": "22:00", "price": "1.00"},
    ]
    rest = [{"name": "flat", "start": "00:00", "end": "00:00", "price": "0.30"}]
    version = pricing_version(
        effective_from=BEFORE,
        kind="tou",
        periods={"weekday": weekday, "weekend": rest, "holiday": rest},
    )
    readings = meter(
        (local(11, 3, 6), 0),  # Tuesday: 2 h valley then 2 h peak, 2 units an hour
        (local(11, 3, 10), 8),
        (local(11, 7, 12), 8),  # Saturday: 10 units at the weekend price
        (local(11, 7, 14), 18),
    )
    (row,) = november(version, [readings], [tenancy()]).accounts
    # 4 x 0.50 + 4 x 1.00 + 10 x 0.30
    assert row.would.quantity == 18
    assert cents(row.would.total) == Decimal("9.00")


def test_tier_bands_run_over_the_accounts_month_across_a_meter_replacement():
    version = pricing_version(
        effective_from=BEFORE,
        kind="tiered",
        bands=[{"limit": "50", "price": "1.00"}, {"limit": None, "price": "2.00"}],
    )
    old = meter((local(11, 1), 0), (local(11, 11), 40), removed=local(11, 11))
    new = meter((local(11, 11), 0), (local(11, 21), 60), meter_id=2, installed=local(11, 11))
    (row,) = november(version, [old, new], [tenancy()]).accounts
    # 50 units at 1.00 (40 on the old meter, 10 on the new), the other 50 at 2.00.
    assert cents(row.would.total) == 150


def test_a_move_in_and_out_mid_month_splits_consumption_and_standing_charges():
    readings = meter((local(11, 1), 0), (local(12, 1), 300))  # 10 units a day
    leaving = tenancy(account=1, closed=local(11, 16))
    arriving = tenancy(account=2, opened=local(11, 16))
    result = november(flat("1.00", standing_charge_per_day="1.00"), [readings], [leaving, arriving])
    first, second = result.accounts
    assert (first.account_id, first.would.quantity, cents(first.would.total)) == (1, 150, 165)
    assert (second.account_id, second.would.quantity, cents(second.would.total)) == (2, 150, 165)
    assert cents(result.total.would.total) == 330


def test_standing_charges_wait_for_a_meter_in_the_unit():
    readings = meter((local(11, 21), 0), (local(11, 22), 0), installed=local(11, 21))
    (row,) = november(
        flat("1.00", standing_charge_per_day="1.00"), [readings], [tenancy()]
    ).accounts
    # 21 to 30 November: ten days.
    assert cents(row.would.standing_net) == 10


def test_a_register_that_wraps_keeps_counting():
    readings = meter((local(11, 1), 990), (local(11, 2), 10), rollover="1000")
    (row,) = november(flat("1.00"), [readings], [tenancy()]).accounts
    assert row.would.quantity == 20


def test_the_difference_and_its_share_of_what_was_charged():
    readings = meter((local(11, 1), 0), (local(11, 11), 100))
    actual = {1: Amounts(quantity=Decimal(100), energy_net=Decimal(100), energy_tax=Decimal(13))}
    result = november(
        flat("1.00", tax_rate="0.13", standing_charge_per_day="0.50"),
        [readings],
        [tenancy()],
        actual,
    )
    (row,) = result.accounts
    assert row.difference == Decimal("16.95")  # 129.95 - 113.00
    assert row.rate == Decimal("0.15")
    assert (result.total.difference, result.total.rate) == (Decimal("16.95"), Decimal("0.15"))


def test_an_account_charged_nothing_has_no_share():
    readings = meter((local(11, 1), 0), (local(11, 11), 10))
    (row,) = november(flat("1.00"), [readings], [tenancy()]).accounts
    assert (row.difference, row.rate) == (10, None)


# Months ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_months_offered_are_the_last_complete_local_months(property_a1):
    # 1 December 07:00 in Shanghai is still 30 November in UTC.
    with time_machine.travel(datetime(2026, 11, 30, 23, 0, tzinfo=UTC), tick=False):
        months = past_months(prop=property_a1, count=3)
    assert months == [date(2026, 11, 1), date(2026, 10, 1), date(2026, 9, 1)]
    assert month_bounds(prop=property_a1, month=date(2026, 11, 1)) == (
        datetime(2026, 10, 31, 16, tzinfo=UTC),
        datetime(2026, 11, 30, 16, tzinfo=UTC),
    )


# Against real charging ------------------------------------------------------------------------

RESIDENTIAL = {
    "kind": "tou",
    "periods": {
        day: [
            {"name": "peak", "start": "08:00", "end": "22:00", "price": "0.617"},
            {"name": "valley", "start": "22:00", "end": "08:00", "price": "0.307"},
        ]
        for day in ("weekday", "weekend", "holiday")
    },
    "standing_charge_per_day": "0.40",
    "tax_rate": "0.13",
}


def read(meter_, moment, register):
    readings_ingest(
        meters=Meter.objects.filter(pk=meter_.pk),
        rows=[{"serial": meter_.serial, "taken_at": moment, "register": Decimal(str(register))}],
        source="http",
    )


def charged_november(prop, *, units=1, move_out=False):
    """A property on RESIDENTIAL whose units' readings and standing charges from late October
    to early December were charged as they came in. With `move_out`, the first unit's tenant
    leaves on 20 November and another moves in at that moment."""
    tariff = tariff_create(
        property=prop,
        utility="electricity",
        name="Residential",
        actor=None,
        version={"effective_from": BEFORE, **RESIDENTIAL},
    )
    meters = []
    for _number in range(units):
        meter_ = factories.MeterFactory(unit__property=prop, installed_at=BEFORE)
        factories.AccountFactory(unit=meter_.unit, opened_at=BEFORE)
        meters.append(meter_)
    if move_out:
        leaving = Account.objects.get(unit=meters[0].unit)
        account_close(account=leaving, actor=None, closed_at=local(11, 20))
        factories.AccountFactory(unit=meters[0].unit, opened_at=local(11, 20))
    moments = [
        local(10, 30, 20),
        local(11, 2, 7),
        local(11, 15, 13),
        local(11, 29, 23),
        local(12, 3),
    ]
    for step, moment in enumerate(moments):
        for number, meter_ in enumerate(meters):
            read(meter_, moment, 100 + step * (37 + number))
        charge_new_readings()
    day = date(2026, 10, 30)
    while day < date(2026, 12, 3):
        standing_charges_post(property=prop, day=day)
        day += timedelta(days=1)
    return tariff


@pytest.fixture
def december():
    with time_machine.travel(datetime(2026, 12, 7, 2, 0, tzinfo=UTC), tick=True):
        yield


@pytest.mark.django_db
def test_the_tariff_that_charged_would_have_charged_the_same(december, property_a1, owner_a):
    tariff = charged_november(property_a1, move_out=True)
    scope_tariff = tariff_for_page(scope=_scope(owner_a), tariff_id=tariff.uuid)
    # Charges straddle both month edges, so only their lines inside November count.
    assert Charge.objects.filter(period_start__lt=NOV_START, period_end__gt=NOV_START).exists()
    report = tariff_what_if(
        scope=_scope(owner_a),
        tariff=scope_tariff,
        version=stored_pricing_version(TariffVersion.objects.get()),
        month=date(2026, 11, 1),
    )
    assert [row.account.opened_at for row in report.rows] == [BEFORE, local(11, 20)]
    for row in report.rows:
        comparison = row.comparison
        assert comparison.actual.total > 0
        assert comparison.difference == 0
        assert cents(comparison.would.energy_net) == cents(comparison.actual.energy_net)
        assert cents(comparison.would.standing_tax) == cents(comparison.actual.standing_tax)
        # Lines carry 12 places; their sums agree to far below what a register shows.
        register = Decimal("0.000001")
        assert comparison.would.quantity.quantize(register) == comparison.actual.quantity.quantize(
            register
        )
    assert report.total.difference == 0


@pytest.mark.django_db
def test_dearer_prices_show_what_they_would_have_added(december, property_a1, owner_a):
    tariff = charged_november(property_a1)
    dearer = pricing_version(
        effective_from=NOV_START, **{**RESIDENTIAL, "standing_charge_per_day": "0.80"}
    )
    report = tariff_what_if(
        scope=_scope(owner_a),
        tariff=tariff_for_page(scope=_scope(owner_a), tariff_id=tariff.uuid),
        version=dearer,
        month=date(2026, 11, 1),
    )
    # 30 more days at 0.40, with 13% tax on top.
    assert report.total.difference == Decimal("13.56")
    actual = report.total.actual.total.quantize(CENT)
    assert report.total.rate == (Decimal("13.56") / actual).quantize(Decimal("0.0001"))


@pytest.mark.django_db
def test_a_what_if_writes_nothing(december, property_a1, owner_a):
    tariff = charged_november(property_a1)
    counts = _counts()
    page_tariff = tariff_for_page(scope=_scope(owner_a), tariff_id=tariff.uuid)
    with CaptureQueriesContext(connection) as queries:
        tariff_what_if(
            scope=_scope(owner_a),
            tariff=page_tariff,
            version=flat("2.00"),
            month=date(2026, 11, 1),
        )
    writes = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    assert writes == []
    assert _counts() == counts


def _counts():
    return (
        Charge.objects.count(),
        TierUsage.objects.count(),
        AuditLog.objects.count(),
        TariffVersion.objects.count(),
        sorted(Reading.objects.values_list("status", flat=True)),
    )


def _scope(user):
    return scope_for_user(user=user)


def test_the_engine_cuts_lines_at_local_month_starts():
    """What the what-if rests on: no charge line straddles a local month start."""
    schedule = pricing.Schedule(versions=(flat("1.00"),), tz=SHANGHAI)
    charged = pricing.price_series(
        schedule, readings=[(local(10, 31), Decimal(0)), (local(11, 2), Decimal(20))]
    )
    assert charged.lines[0].end == NOV_START
