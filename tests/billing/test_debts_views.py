"""The dashboard's debt pages: the tenancy's debts section, raising a debt, a debt's page with
its history, instalment plans and granting emergency credit, as each role uses them."""

import uuid
from decimal import Decimal

import pytest
from django.urls import reverse

from billing import debts
from billing.models import CreditPolicy, Debt, InstalmentPlan
from billing.services import topup_record
from tests import factories

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def policy(property_a1):
    return CreditPolicy.objects.create(
        property=property_a1, emergency_credit_amount=D(20), emergency_credit_below=D(10)
    )


def raise_debt(account, amount="90.00"):
    return debts.debt_raise(
        account=account,
        amount=D(amount),
        reason="Broken window",
        counter="fees",
        actor=None,
        idempotency_key=str(uuid.uuid4()),
    )


def fragment(client, account, **extra):
    return client.get(reverse("billing:tenancy-debts", args=[account.uuid]), **extra)


def test_the_tenancy_section_shows_what_is_owed_and_how_it_is_recovered(
    client, owner_a, account, policy
):
    raise_debt(account)
    client.force_login(owner_a)
    response = fragment(client, account, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section class="card" id="debts"')
    assert 'data-amount="90.00"' in body
    assert "A share of each top-up" in body
    assert 'data-testid="raise-debt"' in body
    assert 'data-testid="grant-emergency"' in body


def test_an_accountant_sees_the_debts_without_any_action(client, accountant_a, account, policy):
    raise_debt(account)
    client.force_login(accountant_a)
    body = fragment(client, account).content.decode()
    assert 'data-testid="debt"' in body
    assert "raise-debt" not in body
    assert "grant-emergency" not in body


def test_the_section_takes_the_same_number_of_queries_however_many_debts(
    client, owner_a, account, policy, django_assert_max_num_queries
):
    raise_debt(account)
    client.force_login(owner_a)
    with django_assert_max_num_queries(20) as few:
        fragment(client, account)
    for _ in range(5):
        raise_debt(account, "1.00")
    with django_assert_max_num_queries(len(few.captured_queries)):
        fragment(client, account)


def test_a_manager_grants_emergency_credit_from_the_section(client, manager_a1, account, policy):
    client.force_login(manager_a1)
    url = reverse("billing:emergency-grant", args=[account.uuid])
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert 'data-testid="emergency-taken"' in response.content.decode()
    assert Debt.objects.get(account=account).source == "emergency_credit"
    client.post(url)
    assert Debt.objects.filter(account=account).count() == 1


def test_an_owner_raises_a_debt_once_however_often_the_form_is_sent(client, owner_a, account):
    client.force_login(owner_a)
    url = reverse("billing:debt-raise", args=[account.uuid])
    assert client.get(url).status_code == 200
    data = {
        "amount": "25.00",
        "counter": "fees",
        "reason": "Lost key",
        "idempotency_key": str(uuid.uuid4()),
    }
    response = client.post(url, data)
    debt = Debt.objects.get(account=account)
    assert response["Location"] == reverse("billing:debt", args=[debt.uuid])
    client.post(url, data)
    assert Debt.objects.filter(account=account).count() == 1


def test_a_debt_without_a_reason_is_refused_beside_the_field(client, owner_a, account):
    client.force_login(owner_a)
    url = reverse("billing:debt-raise", args=[account.uuid])
    data = {"amount": "25.00", "counter": "fees", "reason": "", "idempotency_key": uuid.uuid4()}
    response = client.post(url, data)
    assert response.status_code == 400
    assert not Debt.objects.exists()


def test_the_debt_page_shows_the_top_ups_that_recovered_it(client, accountant_a, account):
    CreditPolicy.objects.create(property=account.unit.property)
    debt = raise_debt(account)
    receipt = topup_record(
        account=account, amount=D(100), channel="cash", actor=None, idempotency_key="t"
    ).receipt
    client.force_login(accountant_a)
    body = client.get(reverse("billing:debt", args=[debt.uuid])).content.decode()
    assert 'data-amount="65.00"' in body
    assert receipt.display_number() in body
    assert "plan-create" not in body


def test_an_owner_splits_a_debt_into_instalments_and_cancels_the_plan(client, owner_a, account):
    debt = raise_debt(account)
    client.force_login(owner_a)
    url = reverse("billing:plan-create", args=[debt.uuid])
    suggested = client.get(url).context["form"].initial["instalments"]
    assert len(suggested.splitlines()) == 3
    assert client.post(url, {"instalments": "2000-01-01 90.00"}).status_code == 400
    response = client.post(url, {"instalments": suggested})
    assert response["Location"] == reverse("billing:debt", args=[debt.uuid])
    plan = InstalmentPlan.objects.get(debt=debt)
    assert sum(i.amount for i in plan.instalments.all()) == D(90)
    client.post(reverse("billing:plan-cancel", args=[debt.uuid]), {"reason": "Paid in cash"})
    plan.refresh_from_db()
    assert plan.status == "cancelled"


def test_the_section_offers_moving_in_an_earlier_tenancys_debt(client, owner_a, property_a1):
    earlier = factories.AccountFactory(unit__property=property_a1)
    raise_debt(earlier, "40.00")
    earlier.status, earlier.closed_at = "closed", earlier.opened_at
    earlier.save(update_fields=["status", "closed_at"])
    account = factories.AccountFactory(unit__property=property_a1, tenant=earlier.tenant)
    client.force_login(owner_a)
    assert 'data-testid="move-in-offer"' in fragment(client, account).content.decode()
    client.post(reverse("billing:debts-move-in", args=[account.uuid]), {"from": earlier.uuid})
    assert Debt.objects.get(account=account).amount == D(40)
