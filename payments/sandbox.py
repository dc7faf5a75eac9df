"""The sandbox provider's own side: what happens when the payer acts on its hosted page, and
the signed webhooks it sends about it."""

from __future__ import annotations

import json
import logging
import secrets
import urllib.error
import urllib.request

from django.db import transaction
from django.utils import timezone

from payments.models import PaymentIntent, SandboxPayment
from payments.services import provider_for
from payments.tasks import deliver_sandbox_notification

logger = logging.getLogger(__name__)

OUTCOMES = {
    "approve": (SandboxPayment.Status.PAID, "payment.succeeded"),
    "decline": (SandboxPayment.Status.DECLINED, "payment.failed"),
}
DELIVERY_TIMEOUT_SECONDS = 10


class SandboxDeliveryError(Exception):
    pass


def sandbox_payment(*, reference: str) -> SandboxPayment:
    """The payment as its hosted page shows it; open ones past their expiry have expired."""
    payment = SandboxPayment.objects.get(reference=reference)
    if payment.status == SandboxPayment.Status.OPEN and payment.expires_at <= timezone.now():
        SandboxPayment.objects.filter(pk=payment.pk, status=SandboxPayment.Status.OPEN).update(
            status=SandboxPayment.Status.EXPIRED
        )
        payment.refresh_from_db()
    return payment


def sandbox_decide(*, reference: str, outcome: str) -> SandboxPayment:
    """The payer approved or declined on the hosted page: settle it once, then notify."""
    if outcome not in OUTCOMES:
        raise ValueError(f"Choose one of {', '.join(OUTCOMES)}.")
    status, event_type = OUTCOMES[outcome]
    with transaction.atomic():
        payment = SandboxPayment.objects.select_for_update().get(reference=reference)
        if payment.status != SandboxPayment.Status.OPEN:
            return payment
        if payment.expires_at <= timezone.now():
            payment.status = SandboxPayment.Status.EXPIRED
            event_type = "payment.expired"
        else:
            payment.status = status
        if payment.status == SandboxPayment.Status.PAID:
            payment.transaction_id = f"sbx_{secrets.token_hex(12)}"
        payment.save(update_fields=["status", "transaction_id"])
    event_id = f"evt_{secrets.token_hex(12)}"
    try:
        # At once, so power comes back while the payer is still looking at the page.
        sandbox_deliver(reference=reference, event_type=event_type, event_id=event_id)
    except SandboxDeliveryError as exc:
        logger.warning("sandbox webhook for %s not delivered, will retry: %s", reference, exc)
        deliver_sandbox_notification.delay(reference, event_type, event_id)
    return payment


def sandbox_event(*, payment: SandboxPayment, event_type: str, event_id: str) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created": int(timezone.now().timestamp()),
            "data": {
                "reference": payment.reference,
                "amount": str(payment.amount),
                "currency": payment.currency,
                "transaction_id": payment.transaction_id,
            },
        }
    ).encode()


def sandbox_deliver(*, reference: str, event_type: str, event_id: str) -> int:
    """POST one signed notification to the payment's notify URL; the HTTP status it got."""
    payment = SandboxPayment.objects.get(reference=reference)
    config = PaymentIntent.objects.select_related("config").get(reference=reference).config
    body = sandbox_event(payment=payment, event_type=event_type, event_id=event_id)
    headers = provider_for(config).sign(body)
    request = urllib.request.Request(  # noqa: S310 - our own notify URL, http(s) only
        payment.notify_url, data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_SECONDS) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        raise SandboxDeliveryError(f"answered {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise SandboxDeliveryError(str(exc)) from exc
