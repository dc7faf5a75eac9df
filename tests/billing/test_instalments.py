"""Instalment plans: they add up exactly to what the debt owes, fall due in order and not in
the past, one at a time per debt; on a postpaid account each is billed onto the wallet on its
date by a daily sweep, once."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from accounts.models import Account
from billing import debts
from billing.debts import DebtError
from billing.models import CreditPolicy, Debt, InstalmentPlan, LedgerAccount, LedgerTransaction
from billing.services import topup_record
from billing.tasks_debts import bill_instalments_task, instalments_due_sweep_task
from prepaid.audit.models import AuditLog
from tests import factories
from tests.billing.test_control import published_tasks

pytestmark = pytest.mark.django_db
# 10:00 on 10 November in Shanghai.
NOW = datetime(2026, 11, 10, 2, tzinfo=UTC)
TODAY = date(2026, 11, 10)
D = Decimal


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def debt(account):
    return debts.debt_raise(
        account=account,
        amount=D("90.00"),
        reason="Arrears",
        counter="opening_balances",
        actor=None,
        idempotency_key="d",
    )


def plan(debt, *instalments):
    return debts.instalment_plan_create(
        debt=debt,
        instalments=[(TODAY + timedelta(days=days), D(amount)) for days, amount in instalments],
        actor=None,
    )


def test_a_plan_splits_the_debt_into_numbered_dated_instalments(debt):
    created = plan(debt, (0, "30"), (30, "30"), (60, "30"))
    assert [(i.number, i.due_on, i.amount) for i in created.instalments.all()] == [
        (1, TODAY, D(30)),
        (2, TODAY + timedelta(days=30), D(30)),
        (3, TODAY + timedelta(days=60), D(30)),
    ]
    assert created.status == InstalmentPlan.Status.ACTIVE
    assert AuditLog.objects.filter(action="debt.plan_create").count() == 1


def test_a_plan_that_would_exceed_the_debt_is_refused(debt):
    with pytest.raises(DebtError, match="cannot exceed its debt"):
        plan(debt, (0, "60"), (30, "30.01"))
    assert not InstalmentPlan.objects.exists()


def test_a_plan_that_falls_short_of_the_debt_is_refused(debt):
    with pytest.raises(DebtError, match="must add up"):
        plan(debt, (0, "60"))


@pytest.mark.parametrize(
    ("instalments", "message"),
    [
        (((-1, "45"), (30, "45")), "past"),
        (((10, "45"), (10, "45")), "after the one before"),
        (((10, "45"), (5, "45")), "after the one before"),
        (((0, "90.001"),), "minor units"),
        (((0, "100"), (1, "-10")), "more than zero"),
        ((), "at least one"),
    ],
)
def test_bad_plans_are_refused(debt, instalments, message):
    with pytest.raises(DebtError, match=message):
        plan(debt, *instalments)


def test_a_plan_on_a_closed_account_is_refused(debt, account):
    Account.objects.filter(pk=account.pk).update(status="closed", closed_at=NOW)
    with pytest.raises(DebtError, match="ended"):
        plan(debt, (0, "90"))


def test_a_debt_has_one_active_plan_and_cancelling_returns_it_to_the_percentage(debt, account):
    CreditPolicy.objects.create(property=account.unit.property, recovery_percent=D(10))
    first = plan(debt, (5, "90"))
    with pytest.raises(DebtError, match="already has an active plan"):
        plan(debt, (5, "90"))
    topup_record(account=account, amount=D(100), channel="cash", actor=None, idempotency_key="a")
    debt.refresh_from_db()
    assert debt.recovered == 0  # the only instalment is not due yet
    with pytest.raises(DebtError, match="reason"):
        debts.instalment_plan_cancel(plan=first, actor=None, reason=" ")
    debts.instalment_plan_cancel(plan=first, actor=None, reason="Tenant asked")
    topup_record(account=account, amount=D(100), channel="cash", actor=None, idempotency_key="b")
    debt.refresh_from_db()
    assert debt.recovered == D(10)
    assert AuditLog.objects.get(action="debt.plan_cancel").reason == "Tenant asked"
    # A new plan is for what is still owed.
    assert plan(debt, (0, "80")).instalments.get().amount == D(80)


def test_a_plan_for_a_cleared_debt_is_refused(debt):
    Debt.objects.filter(pk=debt.pk).update(status="cleared", recovered=debt.amount)
    with pytest.raises(DebtError, match="no longer open"):
        plan(debt, (0, "90"))


# Postpaid accounts -------------------------------------------------------------------------------


@pytest.fixture
def postpaid(property_a1):
    return factories.AccountFactory(unit__property=property_a1, mode=Account.Mode.POSTPAID)


def test_a_postpaid_accounts_due_instalments_are_billed_onto_its_wallet_once(
    postpaid, clock, django_capture_on_commit_callbacks
):
    debt = debts.debt_raise(
        account=postpaid,
        amount=D("90.00"),
        reason="Old arrears",
        counter="opening_balances",
        actor=None,
        idempotency_key="p",
    )
    plan(debt, (0, "30"), (31, "60"))
    with published_tasks() as sent, django_capture_on_commit_callbacks(execute=True):
        assert instalments_due_sweep_task() == 1
    assert sent == [("billing.tasks_debts.bill_instalments_task", "billing", f"({postpaid.pk},)")]
    assert bill_instalments_task(postpaid.pk) == 1
    wallet = LedgerAccount.objects.get(pk=postpaid.wallet_id)
    assert wallet.balance == D(-30)
    billed = LedgerTransaction.objects.get(kind="instalment_billed")
    assert {p.ledger_account.kind: p.amount for p in billed.postings.all()} == {
        "wallet": D(-30),
        "debtors": D(30),
    }
    assert debt.recoveries.get().topup is None
    # Running again bills nothing more; the second falls due a month later.
    assert debts.instalments_bill(account_id=postpaid.pk) == 0
    clock.shift(timedelta(days=31))
    assert debts.instalments_bill(account_id=postpaid.pk) == 1
    debt.refresh_from_db()
    assert (debt.status, debt.plans.get().status) == ("cleared", "completed")
    assert LedgerAccount.objects.get(pk=postpaid.wallet_id).balance == D(-90)
    assert list(debts.check_debts()) == []


def test_a_prepaid_accounts_instalments_are_not_billed(debt, account):
    plan(debt, (0, "90"))
    assert debts.instalments_due_accounts() == []
    assert debts.instalments_bill(account_id=account.pk) == 0
