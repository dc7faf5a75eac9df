"""The sandbox's hosted page: approving or declining sends a signed webhook over real HTTP to
our own endpoint, which credits or fails the intent; abandoning sends nothing."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import LedgerAccount
from payments.models import PaymentIntent, ProviderEvent, SandboxPayment
from payments.services import intent_create

pytestmark = pytest.mark.django_db(transaction=True)

Status = PaymentIntent.Status


@pytest.fixture
def live_intent(live_server, account, sandbox_config):
    notify = live_server.url + reverse("payments:webhook", args=["sandbox", sandbox_config.uuid])
    return intent_create(
        account=account,
        config=sandbox_config,
        amount=Decimal("50.00"),
        actor=None,
        notify_url=notify,
        return_url="/portal/payments/{reference}/",
    )


def _choose(client, intent, outcome):
    return client.post(intent.redirect_url, {"outcome": outcome})


def test_approving_on_the_page_credits_the_wallet_before_the_payer_is_sent_back(
    client, live_intent, account
):
    response = _choose(client, live_intent, "approve")
    assert response.status_code == 302
    assert response["Location"] == live_intent.return_url
    live_intent.refresh_from_db()
    assert live_intent.status == Status.SUCCEEDED
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance == Decimal("50.00")
    assert ProviderEvent.objects.get().outcome == "applied"


def test_declining_on_the_page_fails_the_intent(client, live_intent, account):
    _choose(client, live_intent, "decline")
    live_intent.refresh_from_db()
    assert live_intent.status == Status.FAILED
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance == 0


def test_abandoning_sends_nothing_and_goes_back(client, live_intent):
    response = _choose(client, live_intent, "abandon")
    assert response["Location"] == live_intent.return_url
    assert ProviderEvent.objects.count() == 0
    assert SandboxPayment.objects.get().status == SandboxPayment.Status.OPEN


def test_a_second_approval_pays_nothing_more(client, live_intent, account):
    _choose(client, live_intent, "approve")
    _choose(client, live_intent, "approve")
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance == Decimal("50.00")
    assert ProviderEvent.objects.count() == 1


def test_an_expired_checkout_cannot_be_approved(client, live_intent, account):
    SandboxPayment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    page = client.get(live_intent.redirect_url)
    assert b"Expired" in page.content
    _choose(client, live_intent, "approve")
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance == 0


def test_an_unknown_choice_is_a_clear_400(client, live_intent):
    response = _choose(client, live_intent, "steal")
    assert response.status_code == 400
    assert b"Choose approve, decline or abandon." in response.content


def test_an_unknown_checkout_page_is_not_found(client):
    assert client.get(reverse("payments:sandbox-page", args=["0" * 32])).status_code == 404


def test_an_undeliverable_webhook_is_left_for_the_retrying_task(client, account, sandbox_config):
    intent = intent_create(
        account=account,
        config=sandbox_config,
        amount=Decimal("50.00"),
        actor=None,
        # Nothing listens on the discard port: delivery fails and is queued for retry.
        notify_url="http://127.0.0.1:9/payments/webhooks/",
        return_url="/back/",
    )
    response = _choose(client, intent, "approve")
    assert response.status_code == 302
    intent.refresh_from_db()
    assert intent.status == Status.PENDING
    assert SandboxPayment.objects.get().status == SandboxPayment.Status.PAID
