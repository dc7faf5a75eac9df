"""Each real provider end to end through our webhook: a valid notification credits once, and
each tampered field is rejected with the provider's expected answer and credits nothing."""

import time
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import LedgerAccount, Receipt
from billing.verification import ledger_violations
from payments.models import PaymentIntent, ProviderConfig, ProviderEvent
from payments.services import intent_create, notification_receive, provider_config_save
from tests.payments.fakes import alipay, stripe, wechat
from tests.threads import run_together

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


def _concurrently_credits_once(config, account, body: bytes, headers: dict[str, str]) -> None:
    def deliver(_):
        return notification_receive(
            config=ProviderConfig.objects.get(pk=config.pk), body=body, headers=headers
        ).status

    assert run_together(deliver, 5) == [200] * 5
    assert _balance(account) == Decimal("50.00")
    assert Receipt.objects.filter(account=account).count() == 1
    assert ProviderEvent.objects.filter(outcome="applied").count() == 1
    assert not any(ledger_violations().values())


class TestStripe:
    @pytest.fixture
    def api(self):
        with stripe.FakeStripe() as fake:
            yield fake

    @pytest.fixture
    def config(self, org_a, api):
        return provider_config_save(
            organisation=org_a,
            provider="stripe",
            actor=None,
            settings=stripe.provider_settings(api.url),
            secrets=stripe.provider_secrets(),
        )

    def _paid(self, api, intent, **changes):
        session = api.pay(intent.provider_reference) | changes
        return stripe.signed_event("checkout.session.completed", session)

    def test_a_signed_completed_session_credits_once_and_answers_200(
        self, client, config, api, account
    ):
        intent = _intent(account, config)
        assert intent.redirect_url.startswith("https://checkout.stripe.com/c/pay/cs_test_")
        body, headers = self._paid(api, intent)
        for _ in range(3):
            response = _post(client, config, body, headers)
            assert (response.status_code, response.json()) == (200, {"received": True})
        # The PaymentIntent's own success, arriving too, changes nothing.
        paid = api.payment_intents[api.sessions[intent.provider_reference]["payment_intent"]]
        body, headers = stripe.signed_event("payment_intent.succeeded", paid)
        assert _post(client, config, body, headers).status_code == 200
        intent.refresh_from_db()
        assert intent.status == PaymentIntent.Status.SUCCEEDED
        assert intent.transaction_id == paid["id"]
        assert _balance(account) == Decimal("50.00")
        assert not any(ledger_violations().values())

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"amount_total": 500}, "amount"),
            ({"currency": "usd"}, "amount"),
            ({"client_reference_id": "f" * 32, "metadata": {}}, "unknown_intent"),
        ],
    )
    def test_wrong_amount_currency_or_intent_is_rejected(
        self, client, config, api, account, change, reason
    ):
        intent = _intent(account, config)
        body, headers = self._paid(api, intent, **change)
        response = _post(client, config, body, headers)
        assert response.status_code == 400
        assert response.json() == {"error": reason}
        assert ProviderEvent.objects.get().reason == reason
        assert _balance(account) == 0
        assert not any(ledger_violations().values())

    def test_a_forged_signature_is_answered_400_and_credits_nothing(
        self, client, config, api, account
    ):
        intent = _intent(account, config)
        session = api.pay(intent.provider_reference)
        body, headers = stripe.signed_event(
            "checkout.session.completed", session, secret="whsec_forged"
        )
        response = _post(client, config, body, headers)
        assert (response.status_code, response.json()) == (400, {"error": "signature"})
        assert _balance(account) == 0


class TestWeChatPay:
    @pytest.fixture
    def keys(self):
        return wechat.make_keys()

    @pytest.fixture
    def api(self, keys):
        with wechat.FakeWeChatPay(keys) as fake:
            yield fake

    @pytest.fixture
    def config(self, org_a, keys, api):
        return provider_config_save(
            organisation=org_a,
            provider="wechat",
            actor=None,
            settings=wechat.provider_settings(keys, api.url),
            secrets=wechat.provider_secrets(keys),
        )

    def test_a_signed_success_credits_once_and_answers_an_empty_200(
        self, client, config, keys, account
    ):
        intent = _intent(account, config)
        assert intent.redirect_url.startswith("https://wx.tenpay.com/")
        resource = wechat.transaction_resource(keys, reference=intent.reference, total_fen=5000)
        body, headers = wechat.signed_notification(keys, resource)
        for _ in range(3):
            response = _post(client, config, body, headers)
            assert (response.status_code, response.content) == (200, b"")
        intent.refresh_from_db()
        assert intent.status == PaymentIntent.Status.SUCCEEDED
        assert intent.transaction_id == resource["transaction_id"]
        assert _balance(account) == Decimal("50.00")
        assert not any(ledger_violations().values())

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"total_fen": 500}, "amount"),
            ({"currency": "USD"}, "amount"),
            ({"reference": "f" * 32}, "unknown_intent"),
        ],
    )
    def test_wrong_amount_currency_or_intent_is_rejected(
        self, client, config, keys, account, change, reason
    ):
        intent = _intent(account, config)
        fields = {"reference": intent.reference, "total_fen": 5000, **change}
        resource = wechat.transaction_resource(keys, **fields)
        body, headers = wechat.signed_notification(keys, resource)
        response = _post(client, config, body, headers)
        assert response.status_code == 400
        assert response.json() == {"code": "FAIL", "message": reason}
        assert ProviderEvent.objects.get().reason == reason
        assert _balance(account) == 0
        assert not any(ledger_violations().values())

    def test_a_notification_older_than_5_minutes_is_rejected(self, client, config, keys, account):
        intent = _intent(account, config)
        resource = wechat.transaction_resource(keys, reference=intent.reference, total_fen=5000)
        body, headers = wechat.signed_notification(keys, resource, timestamp=int(time.time()) - 301)
        response = _post(client, config, body, headers)
        assert response.json() == {"code": "FAIL", "message": "stale"}
        assert _balance(account) == 0


@pytest.mark.django_db(transaction=True)
class TestConcurrentDeliveries:
    def test_one_stripe_event_delivered_5_times_at_once_credits_once(self, org_a, account):
        with stripe.FakeStripe() as api:
            config = provider_config_save(
                organisation=org_a,
                provider="stripe",
                actor=None,
                settings=stripe.provider_settings(api.url),
                secrets=stripe.provider_secrets(),
            )
            intent = _intent(account, config)
            session = api.pay(intent.provider_reference)
        body, headers = stripe.signed_event("checkout.session.completed", session)
        _concurrently_credits_once(config, account, body, headers)

    def test_one_wechat_notification_delivered_5_times_at_once_credits_once(self, org_a, account):
        keys = wechat.make_keys()
        with wechat.FakeWeChatPay(keys) as api:
            config = provider_config_save(
                organisation=org_a,
                provider="wechat",
                actor=None,
                settings=wechat.provider_settings(keys, api.url),
                secrets=wechat.provider_secrets(keys),
            )
            intent = _intent(account, config)
        resource = wechat.transaction_resource(keys, reference=intent.reference, total_fen=5000)
        body, headers = wechat.signed_notification(keys, resource)
        _concurrently_credits_once(config, account, body, headers)
