"""Debt recovery from top-ups: emergency credit first and in full, then a percentage of each
top-up within the daily cap, never into the energy minimum; instalments instead of the
percentage for debts under a plan; and a receipt that shows the split."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from billing import debts
from billing.models import (
    CreditPolicy,
    Debt,
    DebtRecovery,
    LedgerAccount,
    LedgerTransaction,
    Posting,
)
from billing.receipts import receipt_document
from billing.services import topup_record, transaction_reverse
from billing.verification import ledger_violations

pytestmark = pytest.mark.django_db

# 10:00 in Shanghai.
NOW = datetime(2026, 11, 10, 2, tzinfo=UTC)
D = Decimal


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def policy(property_a1):
    return CreditPolicy.objects.create(
        property=property_a1,
        recovery_percent=D(25),
        recovery_daily_cap=D(40),
        recovery_energy_minimum=D(0),
        emergency_credit_amount=D(30),
        emergency_credit_below=D(10),
    )


def raise_debt(account, amount: str, key: str = "one") -> Debt:
    return debts.debt_raise(
        account=account,
        amount=D(amount),
        reason="Arrears from the old system",
        counter="opening_balances",
        actor=None,
        idempotency_key=key,
    )


def topup(account, amount: str, key: str):
    return topup_record(
        account=account, amount=D(amount), channel="cash", actor=None, idempotency_key=key
    )


def balance(account) -> Decimal:
    return LedgerAccount.objects.get(pk=account.wallet_id).balance


def test_a_quarter_of_each_top_up_goes_to_the_debt_until_the_daily_cap_is_reached(
    account, policy, clock
):
    # Hand-computed: a 200.00 debt, 25% of each top-up, at most 40.00 a day.
    debt = raise_debt(account, "200.00")
    topup(account, "100.00", "t1")  # 25.00 recovered; 15.00 of today's cap left
    topup(account, "100.00", "t2")  # 25% is 25.00, capped at 15.00
    topup(account, "20.00", "t3")  # the cap is spent: nothing
    debt.refresh_from_db()
    assert debt.recovered == D("40.00")
    assert balance(account) == D("180.00")
    clock.shift(timedelta(days=1))
    topup(account, "100.00", "t4")  # a new local day: 25.00 again
    debt.refresh_from_db()
    assert debt.recovered == D("65.00")
    assert balance(account) == D("255.00")
    recovered = [
        row.amount for row in DebtRecovery.objects.filter(debt=debt).order_by("transaction_id")
    ]
    assert recovered == [D("25.00"), D("15.00"), D("25.00")]
    assert not any(ledger_violations().values())
    assert list(debts.check_debts()) == []


def test_the_percentage_is_rounded_down_to_the_minor_unit_and_nothing_is_lost(account, policy):
    policy.recovery_daily_cap = None
    policy.save()
    debt = raise_debt(account, "100.00")
    topup(account, "10.03", "t1")  # 25% is 2.5075: 2.50 to the debt, 7.53 to energy
    debt.refresh_from_db()
    assert debt.recovered == D("2.50")
    assert balance(account) == D("7.53")


def test_the_energy_minimum_is_never_taken_for_the_debt(account, policy):
    policy.recovery_energy_minimum = D("90.00")
    policy.save()
    debt = raise_debt(account, "100.00")
    topup(account, "100.00", "t1")  # 25.00 by the percentage, but only 10.00 above the minimum
    topup(account, "50.00", "t2")  # wholly under the minimum
    debt.refresh_from_db()
    assert debt.recovered == D("10.00")
    assert balance(account) == D("140.00")


def test_recovery_never_takes_more_than_the_debt_owes_and_then_clears_it(account, policy):
    debt = raise_debt(account, "10.00")
    topup(account, "100.00", "t1")
    debt.refresh_from_db()
    assert (debt.recovered, debt.status) == (D("10.00"), Debt.Status.CLEARED)
    assert balance(account) == D("90.00")
    topup(account, "100.00", "t2")
    assert balance(account) == D("190.00")
    assert LedgerTransaction.objects.filter(kind="debt_recovery").count() == 1


def test_emergency_credit_is_repaid_first_in_full_then_older_debts_by_the_percentage(
    account, policy
):
    older = raise_debt(account, "100.00")
    emergency = debts.emergency_credit_take(account=account, actor=None, by_tenant=True)
    assert balance(account) == D("30.00")
    topup(account, "60.00", "t1")
    older.refresh_from_db()
    emergency.refresh_from_db()
    # 30.00 repays the emergency credit whole (no cap on it); then 25% of 60.00 = 15.00.
    assert (emergency.recovered, emergency.status) == (D("30.00"), Debt.Status.CLEARED)
    assert older.recovered == D("15.00")
    assert balance(account) == D("45.00")
    # One recovery transaction for the top-up, with a row per debt.
    recovery = LedgerTransaction.objects.get(kind="debt_recovery")
    assert recovery.idempotency_key == debts.recovery_key(
        LedgerTransaction.objects.get(idempotency_key="t1")
    )
    assert DebtRecovery.objects.filter(transaction=recovery).count() == 2
    assert list(debts.check_debts()) == []


def test_emergency_credit_does_not_use_up_the_daily_cap(account, policy):
    older = raise_debt(account, "100.00")
    debts.emergency_credit_take(account=account, actor=None, by_tenant=True)
    topup(account, "100.00", "t1")  # 30.00 emergency, 25.00 older
    topup(account, "100.00", "t2")  # 15.00 older: the cap of 40.00 counts the older debt only
    older.refresh_from_db()
    assert older.recovered == D("40.00")


def test_older_debts_are_recovered_first(account, policy, clock):
    policy.recovery_daily_cap = None
    policy.save()
    first = raise_debt(account, "10.00", "a")
    clock.shift(timedelta(minutes=1))
    second = raise_debt(account, "50.00", "b")
    topup(account, "100.00", "t1")  # 25.00: 10.00 clears the first, 15.00 to the second
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.recovered, second.recovered) == (D("10.00"), D("15.00"))


def test_a_replayed_top_up_recovers_nothing_more(account, policy):
    debt = raise_debt(account, "200.00")
    first = topup(account, "100.00", "t1")
    again = topup(account, "100.00", "t1")
    assert (again.created, again.receipt.pk) == (False, first.receipt.pk)
    debt.refresh_from_db()
    assert debt.recovered == D("25.00")
    assert LedgerTransaction.objects.filter(kind="debt_recovery").count() == 1


def test_reversing_a_top_up_gives_its_recovery_back_to_the_debt(account, policy):
    debt = raise_debt(account, "200.00")
    topup(account, "100.00", "t1")
    mistake = topup(account, "40.00", "t2").receipt.transaction
    debt.refresh_from_db()
    assert (debt.recovered, balance(account)) == (D("35.00"), D("105.00"))
    transaction_reverse(original=mistake, actor=None, reason="wrong account", idempotency_key="r")
    debt.refresh_from_db()
    # The wallet loses only what the top-up left in it; the debt owes again what it took.
    assert (debt.recovered, balance(account)) == (D("25.00"), D("75.00"))
    assert debts.recovered_from_topup(topup_id=mistake.pk) == D("10.00")
    assert ledger_violations() == {name: [] for name in ledger_violations()}


def test_reversing_the_top_up_that_cleared_a_plan_reopens_its_last_instalment(
    account, policy, clock
):
    debt = raise_debt(account, "50.00")
    today = date(2026, 11, 10)
    debts.instalment_plan_create(
        debt=debt,
        instalments=[(today, D("20.00")), (today + timedelta(days=7), D("30.00"))],
        actor=None,
    )
    clock.shift(timedelta(days=7))
    clearing = topup(account, "80.00", "t1").receipt.transaction
    plan = debt.plans.get()
    assert plan.status == "completed"
    transaction_reverse(original=clearing, actor=None, reason="bounced", idempotency_key="r")
    debt.refresh_from_db()
    plan.refresh_from_db()
    assert (debt.status, debt.recovered, plan.status) == (Debt.Status.OPEN, D(0), "active")
    assert [i.collected for i in plan.instalments.all()] == [D(0), D(0)]
    assert list(debts.check_debts()) == []


def test_a_top_up_whose_debt_was_planned_since_is_not_reversed(account, policy, clock):
    debt = raise_debt(account, "200.00")
    earlier = topup(account, "100.00", "t1").receipt.transaction
    clock.shift(timedelta(minutes=1))
    debts.instalment_plan_create(
        debt=debt, instalments=[(date(2026, 12, 1), D("175.00"))], actor=None
    )
    with pytest.raises(ValidationError, match="Cancel the plan first"):
        transaction_reverse(original=earlier, actor=None, reason="oops", idempotency_key="r")
    assert not LedgerTransaction.objects.filter(kind="reversal").exists()


def test_a_debt_under_a_plan_is_collected_by_its_due_instalments_not_the_percentage(
    account, policy, clock
):
    debt = raise_debt(account, "90.00")
    today = date(2026, 11, 10)
    debts.instalment_plan_create(
        debt=debt,
        instalments=[(today, D("30.00")), (today + timedelta(days=30), D("60.00"))],
        actor=None,
    )
    topup(account, "20.00", "t1")  # the first instalment, as far as the top-up allows
    topup(account, "100.00", "t2")  # the rest of it; the second is not due yet
    debt.refresh_from_db()
    assert debt.recovered == D("30.00")
    assert balance(account) == D("90.00")
    clock.shift(timedelta(days=30))
    topup(account, "100.00", "t3")
    debt.refresh_from_db()
    plan = debt.plans.get()
    assert (debt.status, plan.status) == (Debt.Status.CLEARED, "completed")
    assert [i.collected for i in plan.instalments.all()] == [D("30.00"), D("60.00")]
    assert list(debts.check_debts()) == []


def test_an_account_without_debts_posts_no_recovery_and_reads_no_debts(account, policy):
    with CaptureQueriesContext(connection) as queries:
        topup(account, "100.00", "t1")
    # Only the top-up's own context statement asks whether there is a debt to recover.
    about_debts = [q["sql"] for q in queries.captured_queries if "billing_debt" in q["sql"]]
    assert len(about_debts) == 1
    assert "EXISTS (SELECT 1 FROM billing_debt d" in about_debts[0]
    assert not LedgerTransaction.objects.filter(kind="debt_recovery").exists()
    assert balance(account) == D("100.00")


def test_the_receipt_shows_what_went_to_the_debt_and_what_to_energy(account, policy):
    raise_debt(account, "200.00")
    receipt = topup(account, "100.00", "t1").receipt
    document = receipt_document(receipt=receipt, language="en")
    lines = dict(document.lines)
    assert "25.00 went to your debt" in lines["Of which"]
    assert "75.00 to energy" in lines["Of which"]
    # The balance after the top-up is after its recovery.
    assert lines["Balance after this top-up"].endswith("75.00")
    wallet_total = Posting.objects.filter(ledger_account_id=account.wallet_id).aggregate(
        total=Sum("amount")
    )["total"]
    assert wallet_total == D("75.00")


def test_a_receipt_without_recovery_has_no_split(account, policy):
    receipt = topup(account, "100.00", "t1").receipt
    labels = [label for label, _value in receipt_document(receipt=receipt, language="en").lines]
    assert "Of which" not in labels


def test_recovery_split_takes_nothing_from_a_top_up_below_the_energy_minimum():
    policy = CreditPolicy(recovery_percent=D(25), recovery_energy_minimum=D(50))
    debt = Debt(pk=1, amount=D(100), recovered=D(0), source=Debt.Source.ADJUSTMENT)
    split = debts.recovery_split(
        amount=D(40),
        currency="CNY",
        policy=policy,
        debts=[debt],
        instalments=[],
        today=date(2026, 1, 1),
        recovered_today=D(0),
    )
    assert split.total == 0
