"""Charging consumption from readings, through the database, with the real tariff engine."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts import services as accounts
from billing.charging import charge_meters, charge_new_readings, standing_charges_post
from billing.models import Charge, LedgerAccount
from billing.verification import ledger_violations
from meters.models import Meter, Reading, VacantConsumption
from meters.services import meter_replace, readings_ingest
from tariffs.services import tariff_create
from tests import factories

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 10, 5, 0, 0, tzinfo=UTC)  # a Monday; 08:00 in Shanghai
FLAT = {"kind": "flat", "flat_price": "1.00", "tax_rate": "0.13"}
SHANGHAI_TOU_TIERED = {
    "kind": "tou_tiered",
    "periods": {
        day: [
            {"name": "peak", "start": "06:00", "end": "22:00", "price": "0.617"},
            {"name": "valley", "start": "22:00", "end": "06:00", "price": "0.307"},
        ]
        for day in ("weekday", "weekend", "holiday")
    },
    "bands": [
        {"limit": "260", "price": "0"},
        {"limit": "400", "price": "0.05"},
        {"limit": None, "price": "0.30"},
    ],
}


def with_tariff(prop, version, *, since=T0 - timedelta(days=400)):
    tariff_create(
        property=prop,
        utility="electricity",
        name="Residential",
        actor=None,
        version={"effective_from": since, **version},
    )


@pytest.fixture
def occupied(property_a1):
    """A meter in a unit whose tenant moved in before T0, on a flat tariff."""
    with_tariff(property_a1, FLAT)
    meter = factories.MeterFactory(unit__property=property_a1, installed_at=T0 - timedelta(days=30))
    account = factories.AccountFactory(unit=meter.unit, opened_at=T0 - timedelta(days=30))
    return meter, account


def read(meter, *points, source="http"):
    readings_ingest(
        meters=Meter.objects.filter(organisation=meter.organisation),
        rows=[
            {"serial": meter.serial, "taken_at": when, "register": Decimal(str(value))}
            for when, value in points
        ],
        source=source,
    )


def hours(n):
    return T0 + timedelta(hours=n)


def balance(account):
    account.wallet.refresh_from_db()
    return account.wallet.balance


def book(prop, kind):
    return sum(
        posting.amount
        for account in LedgerAccount.objects.filter(property=prop, kind=kind)
        for posting in account.postings.all()
    )


def test_flat_consumption_is_charged_with_tax_posted_separately(occupied, property_a1):
    meter, account = occupied
    read(meter, (hours(0), 100), (hours(1), 110), (hours(2), 125))
    run = charge_new_readings()
    assert (run.accepted, run.charges) == (3, 1)
    assert balance(account) == Decimal("-28.25")
    assert book(property_a1, "energy_revenue") == Decimal("25.00")
    assert book(property_a1, "tax_payable") == Decimal("3.25")
    charge = Charge.objects.get()
    assert (charge.quantity, charge.net, charge.tax) == (Decimal(25), Decimal(25), Decimal("3.25"))
    assert Decimal(charge.lines[0]["unit_price"]) == 1
    assert ledger_violations() == {name: [] for name in ledger_violations()}


def test_recharging_the_same_readings_posts_nothing(occupied):
    meter, account = occupied
    read(meter, (hours(0), 100), (hours(1), 110))
    charge_new_readings()
    read(meter, (hours(0), 100), (hours(1), 110))
    assert charge_new_readings().charges == 0
    assert charge_meters(meter_ids=[meter.pk]).charges == 0
    assert balance(account) == Decimal("-11.30")


def test_a_late_reading_is_kept_but_not_charged_again(occupied):
    meter, account = occupied
    read(meter, (hours(0), 100), (hours(4), 140))
    charge_new_readings()
    read(meter, (hours(2), 130))
    assert charge_new_readings().late == 1
    assert Reading.objects.get(taken_at=hours(2)).status == "late"
    assert balance(account) == Decimal("-45.20")


def test_a_register_going_backwards_is_flagged_and_later_readings_charge_from_the_last_good(
    occupied,
):
    meter, _ = occupied
    read(meter, (hours(0), 100), (hours(1), 110), (hours(2), 50), (hours(3), 112))
    run = charge_new_readings()
    assert run.rejected == 1
    bad = Reading.objects.get(taken_at=hours(2))
    assert (bad.status, bad.reason) == (
        "rejected",
        "register went backwards from 110.000000 to 50.000000",
    )
    assert Charge.objects.get().quantity == Decimal(12)


def test_an_implausible_jump_is_flagged_not_charged(occupied):
    meter, account = occupied
    read(meter, (hours(0), 100), (hours(1), 5000), (hours(2), 101))
    charge_new_readings()
    assert "implausible jump" in Reading.objects.get(taken_at=hours(1)).reason
    assert balance(account) == Decimal("-1.13")


def test_a_register_rollover_counts_as_consumption(occupied):
    meter, _ = occupied
    meter.register_rollover = Decimal(100000)
    meter.save(update_fields=["register_rollover"])
    read(meter, (hours(0), "99990"), (hours(1), "5"))
    charge_new_readings()
    assert Charge.objects.get().quantity == Decimal(15)


def test_consumption_before_move_in_is_vacant_and_after_is_the_tenants(property_a1):
    with_tariff(property_a1, FLAT)
    meter = factories.MeterFactory(unit__property=property_a1, installed_at=T0 - timedelta(days=1))
    read(meter, (hours(0), 0), (hours(4), 40))
    tenant = factories.TenantFactory(organisation=property_a1.organisation)
    account = accounts.account_open(tenant=tenant, unit=meter.unit, actor=None, opened_at=hours(1))
    charge_new_readings()
    assert VacantConsumption.objects.get().quantity == Decimal(10)
    assert Charge.objects.get(account=account).quantity == Decimal(30)


def test_a_reading_taken_exactly_at_the_move_in_splits_there(property_a1):
    with_tariff(property_a1, FLAT)
    meter = factories.MeterFactory(unit__property=property_a1, installed_at=T0 - timedelta(days=1))
    tenant = factories.TenantFactory(organisation=property_a1.organisation)
    account = accounts.account_open(tenant=tenant, unit=meter.unit, actor=None, opened_at=hours(1))
    read(meter, (hours(0), 0), (hours(1), 10), (hours(4), 40))
    charge_new_readings()
    assert VacantConsumption.objects.get().quantity == Decimal(10)
    assert Charge.objects.get(account=account).quantity == Decimal(30)


def test_a_move_out_mid_interval_hands_the_rest_to_the_next_tenant(occupied, property_a1):
    meter, first = occupied
    read(meter, (hours(0), 0))
    charge_new_readings()
    accounts.account_close(account=first, actor=None, closed_at=hours(2))
    successor = accounts.account_open(
        tenant=factories.TenantFactory(organisation=property_a1.organisation),
        unit=meter.unit,
        actor=None,
        opened_at=hours(3),
    )
    read(meter, (hours(4), 40))
    charge_new_readings()
    quantities = {c.account_id: c.quantity for c in Charge.objects.all()}
    assert quantities == {first.pk: Decimal(20), successor.pk: Decimal(10)}
    assert VacantConsumption.objects.get().quantity == Decimal(10)


def test_time_of_use_with_tiers_matches_the_engine_hand_computed(property_a1):
    with_tariff(property_a1, SHANGHAI_TOU_TIERED)
    meter = factories.MeterFactory(unit__property=property_a1, installed_at=T0 - timedelta(days=30))
    factories.AccountFactory(unit=meter.unit, opened_at=T0 - timedelta(days=30))
    # 13:00 to 15:00 UTC is 21:00 to 23:00 in Shanghai: one peak hour, one valley hour, 10 kWh
    # each. The month's first 255 kWh came earlier, so the ladder moves to band 2 at 260.
    read(meter, (hours(0), 0), (hours(13), 255))
    charge_new_readings()
    read(meter, (hours(15), 275))
    charge_new_readings()
    first, second = Charge.objects.order_by("period_start")
    # 08:00 to 21:00 local, all peak and inside the first 260 kWh.
    assert first.net == Decimal(255) * Decimal("0.617")
    # 21:00 to 23:00 local: 10 kWh peak, of which 5 in band 1 and 5 in band 2 (+0.05), then
    # 10 kWh valley in band 2.
    expected = Decimal(5) * Decimal("0.617") + Decimal(5) * Decimal("0.667")
    assert second.net == expected + Decimal(10) * Decimal("0.357")
    assert {(line["period"], line["band"]) for line in second.lines} == {
        ("peak", 0),
        ("peak", 1),
        ("valley", 1),
    }


def test_charging_many_meters_takes_a_fixed_number_of_queries(
    property_a1, django_assert_max_num_queries
):
    with_tariff(property_a1, FLAT)

    def meters_with_readings(count):
        made = []
        for _ in range(count):
            meter = factories.MeterFactory(
                unit__property=property_a1, installed_at=T0 - timedelta(days=1)
            )
            factories.AccountFactory(unit=meter.unit, opened_at=T0 - timedelta(days=1))
            read(meter, *[(hours(n), n * 2) for n in range(10)])
            made.append(meter.pk)
        return made

    few, many = meters_with_readings(2), meters_with_readings(25)
    with django_assert_max_num_queries(40) as few_queries:
        charge_meters(meter_ids=few)
    with django_assert_max_num_queries(len(few_queries.captured_queries)) as many_queries:
        charge_meters(meter_ids=many)
    assert Charge.objects.filter(meter_id__in=many).count() == 25
    assert len(many_queries.captured_queries) <= len(few_queries.captured_queries)


def test_standing_charges_are_a_full_day_or_pro_rated_and_post_once(property_a1):
    with_tariff(property_a1, {**FLAT, "standing_charge_per_day": "2.40", "tax_rate": "0"})
    meter = factories.MeterFactory(unit__property=property_a1, installed_at=T0 - timedelta(days=5))
    whole = factories.AccountFactory(unit=meter.unit, opened_at=T0 - timedelta(days=5))
    half_meter = factories.MeterFactory(
        unit__property=property_a1, installed_at=T0 - timedelta(days=5)
    )
    # Moves in at noon Shanghai time on 5 October: half the day.
    half = factories.AccountFactory(unit=half_meter.unit, opened_at=hours(4))
    assert standing_charges_post(property=property_a1, day=date(2026, 10, 5)) == 2
    assert standing_charges_post(property=property_a1, day=date(2026, 10, 5)) == 0
    assert balance(whole) == Decimal("-2.40")
    assert balance(half) == Decimal("-1.20")
    assert book(property_a1, "standing_revenue") == Decimal("3.60")


def test_a_daylight_saving_day_costs_exactly_one_days_standing_charge(org_a):
    london = factories.PropertyFactory(
        organisation=org_a, time_zone="Europe/London", currency="GBP", country="GB"
    )
    with_tariff(london, {**FLAT, "standing_charge_per_day": "0.53", "tax_rate": "0"})
    meter = factories.MeterFactory(unit__property=london, installed_at=T0)
    account = factories.AccountFactory(unit=meter.unit, opened_at=T0)
    for day in (date(2026, 10, 24), date(2026, 10, 25), date(2026, 10, 26)):  # 25 h on the 25th
        standing_charges_post(property=london, day=day)
    assert balance(account) == Decimal("-1.59")


def test_a_meter_replacement_loses_and_doubles_nothing(occupied, owner_a):
    meter, account = occupied
    read(meter, (hours(0), 1000), (hours(1), 1010))
    successor = meter_replace(
        meter=meter,
        actor=owner_a,
        replaced_at=hours(2),
        final_register=Decimal(1015),
        new_serial="NEW-1",
        initial_register=Decimal("0.5"),
    )
    read(successor, (hours(3), "7.5"))
    charge_new_readings()
    meter.refresh_from_db()
    assert meter.removed_at == hours(2)
    assert sum(c.quantity for c in Charge.objects.filter(account=account)) == Decimal(22)
    read(meter, (hours(4), 1020))
    charge_new_readings()
    assert Reading.objects.get(meter=meter, taken_at=hours(4)).status == "rejected"
    assert balance(account) == Decimal("-24.86")


def test_an_implausible_final_reading_stops_the_replacement(occupied):
    meter, _ = occupied
    read(meter, (hours(0), 1000))
    with pytest.raises(ValidationError, match="final reading was rejected"):
        meter_replace(
            meter=meter,
            actor=None,
            replaced_at=hours(1),
            final_register=Decimal(900),
            new_serial="NEW-2",
            initial_register=Decimal(0),
        )
    meter.refresh_from_db()
    assert meter.removed_at is None


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"register": Decimal("NaN")}, "finite"),
        ({"register": Decimal("-1")}, "negative"),
        ({"register": Decimal("1.0000001")}, "decimal places"),
        ({"taken_at": datetime(2099, 1, 1, tzinfo=UTC)}, "future"),
        ({"taken_at": datetime(2026, 1, 1)}, "time zone"),
        ({"serial": "nope"}, "unknown meter"),
        ({"power_w": float("inf")}, "power_w"),
    ],
)
def test_bad_readings_are_rejected_with_a_reason_and_nothing_is_written(occupied, row, reason):
    meter, _ = occupied
    good = {"serial": meter.serial, "taken_at": hours(0), "register": Decimal(1)}
    with pytest.raises(ValidationError) as error:
        readings_ingest(
            meters=Meter.objects.filter(organisation=meter.organisation),
            rows=[good, {**good, "taken_at": hours(1), **row}],
            source="http",
        )
    [problem] = error.value.message_dict["readings"]
    assert problem.startswith("row 1: ")
    assert reason in problem
    assert not Reading.objects.exists()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rate=st.integers(min_value=0, max_value=3000),
    minutes=st.lists(st.integers(min_value=1, max_value=60 * 24 * 40), min_size=2, max_size=40),
    batch=st.integers(min_value=1, max_value=10),
)
def test_charging_in_any_chunking_posts_the_same_total(property_a1, rate, minutes, batch):
    """Invariant 4 end to end: readings on one steady rate, charged all at once on one meter and
    a few at a time on its twin, across ToU and tier boundaries, cost the same to the cent."""
    if not Charge.objects.exists() and not property_a1.tariffs.exists():
        with_tariff(property_a1, SHANGHAI_TOU_TIERED)
    points = sorted({0, *minutes})
    twins = []
    for _ in range(2):
        meter = factories.MeterFactory(unit__property=property_a1, installed_at=T0)
        twins.append((meter, factories.AccountFactory(unit=meter.unit, opened_at=T0)))
    (whole, whole_account), (chunked, chunked_account) = twins
    readings = [(T0 + timedelta(minutes=m), Decimal(rate * m) / 1000) for m in points]
    read(whole, readings[0], readings[-1])
    charge_meters(meter_ids=[whole.pk])
    for start in range(0, len(readings), batch):
        read(chunked, *readings[start : start + batch])
        charge_meters(meter_ids=[chunked.pk])
    assert balance(chunked_account) == balance(whole_account)


def test_anomalies_are_counted_per_meter_and_kind_for_staff(occupied):
    from meters.models import MeterRejection

    meter, _ = occupied
    read(meter, (hours(0), 100), (hours(1), 90), (hours(2), 80), (hours(3), 9000))
    charge_new_readings()
    counts = dict(MeterRejection.objects.filter(meter=meter).values_list("reason", "count"))
    assert counts == {"register went backwards": 2, "implausible jump": 1}
