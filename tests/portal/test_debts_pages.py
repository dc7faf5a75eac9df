"""The portal's debts: the card on the home page, the debts page with each top-up's split, and
emergency credit taken after a confirmation that says how it is repaid."""

import uuid
from decimal import Decimal

import pytest
from django.urls import reverse

from billing import debts
from billing.models import CreditPolicy, Debt, LedgerAccount
from billing.services import topup_record
from tests import factories

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def mine(client, property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    account.tenant.user = factories.UserFactory(username="wang")
    account.tenant.save()
    client.force_login(account.tenant.user)
    return account


@pytest.fixture
def offering(property_a1):
    return CreditPolicy.objects.create(
        property=property_a1, emergency_credit_amount=D(20), emergency_credit_below=D(10)
    )


def card(client, account) -> str:
    response = client.get(reverse("portal:debts-card", args=[account.uuid]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_card_is_empty_for_an_account_with_nothing_to_show(client, mine):
    assert card(client, mine) == ""


def test_the_card_shows_the_debt_and_the_emergency_credit_offer(client, mine, offering):
    debts.debt_raise(
        account=mine,
        amount=D(50),
        reason="Arrears",
        counter="fees",
        actor=None,
        idempotency_key="d",
    )
    body = card(client, mine)
    assert 'data-amount="50.00"' in body
    assert 'data-testid="emergency-offer"' in body


def test_emergency_credit_is_confirmed_then_taken_once(client, mine, offering):
    url = reverse("portal:emergency-credit", args=[mine.uuid])
    page = client.get(url).content.decode()
    assert "repaid first from your next recharge" in page
    response = client.post(url)
    assert response["Location"] == reverse("portal:home", args=[mine.uuid])
    assert LedgerAccount.objects.get(pk=mine.wallet_id).balance == D(20)
    client.post(url)
    assert Debt.objects.filter(account=mine).count() == 1
    assert 'data-testid="emergency-taken"' in card(client, mine)
    assert 'data-testid="not-available"' in client.get(url).content.decode()


def test_the_debts_page_shows_what_each_recharge_gave_the_debt_and_energy(client, mine):
    CreditPolicy.objects.create(property=mine.unit.property)
    debts.debt_raise(
        account=mine,
        amount=D(50),
        reason="Arrears",
        counter="fees",
        actor=None,
        idempotency_key="d",
    )
    topup_record(account=mine, amount=D(100), channel="cash", actor=None, idempotency_key="t")
    body = client.get(reverse("portal:debts", args=[mine.uuid])).content.decode()
    assert "25.00 went to your debt" in body
    assert "75.00 to energy" in body


def test_another_tenants_debts_are_not_found(client, mine, property_a1, offering):
    other = factories.AccountFactory(unit__property=property_a1)
    for name in ("portal:debts-card", "portal:debts", "portal:emergency-credit"):
        assert client.get(reverse(name, args=[other.uuid])).status_code == 404
    assert client.post(reverse("portal:emergency-credit", args=[other.uuid])).status_code == 404
    assert not Debt.objects.exists()
    assert client.get(reverse("portal:debts", args=[uuid.uuid4()])).status_code == 404
