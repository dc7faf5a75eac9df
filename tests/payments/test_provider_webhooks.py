"""Each real provider end to end through our webhook: a valid notification credits once, and
each tampered field is rejected with the provider's expected answer and credits nothing."""

from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import LedgerAccount
from payments.models import PaymentIntent, ProviderEvent
from payments.services import intent_create, provider_config_save
from tests.payments.fakes import alipay

pytestmark = pytest.mark.django_db


def _balance(account) -> Decimal:
    return LedgerAccount.objects.get(pk=account.wallet_id).balance


def _post(client, config, body: bytes, headers: dict[str, str]):
    extra = {
        f"HTTP_{key.upper().replace('-', '_')}": value
        for key, value in headers.items()
        if key.lower() != "content-type"
    }
    content_type = next(
        (value for key, value in headers.items() if key.lower() == "content-type"),
        "application/json",
    )
    url = reverse("payments:webhook", args=[config.provider, config.uuid])
    return client.post(url, data=body, content_type=content_type, **extra)


def _intent(account, config, amount="50.00"):
    return intent_create(
        account=account,
        config=config,
        amount=Decimal(amount),
        actor=None,
        notify_url="https://example.test/notify",
        return_url="/portal/payments/{reference}/",
        client="mobile",
    )


class TestAlipay:
    @pytest.fixture
    def keys(self):
        return alipay.make_keys()

    @pytest.fixture
    def config(self, org_a, keys):
        return provider_config_save(
            organisation=org_a,
            provider="alipay",
            actor=None,
            settings=alipay.provider_settings(keys, "https://gateway.invalid/gateway.do"),
            secrets=alipay.provider_secrets(keys),
        )

    def test_a_signed_trade_success_credits_once_and_answers_success(
        self, client, config, keys, account
    ):
        intent = _intent(account, config)
        assert intent.redirect_url.startswith("https://gateway.invalid/gateway.do?")
        body, headers = alipay.signed_notification(
            keys, reference=intent.reference, total_amount="50.00"
        )
        for _ in range(3):
            response = _post(client, config, body, headers)
            assert (response.status_code, response.content) == (200, b"success")
        intent.refresh_from_db()
        assert intent.status == PaymentIntent.Status.SUCCEEDED
        assert _balance(account) == Decimal("50.00")

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"total_amount": "5.00"}, "amount"),
            ({"app_id": "2021999999999999"}, "merchant"),
            ({"seller_id": "2088999999999999"}, "merchant"),
            ({"reference": "f" * 32}, "unknown_intent"),
        ],
    )
    def test_each_of_the_four_fields_is_checked(
        self, client, config, keys, account, change, reason
    ):
        intent = _intent(account, config)
        fields = {"reference": intent.reference, "total_amount": "50.00", **change}
        body, headers = alipay.signed_notification(keys, **fields)
        response = _post(client, config, body, headers)
        assert response.content != b"success"
        assert ProviderEvent.objects.get().reason == reason
        assert _balance(account) == 0

    def test_a_notification_signed_with_another_key_is_rejected(
        self, client, config, keys, account
    ):
        intent = _intent(account, config)
        forged = alipay.make_keys()
        body, headers = alipay.signed_notification(
            forged, reference=intent.reference, total_amount="50.00"
        )
        response = _post(client, config, body, headers)
        assert response.content == b"fail"
        assert ProviderEvent.objects.get().reason == "signature"
        assert _balance(account) == 0
