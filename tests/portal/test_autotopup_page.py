"""Opting in to auto top-up from the portal, against the loopback Stripe API."""

from decimal import Decimal

import pytest
from django.urls import reverse

from payments.models import AutoTopup, PaymentIntent
from payments.services import provider_config_save
from prepaid.audit.models import AuditLog
from tests import factories
from tests.payments.fakes import stripe as fake_stripe
from tests.payments.fakes.stripe import FakeStripe

pytestmark = pytest.mark.django_db


@pytest.fixture
def stripe(org_a):
    with FakeStripe() as fake:
        yield provider_config_save(
            organisation=org_a,
            provider="stripe",
            actor=None,
            settings=fake_stripe.provider_settings(fake.url),
            secrets=fake_stripe.provider_secrets(),
        )


@pytest.fixture
def mine(client, property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    account.tenant.user = factories.UserFactory(username="wang")
    account.tenant.save()
    client.force_login(account.tenant.user)
    return account


def _page(account):
    return reverse("portal:autotopup", args=[account.uuid])


def test_without_card_payments_there_is_no_auto_top_up(client, mine):
    assert client.get(_page(mine)).status_code == 404


def test_turning_it_on_saves_the_amounts_and_sends_the_tenant_to_save_a_card(client, mine, stripe):
    response = client.post(
        _page(mine), {"action": "enable", "threshold": "20", "amount": "50", "monthly_cap": "150"}
    )
    topup = AutoTopup.objects.get(account=mine)
    intent = PaymentIntent.objects.get(account=mine)
    assert (topup.threshold, topup.amount, topup.monthly_cap) == (
        Decimal(20),
        Decimal(50),
        Decimal(150),
    )
    assert topup.setup_intent == intent
    assert response.status_code == 302
    assert response["Location"] == intent.redirect_url
    assert AuditLog.objects.filter(action="payments.autotopup.enable").exists()


def test_a_cap_below_one_recharge_is_refused_beside_the_field(client, mine, stripe):
    response = client.post(
        _page(mine), {"action": "enable", "threshold": "20", "amount": "50", "monthly_cap": "30"}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["monthly_cap"]
    assert not AutoTopup.objects.exists()


def test_turning_it_off_is_audited_and_keeps_the_settings(client, mine, stripe):
    client.post(
        _page(mine), {"action": "enable", "threshold": "20", "amount": "50", "monthly_cap": "150"}
    )
    response = client.post(_page(mine), {"action": "disable"})
    assert response.status_code == 302
    topup = AutoTopup.objects.get(account=mine)
    assert (topup.enabled, topup.amount) == (False, Decimal(50))
    assert AuditLog.objects.filter(action="payments.autotopup.disable").exists()


def test_another_tenants_auto_top_up_is_not_found(client, mine, stripe, property_a1):
    other = factories.AccountFactory(unit__property=property_a1)
    assert client.get(_page(other)).status_code == 404
