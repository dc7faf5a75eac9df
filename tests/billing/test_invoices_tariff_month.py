"""Two months of postpaid bills, computed by hand, on a time-of-use tariff with a tier ladder,
a standing charge and tax, through the real paths: meter readings charged by the charge run, a
counter top-up, the daily freeze of every day, and the month-end bill issue.

The tariff (Shanghai, CNY, the same periods on every day type):

    peak    08:00-22:00  0.60 per kWh
    valley  22:00-08:00  0.30 per kWh
    tier    the month's first 200 kWh: +0.00; above 200 kWh: +0.10 per kWh on either period
    standing charge 1.00 a day; tax 13% on everything

so the four energy prices are peak 0.60 / 0.70 and valley 0.30 / 0.40 (band 1 / band 2).

Consumption between two readings is spread evenly over the time between them (the engine
apportions by elapsed time), so every interval below is either inside one period, or long and
at a steady rate, and its split is a count of hours.
"""

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db.models import Sum

from accounts.models import Account
from billing.charging import charge_new_readings
from billing.freeze import freeze_due
from billing.invoices import earlier_open, invoice_issue, month_end_bills_issue
from billing.models import DailyFreeze, Invoice, InvoiceAllocation, LedgerAccount
from billing.services import topup_record
from billing.verification import ledger_violations
from meters.models import Meter
from meters.services import readings_ingest
from tariffs.services import tariff_create
from tests import factories

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
PERIODS = [
    {"name": "peak", "start": "08:00", "end": "22:00", "price": "0.60"},
    {"name": "valley", "start": "22:00", "end": "08:00", "price": "0.30"},
]
TARIFF = {
    "kind": "tou_tiered",
    "periods": {day_type: PERIODS for day_type in ("weekday", "weekend", "holiday")},
    "bands": [{"limit": "200", "price": "0"}, {"limit": None, "price": "0.10"}],
    "standing_charge_per_day": "1.00",
    "tax_rate": "0.13",
}


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A wall-clock time in Shanghai (UTC+8 all year), as the aware UTC moment it is."""
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


NOV_1 = local(2026, 11, 1)
DEC_1 = local(2026, 12, 1)
JAN_1 = local(2027, 1, 1)

# The meter's register (kWh) as it reports it; each reading is sent and charged five minutes
# after it was taken.
READINGS = [
    # The installation's reading: consumption is measured from here.
    (local(2026, 11, 1, 0), "0"),
    # (a) 1 to 8 November at a steady 1 kWh an hour: 7 days x 24 h = 168 kWh, of which
    #     7 x 14 peak hours = 98 kWh peak and 7 x 10 valley hours = 70 kWh valley, all inside the
    #     month's first 200 kWh (band 1). Month to date: 168.
    (local(2026, 11, 8, 0), "168"),
    # (b) The night to 8 November 08:00: 40 kWh valley, crossing the tier at 200: 32 kWh in
    #     band 1 (168 -> 200) and 8 kWh in band 2 (200 -> 208).
    (local(2026, 11, 8, 8), "208"),
    # (c) 8 November's day: 28 kWh peak, all band 2 (208 -> 236).
    (local(2026, 11, 8, 22), "236"),
    # (d) 8 to 30 November 22:00 at 0.5 kWh an hour: 22 days x 24 h x 0.5 = 264 kWh, of which
    #     22 x 14 x 0.5 = 154 kWh peak and 22 x 10 x 0.5 = 110 kWh valley, all band 2
    #     (236 -> 500).
    (local(2026, 11, 30, 22), "500"),
    # (e) The night into December at 0.5 kWh an hour: 10 h, 5 kWh. Its 2 hours before midnight
    #     (1 kWh) are November's, at November's band 2 (month to date 500); the 8 hours after
    #     (4 kWh) start December's ladder again, band 1. Charged on 1 December's morning, the
    #     whole interval is on December's bill.
    (local(2026, 12, 1, 8), "505"),
    # (f) 1 to 31 December 08:00 at 0.25 kWh an hour: 30 days x 24 h x 0.25 = 180 kWh, of which
    #     30 x 14 x 0.25 = 105 kWh peak and 30 x 10 x 0.25 = 75 kWh valley, all band 1
    #     (month to date 4 -> 184).
    (local(2026, 12, 31, 8), "685"),
    # (g) 31 December's day: 28 kWh peak, crossing the tier: 16 kWh band 1 (184 -> 200) and
    #     12 kWh band 2 (200 -> 212).
    (local(2026, 12, 31, 22), "713"),
]


def reading_charged(meter: Meter, taken_at: datetime, register: str) -> Callable[[], None]:
    def send_and_charge() -> None:
        readings_ingest(
            meters=Meter.objects.filter(pk=meter.pk),
            rows=[{"serial": meter.serial, "taken_at": taken_at, "register": Decimal(register)}],
            source="http",
        )
        charge_new_readings()

    return send_and_charge


def counter_topup(account: Account, amount: str, key: str) -> Callable[[], None]:
    def pay() -> None:
        topup_record(
            account=account, amount=Decimal(amount), channel="cash", actor=None, idempotency_key=key
        )

    return pay


def live_through(
    events: list[tuple[datetime, Callable[[], None]]], *, first_day: date, last_day: date
) -> None:
    """Run every event at its moment, with the daily freeze twenty minutes after each local
    midnight that closes a day from `first_day` to `last_day`, all in time order."""
    freezes = []
    day = first_day
    while day <= last_day:
        day += timedelta(days=1)
        freezes.append((local(day.year, day.month, day.day, 0, 20), freeze_due))
    for moment, action in sorted(events + freezes, key=lambda event: event[0]):
        with time_machine.travel(moment, tick=False):
            action()


def readings_charged(meter: Meter, start: datetime, end: datetime):
    return [
        (taken_at + timedelta(minutes=5), reading_charged(meter, taken_at, register))
        for taken_at, register in READINGS
        if start <= taken_at < end
    ]


def bills_issued(prop, month: date, at: datetime):
    """The month's bills, twenty-five minutes after it ended (its last day is frozen by then),
    as the month-end freeze's hook issues them."""
    return (at + timedelta(minutes=25), lambda: month_end_bills_issue(property=prop, month=month))


@pytest.fixture
def tenancy(org_a):
    """Property, tariff, meter and a postpaid tenant, all from local midnight on 1 November."""
    with time_machine.travel(NOV_1, tick=False):
        prop = factories.PropertyFactory(organisation=org_a, code="T1")
        tariff_create(
            property=prop,
            utility="electricity",
            name="Residential",
            actor=None,
            version={"effective_from": NOV_1, **TARIFF},
        )
        meter = factories.MeterFactory(unit__property=prop, installed_at=NOV_1)
        account = factories.AccountFactory(
            unit=meter.unit, opened_at=NOV_1, mode=Account.Mode.POSTPAID
        )
    return prop, meter, account


@pytest.fixture
def november(tenancy):
    """November lived through: readings (a) to (d), a counter top-up of 100.00 on the 15th,
    every day frozen, and the month's bill."""
    prop, meter, account = tenancy
    events = readings_charged(meter, NOV_1, DEC_1)
    events.append((local(2026, 11, 15, 12), counter_topup(account, "100.00", "counter-15-nov")))
    events.append(bills_issued(prop, date(2026, 11, 1), DEC_1))
    live_through(events, first_day=date(2026, 11, 1), last_day=date(2026, 11, 30))
    return account, Invoice.objects.get(account=account)


def line(label: str, quantity: str, unit: str, price: str, net: str, tax: str) -> dict:
    component = "standing" if unit == "days" else "energy"
    return {
        "component": component,
        "label": label,
        "quantity": quantity,
        "unit": unit,
        "price": price,
        "net": net,
        "tax": tax,
    }


def test_the_november_bill_is_priced_by_period_and_tier_by_hand_and_ties_to_the_freezes(
    november,
):
    account, bill = november
    # kWh per period and band, from the readings (a) to (d):
    #   peak   band 1:  98 (a)               x 0.60 =  58.80   tax 13% =  7.644 ->  7.64
    #   peak   band 2:  28 (c) + 154 (d) = 182 x 0.70 = 127.40  tax 13% = 16.562 -> 16.56
    #   valley band 1:  70 (a) +  32 (b) = 102 x 0.30 =  30.60  tax 13% =  3.978 ->  3.98
    #   valley band 2:   8 (b) + 110 (d) = 118 x 0.40 =  47.20  tax 13% =  6.136 ->  6.14
    #   standing: 30 days x 1.00 = 30.00, tax 30 x 0.13 = 3.90
    assert bill.lines == [
        line("Electricity, peak, band 1", "98.000", "kWh", "0.6", "58.80", "7.64"),
        line("Electricity, peak, band 2", "182.000", "kWh", "0.7", "127.40", "16.56"),
        line("Electricity, valley, band 1", "102.000", "kWh", "0.3", "30.60", "3.98"),
        line("Electricity, valley, band 2", "118.000", "kWh", "0.4", "47.20", "6.14"),
        line("Standing charge", "30.000", "days", "1", "30.00", "3.90"),
    ]
    # 98 + 182 + 102 + 118 = 500 kWh, the register at the last November reading.
    assert sum(Decimal(row["quantity"]) for row in bill.lines[:4]) == 500

    # Net: energy 58.80 + 127.40 + 30.60 + 47.20 = 264.00, standing 30.00: 294.00.
    # Tax: energy 264.00 x 13% = 34.32 exactly (the lines' 7.64 + 16.56 + 3.98 + 6.14 make
    # 34.32 too, so there is no rounding line), standing 3.90: 38.22.
    net = sum(Decimal(row["net"]) for row in bill.lines)
    tax = sum(Decimal(row["tax"]) for row in bill.lines)
    assert (net, tax) == (Decimal("294.00"), Decimal("38.22"))
    # Charges with tax: 294.00 + 38.22 = 332.22. Nothing was owed at the move-in, and the
    # counter top-up paid 100.00 in: 0 + 100.00 - 332.22 = -232.22, all of it asked for.
    assert (bill.kind, bill.number, bill.month) == (Invoice.Kind.MONTHLY, 1, date(2026, 11, 1))
    assert (bill.period_start, bill.period_end) == (NOV_1, DEC_1)
    assert bill.previous_balance == Decimal("0.00")
    assert bill.payments == Decimal("100.00")
    assert bill.charges == net + tax == Decimal("332.22")
    assert bill.adjustments == Decimal("0.00")
    assert bill.closing_balance == Decimal("-232.22")
    assert (bill.amount, bill.paid, bill.status) == (
        Decimal("232.22"),
        Decimal("0.00"),
        Invoice.Status.OPEN,
    )
    # Issued on 1 December (local), due 14 days later by the default policy.
    assert bill.due_on == date(2026, 12, 15)

    # The month's 30 frozen days hold the same money, component by component.
    days = DailyFreeze.objects.filter(account=account, day__gte=date(2026, 11, 1))
    totals = days.aggregate(
        topups=Sum("topups"),
        energy_net=Sum("energy_net"),
        energy_tax=Sum("energy_tax"),
        standing_net=Sum("standing_net"),
        standing_tax=Sum("standing_tax"),
    )
    assert days.count() == 30
    assert days.order_by("day").first().opening_balance == bill.previous_balance
    assert days.order_by("day").last().closing_balance == bill.closing_balance
    assert totals == {
        "topups": Decimal("100.00"),
        "energy_net": Decimal("264.00"),
        "energy_tax": Decimal("34.32"),
        "standing_net": Decimal("30.00"),
        "standing_tax": Decimal("3.90"),
    }
    # The month-end row carries the month's tier counter: 500 kWh charged in November.
    assert days.get(day=date(2026, 11, 30)).month_electricity == Decimal(500)


def test_the_december_bill_carries_the_previous_balance_and_the_tier_starts_again(
    tenancy, november
):
    prop, meter, _account = tenancy
    account, first = november
    events = readings_charged(meter, DEC_1, JAN_1)
    events.append((local(2026, 12, 10, 12), counter_topup(account, "200.00", "counter-10-dec")))
    events.append(bills_issued(prop, date(2026, 12, 1), JAN_1))
    live_through(events, first_day=date(2026, 12, 1), last_day=date(2026, 12, 31))
    bill = Invoice.objects.get(account=account, month=date(2026, 12, 1))

    # kWh per period and band, from the readings (e) to (g); the ladder starts again on
    # 1 December, except for the hour of 30 November's night charged with (e):
    #   peak   band 1: 105 (f) + 16 (g) = 121 x 0.60 = 72.60   tax 13% = 9.438 -> 9.44
    #   peak   band 2:  12 (g)            x 0.70 =  8.40   tax 13% = 1.092 -> 1.09
    #   valley band 1:   4 (e) + 75 (f) =  79 x 0.30 = 23.70   tax 13% = 3.081 -> 3.08
    #   valley band 2:   1 (e, November)  x 0.40 =  0.40   tax 13% = 0.052 -> 0.05
    #   standing: 31 days x 1.00 = 31.00, tax 31 x 0.13 = 4.03
    assert bill.lines == [
        line("Electricity, peak, band 1", "121.000", "kWh", "0.6", "72.60", "9.44"),
        line("Electricity, peak, band 2", "12.000", "kWh", "0.7", "8.40", "1.09"),
        line("Electricity, valley, band 1", "79.000", "kWh", "0.3", "23.70", "3.08"),
        line("Electricity, valley, band 2", "1.000", "kWh", "0.4", "0.40", "0.05"),
        line("Standing charge", "31.000", "days", "1", "31.00", "4.03"),
    ]
    # Energy net 72.60 + 8.40 + 23.70 + 0.40 = 105.10, its exact tax 13.663. The ledger rounds
    # the running totals since the move-in: tax 34.32 + 13.663 = 47.983 -> 47.98, so December
    # posts 47.98 - 34.32 = 13.66, which the lines' 9.44 + 1.09 + 3.08 + 0.05 make too.
    # Charges: 105.10 + 13.66 + 31.00 + 4.03 = 153.79.
    assert bill.charges == Decimal("153.79")
    # The previous balance is November's closing one; the counter top-up paid 200.00 in:
    # -232.22 + 200.00 - 153.79 = -186.01.
    assert bill.number == 2
    assert bill.previous_balance == first.closing_balance == Decimal("-232.22")
    assert bill.payments == Decimal("200.00")
    assert bill.adjustments == Decimal("0.00")
    assert bill.closing_balance == Decimal("-186.01")
    # The 200.00 met the oldest open bill, November's, which still asks for
    # 232.22 - 200.00 = 32.22; December's asks for the rest of what is owed:
    # 186.01 - 32.22 = 153.79, December's charges.
    first.refresh_from_db()
    assert (first.paid, first.status) == (Decimal("200.00"), Invoice.Status.OPEN)
    allocated = InvoiceAllocation.objects.filter(transaction__idempotency_key="counter-10-dec")
    assert list(allocated.values_list("invoice", "amount")) == [(first.pk, Decimal("200.00"))]
    assert earlier_open(invoice=bill) == Decimal("32.22")
    assert (bill.amount, bill.status) == (Decimal("153.79"), Invoice.Status.OPEN)
    assert bill.due_on == date(2027, 1, 15)
    wallet = LedgerAccount.objects.get(pk=account.wallet_id)
    assert earlier_open(invoice=bill) + bill.amount == -wallet.balance == Decimal("186.01")

    days = DailyFreeze.objects.filter(account=account, day__gte=date(2026, 12, 1))
    assert days.count() == 31
    assert days.order_by("day").first().opening_balance == first.closing_balance
    assert days.order_by("day").last().closing_balance == bill.closing_balance
    # December's tier counter: 4 (e) + 180 (f) + 28 (g) = 212 kWh; November's hour is not in it.
    assert days.get(day=date(2026, 12, 31)).month_electricity == Decimal(212)
    assert not any(ledger_violations().values())


def test_a_reading_without_consumption_puts_no_empty_line_on_the_bill(tenancy):
    _prop, meter, account = tenancy
    events = [
        (local(2026, 11, 1, 0, 5), reading_charged(meter, local(2026, 11, 1, 0), "0")),
        # Nobody home overnight: the register did not move, a charge of nothing.
        (local(2026, 11, 1, 8, 5), reading_charged(meter, local(2026, 11, 1, 8), "0")),
        # 14 kWh peak, band 1: 14 x 0.60 = 8.40, tax 1.092; posted 9.49 with tax 1.09.
        (local(2026, 11, 1, 22, 5), reading_charged(meter, local(2026, 11, 1, 22), "14")),
        (
            local(2026, 11, 2, 0, 25),
            lambda: invoice_issue(account=account, period_end=local(2026, 11, 2)),
        ),
    ]
    live_through(events, first_day=date(2026, 11, 1), last_day=date(2026, 11, 1))
    bill = Invoice.objects.get(account=account)
    assert bill.lines == [
        line("Electricity, peak, band 1", "14.000", "kWh", "0.6", "8.40", "1.09"),
        line("Standing charge", "1.000", "days", "1", "1.00", "0.13"),
    ]
    # 8.40 + 1.09 + 1.00 + 0.13 = 10.62
    assert bill.charges == bill.amount == Decimal("10.62")
