"""Debts staff raise, debts moved in from an earlier tenancy, and the invariants
`check_debts` holds them to."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError

from accounts.lifecycle import move_in, move_out
from accounts.models import Account
from billing import debts
from billing.debts import DebtError
from billing.models import CreditPolicy, Debt, LedgerAccount, Posting
from billing.services import charges_post, topup_record
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 10, 2, tzinfo=UTC)
D = Decimal


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def raise_debt(account, amount="50.00", *, reason="Broken window", counter="fees", key="k"):
    return debts.debt_raise(
        account=account,
        amount=D(amount) if isinstance(amount, str) else amount,
        reason=reason,
        counter=counter,
        actor=None,
        idempotency_key=key,
    )


def book(prop, kind) -> Decimal:
    postings = Posting.objects.filter(ledger_account__property=prop, ledger_account__kind=kind)
    return sum(postings.values_list("amount", flat=True), D(0))


# Raising -----------------------------------------------------------------------------------------


def test_a_raised_fee_is_owed_to_debtors_against_fee_revenue_and_leaves_the_wallet(
    account, property_a1
):
    debt = raise_debt(account)
    assert (debt.source, debt.amount, debt.reason) == ("adjustment", D(50), "Broken window")
    assert book(property_a1, "debtors") == D(-50)
    assert book(property_a1, "fee_revenue") == D(50)
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance == 0
    assert AuditLog.objects.get(action="debt.raise").reason == "Broken window"


def test_arrears_from_a_previous_system_are_set_against_opening_balances(account, property_a1):
    raise_debt(account, counter="opening_balances")
    assert book(property_a1, "opening_balances") == D(50)


def test_raising_again_with_the_same_key_returns_the_same_debt(account, property_a1):
    assert raise_debt(account) == raise_debt(account)
    assert book(property_a1, "debtors") == D(-50)
    with pytest.raises(DebtError, match="another debt"):
        raise_debt(account, "60.00")


@pytest.mark.parametrize(
    ("amount", "reason", "counter", "message"),
    [
        ("0", "Fee", "fees", "more than zero"),
        ("-5", "Fee", "fees", "more than zero"),
        ("1.005", "Fee", "fees", "minor units"),
        ("5", "  ", "fees", "reason"),
        ("5", "Fee", "wages", "opening balances or fees"),
    ],
)
def test_bad_debts_are_refused(account, amount, reason, counter, message):
    with pytest.raises(DebtError, match=message):
        raise_debt(account, amount, reason=reason, counter=counter)
    assert not Debt.objects.exists()


def test_a_debt_is_not_raised_on_a_closed_account(account):
    Account.objects.filter(pk=account.pk).update(status="closed", closed_at=NOW)
    with pytest.raises(DebtError, match="ended"):
        raise_debt(account)


# Moving a debt in --------------------------------------------------------------------------------


def _moved_out_in_debt(unit, tenant, owed: str) -> Account:
    account = move_in(
        unit=unit, actor=None, idempotency_key=f"in-{unit.pk}", tenant=tenant, now=NOW
    ).account
    charges_post(charges=[factories.ChargeInputFactory(account=account, net=D(owed))])
    raise_debt(account, "20.00", key=f"fee-{unit.pk}")
    move_out(account=account, actor=None, idempotency_key=f"out-{unit.pk}", moved_out_at=NOW)
    return account


def test_a_tenants_earlier_debt_in_the_same_property_moves_in_and_is_recovered(property_a1, clock):
    CreditPolicy.objects.create(property=property_a1, recovery_percent=D(50))
    tenant = factories.TenantFactory(organisation=property_a1.organisation)
    earlier = _moved_out_in_debt(factories.UnitFactory(property=property_a1), tenant, "30.00")
    assert debts.earlier_debts(account=earlier) == []
    clock.shift(timedelta(hours=1))
    unit = factories.UnitFactory(property=property_a1)
    new = move_in(
        unit=unit,
        actor=None,
        idempotency_key="in-again",
        tenant=tenant,
        move_debt_from=earlier,
        topup=D("40.00"),
    ).account
    moved = list(Debt.objects.filter(account=new).order_by("pk"))
    # The fee (an open debt, moved whole) and the move-out's debt transfer.
    assert [(d.source, d.amount) for d in moved] == [
        ("move_in_transfer", D(20)),
        ("move_in_transfer", D(30)),
    ]
    assert Debt.objects.get(account=earlier).status == Debt.Status.TRANSFERRED
    # The first top-up recovered half of itself, oldest first.
    assert [d.recovered for d in Debt.objects.filter(account=new).order_by("pk")] == [
        D(20),
        D(0),
    ]
    assert book(property_a1, "debtors") == D(-30)
    assert list(debts.check_debts()) == []
    # Nothing is left to move, and a second move moves nothing.
    assert debts.earlier_debts(account=new) == []
    assert debts.debts_move_in(account=new, earlier=earlier, actor=None) == []


def test_a_debt_is_not_moved_across_properties(property_a1, property_a2):
    tenant = factories.TenantFactory(organisation=property_a1.organisation)
    earlier = _moved_out_in_debt(factories.UnitFactory(property=property_a1), tenant, "30.00")
    with pytest.raises(ValidationError, match="another property"):
        move_in(
            unit=factories.UnitFactory(property=property_a2),
            actor=None,
            idempotency_key="elsewhere",
            tenant=tenant,
            move_debt_from=earlier,
        )
    assert not Account.objects.filter(unit__property=property_a2).exists()


def test_only_the_same_tenants_ended_tenancy_can_be_moved_in(property_a1, account):
    other = factories.AccountFactory(unit__property=property_a1)
    with pytest.raises(DebtError, match="same tenant"):
        debts.debts_move_in(account=account, earlier=other, actor=None)
    second = factories.AccountFactory(unit__property=property_a1, tenant=account.tenant)
    with pytest.raises(DebtError, match="ended"):
        debts.debts_move_in(account=second, earlier=account, actor=None)


# The invariants ----------------------------------------------------------------------------------


def test_check_debts_finds_a_debt_whose_recovered_amount_was_tampered_with(account):
    CreditPolicy.objects.create(property=account.unit.property)
    debt = raise_debt(account)
    topup_record(account=account, amount=D(100), channel="cash", actor=None, idempotency_key="t")
    assert list(debts.check_debts()) == []
    Debt.objects.filter(pk=debt.pk).update(recovered=D(30))
    found = list(debts.check_debts())
    assert any("recovered 30" in line for line in found)
    assert any("debtors book" in line for line in found)


def test_check_debts_finds_a_cleared_debt_still_open(account):
    debt = raise_debt(account, "1.00")
    Debt.objects.filter(pk=debt.pk).update(recovered=D(1))
    assert any("still open" in line for line in debts.check_debts())
