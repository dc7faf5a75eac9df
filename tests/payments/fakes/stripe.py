"""A loopback Stripe API and correctly signed Stripe webhooks, for tests.

The API answers the calls our provider makes like api.stripe.com does: form-encoded requests
with nested keys (`line_items[0][price_data][unit_amount]=5000`), `Authorization: Bearer
<secret key>`, replays of an `Idempotency-Key` answered with the first answer, and errors as
`{"error": {"type", "code", ...}}` with the documented status codes (402 for a declined card).

Webhooks are signed here with hmac directly, not with the SDK the provider verifies with:
`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.payments.fakes.loopback import LoopbackServer

API_KEY = "sk_test_fake_0123456789"
WEBHOOK_SECRET = "whsec_fake_0123456789"
PUBLISHABLE_KEY = "pk_test_fake_0123456789"
_KEY_PART = re.compile(r"\[([^\]]*)\]")


def provider_settings(api_base: str) -> dict[str, str]:
    return {"publishable_key": PUBLISHABLE_KEY, "api_base": api_base}


def provider_secrets() -> dict[str, str]:
    return {"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET}


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# Webhooks ------------------------------------------------------------------------------------


def signature_header(body: bytes, secret: str, *, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """A snapshot event as Stripe posts it to a webhook endpoint."""
    return {
        "id": event_id or _id("evt"),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def signed_event(
    event_type: str,
    obj: dict[str, Any],
    *,
    event_id: str | None = None,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a webhook delivery of one event."""
    body = json.dumps(event(event_type, obj, event_id=event_id)).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": signature_header(body, secret, timestamp=timestamp),
    }
    return body, headers


def session_object(
    *,
    reference: str,
    amount: int,
    currency: str = "cny",
    status: str = "complete",
    payment_status: str = "paid",
    payment_intent: str | None = None,
    session_id: str | None = None,
) -> dict[str, Any]:
    """A Checkout Session as Stripe reports it; `amount` in minor units."""
    paid = payment_status == "paid"
    return {
        "id": session_id or _id("cs_test"),
        "object": "checkout.session",
        "amount_subtotal": amount,
        "amount_total": amount,
        "client_reference_id": reference,
        "currency": currency,
        "customer": None,
        "expires_at": int(time.time()) + 1800,
        "livemode": False,
        "metadata": {"reference": reference},
        "mode": "payment",
        "payment_intent": payment_intent or (_id("pi") if paid else None),
        "payment_status": payment_status,
        "status": status,
        "url": None if status != "open" else "https://checkout.stripe.com/c/pay/cs_test",
    }


def payment_intent_object(
    *,
    reference: str,
    amount: int,
    currency: str = "cny",
    status: str = "succeeded",
    off_session: bool = True,
    intent_id: str | None = None,
    customer: str | None = None,
    payment_method: str | None = None,
    last_payment_error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A PaymentIntent as Stripe reports it; `amount` in minor units."""
    metadata = {"reference": reference}
    if off_session:
        metadata["off_session"] = "true"
    return {
        "id": intent_id or _id("pi"),
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": currency,
        "customer": customer,
        "last_payment_error": last_payment_error,
        "latest_charge": _id("ch") if status == "succeeded" else None,
        "livemode": False,
        "metadata": metadata,
        "payment_method": payment_method,
        "status": status,
    }


# The API -------------------------------------------------------------------------------------


def parse_form(text: str) -> dict[str, Any]:
    """Stripe's form encoding back into objects: `a[b][0][c]=v` is {"a": {"b": [{"c": v}]}}."""
    root: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(text, keep_blank_values=True):
        head = key.split("[", 1)[0]
        path = [head, *_KEY_PART.findall(key[len(head) :])]
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        last = path[-1]
        if last == "":
            node.setdefault("", []).append(value)
        else:
            node[last] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if set(node) == {""}:
        return node[""]
    if node and all(key.isdigit() for key in node):
        return [_lists(node[key]) for key in sorted(node, key=int)]
    return {key: _lists(value) for key, value in node.items()}


@dataclass(frozen=True)
class StripeRequest:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, Any]

    @property
    def endpoint(self) -> str:
        return f"{self.method} {urllib.parse.urlsplit(self.path).path}"

    @property
    def query(self) -> dict[str, Any]:
        return parse_form(urllib.parse.urlsplit(self.path).query)

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("Idempotency-Key")

    @property
    def authorization(self) -> str:
        return self.headers.get("Authorization", "")


def card_error(
    code: str = "card_declined", decline_code: str = "insufficient_funds"
) -> dict[str, Any]:
    return {
        "type": "card_error",
        "code": code,
        "decline_code": decline_code,
        "message": "Your card has insufficient funds." if code == "card_declined" else code,
    }


_ROUTES = (
    ("POST", re.compile(r"/v1/checkout/sessions"), "create_session"),
    ("GET", re.compile(r"/v1/checkout/sessions/(?P<id>[^/]+)"), "session"),
    ("POST", re.compile(r"/v1/payment_intents"), "create_payment_intent"),
    ("GET", re.compile(r"/v1/payment_intents/search"), "search_payment_intents"),
    ("GET", re.compile(r"/v1/payment_intents/(?P<id>[^/]+)"), "payment_intent"),
    ("POST", re.compile(r"/v1/refunds"), "create_refund"),
    ("GET", re.compile(r"/v1/refunds"), "refunds"),
)


@dataclass
class FakeStripe(LoopbackServer):
    """Stripe's API on 127.0.0.1.

    Sessions, PaymentIntents and refunds live in `sessions`, `payment_intents` and `refunds` by
    id. `pay(session_id)` is the payer finishing Checkout. `declined` payment methods make an
    off-session charge fail with 402 card_declined. `errors[route]` = (status, error) answers
    that route with a Stripe error until removed; `refund_status` is what new refunds report.
    """

    api_key: str = API_KEY
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    declined: set[str] = field(default_factory=set)
    errors: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    refund_status: str = "succeeded"
    requests: list[StripeRequest] = field(default_factory=list)
    _replays: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.origin

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    def requests_to(self, route: str) -> list[StripeRequest]:
        return [request for request in self.requests if _route(request)[0] == route]

    # What happens on Stripe's side without us ------------------------------------------

    def pay(self, session_id: str, *, payment_method: str = "pm_card_visa") -> dict[str, Any]:
        """The payer completes Checkout: a succeeded PaymentIntent, a customer if asked."""
        session = self.sessions[session_id]
        intent_data = session.get("payment_intent_data") or {}
        saves = session.get("customer_creation") == "always"
        customer = _id("cus") if saves else None
        intent = payment_intent_object(
            reference="",
            amount=session["amount_total"],
            currency=session["currency"],
            off_session=False,
            customer=customer,
            payment_method=payment_method,
        )
        intent["metadata"] = dict(intent_data.get("metadata") or {})
        intent["setup_future_usage"] = intent_data.get("setup_future_usage")
        self.payment_intents[intent["id"]] = intent
        session.update(
            status="complete", payment_status="paid", payment_intent=intent["id"], url=None
        )
        session["customer"] = customer
        return self.public_session(session_id)

    def public_session(self, session_id: str) -> dict[str, Any]:
        # What the API shows: the request-only fields kept for assertions left out.
        hidden = ("payment_intent_data", "customer_creation", "line_items")
        return {k: v for k, v in self.sessions[session_id].items() if k not in hidden}

    # Answers ------------------------------------------------------------------------------

    def answer(self, request: StripeRequest, route: str, resource_id: str):
        if request.authorization != f"Bearer {self.api_key}":
            return 401, {
                "error": {"type": "invalid_request_error", "message": "Invalid API Key provided."}
            }
        if not route:
            return 404, {"error": {"type": "invalid_request_error", "message": "Unrecognized URL"}}
        if route in self.errors:
            status, error = self.errors[route]
            return status, {"error": error}
        key = request.idempotency_key
        if request.method == "POST" and key:
            replay = self._replays.get(key)
            if replay is not None:
                return replay
        status, body = getattr(self, f"_{route}")(request, resource_id)
        if request.method == "POST" and key:
            self._replays[key] = (status, body)
        return status, body

    def _create_session(self, request: StripeRequest, _: str):
        form = request.form
        now = int(time.time())
        expires_at = int(form.get("expires_at") or now + 86400)
        if not now + 1800 <= expires_at <= now + 86400:
            return 400, _param_error(
                "expires_at", "The Checkout Session must expire between 30 minutes and 24 hours."
            )
        item = form["line_items"][0]
        price = item["price_data"]
        amount = int(price["unit_amount"]) * int(item.get("quantity", 1))
        session_id = _id("cs_test")
        self.sessions[session_id] = {
            **session_object(
                reference=form.get("client_reference_id", ""),
                amount=amount,
                currency=price["currency"],
                status="open",
                payment_status="unpaid",
                session_id=session_id,
            ),
            "metadata": form.get("metadata") or {},
            "expires_at": expires_at,
            "success_url": form.get("success_url"),
            "cancel_url": form.get("cancel_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "payment_intent": None,
            "payment_intent_data": form.get("payment_intent_data") or {},
            "customer_creation": form.get("customer_creation"),
            "line_items": form["line_items"],
        }
        return 200, self.public_session(session_id)

    def _session(self, _: StripeRequest, session_id: str):
        if session_id not in self.sessions:
            return 404, _missing("checkout.session", session_id)
        return 200, self.public_session(session_id)

    def _create_payment_intent(self, request: StripeRequest, _: str):
        form = request.form
        method = form.get("payment_method", "")
        intent = payment_intent_object(
            reference="",
            amount=int(form["amount"]),
            currency=form["currency"],
            customer=form.get("customer"),
            payment_method=method,
        )
        intent["metadata"] = form.get("metadata") or {}
        if method in self.declined:
            error = card_error()
            intent.update(status="requires_payment_method", amount_received=0, latest_charge=None)
            intent["last_payment_error"] = error
            self.payment_intents[intent["id"]] = intent
            return 402, {"error": {**error, "payment_intent": intent}}
        self.payment_intents[intent["id"]] = intent
        return 200, intent

    def _payment_intent(self, _: StripeRequest, intent_id: str):
        if intent_id not in self.payment_intents:
            return 404, _missing("payment_intent", intent_id)
        return 200, self.payment_intents[intent_id]

    def _search_payment_intents(self, request: StripeRequest, _: str):
        match = re.fullmatch(r"metadata\['reference'\]:'([^']*)'", request.query.get("query", ""))
        if match is None:
            return 400, _param_error("query", "Unsupported search query.")
        found = [
            intent
            for intent in self.payment_intents.values()
            if intent["metadata"].get("reference") == match.group(1)
        ]
        return 200, {"object": "search_result", "data": found, "has_more": False}

    def _create_refund(self, request: StripeRequest, _: str):
        form = request.form
        intent = self.payment_intents.get(form.get("payment_intent", ""))
        if intent is None or intent["status"] != "succeeded":
            return 400, _param_error("payment_intent", "This PaymentIntent has no charge.")
        amount = int(form.get("amount") or intent["amount_received"])
        refunded = sum(
            r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent["id"]
        )
        if refunded + amount > intent["amount_received"]:
            return 400, _param_error("amount", "Refund amount is greater than unrefunded amount.")
        refund = {
            "id": _id("re"),
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "charge": intent["latest_charge"],
            "metadata": form.get("metadata") or {},
            "status": self.refund_status,
            "failure_reason": "expired_or_canceled_card"
            if self.refund_status == "failed"
            else None,
        }
        self.refunds[refund["id"]] = refund
        return 200, refund

    def _refunds(self, request: StripeRequest, _: str):
        wanted = request.query.get("payment_intent")
        found = [r for r in self.refunds.values() if r["payment_intent"] == wanted]
        return 200, {"object": "list", "data": found, "has_more": False, "url": "/v1/refunds"}


def _param_error(param: str, message: str) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "param": param, "message": message}}


def _missing(kind: str, resource_id: str) -> dict[str, Any]:
    return {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": f"No such {kind}: '{resource_id}'",
        }
    }


def _route(request: StripeRequest) -> tuple[str, str]:
    bare = urllib.parse.urlsplit(request.path).path
    for method, pattern, route in _ROUTES:
        match = pattern.fullmatch(bare)
        if request.method == method and match:
            return route, urllib.parse.unquote(match.groupdict().get("id") or "")
    return "", ""


def _handler_for(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._serve(self.rfile.read(length).decode("utf-8"))

        def do_GET(self) -> None:
            self._serve("")

        def _serve(self, form: str) -> None:
            request = StripeRequest(self.command, self.path, dict(self.headers), parse_form(form))
            fake.requests.append(request)
            route, resource_id = _route(request)
            status, data = fake.answer(request, route, resource_id)
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("Request-Id", _id("req"))
            if status >= 500:
                # As Stripe does when a retry would not help; keeps the SDK from backing off.
                self.send_header("Stripe-Should-Retry", "false")
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            # Keep test output quiet.
            pass

    return Handler
