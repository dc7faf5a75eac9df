"""The reports tie: over a month of simulated activity on one property, the daily freeze report's
totals are the wallets' ledger movements and the trial balance's change, the credit liability is
the wallets, and revenue is the revenue books' movement, to the cent.

The month runs through the services with the clock moved to each moment: meters read every six
hours and charged five minutes later, top-ups at the counter and by Stripe, a reversed top-up, a
goodwill adjustment, a payment refunded through the provider (one paid out, one refused and given
back, one still pending), a move-in, a move-out refunded and one leaving a debt, and each local
day frozen at 00:20.
"""

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db.models import Q, Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.lifecycle import move_in, move_out
from billing.charging import charge_new_readings
from billing.freeze import freeze_due
from billing.models import LedgerAccount, LedgerTransaction, Posting, Receipt
from billing.services import (
    ChargeInput,
    Entry,
    book_account,
    charges_post,
    payment_topup_record,
    transaction_post,
    transaction_reverse,
)
from billing.verification import ledger_violations
from meters.models import Meter, Reading
from meters.services import readings_ingest
from payments.providers.base import RefundResult
from payments.services import refund_conclude, refund_start
from reports.base import Filters
from reports.catalogue import REPORTS
from tariffs.services import tariff_create
from tests import factories
from tests.payments.staff_urls_reconciliation import paid_intent, provider_config

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
FIRST, LAST = date(2026, 9, 29), date(2026, 10, 31)
START, END = date(2026, 10, 2), date(2026, 10, 30)
HOURS = (3, 9, 15, 21)
DAILY, TRIAL, CREDIT, REVENUE = (
    REPORTS["daily-freeze"],
    REPORTS["trial-balance"],
    REPORTS["credit-liability"],
    REPORTS["revenue"],
)
Book = LedgerAccount.Kind
TxnKind = LedgerTransaction.Kind
# Shanghai's residential peak and valley prices with tier surcharges, tax included, and a
# standing charge.
TARIFF = {
    "effective_from": datetime(2026, 1, 1, tzinfo=UTC),
    "kind": "tou_tiered",
    "periods": {
        day: [
            {"name": "peak", "start": "06:00", "end": "22:00", "price": "0.617"},
            {"name": "valley", "start": "22:00", "end": "06:00", "price": "0.307"},
        ]
        for day in ("weekday", "weekend", "holiday")
    },
    "bands": [
        {"limit": "60", "price": "0"},
        {"limit": "120", "price": "0.05"},
        {"limit": None, "price": "0.30"},
    ],
    "tax_rate": "0.13",
    "prices_include_tax": True,
    "standing_charge_per_day": "0.50",
}


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


def local(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def filters(prop, start: date, end: date) -> Filters:
    return Filters(property=prop, start=start, end=end, extra={})


@dataclass
class Month:
    """The simulated property, and what it did."""

    property: object
    meters: list
    accounts: dict = field(default_factory=dict)
    registers: dict = field(default_factory=dict)
    events: dict = field(default_factory=dict)


def _move_in(month: Month, index: int, *, deposit: int, topup: int):
    meter = month.meters[index]
    month.registers[meter.pk] += Decimal("0.25")
    month.accounts[index] = move_in(
        unit=meter.unit,
        actor=None,
        idempotency_key=f"in-{index}",
        new_tenant={
            "name": f"Tenant {index}",
            "phone": "",
            "email": "",
            "preferred_language": "en",
        },
        opening_readings={meter.pk: month.registers[meter.pk]},
        deposit=Decimal(deposit),
        deposit_channel="cash" if index % 2 else "bank",
        topup=Decimal(topup) if topup else None,
    ).account


def _move_out(month: Month, index: int, moment: datetime):
    meter = month.meters[index]
    month.registers[meter.pk] += Decimal("0.4")
    result = move_out(
        account=month.accounts.pop(index),
        actor=None,
        idempotency_key=f"out-{index}",
        moved_out_at=moment,
        final_readings={meter.pk: month.registers[meter.pk]},
        refund_channel="cash",
    )
    month.events.setdefault("moved_out", []).append(result.account)


def _read_all(month: Month, moment: datetime, rng: random.Random):
    rows = []
    for meter in month.meters:
        month.registers[meter.pk] += Decimal(rng.randrange(300, 4200)) / 1000
        rows.append(
            {"serial": meter.serial, "taken_at": moment, "register": month.registers[meter.pk]}
        )
    readings_ingest(
        meters=Meter.objects.filter(pk__in=[m.pk for m in month.meters]),
        rows=rows,
        source=Reading.Source.HTTP,
    )


def _reading(month: Month, moment: datetime, rng: random.Random):
    return lambda: _read_all(month, moment, rng)


def _topups(month: Month, day: date, rng: random.Random) -> list:
    """The day's top-ups, at their moments: now and then each tenant tops up at the counter or
    by Stripe, except tenant 4, who never tops up again and runs into debt."""
    planned = []
    for index in range(len(month.meters)):
        if index == 4 or rng.random() > 0.3:
            continue
        amount = Decimal(rng.choice([20, 50, 100]))
        channel = rng.choice(["cash", "bank", "stripe"])
        action = _topup(month, index, amount, channel, day)
        planned.append((rng.choice([8, 12, 19]), 30 + index, action))
    return planned


def _topup(month: Month, index: int, amount: Decimal, channel: str, day: date):
    def run():
        # Only while the tenancy is open: before its move-in or after its move-out, nobody pays.
        account = month.accounts.get(index)
        if account is None:
            return
        key = f"topup:{index}:{day}"
        if channel == "stripe":
            payment_topup_record(
                account=account,
                amount=amount,
                currency="CNY",
                provider="stripe",
                idempotency_key=key,
                reference=key,
            )
        else:
            factories.TopupFactory(
                account=account, amount=amount, channel=channel, idempotency_key=key
            )

    return run


def _events(month: Month, organisation) -> dict[date, list]:
    """The month's one-off events: {day: [(hour, minute, action)]}."""
    prop = month.property

    def mistake():
        receipt = factories.TopupFactory(
            account=month.accounts[1], amount=Decimal(40), idempotency_key="mistake"
        )
        month.events["mistake"] = receipt.transaction

    def mistake_back():
        transaction_reverse(
            original=month.events["mistake"],
            actor=None,
            reason="Keyed twice",
            idempotency_key="mistake-back",
        )

    def goodwill():
        transaction_post(
            property=prop,
            kind=TxnKind.ADJUSTMENT,
            entries=[
                Entry(month.accounts[2].wallet, Decimal("7.50")),
                Entry(book_account(property=prop, kind=Book.ENERGY_REVENUE), Decimal("-7.50")),
            ],
            idempotency_key="goodwill",
            memo="Outage",
        )

    def paid():
        config = provider_config(organisation, "stripe")
        month.events["intent"] = paid_intent(month.accounts[0], config, "120.00")

    def refunds_start():
        intent = month.events["intent"]
        month.events["refunds"] = [
            refund_start(intent=intent, amount=Decimal(30), reason="Over", actor=None),
            refund_start(intent=intent, amount=Decimal(10), reason="Twice", actor=None),
        ]

    def refunds_end():
        paid_out, refused = month.events["refunds"]
        refund_conclude(refund_id=paid_out.pk, result=RefundResult(status="succeeded"))
        refund_conclude(
            refund_id=refused.pk,
            result=RefundResult(status="failed", payload={"error": "declined"}),
        )

    def pending():
        refund_start(intent=month.events["intent"], amount=Decimal(25), reason="Later", actor=None)

    def moving_in(index, day, hour, deposit, topup):
        return (hour, 0, lambda: _move_in(month, index, deposit=deposit, topup=topup))

    def moving_out(index, day, hour):
        return (hour, 0, lambda: _move_out(month, index, local(day, hour)))

    second = FIRST + timedelta(days=1)
    return {
        second: [moving_in(index, second, 8, DEPOSITS[index], 80) for index in range(5)],
        date(2026, 10, 6): [(10, 0, mistake), (16, 0, mistake_back)],
        date(2026, 10, 8): [(11, 0, goodwill)],
        date(2026, 10, 9): [(10, 0, paid)],
        date(2026, 10, 10): [moving_in(5, date(2026, 10, 10), 10, 150, 60)],
        date(2026, 10, 12): [(9, 30, refunds_start), (17, 0, refunds_end)],
        date(2026, 10, 15): [moving_out(3, date(2026, 10, 15), 14)],
        date(2026, 10, 20): [moving_out(4, date(2026, 10, 20), 16)],
        date(2026, 10, 29): [(9, 30, pending)],
    }


# Tenant 4 leaves no deposit: its move-out leaves a debt.
DEPOSITS = {0: 0, 1: 100, 2: 200, 3: 300, 4: 0}


@pytest.fixture
def month(property_a1, org_a) -> Month:
    tariff_create(
        property=property_a1, utility="electricity", name="Residential", actor=None, version=TARIFF
    )
    meters = [
        factories.MeterFactory(unit__property=property_a1, installed_at=local(FIRST))
        for _ in range(6)
    ]
    simulated = Month(
        property=property_a1, meters=meters, registers={m.pk: Decimal(1000) for m in meters}
    )
    rng = random.Random(9)
    events = _events(simulated, org_a)
    for day in days(FIRST, LAST):
        actions = [
            *((hour, 0, _reading(simulated, local(day, hour), rng)) for hour in HOURS),
            *((hour, 5, charge_new_readings) for hour in HOURS),
            *events.get(day, []),
            *_topups(simulated, day, rng),
        ]
        actions.sort(key=lambda action: action[:2])
        for hour, minute, action in actions:
            with time_machine.travel(local(day, hour, minute), tick=False):
                action()
        with time_machine.travel(local(day + timedelta(days=1), 0, 20), tick=False):
            freeze_due()
    return simulated


def booked(start: date, end: date) -> Q:
    """Postings booked in the local days [start, end], as the freeze books them."""
    opens, closes = local(start), local(end + timedelta(days=1))
    standing = Q(transaction__kind=TxnKind.STANDING_CHARGE)
    return (
        ~standing & Q(transaction__created_at__gte=opens, transaction__created_at__lt=closes)
    ) | (standing & Q(transaction__effective_at__gt=opens, transaction__effective_at__lte=closes))


def movement(prop, start: date, end: date, **lookups) -> Decimal:
    found = Posting.objects.filter(
        booked(start, end), ledger_account__property=prop, **lookups
    ).aggregate(total=Sum("amount"))["total"]
    return found or Decimal(0)


def trial(prop, day: date) -> dict[str, Decimal]:
    """The trial balance's lines as signed balances, credit positive."""
    return {row[1]: row[4] - row[3] for row in TRIAL.rows(filters(prop, day, day))}


def totals(report, found: Filters) -> dict:
    keys = [column.key for column in report.columns(found)]
    return dict(zip(keys, report.totals(found), strict=True))


def test_the_freeze_report_ties_to_the_wallets_and_the_trial_balance(month):
    prop = month.property
    found = totals(DAILY, filters(prop, START, END))
    before, after = trial(prop, START - timedelta(days=1)), trial(prop, END)
    wallets = Q(ledger_account__kind=Book.WALLET)
    moved = found["topups"] - found["charges"] - found["refunds"] + found["adjustments"]
    assert moved == movement(prop, START, END, ledger_account__kind=Book.WALLET)
    assert moved == after["Tenant wallets"] - before["Tenant wallets"]
    assert found["opening_balance"] == before["Tenant wallets"]
    assert found["closing_balance"] == after["Tenant wallets"]
    kinds = {
        "topups": [TxnKind.TOPUP],
        "charges": [TxnKind.CHARGE, TxnKind.STANDING_CHARGE],
        "refunds": [TxnKind.REFUND],
    }
    for key, kind in kinds.items():
        sign = 1 if key == "topups" else -1
        on_wallets = movement(
            prop, START, END, ledger_account__kind=Book.WALLET, transaction__kind__in=kind
        )
        assert found[key] == sign * on_wallets, key
    # The month had every kind of movement in it.
    assert all(found[key] for key in ("topups", "charges", "refunds", "adjustments"))
    assert Posting.objects.filter(
        wallets, booked(START, END), transaction__kind=TxnKind.DEBT_TRANSFER
    ).exists()
    # The books the charges went to moved by what the wallets were charged.
    revenue = sum(
        after[name] - before[name]
        for name in ("Energy revenue", "Standing-charge revenue", "Tax payable")
    )
    goodwill = Decimal("7.50")
    assert revenue == found["charges"] - goodwill


def test_the_freeze_reports_channels_and_energy_columns_tie(month):
    prop = month.property
    found = filters(prop, START, END)
    keys = [column.key for column in DAILY.columns(found)]
    sums = totals(DAILY, found)
    channels = [key for key in keys if key.startswith("topups_")]
    assert channels == ["topups_cash", "topups_bank", "topups_stripe"]
    window = Q(issued_at__gte=local(START), issued_at__lt=local(END + timedelta(days=1)))
    for key in channels:
        receipts = Receipt.objects.filter(window, property=prop, channel=key.split("_")[1])
        assert sums[key] == receipts.aggregate(total=Sum("amount"))["total"], key
    parts = [key for key in keys if key.startswith("energy_") and key != "energy_net"]
    assert len(parts) > 3
    rows = [dict(zip(keys, row, strict=True)) for row in DAILY.rows(found)]
    for row in rows:
        assert sum(row[key] for key in parts) == row["energy_net"]
        assert sum(row[key] for key in channels) == row["topups"]
        movement_ = row["topups"] - row["charges"] - row["refunds"] + row["adjustments"]
        assert row["opening_balance"] + movement_ == row["closing_balance"]
        # What the ledger carries is under a cent per column.
        assert abs(row["energy_rounding"]) <= Decimal("0.01") * len(parts)
    for key in keys[keys.index("topups_cash") : keys.index("closing_balance")]:
        assert sums[key] == sum(row[key] for row in rows), key
    assert len(rows) == DAILY.count(found)


def test_every_day_the_trial_balance_balances_and_closes_with_the_frozen_wallets(month):
    prop = month.property
    for day in days(START, END):
        debit, credit = TRIAL.totals(filters(prop, day, day))[3:]
        assert debit == credit, day
        frozen = totals(DAILY, filters(prop, day, day))
        assert frozen["closing_balance"] == trial(prop, day)["Tenant wallets"], day
        nxt = totals(DAILY, filters(prop, day + timedelta(days=1), day + timedelta(days=1)))
        assert nxt["opening_balance"] == frozen["closing_balance"], day


def test_the_credit_liability_is_the_wallets_and_the_books_holding_tenants_money(month):
    prop = month.property
    on_last = filters(prop, LAST, LAST)
    credit, deposits, refunds = CREDIT.totals(on_last)[3:]
    last = trial(prop, LAST)
    assert credit == last["Tenant wallets"]
    assert deposits == last["Deposits held"]
    assert refunds == last["Refunds payable"] == Decimal(25)
    # Nothing was posted after the last day: the wallets hold it now.
    wallets = LedgerAccount.objects.filter(property=prop, kind=Book.WALLET)
    assert credit == wallets.aggregate(total=Sum("balance"))["total"]
    assert deposits == Decimal(100 + 200 + 150)
    rows = list(CREDIT.rows(on_last))
    assert len(rows) == CREDIT.count(on_last) == 4
    assert sum(row[3] for row in rows) == credit
    assert not any(ledger_violations().values())


def test_revenue_is_the_revenue_books_movement(month):
    prop = month.property
    found = totals(REVENUE, filters(prop, START, END))
    before, after = trial(prop, START - timedelta(days=1)), trial(prop, END)
    assert found["energy"] == after["Energy revenue"] - before["Energy revenue"]
    assert found["standing"] == after["Standing-charge revenue"] - before["Standing-charge revenue"]
    assert found["tax"] == after["Tax payable"] - before["Tax payable"]
    assert found["energy"] == movement(prop, START, END, ledger_account__kind=Book.ENERGY_REVENUE)
    assert found["total"] == found["energy"] + found["standing"] + found["tax"] > 0
    october = list(REVENUE.rows(filters(prop, date(2026, 10, 1), LAST)))
    assert [row[0] for row in october] == ["2026-10"]


# Property-based: any mix of money on two days ties the same way ----------------------------------

DAY1, DAY2 = date(2026, 10, 5), date(2026, 10, 6)
MOVES = st.lists(
    st.tuples(
        st.sampled_from(["cash", "bank", "stripe", "charge", "adjustment", "reverse"]),
        st.integers(min_value=0, max_value=1),
        st.integers(min_value=100, max_value=150_000),
        st.sampled_from([DAY1, DAY2]),
        st.integers(min_value=0, max_value=23),
    ),
    max_size=12,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(moves=MOVES)
def test_any_money_on_any_day_ties_across_the_reports(org_a, moves):
    prop = factories.PropertyFactory(organisation=org_a)
    accounts = [
        factories.AccountFactory(unit__property=prop, opened_at=local(DAY1) - timedelta(days=1))
        for _ in range(2)
    ]
    topped: list = []
    for number, (what, index, cents, day, hour) in enumerate(sorted(moves, key=lambda m: m[3:])):
        account, amount = accounts[index], Decimal(cents) / 100
        with time_machine.travel(local(day, hour, number), tick=False):
            if what in ("cash", "bank"):
                receipt = factories.TopupFactory(account=account, amount=amount, channel=what)
                topped.append(receipt.transaction)
            elif what == "stripe":
                payment_topup_record(
                    account=account,
                    amount=amount,
                    currency="CNY",
                    provider="stripe",
                    idempotency_key=f"stripe-{prop.pk}-{number}",
                    reference=f"pi-{number}",
                )
            elif what == "charge":
                net = Decimal(cents) / 1000
                lines = [
                    {"period": "peak", "band": 0, "net": str(net * 2 / 3), "tax": "0"},
                    {"period": "valley", "band": 1, "net": str(net / 3), "tax": "0"},
                ]
                moment = local(day, hour)
                charges_post(
                    charges=[
                        ChargeInput(
                            account=account,
                            kind="energy",
                            idempotency_key=f"charge-{prop.pk}-{number}",
                            period_start=moment - timedelta(hours=1),
                            period_end=moment,
                            quantity=Decimal(1),
                            net=net,
                            tax=net * Decimal("0.13"),
                            lines=lines,
                        )
                    ]
                )
            elif what == "adjustment":
                transaction_post(
                    property=prop,
                    kind=TxnKind.ADJUSTMENT,
                    entries=[
                        Entry(account.wallet, amount),
                        Entry(book_account(property=prop, kind=Book.WRITE_OFFS), -amount),
                    ],
                    idempotency_key=f"adjust-{prop.pk}-{number}",
                )
            elif topped:
                transaction_reverse(
                    original=topped.pop(),
                    actor=None,
                    reason="Back",
                    idempotency_key=f"r-{prop.pk}-{number}",
                )
    for day in (DAY1, DAY2):
        with time_machine.travel(local(day + timedelta(days=1), 0, 20), tick=False):
            freeze_due()
    found = filters(prop, DAY1, DAY2)
    keys = [column.key for column in DAILY.columns(found)]
    sums = dict(zip(keys, DAILY.totals(found), strict=True))
    before, after = trial(prop, DAY1 - timedelta(days=1)), trial(prop, DAY2)
    moved = sums["topups"] - sums["charges"] - sums["refunds"] + sums["adjustments"]
    assert moved == after["Tenant wallets"] - before["Tenant wallets"]
    assert sums["closing_balance"] == after["Tenant wallets"]
    assert sums["opening_balance"] == before["Tenant wallets"] == 0
    parts = [key for key in keys if key.startswith("energy_") and key != "energy_net"]
    for row in DAILY.rows(found):
        values = dict(zip(keys, row, strict=True))
        assert sum(values[key] for key in parts) == values["energy_net"]
    assert sum(sums[key] for key in parts) == sums["energy_net"]
    assert sums["energy_net"] == after["Energy revenue"] - before["Energy revenue"]
    assert CREDIT.totals(filters(prop, DAY2, DAY2))[3] == after["Tenant wallets"]
    debit, credit = TRIAL.totals(filters(prop, DAY2, DAY2))[3:]
    assert debit == credit
