import json
import socket
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments.providers.base import (
    CheckoutRequest,
    NotificationRejected,
    ProviderError,
    RefundRequest,
)
from payments.providers.stripe import StripeProvider, to_major, to_minor
from tests.payments.fakes.stripe import (
    API_KEY,
    WEBHOOK_SECRET,
    FakeStripe,
    card_error,
    payment_intent_object,
    provider_secrets,
    provider_settings,
    session_object,
    signature_header,
    signed_event,
)


@pytest.fixture
def api():
    with FakeStripe() as fake:
        yield fake


def build_provider(api_base: str, **settings) -> StripeProvider:
    return StripeProvider(provider_settings(api_base) | settings, provider_secrets().__getitem__)


@pytest.fixture
def provider(api) -> StripeProvider:
    return build_provider(api.url)


def checkout_request(**overrides) -> CheckoutRequest:
    fields = {
        "reference": "5f0c2d7e9a1b4c3d8e7f6a5b4c3d2e1f",
        "amount": Decimal("50.00"),
        "currency": "CNY",
        "description": "A One U001",
        "return_url": "https://prepaid.example.com/portal/payments/5f0c/",
        "notify_url": "https://prepaid.example.com/payments/webhooks/stripe/x/",
        "expires_at": datetime.now(UTC) + timedelta(minutes=30),
    }
    return CheckoutRequest(**(fields | overrides))


def refund_request(**overrides) -> RefundRequest:
    fields = {
        "reference": "5f0c2d7e9a1b4c3d8e7f6a5b4c3d2e1f",
        "transaction_id": "pi_placeholder",
        "refund_reference": "7d1e0c9b8a7f6e5d4c3b2a1f0e9d8c7b",
        "amount": Decimal("12.50"),
        "total": Decimal("50.00"),
        "currency": "CNY",
        "reason": "Moved out",
    }
    return RefundRequest(**(fields | overrides))


def paid_intent(api: FakeStripe, provider: StripeProvider, amount="50.00") -> str:
    checkout = provider.create_checkout(checkout_request(amount=Decimal(amount)))
    return api.pay(checkout.provider_reference)["payment_intent"]


class TestMinorUnits:
    @given(st.integers(min_value=1, max_value=10**12), st.sampled_from(["CNY", "USD", "EUR"]))
    def test_two_decimal_amounts_round_trip(self, cents, currency):
        amount = Decimal(cents).scaleb(-2)
        assert to_minor(amount, currency) == cents
        assert to_major(to_minor(amount, currency), currency) == amount

    @given(st.integers(min_value=1, max_value=10**12), st.sampled_from(["JPY", "KRW", "VND"]))
    def test_zero_decimal_amounts_round_trip(self, units, currency):
        amount = Decimal(units)
        assert to_minor(amount, currency) == units
        assert to_major(units, currency) == amount

    @given(st.integers(min_value=1, max_value=10**9))
    def test_finer_than_the_minor_unit_is_refused(self, units):
        with pytest.raises(ValueError, match="finer"):
            to_minor(Decimal(units) + Decimal("0.5"), "JPY")
        with pytest.raises(ValueError, match="finer"):
            to_minor(Decimal(units).scaleb(-2) + Decimal("0.001"), "CNY")

    def test_stripes_exponent_wins_over_iso(self):
        # ISK has no minor unit in ISO 4217, but Stripe's API takes it with two decimals.
        assert to_minor(Decimal("100"), "ISK") == 10000
        assert to_minor(Decimal("1.234"), "KWD") == 1234
        assert to_minor(Decimal("50.00"), "CNY") == 5000
        assert type(to_minor(Decimal("50.00"), "CNY")) is int


class TestCheckout:
    def test_it_opens_a_payment_session_for_the_reference(self, provider, api):
        request = checkout_request()
        checkout = provider.create_checkout(request)
        sent = api.requests_to("create_session")[0]
        assert checkout.provider_reference.startswith("cs_test_")
        assert (
            checkout.redirect_url
            == f"https://checkout.stripe.com/c/pay/{checkout.provider_reference}"
        )
        assert sent.authorization == f"Bearer {API_KEY}"
        assert sent.idempotency_key == f"checkout:{request.reference}"
        form = sent.form
        assert form["mode"] == "payment"
        assert form["client_reference_id"] == request.reference
        assert form["metadata"] == {"reference": request.reference}
        assert form["payment_intent_data"]["metadata"] == {"reference": request.reference}
        assert form["line_items"] == [
            {
                "quantity": "1",
                "price_data": {
                    "currency": "cny",
                    "unit_amount": "5000",
                    "product_data": {"name": "A One U001"},
                },
            }
        ]
        assert form["success_url"] == form["cancel_url"] == request.return_url
        assert "customer_creation" not in form
        assert "setup_future_usage" not in form["payment_intent_data"]

    def test_a_zero_decimal_currency_is_sent_in_whole_units(self, provider, api):
        provider.create_checkout(checkout_request(amount=Decimal("3000"), currency="JPY"))
        price = api.requests_to("create_session")[0].form["line_items"][0]["price_data"]
        assert (price["currency"], price["unit_amount"]) == ("jpy", "3000")

    def test_an_amount_finer_than_the_minor_unit_is_refused_before_calling(self, provider, api):
        with pytest.raises(ValueError, match="finer"):
            provider.create_checkout(checkout_request(amount=Decimal("50.005")))
        assert api.requests == []

    def test_expiry_is_kept_within_stripes_30_minutes_to_24_hours(self, provider, api):
        now = time.time()
        provider.create_checkout(checkout_request(expires_at=datetime.now(UTC)))
        provider.create_checkout(
            checkout_request(reference="b" * 32, expires_at=datetime.now(UTC) + timedelta(days=3))
        )
        soon, late = (int(r.form["expires_at"]) for r in api.requests_to("create_session"))
        assert now + 30 * 60 < soon <= now + 32 * 60
        assert late <= now + 24 * 3600 + 1

    def test_another_currency_than_the_accounts_is_refused(self, api):
        provider = build_provider(api.url, currency="usd")
        with pytest.raises(ValueError, match="USD"):
            provider.create_checkout(checkout_request())

    def test_a_setup_checkout_saves_the_card_on_a_new_customer(self, provider, api):
        provider.create_setup_checkout(checkout_request())
        form = api.requests_to("create_session")[0].form
        assert form["customer_creation"] == "always"
        assert form["payment_intent_data"]["setup_future_usage"] == "off_session"

    def test_the_saved_card_is_read_from_the_paid_payment_intent(self, provider, api):
        checkout = provider.create_setup_checkout(checkout_request())
        session = api.pay(checkout.provider_reference, payment_method="pm_card_saved")
        customer, method = provider.payment_method_of(payment_intent=session["payment_intent"])
        assert customer.startswith("cus_")
        assert method == "pm_card_saved"

    def test_a_payment_that_saved_no_card_has_no_saved_method(self, provider, api):
        checkout = provider.create_checkout(checkout_request())
        session = api.pay(checkout.provider_reference)
        assert provider.payment_method_of(payment_intent=session["payment_intent"]) is None

    def test_an_off_session_charge_confirms_a_payment_intent(self, provider, api):
        request = checkout_request()
        checkout = provider.charge_saved_method(
            request, customer="cus_1", payment_method="pm_card_visa"
        )
        sent = api.requests_to("create_payment_intent")[0]
        assert checkout.provider_reference.startswith("pi_")
        assert checkout.redirect_url == checkout.qr_code == ""
        assert sent.idempotency_key == f"charge:{request.reference}"
        assert sent.form | {"description": ""} == {
            "amount": "5000",
            "currency": "cny",
            "customer": "cus_1",
            "payment_method": "pm_card_visa",
            "off_session": "true",
            "confirm": "true",
            "description": "",
            "metadata": {"reference": request.reference, "off_session": "true"},
        }

    def test_a_declined_off_session_charge_is_a_provider_error(self, provider, api):
        api.declined.add("pm_card_declined")
        with pytest.raises(ProviderError, match="card_declined insufficient_funds"):
            provider.charge_saved_method(
                checkout_request(), customer="cus_1", payment_method="pm_card_declined"
            )

    @pytest.mark.parametrize(
        ("status", "error", "match"),
        [
            (500, {"type": "api_error", "message": "Something went wrong"}, "500"),
            (400, {"type": "invalid_request_error", "message": "bad"}, "400"),
            (402, card_error(), "declined"),
            (429, {"type": "invalid_request_error", "code": "rate_limit"}, "429"),
        ],
    )
    def test_api_errors_are_provider_errors(self, provider, api, status, error, match):
        api.errors["create_session"] = (status, error)
        with pytest.raises(ProviderError, match=match):
            provider.create_checkout(checkout_request())

    def test_a_wrong_api_key_is_a_provider_error(self, api):
        provider = StripeProvider(
            provider_settings(api.url), {"api_key": "sk_test_wrong", "webhook_secret": ""}.get
        )
        with pytest.raises(ProviderError, match="401"):
            provider.create_checkout(checkout_request())

    def test_an_unreachable_api_is_a_provider_error(self, unused_port_url):
        with pytest.raises(ProviderError, match="no answer"):
            build_provider(unused_port_url).create_checkout(checkout_request())

    def test_an_api_base_that_is_not_http_is_refused(self):
        with pytest.raises(ProviderError, match="http"):
            build_provider("file:///etc").create_checkout(checkout_request())


@pytest.fixture
def unused_port_url():
    # A port that was free a moment ago: nothing answers there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class TestNotifications:
    def parse(self, provider, body, headers):
        return provider.parse_notification(body, headers)

    @pytest.mark.parametrize(
        ("event_type", "payment_status", "status"),
        [
            ("checkout.session.completed", "paid", "succeeded"),
            ("checkout.session.completed", "unpaid", "pending"),
            ("checkout.session.completed", "no_payment_required", "ignored"),
            ("checkout.session.async_payment_succeeded", "paid", "succeeded"),
            ("checkout.session.async_payment_failed", "unpaid", "failed"),
            ("checkout.session.expired", "unpaid", "expired"),
        ],
    )
    def test_session_events_map_to_statuses(self, provider, event_type, payment_status, status):
        session = session_object(reference="ref1", amount=5000, payment_status=payment_status)
        body, headers = signed_event(event_type, session, event_id="evt_1")
        notification = self.parse(provider, body, headers)
        assert notification.status == status
        assert notification.event_id == "evt_1"
        assert notification.reference == "ref1"
        assert (notification.amount, notification.currency) == (Decimal("50.00"), "CNY")
        assert notification.transaction_id == (session["payment_intent"] or "")

    def test_payment_intent_events_map_to_statuses(self, provider):
        intent = payment_intent_object(reference="ref1", amount=3000, currency="jpy")
        body, headers = signed_event("payment_intent.succeeded", intent)
        notification = self.parse(provider, body, headers)
        assert notification.status == "succeeded"
        assert (notification.amount, notification.currency) == (Decimal("3000"), "JPY")
        assert notification.transaction_id == intent["id"]

    def test_an_off_session_failure_fails_with_stripes_reason(self, provider):
        intent = payment_intent_object(
            reference="ref1",
            amount=5000,
            status="requires_payment_method",
            last_payment_error=card_error(),
        )
        body, headers = signed_event("payment_intent.payment_failed", intent)
        notification = self.parse(provider, body, headers)
        assert notification.status == "failed"
        assert notification.payload["failure_reason"].startswith("card_declined insufficient_funds")

    def test_a_card_declined_inside_checkout_leaves_the_payment_open(self, provider):
        # The payer may still pay with another card in the same session.
        intent = payment_intent_object(
            reference="ref1", amount=5000, status="requires_payment_method", off_session=False
        )
        body, headers = signed_event("payment_intent.payment_failed", intent)
        assert self.parse(provider, body, headers).status == "ignored"

    def test_other_events_are_ignored(self, provider):
        body, headers = signed_event("charge.refunded", {"id": "ch_1", "metadata": {}})
        notification = self.parse(provider, body, headers)
        assert (notification.status, notification.reference) == ("ignored", "")

    def test_a_wrong_signature_is_rejected(self, provider):
        body, headers = signed_event(
            "checkout.session.completed", session_object(reference="ref1", amount=5000)
        )
        headers["Stripe-Signature"] = headers["Stripe-Signature"][:-4] + "0000"
        with pytest.raises(NotificationRejected) as rejected:
            self.parse(provider, body, headers)
        assert rejected.value.reason == "signature"

    def test_a_body_changed_after_signing_is_rejected(self, provider):
        body, headers = signed_event(
            "checkout.session.completed", session_object(reference="ref1", amount=5000)
        )
        tampered = body.replace(b'"amount_total": 5000', b'"amount_total": 500000')
        assert tampered != body
        with pytest.raises(NotificationRejected) as rejected:
            self.parse(provider, tampered, headers)
        assert rejected.value.reason == "signature"

    def test_another_endpoints_secret_is_rejected(self, provider):
        body, headers = signed_event(
            "checkout.session.completed",
            session_object(reference="ref1", amount=5000),
            secret="whsec_someone_else",
        )
        with pytest.raises(NotificationRejected) as rejected:
            self.parse(provider, body, headers)
        assert rejected.value.reason == "signature"

    def test_no_signature_header_is_rejected(self, provider):
        body, _ = signed_event(
            "checkout.session.completed", session_object(reference="r", amount=1)
        )
        with pytest.raises(NotificationRejected) as rejected:
            self.parse(provider, body, {"Content-Type": "application/json"})
        assert rejected.value.reason == "signature"

    def test_a_signature_older_than_300_seconds_is_stale(self, provider):
        session = session_object(reference="ref1", amount=5000)
        body, headers = signed_event(
            "checkout.session.completed", session, timestamp=int(time.time()) - 301
        )
        with pytest.raises(NotificationRejected) as rejected:
            self.parse(provider, body, headers)
        assert rejected.value.reason == "stale"

    def test_a_signature_within_300_seconds_is_taken(self, provider):
        session = session_object(reference="ref1", amount=5000)
        body, headers = signed_event(
            "checkout.session.completed", session, timestamp=int(time.time()) - 290
        )
        assert self.parse(provider, body, headers).status == "succeeded"

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"\xff\xfe",
            b"[1, 2]",
            json.dumps({"id": "evt_1", "object": "event", "type": "x"}).encode(),
            json.dumps(
                {
                    "id": "evt_1",
                    "object": "event",
                    "type": "checkout.session.completed",
                    "data": {"object": {"amount_total": "50.00", "currency": "cny"}},
                }
            ).encode(),
        ],
    )
    def test_a_signed_body_that_is_not_an_event_is_malformed(self, provider, body):
        headers = {"Stripe-Signature": signature_header(body, WEBHOOK_SECRET)}
        with pytest.raises(NotificationRejected) as rejected:
            self.parse(provider, body, headers)
        assert rejected.value.reason == "malformed"


class TestQuery:
    def test_an_open_session_is_pending(self, provider, api):
        checkout = provider.create_checkout(checkout_request())
        report = provider.query(reference="r", provider_reference=checkout.provider_reference)
        assert report.status == "pending"

    def test_a_paid_session_succeeded_with_its_amount_and_payment_intent(self, provider, api):
        checkout = provider.create_checkout(checkout_request())
        session = api.pay(checkout.provider_reference)
        report = provider.query(reference="r", provider_reference=checkout.provider_reference)
        assert report.status == "succeeded"
        assert (report.amount, report.currency) == (Decimal("50.00"), "CNY")
        assert report.transaction_id == session["payment_intent"]

    def test_an_expired_session_expired(self, provider, api):
        checkout = provider.create_checkout(checkout_request())
        api.sessions[checkout.provider_reference]["status"] = "expired"
        report = provider.query(reference="r", provider_reference=checkout.provider_reference)
        assert report.status == "expired"

    def test_an_off_session_payment_intent_is_asked_about_by_its_id(self, provider, api):
        charged = provider.charge_saved_method(
            checkout_request(), customer="cus_1", payment_method="pm_card_visa"
        )
        report = provider.query(reference="r", provider_reference=charged.provider_reference)
        assert (report.status, report.amount) == ("succeeded", Decimal("50.00"))
        assert report.transaction_id == charged.provider_reference

    def test_a_declined_payment_intent_failed(self, provider, api):
        api.declined.add("pm_card_declined")
        with pytest.raises(ProviderError):
            provider.charge_saved_method(
                checkout_request(), customer="cus_1", payment_method="pm_card_declined"
            )
        (intent_id,) = api.payment_intents
        report = provider.query(reference="r", provider_reference=intent_id)
        assert report.status == "failed"

    def test_without_stripes_id_the_payment_intent_is_searched_by_reference(self, provider, api):
        request = checkout_request()
        checkout = provider.create_checkout(request)
        assert provider.query(reference=request.reference, provider_reference="").status == (
            "pending"
        )
        api.pay(checkout.provider_reference)
        report = provider.query(reference=request.reference, provider_reference="")
        assert (report.status, report.amount) == ("succeeded", Decimal("50.00"))
        search = api.requests_to("search_payment_intents")[-1]
        assert search.query["query"] == f"metadata['reference']:'{request.reference}'"

    def test_a_missing_session_is_a_provider_error(self, provider, api):
        with pytest.raises(ProviderError, match="404"):
            provider.query(reference="r", provider_reference="cs_test_missing")


class TestRefunds:
    def test_a_refund_is_made_once_with_its_reference_as_idempotency_key(self, provider, api):
        intent_id = paid_intent(api, provider)
        request = refund_request(transaction_id=intent_id)
        result = provider.refund(request)
        (sent,) = api.requests_to("create_refund")
        assert result.status == "succeeded"
        assert result.provider_refund_id.startswith("re_")
        assert sent.idempotency_key == request.refund_reference
        assert sent.form == {
            "payment_intent": intent_id,
            "amount": "1250",
            "metadata": {
                "reference": request.reference,
                "refund_reference": request.refund_reference,
                "reason": "Moved out",
            },
        }

    def test_a_retried_refund_finds_the_first_instead_of_refunding_again(self, provider, api):
        intent_id = paid_intent(api, provider)
        api.refund_status = "pending"
        request = refund_request(transaction_id=intent_id)
        first = provider.refund(request)
        (refund,) = api.refunds.values()
        refund["status"] = "succeeded"
        # Past Stripe's 24 hours the key is forgotten; the lookup still finds the refund.
        api._replays.clear()
        again = provider.refund(request)
        assert (first.status, again.status) == ("pending", "succeeded")
        assert again.provider_refund_id == first.provider_refund_id
        assert len(api.requests_to("create_refund")) == 1
        assert len(api.refunds) == 1

    def test_query_refund_reports_the_refunds_state(self, provider, api):
        intent_id = paid_intent(api, provider)
        request = refund_request(transaction_id=intent_id)
        assert provider.query_refund(request).status == "failed"
        api.refund_status = "pending"
        provider.refund(request)
        assert provider.query_refund(request).status == "pending"

    def test_a_refused_refund_failed_with_stripes_reason(self, provider, api):
        intent_id = paid_intent(api, provider)
        api.refund_status = "failed"
        result = provider.refund(refund_request(transaction_id=intent_id))
        assert result.status == "failed"
        assert result.payload["error"] == "expired_or_canceled_card"

    def test_a_refund_stripe_refuses_to_make_is_a_provider_error(self, provider, api):
        intent_id = paid_intent(api, provider)
        with pytest.raises(ProviderError, match="400"):
            provider.refund(refund_request(transaction_id=intent_id, amount=Decimal("60.00")))
