"""Stripe: hosted Checkout for payments, and off-session charges of a card saved through it.

Calls go through the official SDK's `StripeClient`. Webhooks carry `Stripe-Signature:
t=<unix time>,v1=<hex HMAC-SHA256 of "t.body" under the endpoint secret>`, checked by the SDK
with a 300 s tolerance. Amounts are integers in Stripe's minor unit of the currency, which is
not always ISO 4217's (see STRIPE_EXPONENTS).

Our reference travels as the session's `client_reference_id` and as `metadata.reference` on the
session and on its PaymentIntent, so both `checkout.session.*` and `payment_intent.*` events
find the intent. Both kinds of success name the PaymentIntent as the transaction, so the intent
is credited once whichever arrives first.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any

import stripe

from payments.providers.base import (
    Checkout,
    CheckoutRequest,
    Notification,
    NotificationRejected,
    NotificationStatus,
    PaymentProvider,
    PaymentStatus,
    ProviderError,
    RefundRequest,
    RefundResult,
    RefundStatus,
    StatusReport,
)

TOLERANCE_SECONDS = 300
SIGNATURE_HEADER = "Stripe-Signature"
# Stripe refuses a Checkout Session that expires sooner than 30 minutes or later than 24 hours
# after it is made; the margin covers the time the request takes to get there.
SESSION_MIN_LIFETIME = timedelta(minutes=31)
SESSION_MAX_LIFETIME = timedelta(hours=24)
MAX_NETWORK_RETRIES = 2
# Stripe's own list of zero-decimal and three-decimal currencies; every other is two-decimal in
# its API, including ISK, HUF and TWD, whose ISO exponent differs.
_ZERO_DECIMAL = (
    "BIF",
    "CLP",
    "DJF",
    "GNF",
    "JPY",
    "KMF",
    "KRW",
    "MGA",
    "PYG",
    "RWF",
    "UGX",
    "VND",
    "VUV",
    "XAF",
    "XOF",
    "XPF",
)
_THREE_DECIMAL = ("BHD", "JOD", "KWD", "OMR", "TND")
STRIPE_EXPONENTS = {code: 0 for code in _ZERO_DECIMAL} | {code: 3 for code in _THREE_DECIMAL}

SESSION_EVENTS: dict[str, NotificationStatus] = {
    "checkout.session.async_payment_succeeded": "succeeded",
    "checkout.session.async_payment_failed": "failed",
    "checkout.session.expired": "expired",
}
PAYMENT_INTENT_STATUSES: dict[str, PaymentStatus] = {
    "succeeded": "succeeded",
    "processing": "pending",
    "requires_action": "pending",
    "requires_confirmation": "pending",
    "requires_capture": "pending",
    "canceled": "failed",
}
REFUND_STATUSES: dict[str, RefundStatus] = {
    "succeeded": "succeeded",
    "pending": "pending",
    "requires_action": "pending",
    "failed": "failed",
    "canceled": "failed",
}
# Marks the PaymentIntents we confirm without the payer: only their failures end the intent,
# since a card declined inside Checkout leaves the session open for another card.
OFF_SESSION = "off_session"


def exponent(currency: str) -> int:
    return STRIPE_EXPONENTS.get(currency.upper(), 2)


def to_minor(amount: Decimal, currency: str) -> int:
    """`amount` in Stripe's minor units of `currency`, exactly, or ValueError."""
    scaled = amount.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is finer than Stripe's minor unit.")
    return int(scaled)


def to_major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), "")


def _metadata_reference(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("reference") or "") if isinstance(metadata, dict) else ""


class StripeProvider(PaymentProvider):
    """Settings: publishable_key (for pages that load Stripe.js), currency (optional: the one
    currency the account takes), api_base (tests only: where the API is).

    Secrets: api_key (the secret key, sk_...), webhook_secret (the endpoint's whsec_...).

    Notifications are answered by the base class: 200 when taken, 400 when rejected, which
    Stripe retries for up to 3 days.
    """

    name = "stripe"

    @cached_property
    def _client(self) -> stripe.StripeClient:
        base_addresses = {}
        api_base = self.settings.get("api_base")
        if api_base:
            if urllib.parse.urlsplit(api_base).scheme not in ("http", "https"):
                raise ProviderError(f"Stripe api_base {api_base!r} is not an http(s) URL.")
            base_addresses["api"] = api_base.rstrip("/")
        return stripe.StripeClient(
            self.secret("api_key"),
            base_addresses=base_addresses,
            max_network_retries=MAX_NETWORK_RETRIES,
        )

    def _call(self, what: str, call: Callable[[], stripe.StripeObject]) -> dict[str, Any]:
        try:
            return call().to_dict()
        except stripe.CardError as exc:
            decline_code = getattr(exc.error, "decline_code", None) or ""
            raise ProviderError(
                f"Stripe {what} declined: {exc.code} {decline_code} {exc.user_message or ''}"
            ) from exc
        except stripe.StripeError as exc:
            raise ProviderError(
                f"Stripe {what} failed: {exc.http_status or 'no answer'} {exc.code or ''} "
                f"{exc.user_message or exc}".strip()
            ) from exc

    def _currency(self, currency: str) -> str:
        allowed = self.settings.get("currency")
        if allowed and currency != allowed.upper():
            raise ValueError(f"This Stripe account takes {allowed.upper()}, not {currency}.")
        return currency.lower()

    # Checkout ------------------------------------------------------------------------------

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        return self._checkout(request, save_method=False)

    def create_setup_checkout(self, request: CheckoutRequest) -> Checkout:
        """A checkout that also saves the card on a new Stripe customer, for later charges
        without the payer (auto top-up)."""
        return self._checkout(request, save_method=True)

    def _checkout(self, request: CheckoutRequest, *, save_method: bool) -> Checkout:
        currency = self._currency(request.currency)
        now = datetime.now(UTC)
        expires_at = min(
            max(request.expires_at, now + SESSION_MIN_LIFETIME), now + SESSION_MAX_LIFETIME
        )
        payment_intent_data: dict[str, Any] = {
            "description": request.description,
            "metadata": {"reference": request.reference},
        }
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": request.reference,
            "metadata": {"reference": request.reference},
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": to_minor(request.amount, request.currency),
                        "product_data": {"name": request.description},
                    },
                }
            ],
            "success_url": request.return_url,
            "cancel_url": request.return_url,
            "expires_at": int(expires_at.timestamp()),
            "payment_intent_data": payment_intent_data,
        }
        if save_method:
            payment_intent_data["setup_future_usage"] = OFF_SESSION
            params["customer_creation"] = "always"
        session = self._call(
            "checkout",
            lambda: self._client.v1.checkout.sessions.create(
                params=params, options={"idempotency_key": f"checkout:{request.reference}"}
            ),
        )
        if not session.get("url"):
            raise ProviderError(f"Stripe checkout session {session.get('id')} has no url.")
        return Checkout(provider_reference=session["id"], redirect_url=session["url"])

    def charge_saved_method(
        self, request: CheckoutRequest, *, customer: str, payment_method: str
    ) -> Checkout:
        """Charge a saved card now, without the payer: a confirmed off-session PaymentIntent.
        A decline, or a card that needs the payer to authenticate, is a ProviderError."""
        params: dict[str, Any] = {
            "amount": to_minor(request.amount, request.currency),
            "currency": self._currency(request.currency),
            "customer": customer,
            "payment_method": payment_method,
            "off_session": True,
            "confirm": True,
            "description": request.description,
            "metadata": {"reference": request.reference, OFF_SESSION: "true"},
        }
        intent = self._call(
            "off-session charge",
            lambda: self._client.v1.payment_intents.create(
                params=params, options={"idempotency_key": f"charge:{request.reference}"}
            ),
        )
        return Checkout(provider_reference=intent["id"])

    def payment_method_of(self, *, payment_intent: str) -> tuple[str, str] | None:
        """The customer and saved payment method a paid PaymentIntent left behind, or None
        when it saved none."""
        intent = self._call(
            "payment intent lookup",
            lambda: self._client.v1.payment_intents.retrieve(payment_intent),
        )
        customer, method = intent.get("customer"), intent.get("payment_method")
        if not isinstance(customer, str) or not isinstance(method, str):
            return None
        return customer, method

    # Notifications -------------------------------------------------------------------------

    def parse_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        signature = _header(headers, SIGNATURE_HEADER)
        secret = self.secret("webhook_secret")
        try:
            event = self._client.construct_event(body, signature, secret, TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError as exc:
            raise NotificationRejected(_signature_problem(body, signature, secret)) from exc
        except (ValueError, AttributeError, TypeError) as exc:
            # Not UTF-8, not JSON, or JSON that is not an event object.
            raise NotificationRejected("malformed", str(exc)[:200]) from exc
        payload = event.to_dict()
        try:
            return _notification(payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise NotificationRejected("malformed", str(exc)[:200]) from exc

    # Queries and refunds -------------------------------------------------------------------

    def query(self, *, reference: str, provider_reference: str) -> StatusReport:
        if provider_reference.startswith("cs_"):
            session = self._call(
                "session lookup",
                lambda: self._client.v1.checkout.sessions.retrieve(provider_reference),
            )
            return _session_report(session)
        if provider_reference.startswith("pi_"):
            intent = self._call(
                "payment intent lookup",
                lambda: self._client.v1.payment_intents.retrieve(provider_reference),
            )
            return _payment_intent_report(intent)
        # No id of Stripe's came back from the checkout call: Checkout Sessions cannot be
        # listed by client_reference_id, but their PaymentIntents can be searched by metadata.
        found = self._call(
            "payment intent search",
            lambda: self._client.v1.payment_intents.search(
                params={"query": f"metadata['reference']:'{reference}'", "limit": 1}
            ),
        )
        intents = found.get("data") or []
        if not intents:
            return StatusReport(status="pending", payload=found)
        return _payment_intent_report(intents[0])

    def refund(self, request: RefundRequest) -> RefundResult:
        # Stripe forgets idempotency keys after 24 hours, and a refund may stay pending for
        # longer: a retry must find the refund made before, not make a second one.
        existing = self._find_refund(request)
        if existing is not None:
            return _refund_result(existing)
        params: dict[str, Any] = {
            "payment_intent": request.transaction_id,
            "amount": to_minor(request.amount, request.currency),
            "metadata": {
                "reference": request.reference,
                "refund_reference": request.refund_reference,
                "reason": request.reason[:500],
            },
        }
        refund = self._call(
            "refund",
            lambda: self._client.v1.refunds.create(
                params=params, options={"idempotency_key": request.refund_reference}
            ),
        )
        return _refund_result(refund)

    def query_refund(self, request: RefundRequest) -> RefundResult:
        existing = self._find_refund(request)
        if existing is None:
            return RefundResult(status="failed", payload={"error": "Stripe has no such refund."})
        return _refund_result(existing)

    def _find_refund(self, request: RefundRequest) -> dict[str, Any] | None:
        if not request.transaction_id:
            raise ProviderError(f"Payment {request.reference} has no Stripe PaymentIntent.")
        refunds = self._call(
            "refund lookup",
            lambda: self._client.v1.refunds.list(
                params={"payment_intent": request.transaction_id, "limit": 100}
            ),
        )
        return next(
            (
                refund
                for refund in refunds.get("data") or []
                if (refund.get("metadata") or {}).get("refund_reference")
                == request.refund_reference
            ),
            None,
        )


def _signature_problem(body: bytes, signature: str, secret: str) -> str:
    """Why construct_event refused: "stale" when the signature is right but too old."""
    try:
        stripe.WebhookSignature.verify_header(body, signature, secret, tolerance=None)
    except stripe.SignatureVerificationError:
        return "signature"
    return "stale"


def _amount(minor: Any, currency: Any) -> tuple[Decimal | None, str | None]:
    if minor is None:
        return None, None
    if not isinstance(minor, int) or isinstance(minor, bool) or not isinstance(currency, str):
        raise ValueError(f"amount {minor!r} {currency!r} is not an integer and a currency.")
    return to_major(minor, currency), currency.upper()


def _notification(event: dict[str, Any]) -> Notification:
    event_id, event_type, obj = event["id"], event["type"], event["data"]["object"]
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        raise TypeError("id and type must be strings.")
    if not isinstance(obj, dict):
        raise TypeError("data.object must be an object.")
    status: NotificationStatus = "ignored"
    failure_reason = ""
    if event_type.startswith("checkout.session."):
        reference = str(obj.get("client_reference_id") or _metadata_reference(obj))
        amount, currency = _amount(obj.get("amount_total"), obj.get("currency"))
        transaction_id = obj.get("payment_intent") or ""
        if event_type == "checkout.session.completed":
            status = {"paid": "succeeded", "unpaid": "pending"}.get(
                str(obj.get("payment_status")), "ignored"
            )
        else:
            status = SESSION_EVENTS.get(event_type, "ignored")
    elif event_type.startswith("payment_intent."):
        reference = _metadata_reference(obj)
        amount, currency = _amount(obj.get("amount"), obj.get("currency"))
        transaction_id = obj.get("id") or ""
        if event_type == "payment_intent.succeeded":
            status = "succeeded"
            amount, currency = _amount(obj.get("amount_received"), obj.get("currency"))
        elif event_type == "payment_intent.payment_failed" and (obj.get("metadata") or {}).get(
            OFF_SESSION
        ):
            status = "failed"
            error = obj.get("last_payment_error") or {}
            failure_reason = " ".join(
                str(error.get(key)) for key in ("code", "decline_code", "message") if error.get(key)
            )
    else:
        reference = str(obj.get("client_reference_id") or _metadata_reference(obj))
        amount = currency = None
        transaction_id = ""
    if not isinstance(transaction_id, str):
        raise TypeError("The PaymentIntent id must be a string.")
    payload = {**event, "failure_reason": failure_reason} if failure_reason else event
    return Notification(
        event_id=event_id,
        reference=reference,
        status=status,
        amount=amount,
        currency=currency,
        transaction_id=transaction_id,
        payload=payload,
    )


def _session_report(session: dict[str, Any]) -> StatusReport:
    amount, currency = _checked_amount(session.get("amount_total"), session.get("currency"))
    status: PaymentStatus
    if session.get("status") == "complete" and session.get("payment_status") == "paid":
        status = "succeeded"
    elif session.get("status") == "expired":
        status = "expired"
    else:
        # Open, or complete with an asynchronous payment still on its way.
        status = "pending"
    return StatusReport(
        status=status,
        amount=amount,
        currency=currency,
        transaction_id=str(session.get("payment_intent") or ""),
        payload=session,
    )


def _payment_intent_report(intent: dict[str, Any]) -> StatusReport:
    state = str(intent.get("status"))
    status: PaymentStatus | None = PAYMENT_INTENT_STATUSES.get(state)
    if state == "requires_payment_method":
        # Declined (last_payment_error says why), or not paid for yet.
        status = "failed" if intent.get("last_payment_error") else "pending"
    if status is None:
        raise ProviderError(f"Unknown Stripe PaymentIntent status {state!r}.")
    received = intent.get("amount_received") if status == "succeeded" else intent.get("amount")
    amount, currency = _checked_amount(received, intent.get("currency"))
    return StatusReport(
        status=status,
        amount=amount,
        currency=currency,
        transaction_id=str(intent.get("id") or ""),
        payload=intent,
    )


def _checked_amount(minor: Any, currency: Any) -> tuple[Decimal | None, str | None]:
    try:
        return _amount(minor, currency)
    except ValueError as exc:
        raise ProviderError(f"Stripe answered with an unreadable amount: {exc}") from exc


def _refund_result(refund: dict[str, Any]) -> RefundResult:
    status = REFUND_STATUSES.get(str(refund.get("status")))
    if status is None:
        raise ProviderError(f"Unknown Stripe refund status {refund.get('status')!r}.")
    payload = dict(refund)
    if status == "failed":
        payload["error"] = str(refund.get("failure_reason") or "refused by Stripe")
    return RefundResult(
        status=status, provider_refund_id=str(refund.get("id") or ""), payload=payload
    )
