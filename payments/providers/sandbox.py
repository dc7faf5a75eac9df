"""The sandbox: a local hosted payment page that behaves like a real provider.

The payer approves, declines or abandons on our own page (`payments.views.sandbox_page`); the
sandbox then sends an HMAC-signed webhook exactly as a provider would, to the same endpoint and
through the same checks. It is the demo's default and the way to try the whole flow offline.

Its "servers" are the `SandboxPayment` rows: unlike the real providers it keeps its state in
our database, because here it is the provider.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.urls import reverse

from payments.models import SandboxPayment
from payments.providers.base import (
    Checkout,
    CheckoutRequest,
    Notification,
    NotificationRejected,
    PaymentProvider,
    RefundRequest,
    RefundResult,
    StatusReport,
)

SIGNATURE_HEADER = "Sandbox-Signature"
TOLERANCE_SECONDS = 300
EVENT_STATUS = {
    "payment.succeeded": "succeeded",
    "payment.failed": "failed",
    "payment.expired": "expired",
}


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), "")


class SandboxProvider(PaymentProvider):
    name = "sandbox"

    def _mac(self, timestamp: int, body: bytes) -> str:
        key = self.secret("webhook_secret").encode()
        return hmac.new(key, b"%d." % timestamp + body, hashlib.sha256).hexdigest()

    def sign(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """The headers the sandbox sends with a notification body."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        return {
            SIGNATURE_HEADER: f"t={timestamp},v1={self._mac(timestamp, body)}",
            "Content-Type": "application/json",
        }

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        SandboxPayment.objects.update_or_create(
            reference=request.reference,
            defaults={
                "amount": request.amount,
                "currency": request.currency,
                "description": request.description[:200],
                "notify_url": request.notify_url,
                "return_url": request.return_url,
                "expires_at": request.expires_at,
            },
        )
        return Checkout(
            provider_reference=request.reference,
            redirect_url=reverse("payments:sandbox-page", args=[request.reference]),
        )

    def parse_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        signature = _header(headers, SIGNATURE_HEADER)
        parts = dict(part.split("=", 1) for part in signature.split(",") if "=" in part)
        if "t" not in parts or "v1" not in parts or not parts["t"].isdigit():
            raise NotificationRejected("signature", "no Sandbox-Signature header")
        timestamp = int(parts["t"])
        if not hmac.compare_digest(self._mac(timestamp, body), parts["v1"]):
            raise NotificationRejected("signature", "the signature does not match the body")
        if abs(time.time() - timestamp) > TOLERANCE_SECONDS:
            raise NotificationRejected("stale", f"signed at {timestamp}")
        try:
            event = json.loads(body)
            data = event["data"]
            amount = Decimal(data["amount"])
            return Notification(
                event_id=str(event["id"]),
                reference=str(data["reference"]),
                status=EVENT_STATUS.get(event["type"], "ignored"),
                amount=amount,
                currency=str(data["currency"]),
                transaction_id=str(data.get("transaction_id") or ""),
                payload=event,
            )
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            raise NotificationRejected("malformed", str(exc)[:200]) from exc

    def query(self, *, reference: str, provider_reference: str) -> StatusReport:
        payment = SandboxPayment.objects.filter(reference=reference).first()
        if payment is None:
            return StatusReport(status="pending")
        status = {
            SandboxPayment.Status.PAID: "succeeded",
            SandboxPayment.Status.DECLINED: "failed",
            SandboxPayment.Status.EXPIRED: "expired",
        }.get(payment.status, "pending")
        return StatusReport(
            status=status,
            amount=payment.amount,
            currency=payment.currency,
            transaction_id=payment.transaction_id,
            payload={"status": payment.status},
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        with transaction.atomic():
            payment = SandboxPayment.objects.select_for_update().get(reference=request.reference)
            refunds = dict(payment.refunds)
            if request.refund_reference not in refunds:
                refunded = sum((Decimal(value) for value in refunds.values()), Decimal(0))
                if payment.status != SandboxPayment.Status.PAID or (
                    refunded + request.amount > payment.amount
                ):
                    return RefundResult(status="failed", payload={"error": "not refundable"})
                refunds[request.refund_reference] = str(request.amount)
                payment.refunds = refunds
                payment.save(update_fields=["refunds"])
        return RefundResult(
            status="succeeded", provider_refund_id=f"sbr_{request.refund_reference}"
        )

    def query_refund(self, request: RefundRequest) -> RefundResult:
        payment = SandboxPayment.objects.filter(reference=request.reference).first()
        if payment is None or request.refund_reference not in payment.refunds:
            return RefundResult(status="failed", payload={"error": "no such refund"})
        return RefundResult(
            status="succeeded", provider_refund_id=f"sbr_{request.refund_reference}"
        )
