"""The daily freeze, through the database: registers at each property's local midnight, wallets'
balances and the day's money, catch-up over missed days, DST days and month ends."""

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db.models import ProtectedError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Account
from billing.charging import charge_new_readings
from billing.freeze import FREEZE_LAG, FreezeError, day_bounds, freeze_day, freeze_due
from billing.models import (
    DailyFreeze,
    FreezeCursor,
    LedgerAccount,
    LedgerTransaction,
    MeterFreeze,
    TierUsage,
)
from billing.services import (
    ChargeInput,
    Entry,
    book_account,
    charges_post,
    transaction_post,
    transaction_reverse,
)
from billing.tasks import daily_freeze_task
from meters.models import Meter, Reading
from meters.services import meter_replace, readings_ingest
from tariffs.services import tariff_create
from tests import factories

pytestmark = pytest.mark.django_db

# The clock stands here unless a test moves it: after every day the tests freeze.
NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
SHANGHAI = "Asia/Shanghai"
DAY1, DAY2, DAY3 = date(2026, 10, 5), date(2026, 10, 6), date(2026, 10, 7)
FLAT = {"kind": "flat", "flat_price": "1.00", "tax_rate": "0.13"}


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


def local(day: date, hour: int = 0, minute: int = 0, zone: str = SHANGHAI) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def occupied(prop, *, since: datetime, utility: str = Meter.Utility.ELECTRICITY):
    meter = factories.MeterFactory(unit__property=prop, installed_at=since, utility=utility)
    account = factories.AccountFactory(unit=meter.unit, opened_at=since)
    return meter, account


def read(meter, *points):
    readings_ingest(
        meters=Meter.objects.filter(pk=meter.pk),
        rows=[
            {"serial": meter.serial, "taken_at": moment, "register": Decimal(str(value))}
            for moment, value in points
        ],
        source=Reading.Source.HTTP,
    )


def topup(account, amount: str, moment: datetime):
    with time_machine.travel(moment, tick=False):
        return factories.TopupFactory(account=account, amount=Decimal(amount))


def frozen_meter(meter, day):
    row = MeterFreeze.objects.get(meter=meter, day=day)
    return row.register, row.method, row.estimated, row.consumption


def frozen_wallet(account, day):
    return DailyFreeze.objects.get(account=account, day=day)


def adds_up(row: DailyFreeze) -> bool:
    charges = row.energy_net + row.energy_tax + row.standing_net + row.standing_tax
    movement = row.topups - charges - row.refunds + row.adjustments
    return row.opening_balance + movement == row.closing_balance


def with_tariff(prop, **version):
    tariff_create(
        property=prop,
        utility="electricity",
        name="Residential",
        actor=None,
        version={"effective_from": datetime(2025, 1, 1, tzinfo=UTC), **FLAT, **version},
    )


# Registers at midnight ---------------------------------------------------------------------------


def test_a_register_between_two_readings_is_interpolated_at_local_midnight(property_a1):
    meter, account = occupied(property_a1, since=local(DAY1))
    read(meter, (local(DAY1), 100), (local(DAY1, 23, 45), 123), (local(DAY2, 0, 15), 125))
    frozen = freeze_day(property=property_a1, day=DAY1)
    assert (frozen.meters, frozen.accounts) == (1, 1)
    assert frozen_meter(meter, DAY1) == (Decimal(124), "interpolated", True, Decimal(24))
    assert frozen_wallet(account, DAY1).electricity == Decimal(24)


def test_a_reading_taken_at_midnight_is_the_register_and_is_not_estimated(property_a1):
    meter, _ = occupied(property_a1, since=local(DAY1))
    read(meter, (local(DAY1), 100), (local(DAY1, 23, 50), 115), (local(DAY2), "116.5"))
    freeze_day(property=property_a1, day=DAY1)
    assert frozen_meter(meter, DAY1) == (Decimal("116.5"), "actual", False, Decimal("16.5"))


def test_an_offline_meter_is_carried_forward_flagged_estimated_and_loses_nothing(property_a1):
    meter, account = occupied(property_a1, since=local(DAY1))
    read(meter, (local(DAY1), 100), (local(DAY1, 20), 110))
    for day in (DAY1, DAY2):
        freeze_day(property=property_a1, day=day)
    assert frozen_meter(meter, DAY1) == (Decimal(110), "carried_forward", True, Decimal(10))
    assert frozen_meter(meter, DAY2) == (Decimal(110), "carried_forward", True, Decimal(0))
    # Back online: the consumption it missed lands on the day it reports again.
    read(meter, (local(DAY3, 12), 130))
    freeze_day(property=property_a1, day=DAY3)
    assert frozen_meter(meter, DAY3) == (Decimal(130), "carried_forward", True, Decimal(20))
    assert sum(row.electricity for row in DailyFreeze.objects.filter(account=account)) == 30


def test_a_meter_that_never_reported_has_no_row_yet(property_a1):
    _, account = occupied(property_a1, since=local(DAY1))
    assert freeze_day(property=property_a1, day=DAY1).meters == 0
    assert frozen_wallet(account, DAY1).electricity == 0


def test_a_register_that_wraps_at_its_rollover_is_interpolated_across_the_wrap(property_a1):
    meter, _ = occupied(property_a1, since=local(DAY1))
    meter.register_rollover = Decimal(100000)
    meter.save(update_fields=["register_rollover"])
    read(meter, (local(DAY1), 99980), (local(DAY1, 23), 99990), (local(DAY2, 1), 10))
    freeze_day(property=property_a1, day=DAY1)
    assert frozen_meter(meter, DAY1) == (Decimal(0), "interpolated", True, Decimal(20))


def test_a_register_going_backwards_is_carried_forward_never_negative(property_a1):
    meter, _ = occupied(property_a1, since=local(DAY1))
    read(meter, (local(DAY1), 100), (local(DAY1, 23), 50))
    freeze_day(property=property_a1, day=DAY1)
    assert frozen_meter(meter, DAY1) == (Decimal(100), "carried_forward", True, Decimal(0))


def test_rejected_readings_do_not_count(property_a1):
    with_tariff(property_a1)
    meter, _ = occupied(property_a1, since=local(DAY1))
    read(meter, (local(DAY1), 100), (local(DAY1, 22), 5000), (local(DAY2, 2), 126))
    charge_new_readings()
    assert Reading.objects.get(taken_at=local(DAY1, 22)).status == "rejected"
    freeze_day(property=property_a1, day=DAY1)
    assert frozen_meter(meter, DAY1) == (Decimal(124), "interpolated", True, Decimal(24))


def test_a_meter_replaced_during_the_day_loses_and_doubles_nothing(property_a1, owner_a):
    with_tariff(property_a1)
    meter, account = occupied(property_a1, since=local(DAY1))
    read(meter, (local(DAY1), 1000))
    successor = meter_replace(
        meter=meter,
        actor=owner_a,
        replaced_at=local(DAY1, 12),
        final_register=Decimal(1015),
        new_serial="NEW-1",
        initial_register=Decimal("0.5"),
    )
    read(successor, (local(DAY2), "7.5"))
    freeze_day(property=property_a1, day=DAY1)
    assert frozen_meter(meter, DAY1) == (Decimal(1015), "actual", False, Decimal(15))
    assert frozen_meter(successor, DAY1) == (Decimal("7.5"), "actual", False, Decimal(7))
    assert frozen_wallet(account, DAY1).electricity == Decimal(22)


def test_an_account_moving_in_at_noon_has_half_of_a_steady_days_consumption(property_a1):
    meter = factories.MeterFactory(unit__property=property_a1, installed_at=local(DAY1))
    account = factories.AccountFactory(unit=meter.unit, opened_at=local(DAY1, 12))
    read(meter, (local(DAY1), 0), (local(DAY2), 48))
    freeze_day(property=property_a1, day=DAY1)
    assert frozen_wallet(account, DAY1).electricity == Decimal(24)


def test_water_and_electricity_are_kept_apart(property_a1):
    electricity, account = occupied(property_a1, since=local(DAY1))
    water = factories.MeterFactory(
        unit=account.unit, utility=Meter.Utility.WATER, installed_at=local(DAY1)
    )
    read(electricity, (local(DAY1), 10), (local(DAY2), 22))
    read(water, (local(DAY1), 1), (local(DAY2), "1.25"))
    freeze_day(property=property_a1, day=DAY1)
    row = frozen_wallet(account, DAY1)
    assert (row.electricity, row.water) == (Decimal(12), Decimal("0.25"))


# DST and catch-up --------------------------------------------------------------------------------


def steady_meter(prop, *, since: datetime, hours: int):
    """A meter using 1 kWh an hour from `since`, read then and every hour at half past."""
    meter, account = occupied(prop, since=since)
    points = [(since, 0)] + [
        (since + timedelta(minutes=30 + 60 * hour), Decimal(hour) + Decimal("0.5"))
        for hour in range(hours)
    ]
    read(meter, *points)
    return meter, account


def test_catch_up_fills_missed_days_in_order_across_a_dst_change_with_interpolation(org_a):
    """London falls back on 25 October 2026: that local day lasts 25 hours."""
    london = factories.PropertyFactory(
        organisation=org_a, time_zone="Europe/London", currency="GBP", country="GB"
    )
    since = datetime(2026, 10, 23, 23, tzinfo=UTC)  # midnight, 24 October, BST
    meter, account = steady_meter(london, since=since, hours=80)
    # No worker ran over three midnights; the next run, an hour after the third, fills them.
    summary = freeze_due(now=datetime(2026, 10, 27, 1, tzinfo=UTC))
    assert (summary["days"], summary["meters"], summary["accounts"]) == (3, 3, 3)
    rows = list(MeterFreeze.objects.filter(meter=meter).order_by("pk"))
    assert [row.day for row in rows] == [date(2026, 10, 24), date(2026, 10, 25), date(2026, 10, 26)]
    # Registers at 23:00 UTC (midnight BST), then 00:00 UTC (midnight GMT), twice.
    assert [row.register for row in rows] == [24, 49, 73]
    assert [row.consumption for row in rows] == [24, 25, 24]
    assert {(row.method, row.estimated) for row in rows} == {("interpolated", True)}
    assert FreezeCursor.objects.get(property=london).frozen_through == date(2026, 10, 26)
    electricity = DailyFreeze.objects.filter(account=account).order_by("day")
    assert [row.electricity for row in electricity] == [24, 25, 24]


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/London", date(2026, 3, 29), 23),
        ("Europe/London", date(2026, 10, 25), 25),
        ("America/New_York", date(2026, 11, 1), 25),
        # Chile springs forward at midnight itself: 6 September starts at 01:00.
        ("America/Santiago", date(2026, 9, 6), 23),
    ],
)
def test_a_dst_day_measures_its_real_length(org_a, zone, day, hours):
    prop = factories.PropertyFactory(organisation=org_a, time_zone=zone, currency="USD")
    start, end = day_bounds(property=prop, day=day)
    meter, _ = steady_meter(prop, since=start - timedelta(days=1), hours=24 * 3)
    freeze_due(now=end + timedelta(days=1, hours=2))
    assert MeterFreeze.objects.get(meter=meter, day=day).consumption == hours
    assert MeterFreeze.objects.get(meter=meter, day=day).register == 24 + hours


def test_a_day_is_frozen_only_once_its_midnight_and_the_lag_have_passed(property_a1):
    _, account = occupied(property_a1, since=local(DAY1))
    midnight = local(DAY2)
    assert freeze_due(now=midnight + FREEZE_LAG - timedelta(seconds=1))["days"] == 0
    with pytest.raises(FreezeError):
        freeze_day(property=property_a1, day=DAY1, now=midnight)
    assert freeze_due(now=midnight + FREEZE_LAG)["days"] == 1
    assert DailyFreeze.objects.get(account=account).day == DAY1


def test_a_new_property_starts_at_its_first_move_in_not_at_the_epoch(property_a1):
    occupied(property_a1, since=local(DAY2, 9))
    freeze_due(now=local(DAY3) + FREEZE_LAG)
    assert list(DailyFreeze.objects.values_list("day", flat=True)) == [DAY2]


def test_freezing_again_writes_nothing_and_changes_nothing(property_a1):
    meter, account = occupied(property_a1, since=local(DAY1))
    read(meter, (local(DAY1), 100), (local(DAY2, 1), 126))
    topup(account, "30.00", local(DAY1, 10))
    freeze_due(now=local(DAY3) + FREEZE_LAG)
    before = (
        list(MeterFreeze.objects.order_by("pk").values()),
        list(DailyFreeze.objects.order_by("pk").values()),
    )
    assert freeze_due(now=local(DAY3) + FREEZE_LAG)["days"] == 0
    again = freeze_day(property=property_a1, day=DAY1)
    assert (again.meters, again.accounts) == (0, 0)
    after = (
        list(MeterFreeze.objects.order_by("pk").values()),
        list(DailyFreeze.objects.order_by("pk").values()),
    )
    assert after == before


def test_a_meter_or_account_with_frozen_days_cannot_be_deleted(property_a1):
    meter, account = occupied(property_a1, since=local(DAY1))
    read(meter, (local(DAY1), 100), (local(DAY2, 1), 126))
    freeze_day(property=property_a1, day=DAY1)
    # The freeze's rows carry no database constraint; the models' PROTECT is what keeps them.
    with pytest.raises(ProtectedError) as meter_refused:
        Meter.objects.filter(pk=meter.pk).delete()
    with pytest.raises(ProtectedError) as account_refused:
        Account.objects.filter(pk=account.pk).delete()
    assert MeterFreeze in {type(row) for row in meter_refused.value.protected_objects}
    assert DailyFreeze in {type(row) for row in account_refused.value.protected_objects}


def test_a_day_frozen_out_of_order_is_kept_and_the_catch_up_fills_the_gap(property_a1):
    _, account = occupied(property_a1, since=local(DAY1))
    topup(account, "10.00", local(DAY1, 8))
    topup(account, "5.00", local(DAY3, 8))
    freeze_day(property=property_a1, day=DAY3)
    assert FreezeCursor.objects.get(property=property_a1).frozen_through is None
    freeze_due(now=local(DAY3 + timedelta(days=1)) + FREEZE_LAG)
    rows = DailyFreeze.objects.filter(account=account).order_by("day")
    assert [(row.day, row.opening_balance, row.closing_balance) for row in rows] == [
        (DAY1, 0, 10),
        (DAY2, 10, 10),
        (DAY3, 10, 15),
    ]
    assert FreezeCursor.objects.get(property=property_a1).frozen_through == DAY3


def test_the_task_freezes_what_is_due(property_a1):
    _, account = occupied(property_a1, since=local(DAY1))
    with time_machine.travel(local(DAY2) + FREEZE_LAG, tick=False):
        assert daily_freeze_task()["days"] == 1
    assert DailyFreeze.objects.filter(account=account, day=DAY1).exists()


# Money -------------------------------------------------------------------------------------------


def test_a_transaction_booked_after_midnight_lands_in_the_next_day(property_a1):
    _, account = occupied(property_a1, since=local(DAY1))
    topup(account, "10.00", local(DAY2) - timedelta(seconds=1))
    topup(account, "20.00", local(DAY2))
    freeze_due(now=local(DAY3) + FREEZE_LAG)
    first, second = DailyFreeze.objects.filter(account=account).order_by("day")
    assert (first.topups, first.closing_balance) == (10, 10)
    assert (second.opening_balance, second.topups, second.closing_balance) == (10, 20, 30)


def test_the_days_standing_charges_are_posted_by_the_freeze_and_in_its_row(property_a1):
    with_tariff(property_a1, standing_charge_per_day="2.40")
    _, account = occupied(property_a1, since=local(DAY1))
    topup(account, "50.00", local(DAY1, 9))
    frozen = freeze_day(property=property_a1, day=DAY1)
    assert frozen.standing_charges == 1
    row = frozen_wallet(account, DAY1)
    assert (row.standing_net, row.standing_tax) == (Decimal("2.40"), Decimal("0.31"))
    assert (row.opening_balance, row.topups, row.closing_balance) == (0, 50, Decimal("47.29"))
    account.wallet.refresh_from_db()
    assert account.wallet.balance == row.closing_balance
    # The next day opens with it: the standing charge is not counted again.
    freeze_day(property=property_a1, day=DAY2)
    assert frozen_wallet(account, DAY2).opening_balance == Decimal("47.29")
    assert frozen_wallet(account, DAY2).standing_net == Decimal("2.40")


def test_energy_charged_during_the_day_is_in_its_row_net_and_tax(property_a1):
    with_tariff(property_a1)
    meter, account = occupied(property_a1, since=local(DAY1))
    read(meter, (local(DAY1), 100), (local(DAY1, 10), 110))
    with time_machine.travel(local(DAY1, 11), tick=False):
        charge_new_readings()
    freeze_day(property=property_a1, day=DAY1)
    row = frozen_wallet(account, DAY1)
    assert (row.energy_net, row.energy_tax) == (10, Decimal("1.30"))
    assert row.closing_balance == Decimal("-11.30")
    assert adds_up(row)


def test_refunds_and_reversals_have_their_own_columns(property_a1):
    _, account = occupied(property_a1, since=local(DAY1))
    receipt = topup(account, "40.00", local(DAY1, 8))
    refunds = book_account(property=property_a1, kind=LedgerAccount.Kind.REFUNDS_PAYABLE)
    with time_machine.travel(local(DAY1, 9), tick=False):
        transaction_post(
            property=property_a1,
            kind=LedgerTransaction.Kind.ADJUSTMENT,
            entries=[Entry(account.wallet, Decimal("-15.00")), Entry(refunds, Decimal("15.00"))],
            idempotency_key="refund-1",
        )
        transaction_reverse(
            original=receipt.transaction, actor=None, reason="Twice", idempotency_key="rev-1"
        )
    freeze_day(property=property_a1, day=DAY1)
    row = frozen_wallet(account, DAY1)
    assert (row.topups, row.refunds, row.adjustments, row.closing_balance) == (40, 15, -40, -15)


def test_the_month_end_freeze_closes_the_month_with_its_tier_counters(property_a1):
    with_tariff(property_a1)
    last = date(2026, 10, 31)
    meter, account = occupied(property_a1, since=local(last - timedelta(days=1)))
    read(meter, (local(last - timedelta(days=1)), 0), (local(last, 12), 80))
    charge_new_readings()
    freeze_due(now=local(last + timedelta(days=1)) + FREEZE_LAG)
    before, month_end = DailyFreeze.objects.filter(account=account).order_by("day")
    assert (before.month_end, before.month_electricity, before.month_water) == (False, None, None)
    usage = TierUsage.objects.get(account=account, month=date(2026, 10, 1))
    assert (month_end.day, month_end.month_end) == (last, True)
    assert (month_end.month_electricity, month_end.month_water) == (usage.quantity, None)
    assert usage.quantity == 80


# Invariant 8 -------------------------------------------------------------------------------------

OPERATIONS = ("topup", "energy", "standing", "reversal", "refund", "credit")
MINUTES = 3 * 24 * 60


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    zone=st.sampled_from([SHANGHAI, "Europe/London", "America/New_York"]),
    operations=st.lists(
        st.tuples(
            st.sampled_from(OPERATIONS),
            st.integers(min_value=1, max_value=MINUTES - 1),
            st.integers(min_value=100, max_value=30000),
        ),
        max_size=12,
    ),
)
def test_every_row_adds_up_and_each_day_opens_where_the_last_closed(org_a, zone, operations):
    """Invariant 8 after random ledger activity over three days (the middle one a DST change
    in London and New York): each component of each day is what was posted that day."""
    prop = factories.PropertyFactory(organisation=org_a, time_zone=zone, currency="USD")
    tz = ZoneInfo(zone)
    first = date(2026, 10, 24) if zone == "Europe/London" else date(2026, 10, 31)
    opened = day_bounds(property=prop, day=first)[0]
    account = factories.AccountFactory(unit__property=prop, opened_at=opened)
    wallet = account.wallet
    books = {
        kind: book_account(property=prop, kind=kind)
        for kind in (LedgerAccount.Kind.REFUNDS_PAYABLE, LedgerAccount.Kind.WRITE_OFFS)
    }
    expected: dict[date, Counter] = defaultdict(Counter)
    receipts = []
    for number, (operation, minute, cents) in enumerate(sorted(operations, key=lambda o: o[1])):
        moment = opened + timedelta(minutes=minute)
        # A standing charge belongs to the day it charges, which ends at its effective moment.
        booked = moment - timedelta(microseconds=1) if operation == "standing" else moment
        day = booked.astimezone(tz).date()
        amount = Decimal(cents) / 100
        wallet.refresh_from_db()
        balance = wallet.balance
        with time_machine.travel(moment, tick=False):
            if operation == "topup":
                receipts.append(factories.TopupFactory(account=account, amount=amount))
            elif operation in ("energy", "standing"):
                charges_post(
                    charges=[
                        ChargeInput(
                            account=account,
                            kind=operation,
                            idempotency_key=f"{prop.pk}:{number}",
                            period_start=moment - timedelta(hours=1),
                            period_end=moment,
                            quantity=Decimal(1),
                            net=Decimal(cents) / 1000,
                            tax=Decimal(cents) / 10000,
                        )
                    ]
                )
            elif operation == "reversal" and receipts:
                transaction_reverse(
                    original=receipts.pop().transaction,
                    actor=None,
                    reason="hypothesis",
                    idempotency_key=f"reverse:{prop.pk}:{number}",
                )
            elif operation in ("refund", "credit"):
                book = books["refunds_payable" if operation == "refund" else "write_offs"]
                sign = -1 if operation == "refund" else 1
                transaction_post(
                    property=prop,
                    kind=LedgerTransaction.Kind.ADJUSTMENT,
                    entries=[Entry(wallet, sign * amount), Entry(book, -sign * amount)],
                    idempotency_key=f"adjust:{prop.pk}:{number}",
                )
        wallet.refresh_from_db()
        change = wallet.balance - balance
        bucket = {
            "topup": "topups",
            "energy": "charges",
            "standing": "charges",
            "refund": "refunds",
        }.get(operation, "adjustments")
        expected[day][bucket] += -change if bucket in ("charges", "refunds") else change

    last = first + timedelta(days=2)
    freeze_due(now=day_bounds(property=prop, day=last)[1] + FREEZE_LAG)
    rows = list(DailyFreeze.objects.filter(account=account).order_by("day"))
    assert [row.day for row in rows] == [first, first + timedelta(days=1), last]
    closing = Decimal(0)
    for row in rows:
        assert adds_up(row), row
        assert row.opening_balance == closing
        charges = row.energy_net + row.energy_tax + row.standing_net + row.standing_tax
        actual = {
            "topups": row.topups,
            "charges": charges,
            "refunds": row.refunds,
            "adjustments": row.adjustments,
        }
        assert actual == {bucket: expected[row.day][bucket] for bucket in actual}, row.day
        closing = row.closing_balance
    wallet.refresh_from_db()
    assert closing == wallet.balance
