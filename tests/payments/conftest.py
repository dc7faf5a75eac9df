import json
from decimal import Decimal

import pytest
from django.urls import reverse

from payments.services import intent_create, provider_config_save, provider_for


@pytest.fixture
def sandbox_config(org_a):
    return provider_config_save(
        organisation=org_a,
        provider="sandbox",
        actor=None,
        secrets={"webhook_secret": "whsec_sandbox_test"},
    )


@pytest.fixture
def make_intent(account, sandbox_config):
    def make(amount="50.00", config=None, **kwargs):
        return intent_create(
            account=account,
            config=config or sandbox_config,
            amount=Decimal(amount),
            actor=None,
            notify_url="http://127.0.0.1:9/unused",
            return_url="/portal/payments/{reference}/",
            **kwargs,
        )

    return make


def sandbox_event(intent, *, event_type="payment.succeeded", event_id="evt_1", **data) -> bytes:
    payload = {
        "reference": intent.reference,
        "amount": str(intent.amount),
        "currency": intent.currency,
        "transaction_id": f"sbx_{intent.reference[:8]}",
        **data,
    }
    return json.dumps({"id": event_id, "type": event_type, "data": payload}).encode()


@pytest.fixture
def deliver(client, sandbox_config):
    """POST a sandbox notification to the webhook, signed unless told otherwise."""

    def post(body: bytes, *, headers=None, config=None):
        config = config or sandbox_config
        signed = provider_for(config).sign(body) if headers is None else headers
        url = reverse("payments:webhook", args=[config.provider, config.uuid])
        extra = {f"HTTP_{key.upper().replace('-', '_')}": value for key, value in signed.items()}
        extra.pop("HTTP_CONTENT_TYPE", None)
        return client.post(url, data=body, content_type="application/json", **extra)

    return post
