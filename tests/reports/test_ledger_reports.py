"""The ledger's reports: the trial balance and the credit liability as of a local day, and
revenue by month, on hand-built books with exact figures."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from accounts.lifecycle import move_in, move_out
from accounts.selectors import scope_for_user
from billing.charging import charge_new_readings
from billing.freeze import freeze_day
from billing.models import LedgerAccount
from billing.services import (
    Entry,
    book_account,
    payment_topup_record,
    transaction_post,
    transaction_reverse,
)
from meters.models import Meter, Reading
from meters.services import readings_ingest
from payments.services import refund_start
from reports.base import Filters
from reports.catalogue import REPORTS
from tariffs.services import tariff_create
from tests import factories
from tests.payments.staff_urls_reconciliation import paid_intent, provider_config

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY1, DAY2, DAY3 = date(2026, 10, 5), date(2026, 10, 6), date(2026, 10, 7)
NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
TRIAL, CREDIT, REVENUE = REPORTS["trial-balance"], REPORTS["credit-liability"], REPORTS["revenue"]
Book = LedgerAccount.Kind
TARIFF = {
    "effective_from": datetime(2026, 1, 1, tzinfo=UTC),
    "kind": "flat",
    "flat_price": "1.00",
    "tax_rate": "0.13",
    "standing_charge_per_day": "2.00",
}


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


def local(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI)


def at(day: date, hour: int = 0, minute: int = 0):
    return time_machine.travel(local(day, hour, minute), tick=False)


def read(meter, moment, register):
    readings_ingest(
        meters=Meter.objects.filter(pk=meter.pk),
        rows=[{"serial": meter.serial, "taken_at": moment, "register": Decimal(register)}],
        source=Reading.Source.HTTP,
    )


def freeze(prop, *days):
    for day in days:
        with at(day + timedelta(days=1), 0, 20):
            freeze_day(property=prop, day=day)


def as_of(prop, day: date) -> Filters:
    return Filters(property=prop, start=day, end=day, extra={})


def lines(day_filters) -> dict[str, tuple]:
    return {row[1]: row[2:] for row in TRIAL.rows(day_filters)}


def moved_in(unit, meter, register, *, name, deposit, deposit_channel, topup=None, key):
    return move_in(
        unit=unit,
        actor=None,
        idempotency_key=key,
        new_tenant={"name": name, "phone": "", "email": "", "preferred_language": "en"},
        opening_readings={meter.pk: Decimal(register)},
        deposit=Decimal(deposit),
        deposit_channel=deposit_channel,
        topup=topup,
    ).account


@pytest.fixture
def books(property_a1, org_a):
    """Two tenancies from midnight on DAY1 on a flat tariff with tax and a standing charge.

    A: a 200 cash deposit, 100 cash and 30 by Stripe in, 10 kWh; on DAY2 20 of the Stripe
    payment refunded, still pending at the provider. B: a 100 bank deposit, 5 kWh, moved out at
    noon on DAY2 and refunded at the bank, then paid 15 by Stripe on DAY3, after the move-out."""
    tariff_create(
        property=property_a1, utility="electricity", name="Domestic", actor=None, version=TARIFF
    )
    meters = [
        factories.MeterFactory(unit__property=property_a1, installed_at=local(DAY1) - timedelta(1))
        for _ in range(2)
    ]
    with at(DAY1):
        a = moved_in(
            meters[0].unit, meters[0], 1000, name="Amina", deposit=200,
            deposit_channel="cash", topup=Decimal(100), key="in-a",
        )  # fmt: skip
        b = moved_in(
            meters[1].unit, meters[1], 500, name="Brian", deposit=100,
            deposit_channel="bank", key="in-b",
        )  # fmt: skip
    read(meters[0], local(DAY1, 12), "1010")
    read(meters[1], local(DAY1, 12), "505")
    with at(DAY1, 12, 5):
        charge_new_readings()
    stripe = provider_config(org_a, "stripe")
    with at(DAY1, 13):
        intent = paid_intent(a, stripe, "30.00")
    freeze(property_a1, DAY1)
    with at(DAY2, 12):
        move_out(
            account=b,
            actor=None,
            idempotency_key="out-b",
            moved_out_at=local(DAY2, 12),
            final_readings={meters[1].pk: Decimal(505)},
            refund_channel="bank",
        )
    with at(DAY2, 14):
        refund_start(intent=intent, amount=Decimal(20), reason="Overpaid", actor=None)
    freeze(property_a1, DAY2)
    with at(DAY3, 10):
        payment_topup_record(
            account=b,
            amount=Decimal(15),
            currency="CNY",
            provider="stripe",
            idempotency_key="late-b",
            reference="pi_late",
        )
    return a, b


def test_the_trial_balance_lists_every_book_with_its_debit_or_credit(books, property_a1):
    day1 = lines(as_of(property_a1, DAY1))
    assert day1["Cash on hand"] == (None, Decimal("300.00"), Decimal("0.00"))
    assert day1["Payment clearing: bank transfer"] == (None, Decimal("100.00"), Decimal("0.00"))
    assert day1["Payment clearing: Stripe Checkout"] == (None, Decimal("30.00"), Decimal("0.00"))
    # A: 100 + 30 - 11.30 - 2.26; B: -5.65 - 2.26.
    assert day1["Tenant wallets"] == (2, Decimal("0.00"), Decimal("108.53"))
    assert day1["Deposits held"] == (None, Decimal("0.00"), Decimal("300.00"))
    assert day1["Tax payable"] == (None, Decimal("0.00"), Decimal("2.47"))
    assert day1["Energy revenue"] == (None, Decimal("0.00"), Decimal("15.00"))
    assert day1["Standing-charge revenue"] == (None, Decimal("0.00"), Decimal("4.00"))
    assert day1["Refunds payable"] == day1["Debtors (former tenants' arrears)"]
    assert day1["Refunds payable"] == (None, Decimal("0.00"), Decimal("0.00"))
    assert TRIAL.totals(as_of(property_a1, DAY1)) == (
        "Total",
        None,
        None,
        Decimal("430.00"),
        Decimal("430.00"),
    )


def test_the_trial_balance_moves_with_the_day_it_stands_at(books, property_a1):
    day2 = lines(as_of(property_a1, DAY2))
    # The bank paid B's 90.96 back; A's 20 waits at Stripe in refunds payable.
    assert day2["Payment clearing: bank transfer"] == (None, Decimal("9.04"), Decimal("0.00"))
    assert day2["Payment clearing: Stripe Checkout"] == (None, Decimal("30.00"), Decimal("0.00"))
    assert day2["Tenant wallets"] == (2, Decimal("0.00"), Decimal("94.18"))
    assert day2["Deposits held"] == (None, Decimal("0.00"), Decimal("200.00"))
    assert day2["Refunds payable"] == (None, Decimal("0.00"), Decimal("20.00"))
    assert day2["Tax payable"] == (None, Decimal("0.00"), Decimal("2.86"))
    assert day2["Standing-charge revenue"] == (None, Decimal("0.00"), Decimal("7.00"))
    assert TRIAL.totals(as_of(property_a1, DAY2))[3:] == (Decimal("339.04"), Decimal("339.04"))
    day3 = lines(as_of(property_a1, DAY3))
    assert day3["Payment clearing: Stripe Checkout"] == (None, Decimal("45.00"), Decimal("0.00"))
    assert day3["Tenant wallets"] == (2, Decimal("0.00"), Decimal("109.18"))


def test_the_trial_balance_before_anything_happened_is_all_zero(books, property_a1):
    before = as_of(property_a1, DAY1 - timedelta(days=1))
    assert {row[1]: row[2:] for row in TRIAL.rows(before)}["Tenant wallets"] == (
        0,
        Decimal("0.00"),
        Decimal("0.00"),
    )
    assert TRIAL.totals(before)[3:] == (Decimal("0.00"), Decimal("0.00"))


def test_the_trial_balance_orders_its_books_by_section(books, property_a1):
    rows = list(TRIAL.rows(as_of(property_a1, DAY2)))
    sections = [row[0] for row in rows]
    assert sections == sorted(sections, key=["Assets", "Liabilities", "Revenue", "Other"].index)
    assert TRIAL.count(as_of(property_a1, DAY2)) == len(rows) == 13
    assert list(TRIAL.rows(as_of(property_a1, DAY2), offset=2, limit=3)) == rows[2:5]


def test_the_credit_liability_lists_each_tenancy_with_its_deposit_and_refunds(books, property_a1):
    a, b = books
    assert list(CREDIT.rows(as_of(property_a1, DAY1))) == [
        (a.unit.name, "Amina", "Open", Decimal("116.44"), Decimal("200.00"), Decimal("0.00")),
        (b.unit.name, "Brian", "Open", Decimal("-7.91"), Decimal("100.00"), Decimal("0.00")),
    ]
    assert list(CREDIT.rows(as_of(property_a1, DAY3))) == [
        (a.unit.name, "Amina", "Open", Decimal("94.18"), Decimal("200.00"), Decimal("20.00")),
        (b.unit.name, "Brian", "Moved out", Decimal("15.00"), Decimal("0.00"), Decimal("0.00")),
    ]


def test_the_credit_liability_totals_are_the_trial_balances_lines(books, property_a1):
    for day in (DAY1, DAY2, DAY3):
        trial = lines(as_of(property_a1, day))
        assert CREDIT.totals(as_of(property_a1, day)) == (
            "Total",
            None,
            None,
            trial["Tenant wallets"][2] - trial["Tenant wallets"][1],
            trial["Deposits held"][2],
            trial["Refunds payable"][2],
        )
    # Nothing was posted after DAY3: its credit is what the wallets hold now.
    wallets = LedgerAccount.objects.filter(property=property_a1, kind=Book.WALLET)
    held = sum(wallets.values_list("balance", flat=True))
    assert CREDIT.totals(as_of(property_a1, DAY3))[3] == held


def test_a_tenancy_that_ended_with_nothing_held_is_left_out(books, property_a1):
    # B settled to zero at its move-out on DAY2; on DAY3 its late payment is held for it.
    assert [row[1] for row in CREDIT.rows(as_of(property_a1, DAY2))] == ["Amina"]
    assert CREDIT.count(as_of(property_a1, DAY2)) == 1
    assert CREDIT.count(as_of(property_a1, DAY3)) == 2
    assert [row[1] for row in CREDIT.rows(as_of(property_a1, DAY3), offset=1, limit=1)] == ["Brian"]


@pytest.mark.parametrize("count", [2, 9])
def test_the_ledger_reports_take_the_same_queries_however_many_tenancies(
    property_a1, count, django_assert_num_queries
):
    for _ in range(count):
        factories.TopupFactory(account__unit__property=property_a1)
    today = as_of(property_a1, NOW.astimezone(SHANGHAI).date())
    with django_assert_num_queries(1):
        assert len(list(CREDIT.rows(today))) == count
    with django_assert_num_queries(1):
        assert list(TRIAL.rows(today))
    with django_assert_num_queries(1):
        assert list(REVENUE.rows(today))


def test_revenue_is_by_month_and_component_with_tax_apart(books, property_a1):
    october = Filters(property=property_a1, start=DAY1, end=DAY2, extra={})
    assert list(REVENUE.rows(october)) == [
        ("2026-10", Decimal("15.00"), Decimal("7.00"), Decimal("22.00"), Decimal("2.86"),
         Decimal("24.86")),
    ]  # fmt: skip
    assert REVENUE.totals(october)[1:] == next(REVENUE.rows(october))[1:]


def test_revenue_nets_adjustments_and_their_reversals(books, property_a1):
    a, _ = books
    revenue_book = book_account(property=property_a1, kind=Book.ENERGY_REVENUE)
    with at(DAY2, 20):
        goodwill = transaction_post(
            property=property_a1,
            kind="adjustment",
            entries=[
                Entry(a.wallet, Decimal("1.50")),
                Entry(revenue_book, Decimal("-1.50")),
            ],
            idempotency_key="goodwill",
        ).transaction
    october = Filters(property=property_a1, start=DAY1, end=DAY2, extra={})
    assert next(REVENUE.rows(october))[1] == Decimal("13.50")
    with at(DAY2, 21):
        transaction_reverse(
            original=goodwill, actor=None, reason="Not owed", idempotency_key="goodwill-back"
        )
    assert next(REVENUE.rows(october))[1] == Decimal("15.00")


def test_a_charge_ending_at_a_month_end_midnight_is_that_months_revenue(property_a1):
    oct31, nov1 = date(2026, 10, 31), date(2026, 11, 1)
    tariff_create(
        property=property_a1, utility="electricity", name="Domestic", actor=None, version=TARIFF
    )
    meter = factories.MeterFactory(unit__property=property_a1, installed_at=local(oct31))
    factories.AccountFactory(unit=meter.unit, opened_at=local(oct31))
    read(meter, local(oct31), "0")
    read(meter, local(nov1), "10")
    with at(nov1, 0, 30):
        charge_new_readings()
    freeze(property_a1, oct31)
    read(meter, local(nov1, 12), "14")
    with at(nov1, 12, 5):
        charge_new_readings()
    found = Filters(property=property_a1, start=oct31, end=nov1, extra={})
    assert [row[:3] for row in REVENUE.rows(found)] == [
        ("2026-10", Decimal("10.00"), Decimal("2.00")),
        ("2026-11", Decimal("4.00"), Decimal("0.00")),
    ]
    assert REVENUE.count(found) == 2
    chart = REVENUE.chart(found)
    assert chart.labels == ["2026-10", "2026-11"]
    assert chart.series[0].values == [Decimal("10.00"), Decimal("4.00")]
    # The trial balance books the charge on the day it was posted, 1 November.
    assert lines(as_of(property_a1, oct31))["Energy revenue"][2] == Decimal("0.00")
    assert lines(as_of(property_a1, oct31))["Standing-charge revenue"][2] == Decimal("2.00")


def test_the_as_of_form_takes_one_day_and_refuses_none(owner_a, property_a1):
    form_class = TRIAL.form_class
    scope = scope_for_user(user=owner_a)
    form = form_class({"property": str(property_a1.uuid), "end": "2026-10-06"}, scope=scope)
    assert form.is_valid(), form.errors
    found = form.filters()
    assert (found.start, found.end) == (DAY2, DAY2)
    # The page's default start (the month's first day) does not matter.
    form = form_class(
        {"property": str(property_a1.uuid), "start": "2026-11-01", "end": "2026-10-06"},
        scope=scope,
    )
    assert form.is_valid()
    assert form.filters().start == DAY2
    assert not form_class({"property": str(property_a1.uuid)}, scope=scope).is_valid()
    assert "start" not in form.fields


def test_the_ledger_reports_only_offer_properties_in_scope(manager_a1, property_a1):
    scope = scope_for_user(user=manager_a1)
    for report in (TRIAL, CREDIT, REVENUE):
        assert list(report.form_class(scope=scope).fields["property"].queryset) == [property_a1]
