"""Counter top-ups recorded by a superuser in the Django admin."""

from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import Receipt
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser():
    return factories.UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def _url(account):
    return reverse("admin:accounts_account_topup", args=[account.pk])


def _rendered_key(client, account) -> str:
    response = client.get(_url(account))
    assert response.status_code == 200
    key = response.context["form"]["idempotency_key"].value()
    assert f'value="{key}"' in response.content.decode()
    return str(key)


def _balance(account) -> Decimal:
    account.wallet.refresh_from_db(fields=["balance"])
    return account.wallet.balance


def _submit(client, account, key, amount="100.00"):
    body = {"amount": amount, "channel": "cash", "reference": "desk", "idempotency_key": key}
    return client.post(_url(account), body, follow=True)


def test_a_superuser_tops_up_through_the_admin_form(admin_client, account, superuser):
    response = _submit(admin_client, account, _rendered_key(admin_client, account))
    assert response.redirect_chain == [
        (reverse("admin:accounts_account_change", args=[account.pk]), 302)
    ]
    receipt = Receipt.objects.get()
    assert (receipt.amount, receipt.channel, receipt.reference) == (Decimal(100), "cash", "desk")
    assert "Receipt A1-00000001: 100.00 CNY credited" in response.content.decode()
    assert _balance(account) == Decimal(100)
    assert AuditLog.objects.get(action="topup.record").actor == superuser


def test_submitting_the_same_form_twice_credits_once(admin_client, account):
    key = _rendered_key(admin_client, account)
    _submit(admin_client, account, key)
    second = _submit(admin_client, account, key)
    assert "already recorded as receipt A1-00000001" in second.content.decode()
    assert Receipt.objects.count() == 1
    assert _balance(account) == Decimal(100)


def test_each_rendered_form_carries_a_new_key(admin_client, account):
    assert _rendered_key(admin_client, account) != _rendered_key(admin_client, account)


def test_the_same_form_resubmitted_with_another_amount_is_refused(admin_client, account):
    key = _rendered_key(admin_client, account)
    _submit(admin_client, account, key)
    response = _submit(admin_client, account, key, amount="200.00")
    assert response.status_code == 200
    assert "already submitted with other values" in response.content.decode()
    assert _balance(account) == Decimal(100)


def test_the_services_limits_show_as_form_errors(admin_client, account):
    response = _submit(admin_client, account, _rendered_key(admin_client, account), "0.005")
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "amount": ["Give the amount in whole CNY minor units."]
    }
    assert not Receipt.objects.exists()


def test_the_account_page_links_to_the_topup_form(admin_client, account):
    page = admin_client.get(reverse("admin:accounts_account_change", args=[account.pk]))
    assert page.status_code == 200
    assert _url(account) in page.content.decode()


def test_staff_who_are_not_superusers_cannot_top_up(client, account):
    staff = factories.UserFactory(username="staff", is_staff=True)
    client.force_login(staff)
    assert client.get(_url(account)).status_code == 403
    response = client.post(
        _url(account), {"amount": "10", "channel": "cash", "idempotency_key": "x"}
    )
    assert response.status_code == 403
    assert not Receipt.objects.exists()
