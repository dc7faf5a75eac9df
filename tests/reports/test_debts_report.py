"""The debt balances report: each debt with its amount, recovery and balance as of a day, and
with the arrears report's former tenants' debts it adds up to the debtors book."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from accounts.lifecycle import move_in, move_out
from billing import debts
from billing.models import CreditPolicy, Posting
from billing.services import charges_post, topup_record
from reports.base import Filters
from reports.catalogue import REPORTS
from tests import factories

pytestmark = pytest.mark.django_db
D = Decimal
# Midday in Shanghai, 10 November.
DAY_ONE = datetime(2026, 11, 10, 4, tzinfo=UTC)
REPORT, ARREARS = REPORTS["debts"], REPORTS["arrears"]


def filters(prop, end: date) -> Filters:
    return Filters(property=prop, start=end - timedelta(days=30), end=end, extra={})


def debtors(prop) -> Decimal:
    postings = Posting.objects.filter(ledger_account__property=prop, ledger_account__kind="debtors")
    return sum(postings.values_list("amount", flat=True), D(0))


@pytest.fixture
def history(property_a1):
    """A fee of 100.00 raised on day one and a quarter of a 100.00 top-up recovered on day two;
    a former tenant who moved out owing 30.00 and another who owes 12.00 and moved it in."""
    CreditPolicy.objects.create(property=property_a1, recovery_percent=D(25))
    with time_machine.travel(DAY_ONE, tick=False):
        account = factories.AccountFactory(unit__property=property_a1, tenant__name="Fee")
        former = factories.AccountFactory(unit__property=property_a1, tenant__name="Former")
        mover = factories.AccountFactory(unit__property=property_a1, tenant__name="Mover")
        debts.debt_raise(
            account=account,
            amount=D(100),
            reason="Fee",
            counter="fees",
            actor=None,
            idempotency_key="fee",
        )
        for owing, amount in ((former, "30.00"), (mover, "12.00")):
            charges_post(charges=[factories.ChargeInputFactory(account=owing, net=D(amount))])
            move_out(
                account=owing, actor=None, idempotency_key=f"o{owing.pk}", moved_out_at=DAY_ONE
            )
    with time_machine.travel(DAY_ONE + timedelta(days=1), tick=False):
        topup_record(
            account=account, amount=D(100), channel="cash", actor=None, idempotency_key="t"
        )
        move_in(
            unit=factories.UnitFactory(property=property_a1),
            actor=None,
            idempotency_key="back",
            tenant=mover.tenant,
            move_debt_from=mover,
        )
    return property_a1


def test_each_debt_shows_its_amount_recovery_and_balance(history):
    rows = {row[0]: row for row in REPORT.rows(filters(history, date(2026, 11, 11)))}
    assert set(rows) == {"Fee", "Mover"}
    fee = rows["Fee"]
    assert (fee[2], fee[3], fee[4]) == ("Raised by staff", date(2026, 11, 10), 1)
    assert fee[6:9] == (D("100.00"), D("25.00"), D("75.00"))
    assert rows["Mover"][2] == "Moved from an earlier tenancy"
    assert rows["Mover"][8] == D("12.00")
    assert REPORT.totals(filters(history, date(2026, 11, 11)))[6:9] == (
        D("112.00"),
        D("25.00"),
        D("87.00"),
    )
    assert REPORT.count(filters(history, date(2026, 11, 11))) == 2


def test_as_of_an_earlier_day_it_shows_the_debts_as_they_stood_then(history):
    rows = {row[0]: row for row in REPORT.rows(filters(history, date(2026, 11, 10)))}
    # The recovery and the move-in came the next day.
    assert set(rows) == {"Fee"}
    assert rows["Fee"][6:9] == (D("100.00"), D("0.00"), D("100.00"))


def test_with_the_former_tenants_debts_it_ties_to_the_debtors_book(history):
    end = date(2026, 11, 11)
    outstanding = REPORT.totals(filters(history, end))[8]
    former = sum(
        (row[5] for row in ARREARS.rows(filters(history, end)) if row[1] == "Former"), D(0)
    )
    assert former == D("30.00")
    assert outstanding + former == -debtors(history)
    # The arrears report shows the debts too, once each, and its total ties to the book.
    kinds = sorted(row[0] for row in ARREARS.rows(filters(history, end)))
    assert kinds == ["Debt being recovered", "Debt being recovered", "Former tenant's debt"]
    assert ARREARS.totals(filters(history, end))[5] == -debtors(history)
    assert list(debts.check_debts()) == []
