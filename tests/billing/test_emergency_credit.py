"""Emergency credit: offered by the policy to prepaid accounts below a level, once per local
month, lent from the debtors book, and bringing supply back when it lifts the balance."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection

from accounts.models import Account
from billing import debts
from billing.debts import DebtError
from billing.models import CreditPolicy, Debt, LedgerAccount, LedgerTransaction
from billing.services import charges_post
from prepaid.audit.models import AuditLog
from tests import factories
from tests.billing.test_control import published_tasks

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 10, 2, tzinfo=UTC)
D = Decimal


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def policy(property_a1):
    return CreditPolicy.objects.create(
        property=property_a1, emergency_credit_amount=D(30), emergency_credit_below=D(10)
    )


def spend(account, amount: str) -> None:
    charges_post(charges=[factories.ChargeInputFactory(account=account, net=D(amount))])


def take(account, by_tenant=True):
    return debts.emergency_credit_take(account=account, actor=None, by_tenant=by_tenant)


def test_it_lends_the_amount_from_debtors_to_the_wallet_as_a_debt(account, policy):
    debt = take(account)
    assert (debt.source, debt.amount, debt.month.isoformat()) == (
        Debt.Source.EMERGENCY_CREDIT,
        D(30),
        "2026-11-01",
    )
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance == D(30)
    postings = {p.ledger_account.kind: p.amount for p in debt.transaction.postings.all()}
    assert postings == {"debtors": D(-30), "wallet": D(30)}
    assert AuditLog.objects.filter(action="debt.emergency_credit").count() == 1
    assert list(debts.check_debts()) == []


def test_it_is_taken_once_a_local_month(account, policy, clock):
    take(account)
    spend(account, "30.00")
    with pytest.raises(DebtError, match="already taken this month"):
        take(account)
    # 16:00 UTC on 30 November is midnight of 1 December in Shanghai: a new month there.
    clock.move_to(datetime(2026, 11, 30, 16, tzinfo=UTC))
    assert take(account).month.isoformat() == "2026-12-01"


def test_it_is_refused_when_the_balance_is_not_below_the_level(account, policy):
    factories.TopupFactory(account=account, amount=D(10))
    with pytest.raises(DebtError, match="balances below"):
        take(account)


def test_it_is_refused_when_the_property_offers_none(account):
    with pytest.raises(DebtError, match="does not offer"):
        take(account)


def test_tenants_may_not_take_it_themselves_unless_the_policy_says_so(account, policy):
    policy.emergency_credit_self_service = False
    policy.save()
    with pytest.raises(DebtError, match="office"):
        take(account, by_tenant=True)
    assert take(account, by_tenant=False).amount == D(30)


def test_it_is_refused_on_postpaid_and_closed_accounts(property_a1, policy):
    postpaid = factories.AccountFactory(unit__property=property_a1, mode=Account.Mode.POSTPAID)
    with pytest.raises(DebtError, match="prepaid"):
        take(postpaid)
    closed = factories.AccountFactory(unit__property=property_a1)
    Account.objects.filter(pk=closed.pk).update(status="closed", closed_at=NOW)
    with pytest.raises(DebtError, match="ended"):
        take(closed)


def restores(sent) -> list:
    return [task for task in sent if task[0] == "billing.tasks.restore_supply"]


def test_it_restores_supply_when_it_lifts_the_balance_above_the_threshold(
    account, policy, django_capture_on_commit_callbacks
):
    with published_tasks() as sent, django_capture_on_commit_callbacks(execute=True):
        take(account)
    assert restores(sent) == [("billing.tasks.restore_supply", "commands", f"({account.pk},)")]


def test_it_does_not_restore_when_the_balance_stays_at_or_below_the_threshold(
    account, policy, django_capture_on_commit_callbacks
):
    spend(account, "50.00")
    with published_tasks() as sent, django_capture_on_commit_callbacks(execute=True):
        take(account)
    assert restores(sent) == []


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_double_tap_lends_once(property_a1):
    CreditPolicy.objects.create(
        property=property_a1, emergency_credit_amount=D(30), emergency_credit_below=D(10)
    )
    account = factories.AccountFactory(unit__property=property_a1)
    barrier = threading.Barrier(2)
    outcomes = []

    def tap():
        barrier.wait()
        try:
            take(account)
            outcomes.append("taken")
        except DebtError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=tap) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "taken"]
    assert LedgerTransaction.objects.filter(kind="emergency_credit").count() == 1
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance == D(30)


def test_the_offer_says_why_it_is_not_available(account, policy, clock):
    offer = debts.emergency_credit_offer(account=account, by_tenant=True)
    assert (offer.available, offer.amount) == (True, D(30))
    take(account)
    account.wallet.refresh_from_db()
    offer = debts.emergency_credit_offer(account=account, by_tenant=True)
    assert not offer.available
    assert offer.taken is not None
    clock.shift(timedelta(days=40))
    spend(account, "30.00")
    account.wallet.refresh_from_db()
    assert debts.emergency_credit_offer(account=account, by_tenant=True).available
