"""Payments over the API: intents are read by staff; refunds are for owners, once per key."""

from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import LedgerAccount
from payments.models import Refund, SandboxPayment
from tests.payments.conftest import sandbox_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid(make_intent, deliver):
    intent = make_intent("50.00")
    SandboxPayment.objects.filter(reference=intent.reference).update(status="paid")
    deliver(sandbox_event(intent))
    intent.refresh_from_db()
    return intent


def _refund(api, intent, amount="20.00", key="rf-1", reason="moved out"):
    return api.post(
        reverse("payment-refund", args=[intent.uuid]),
        {"amount": amount, "reason": reason},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def test_staff_see_a_payment_with_its_receipt(paid, api_as, accountant_a):
    response = api_as(accountant_a).get(reverse("payment-detail", args=[paid.uuid]))
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["amount"], body["provider"]) == ("succeeded", "50.00", "sandbox")
    assert body["receipt"] == str(paid.receipt.uuid)


def test_an_owner_refunds_part_of_a_payment_once_per_key(paid, api_as, owner_a, account):
    api = api_as(owner_a)
    first = _refund(api, paid)
    assert first.status_code == 201, first.content
    again = _refund(api, paid)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Refund.objects.count() == 1
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance == Decimal("30.00")


@pytest.mark.parametrize("user", ["manager_a1", "accountant_a"])
def test_only_owners_refund(paid, api_as, user, request):
    response = _refund(api_as(request.getfixturevalue(user)), paid)
    assert response.status_code == 403
    assert Refund.objects.count() == 0


def test_a_refund_above_what_is_left_is_a_clear_400(paid, api_as, owner_a):
    response = _refund(api_as(owner_a), paid, amount="50.01")
    assert response.status_code == 400
    assert "50.00" in response.content.decode()


def test_a_refund_without_a_key_is_refused(paid, api_as, owner_a):
    response = api_as(owner_a).post(
        reverse("payment-refund", args=[paid.uuid]), {"amount": "1", "reason": "x"}, format="json"
    )
    assert response.status_code == 400
    assert Refund.objects.count() == 0
