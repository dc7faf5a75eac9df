"""Arrears aging: postpaid accounts in debit aged from the day their balance last went
negative, former tenants' debts aged from the move-out, each in its bucket across the 30/31,
60/61 and 90/91-day boundaries, and a total that ties to the wallets and the debtors book."""

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db.models import Sum

from accounts.lifecycle import move_out
from accounts.models import Account
from billing.freeze import freeze_day
from billing.models import LedgerAccount, LedgerTransaction, Posting
from billing.services import Entry, book_account, charges_post, transaction_post
from reports.base import Filters
from reports.catalogue import REPORTS
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
AS_OF = date(2026, 10, 31)
FIRST = AS_OF - timedelta(days=100)
REPORT = REPORTS["arrears"]
ZERO = Decimal(0)


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


def at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=SHANGHAI)


def days_before(days: int) -> date:
    return AS_OF - timedelta(days=days)


def postpaid(prop, name: str, mode=Account.Mode.POSTPAID):
    return factories.AccountFactory(
        unit__property=prop, tenant__name=name, mode=mode, opened_at=at(FIRST, 0)
    )


def charge(account, amount: str, day: date):
    with time_machine.travel(at(day), tick=False):
        charges_post(
            charges=[
                factories.ChargeInputFactory(
                    account=account, net=Decimal(amount), period_start=at(day, 11)
                )
            ]
        )


def topup(account, amount: str, day: date):
    with time_machine.travel(at(day), tick=False):
        factories.TopupFactory(account=account, amount=Decimal(amount))


def freeze(prop, through: date = AS_OF):
    day = FIRST
    while day <= through:
        freeze_day(property=prop, day=day)
        day += timedelta(days=1)


def filters(prop, end: date = AS_OF) -> Filters:
    return Filters(property=prop, start=end - timedelta(days=30), end=end, extra={})


def by_tenant(prop, end: date = AS_OF) -> dict[str, tuple]:
    return {row[1]: row for row in REPORT.rows(filters(prop, end))}


def buckets(row) -> tuple:
    return tuple(row[6:10])


@pytest.fixture
def aged(property_a1):
    """Postpaid accounts that went into debit 30, 31, 60, 61, 90 and 91 days before the as-of
    day, one that recovered and went negative again 20 days before, and a prepaid account in
    debit; every day frozen through the as-of day."""
    for days in (30, 31, 60, 61, 90, 91):
        charge(postpaid(property_a1, f"Age {days}"), "10.00", days_before(days))
    again = postpaid(property_a1, "Again")
    charge(again, "10.00", days_before(91))
    topup(again, "20.00", days_before(50))
    charge(again, "15.00", days_before(20))
    charge(postpaid(property_a1, "Prepaid", mode=Account.Mode.PREPAID), "5.00", days_before(40))
    freeze(property_a1)


def test_postpaid_debts_fall_in_their_buckets_on_either_side_of_each_boundary(aged, property_a1):
    rows = by_tenant(property_a1)
    debt = Decimal("10.00")
    assert buckets(rows["Age 30"]) == (debt, ZERO, ZERO, ZERO)
    assert buckets(rows["Age 31"]) == (ZERO, debt, ZERO, ZERO)
    assert buckets(rows["Age 60"]) == (ZERO, debt, ZERO, ZERO)
    assert buckets(rows["Age 61"]) == (ZERO, ZERO, debt, ZERO)
    assert buckets(rows["Age 90"]) == (ZERO, ZERO, debt, ZERO)
    assert buckets(rows["Age 91"]) == (ZERO, ZERO, ZERO, debt)
    assert (rows["Age 31"][3], rows["Age 31"][4]) == (days_before(31), 31)
    assert rows["Age 90"][10] == AS_OF


def test_a_debt_is_aged_from_the_day_the_balance_last_went_negative(aged, property_a1):
    row = by_tenant(property_a1)["Again"]
    assert (row[3], row[4], row[5]) == (days_before(20), 20, Decimal("5.00"))
    assert buckets(row) == (Decimal("5.00"), ZERO, ZERO, ZERO)


def test_prepaid_accounts_in_debit_are_not_arrears(aged, property_a1):
    assert "Prepaid" not in by_tenant(property_a1)


def test_an_end_beyond_the_last_frozen_day_reports_as_of_that_day(aged, property_a1):
    rows = by_tenant(property_a1, end=date(2026, 11, 10))
    assert rows["Age 30"][10] == AS_OF
    assert buckets(rows["Age 30"]) == (Decimal("10.00"), ZERO, ZERO, ZERO)


def test_an_earlier_as_of_day_ages_from_it(aged, property_a1):
    rows = by_tenant(property_a1, end=days_before(55))
    assert rows["Age 60"][4] == 5
    assert "Age 31" not in rows
    # In debit from 91 days before the as-of day until its top-up 50 days before.
    assert rows["Again"][3:6] == (days_before(91), 36, Decimal("10.00"))
    assert "Again" not in by_tenant(property_a1, end=days_before(25))


def moved_out_in_debt(prop, name: str, amount: str, day: date) -> Account:
    account = factories.AccountFactory(unit__property=prop, tenant__name=name, opened_at=at(FIRST))
    charge(account, amount, day - timedelta(days=1))
    with time_machine.travel(at(day, 10), tick=False):
        move_out(
            account=account,
            actor=None,
            idempotency_key=uuid.uuid4().hex,
            moved_out_at=at(day, 10),
        )
    return account


def debtors_book(prop, before: datetime):
    total = Posting.objects.filter(
        ledger_account__property=prop,
        ledger_account__kind=LedgerAccount.Kind.DEBTORS,
        transaction__created_at__lt=before,
    ).aggregate(total=Sum("amount"))["total"]
    return total or ZERO


def test_former_tenants_debts_are_aged_from_the_move_out(property_a1):
    moved_out_in_debt(property_a1, "Gone 45", "17.40", days_before(45))
    moved_out_in_debt(property_a1, "Gone 95", "3.00", days_before(95))
    freeze(property_a1)
    rows = by_tenant(property_a1)
    assert rows["Gone 45"][0] == "Former tenant's debt"
    assert (rows["Gone 45"][3], rows["Gone 45"][4]) == (days_before(45), 45)
    assert buckets(rows["Gone 45"]) == (ZERO, Decimal("17.40"), ZERO, ZERO)
    assert buckets(rows["Gone 95"]) == (ZERO, ZERO, ZERO, Decimal("3.00"))
    # Before the move-out there was no debt on the book yet.
    assert "Gone 45" not in by_tenant(property_a1, end=days_before(46))


def test_what_was_since_recovered_against_a_debt_is_taken_off_it(property_a1):
    account = moved_out_in_debt(property_a1, "Gone", "17.40", days_before(45))
    transfer = LedgerTransaction.objects.get(
        kind=LedgerTransaction.Kind.DEBT_TRANSFER, property=property_a1
    )
    with time_machine.travel(at(days_before(5)), tick=False):
        transaction_post(
            property=property_a1,
            kind=LedgerTransaction.Kind.REVERSAL,
            entries=[
                Entry(
                    book_account(property=property_a1, kind=LedgerAccount.Kind.DEBTORS), Decimal(7)
                ),
                Entry(
                    book_account(property=property_a1, kind=LedgerAccount.Kind.CASH), Decimal(-7)
                ),
            ],
            idempotency_key=f"recovered:{account.uuid}",
            reverses=transfer,
        )
    freeze(property_a1)
    assert by_tenant(property_a1)["Gone"][5] == Decimal("10.40")
    # As of a day before the recovery, the whole debt was still owed.
    assert by_tenant(property_a1, end=days_before(6))["Gone"][5] == Decimal("17.40")


def test_the_total_ties_to_the_negative_postpaid_wallets_and_the_debtors_book(aged, property_a1):
    moved_out_in_debt(property_a1, "Gone", "17.40", days_before(45))
    with time_machine.travel(at(days_before(10)), tick=False):
        # A payment against debtors that names no debt: it is on a row of its own.
        transaction_post(
            property=property_a1,
            kind=LedgerTransaction.Kind.ADJUSTMENT,
            entries=[
                Entry(
                    book_account(property=property_a1, kind=LedgerAccount.Kind.DEBTORS), Decimal(5)
                ),
                Entry(
                    book_account(property=property_a1, kind=LedgerAccount.Kind.CASH), Decimal(-5)
                ),
            ],
            idempotency_key="unnamed-recovery",
        )
    freeze(property_a1)
    chosen = filters(property_a1)
    rows = list(REPORT.rows(chosen))
    other = rows[-1]
    assert other[0] == "Other debtors postings"
    assert (other[5], buckets(other)) == (Decimal("-5.00"), (Decimal("-5.00"), ZERO, ZERO, ZERO))
    totals = REPORT.totals(chosen)
    wallets = LedgerAccount.objects.filter(
        tenant_account__mode=Account.Mode.POSTPAID, balance__lt=0, property=property_a1
    ).aggregate(total=Sum("balance"))["total"]
    end = at(AS_OF + timedelta(days=1), 0)
    assert totals[5] == -wallets - debtors_book(property_a1, end)
    assert totals[5] == Decimal("60.00") + Decimal("5.00") + Decimal("17.40") - Decimal("5.00")
    assert sum(totals[6:10]) == totals[5]
    assert REPORT.count(chosen) == len(rows) == 9


def test_pages_of_rows_follow_on_across_the_kinds_of_debt(aged, property_a1):
    moved_out_in_debt(property_a1, "Gone", "17.40", days_before(45))
    freeze(property_a1)
    chosen = filters(property_a1)
    every = list(REPORT.rows(chosen))
    assert list(REPORT.rows(chosen, offset=5, limit=3)) == every[5:8]
    assert list(REPORT.rows(chosen, offset=7)) == every[7:]
    assert every[-1][1] == "Gone"


def test_another_propertys_debts_are_not_in_the_report(aged, property_a1, property_a2):
    charge(postpaid(property_a2, "Elsewhere"), "10.00", days_before(3))
    assert "Elsewhere" not in by_tenant(property_a1)
