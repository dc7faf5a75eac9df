from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from payments.models import Provider, SandboxPayment
from payments.providers.base import Answer
from payments.sandbox import sandbox_decide, sandbox_payment
from payments.secrets import SecretUnavailable
from payments.services import TooManyRejections, notification_receive, webhook_config

logger = logging.getLogger(__name__)


def _client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


def _rejections_key(ip: str) -> str:
    return f"payments:webhook:rejected:{ip}:{int(timezone.now().timestamp()) // 60}"


def _count_rejection(key: str) -> None:
    """One more rejection in this caller's one-minute window, in the shared cache."""
    cache.add(key, 0, timeout=120)
    try:
        cache.incr(key)
    except ValueError:
        # The window expired between add and incr.
        cache.add(key, 1, timeout=120)


def _answer(answer: Answer) -> HttpResponse:
    return HttpResponse(answer.body, status=answer.status, content_type=answer.content_type)


@csrf_exempt
def webhook(request: HttpRequest, provider: str, config_uuid) -> HttpResponse:
    """Where a provider notifies us. Signature-checked; CSRF does not apply to a server calling
    with its own signature. Only a caller without the provider's key sends rejected
    notifications, so that is what is limited: past the limit its notifications are refused
    unrecorded for the rest of the minute, and real notifications, however many, are never held
    back (nor cost a look at the counter)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if provider not in Provider.values:
        raise Http404
    config = webhook_config(provider=provider, config_uuid=config_uuid)
    if config is None:
        raise Http404
    rejections = _rejections_key(_client_ip(request))
    try:
        answer = notification_receive(
            config=config,
            body=request.body,
            headers=request.headers,
            rejection_allowed=lambda: (
                cache.get(rejections, 0) < settings.PAYMENTS_WEBHOOK_REJECTIONS_PER_MINUTE
            ),
        )
    except TooManyRejections:
        return HttpResponse(
            b"Too many requests",
            status=429,
            content_type="text/plain",
            headers={"Retry-After": "60"},
        )
    except SecretUnavailable:
        logger.exception("%s notification for %s: a secret is not available", provider, config.pk)
        # The provider retries; nothing was recorded or credited.
        return HttpResponse(b"Unavailable", status=503, content_type="text/plain")
    if answer.status >= 400:
        _count_rejection(rejections)
    return _answer(answer)


def sandbox_page(request: HttpRequest, reference: str) -> HttpResponse:
    """The sandbox's hosted payment page: approve, decline or abandon."""
    try:
        payment = sandbox_payment(reference=reference)
    except SandboxPayment.DoesNotExist:
        raise Http404 from None
    if request.method == "POST":
        outcome = request.POST.get("outcome", "")
        if outcome == "abandon":
            return redirect(payment.return_url)
        if outcome not in ("approve", "decline"):
            return render(
                request,
                "payments/sandbox.html",
                {"payment": payment, "error": "Choose approve, decline or abandon."},
                status=400,
            )
        payment = sandbox_decide(reference=reference, outcome=outcome)
        return redirect(payment.return_url)
    return render(request, "payments/sandbox.html", {"payment": payment})
