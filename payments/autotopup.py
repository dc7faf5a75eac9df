"""Auto top-up ("withholding"): charge a tenant's saved Stripe card when their balance falls.

The tenant opts in (`autotopup_enable`) and saves a card by paying one top-up through a Stripe
Checkout that keeps it (`autotopup_setup_start`). From then on, a posting that takes the balance
below the threshold (`autotopup_check`, called by billing in the posting's transaction) is one
crossing; each crossing is evaluated after commit and attempted once (`autotopup_evaluate`,
unique per crossing), within the monthly cap in the property's calendar month.

An attempt charges through `payments.services.intent_create`, as an off-session PaymentIntent,
so its money is credited by the same path as every payment: under the intent's lock and ledger
key, from Stripe's answer, its `payment_intent.succeeded` webhook or the stranded-payment sweep,
whichever comes first, and once. After `PAYMENTS_AUTOTOPUP_MAX_FAILURES` (3) failed charges in
a row, auto top-up turns itself off.

The tenant hears of every attempt: a charge as the top-up's own receipt notification; a decline,
a skip and the switch-off as a low-balance notice naming the threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from accounts.models import Account
from billing.models import LedgerAccount, TopupLimits
from notifications.events import Event
from notifications.services import notify
from payments.models import AutoTopup, AutoTopupAttempt, PaymentIntent, Provider, ProviderConfig
from payments.providers.base import (
    Checkout,
    CheckoutRequest,
    Notification,
    NotificationRejected,
    PaymentProvider,
    ProviderError,
)
from payments.providers.stripe import StripeProvider
from payments.secrets import SecretUnavailable
from payments.selectors import provider_webhook_url
from payments.services import PaymentError, intent_create, notification_apply, provider_for
from payments.tasks import autotopup_attempt_task, autotopup_evaluate_task
from prepaid.audit.services import audit_record
from prepaid.money import is_whole_minor_units, quantize, to_decimal

logger = logging.getLogger(__name__)

Status = AutoTopupAttempt.Status
# A worker that took an attempt on and went quiet this long is presumed dead; the sweep hands
# the attempt to another. Well beyond the attempt task's time limit.
ATTEMPT_LEASE = timedelta(minutes=5)
# What counts against the monthly cap: charges made and charges under way.
COUNTED = (Status.PENDING, Status.SUCCEEDED)
CREDITED = (
    PaymentIntent.Status.SUCCEEDED,
    PaymentIntent.Status.PARTIALLY_REFUNDED,
    PaymentIntent.Status.REFUNDED,
)
NOT_PAID = (PaymentIntent.Status.FAILED, PaymentIntent.Status.EXPIRED)


def max_failures() -> int:
    return settings.PAYMENTS_AUTOTOPUP_MAX_FAILURES


# Opting in and out -------------------------------------------------------------------------------


def _validated(
    *,
    account: Account,
    config: ProviderConfig,
    amount: Decimal,
    threshold: Decimal,
    monthly_cap: Decimal,
) -> tuple[Decimal, Decimal, Decimal]:
    prop = account.unit.property
    errors: dict[str, str] = {}
    if (
        config.provider != Provider.STRIPE
        or config.organisation_id != prop.organisation_id
        or not config.enabled
    ):
        errors["config"] = "Auto top-up charges a card saved with this landlord's Stripe account."
    if account.status != Account.Status.OPEN or account.mode != Account.Mode.PREPAID:
        errors["account"] = "Auto top-up is for open prepaid accounts."
    values: dict[str, Decimal] = {}
    for name, value in (("amount", amount), ("threshold", threshold), ("monthly_cap", monthly_cap)):
        try:
            values[name] = to_decimal(value)
        except (TypeError, ValueError):
            errors[name] = "Give the amount as a number."
            continue
        if not is_whole_minor_units(values[name], prop.currency):
            errors[name] = f"Give the amount in whole {prop.currency} minor units."
    if errors:
        raise ValidationError(errors)
    amount, threshold, monthly_cap = values["amount"], values["threshold"], values["monthly_cap"]
    limits = TopupLimits.objects.filter(property=prop).first() or TopupLimits(property=prop)
    if amount <= 0:
        errors["amount"] = "An auto top-up must be more than zero."
    elif amount < limits.minimum:
        errors["amount"] = f"The smallest top-up is {limits.minimum} {prop.currency}."
    elif amount > limits.maximum:
        errors["amount"] = f"The largest top-up is {limits.maximum} {prop.currency}."
    if threshold < 0:
        errors["threshold"] = "The threshold cannot be below zero."
    elif threshold + amount > limits.max_balance:
        errors["threshold"] = (
            f"A top-up of {amount} just below {threshold} would take the wallet past its limit "
            f"of {limits.max_balance} {prop.currency}; lower the threshold or the amount."
        )
    if monthly_cap < amount:
        errors["monthly_cap"] = "The monthly cap must allow at least one top-up."
    if errors:
        raise ValidationError(errors)
    return amount, threshold, monthly_cap


def _snapshot(topup: AutoTopup) -> dict[str, object]:
    return {
        "enabled": topup.enabled,
        **{
            name: str(quantize(getattr(topup, name), topup.currency))
            for name in ("amount", "threshold", "monthly_cap")
        },
        "currency": topup.currency,
        "config": str(topup.config.uuid),
        "card_saved": bool(topup.payment_method_ref),
    }


@transaction.atomic
def autotopup_enable(
    *,
    account: Account,
    config: ProviderConfig,
    amount: Decimal,
    threshold: Decimal,
    monthly_cap: Decimal,
    actor,
) -> AutoTopup:
    """Turn auto top-up on for an account, or change its amounts; audited. It charges once a
    card is saved (`autotopup_setup_start`)."""
    amount, threshold, monthly_cap = _validated(
        account=account, config=config, amount=amount, threshold=threshold, monthly_cap=monthly_cap
    )
    prop = account.unit.property
    topup = AutoTopup.objects.select_for_update().filter(account=account).first()
    before = None if topup is None else _snapshot(topup)
    if topup is None:
        topup = AutoTopup(account=account, config=config)
    elif topup.config_id != config.pk:
        # A saved card belongs to the Stripe account it was saved with.
        topup.setup_intent, topup.customer_ref, topup.payment_method_ref = None, "", ""
    topup.config = config
    topup.amount, topup.threshold, topup.monthly_cap = amount, threshold, monthly_cap
    topup.currency = prop.currency
    topup.enabled, topup.armed, topup.failures, topup.disabled_reason = True, True, 0, ""
    topup.save()
    audit_record(
        organisation_id=prop.organisation_id,
        property_id=prop.pk,
        actor=actor,
        action="payments.autotopup.enable",
        instance=topup,
        before=before,
        after=_snapshot(topup),
    )
    return topup


@transaction.atomic
def autotopup_disable(*, account: Account, actor, reason: str) -> AutoTopup:
    """Turn auto top-up off, for a reason; audited. The saved card is kept for turning it on
    again."""
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why auto top-up is turned off."})
    topup = (
        AutoTopup.objects.select_for_update()
        .select_related("config", "account__unit__property")
        .filter(account=account)
        .first()
    )
    if topup is None:
        raise ValidationError({"account": "This account has no auto top-up."})
    return _disable(topup, actor=actor, reason=reason)


def _disable(topup: AutoTopup, *, actor, reason: str) -> AutoTopup:
    """Turn a locked auto top-up off and audit it."""
    if not topup.enabled:
        return topup
    before = _snapshot(topup)
    topup.enabled, topup.disabled_reason = False, reason[:300]
    topup.save(update_fields=["enabled", "disabled_reason", "updated_at"])
    prop = topup.account.unit.property
    audit_record(
        organisation_id=prop.organisation_id,
        property_id=prop.pk,
        actor=actor,
        action="payments.autotopup.disable",
        instance=topup,
        before=before,
        after=_snapshot(topup),
        reason=reason,
    )
    return topup


def _stripe(provider: PaymentProvider) -> StripeProvider:
    if not isinstance(provider, StripeProvider):
        raise ProviderError(f"Auto top-up needs Stripe, not {provider.name}.")
    return provider


def _setup_checkout(provider: PaymentProvider, request: CheckoutRequest) -> Checkout:
    return _stripe(provider).create_setup_checkout(request)


def autotopup_setup_start(
    *,
    account: Account,
    amount: Decimal,
    actor,
    notify_url: str,
    return_url: str,
    client: str = PaymentIntent.Client.DESKTOP,
    client_ip: str = "127.0.0.1",
) -> PaymentIntent:
    """Top up now through a Stripe Checkout that also saves the card for auto top-up. The card
    is read from Stripe the first time auto top-up needs it, once this payment is credited."""
    topup = AutoTopup.objects.select_related("config").filter(account=account).first()
    if topup is None or not topup.enabled:
        raise ValidationError({"account": "Turn auto top-up on first."})
    intent = intent_create(
        account=account,
        config=topup.config,
        amount=amount,
        actor=actor,
        notify_url=notify_url,
        return_url=return_url,
        client=client,
        client_ip=client_ip,
        open_checkout=_setup_checkout,
    )
    AutoTopup.objects.filter(pk=topup.pk).update(
        setup_intent=intent, customer_ref="", payment_method_ref="", updated_at=timezone.now()
    )
    return intent


# Falls through the threshold ---------------------------------------------------------------------


def autotopup_check(*, account_ids: Collection[int]) -> None:
    """After a posting lowered these accounts' balances, in its transaction: for each whose
    auto top-up may now start an attempt or re-arm, evaluate it once the posting commits. One
    indexed query for all of them, so a charge run's query count does not grow with its size."""
    if not account_ids:
        return
    balance = F("account__wallet__balance")
    due = list(
        AutoTopup.objects.filter(account_id__in=account_ids, enabled=True)
        .filter(Q(armed=True, threshold__gt=balance) | Q(armed=False, threshold__lte=balance))
        .values_list("account_id", flat=True)
    )
    for account_id in due:
        transaction.on_commit(partial(autotopup_evaluate_task.delay, account_id))


def _month_start(now: datetime, account: Account) -> datetime:
    local = now.astimezone(account.unit.property.zone)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@transaction.atomic
def autotopup_evaluate(*, account_id: int) -> AutoTopupAttempt | None:
    """Re-arm the auto top-up when the balance is at or above its threshold; when it is below
    and armed, record the crossing's one attempt and charge it after commit. Safe to repeat:
    a repeat finds the auto top-up disarmed. Returns the attempt recorded, if any."""
    topup = (
        AutoTopup.objects.select_for_update()
        .select_related("account__unit__property")
        .filter(account_id=account_id, enabled=True)
        .first()
    )
    if topup is None:
        return None
    account = topup.account
    balance = LedgerAccount.objects.values_list("balance", flat=True).get(pk=account.wallet_id)
    if balance >= topup.threshold:
        if not topup.armed:
            topup.armed = True
            topup.save(update_fields=["armed", "updated_at"])
        return None
    if not topup.armed or account.status != Account.Status.OPEN:
        return None
    now = timezone.now()
    topup.armed = False
    topup.crossings += 1
    topup.save(update_fields=["armed", "crossings", "updated_at"])
    spent = topup.attempts.filter(
        status__in=COUNTED, created_at__gte=_month_start(now, account)
    ).aggregate(total=Sum("amount"))["total"] or Decimal(0)
    capped = spent + topup.amount > topup.monthly_cap
    attempt = AutoTopupAttempt.objects.create(
        autotopup=topup,
        crossing=topup.crossings,
        amount=topup.amount,
        currency=topup.currency,
        balance=balance,
        status=Status.SKIPPED if capped else Status.PENDING,
        reason=(
            f"The monthly cap of {topup.monthly_cap} {topup.currency} is reached "
            f"({spent} charged this month)."
            if capped
            else ""
        ),
        concluded_at=now if capped else None,
    )
    if capped:
        _notice(topup, attempt)
    else:
        attempt_id = attempt.pk
        transaction.on_commit(lambda: autotopup_attempt_task.delay(attempt_id))
    return attempt


# Charging ----------------------------------------------------------------------------------------


def _saved_card(topup: AutoTopup) -> tuple[str, str] | None:
    """The customer and card to charge: as saved, or read from Stripe once the payment that
    saved them is credited. None when there is none (yet)."""
    if topup.payment_method_ref:
        return topup.customer_ref, topup.payment_method_ref
    setup = topup.setup_intent
    if setup is None or not setup.is_credited() or not setup.transaction_id:
        return None
    saved = _stripe(provider_for(topup.config)).payment_method_of(
        payment_intent=setup.transaction_id
    )
    if saved is not None:
        AutoTopup.objects.filter(pk=topup.pk, setup_intent=setup).update(
            customer_ref=saved[0], payment_method_ref=saved[1], updated_at=timezone.now()
        )
    return saved


def autotopup_attempt(*, attempt_id: int) -> str:
    """Charge a pending attempt to the saved card and conclude it from Stripe's answer; returns
    the attempt's status. Safe to run twice and at once: a worker claims the attempt first, and
    the attempt is tied to its PaymentIntent before Stripe is called, so it is charged at most
    once. Money is credited only through the intent (`notification_apply`)."""
    now = timezone.now()
    claimed = (
        AutoTopupAttempt.objects.filter(pk=attempt_id, status=Status.PENDING, intent__isnull=True)
        .filter(Q(started_at__isnull=True) | Q(started_at__lt=now - ATTEMPT_LEASE))
        .update(started_at=now)
    )
    if not claimed:
        return _settle(attempt_id)
    attempt = AutoTopupAttempt.objects.select_related(
        "autotopup__config", "autotopup__setup_intent", "autotopup__account__unit__property"
    ).get(pk=attempt_id)
    topup = attempt.autotopup
    if not topup.enabled:
        return _conclude(attempt_id, Status.SKIPPED, "Auto top-up was turned off.", notice=False)
    try:
        card = _saved_card(topup)
    except (ProviderError, SecretUnavailable) as exc:
        # Nothing was charged; the sweep hands the attempt on once the lease runs out.
        logger.warning("auto top-up %s could not read the saved card: %s", attempt_id, exc)
        return Status.PENDING
    if card is None:
        return _conclude(attempt_id, Status.SKIPPED, "No card is saved for auto top-up.")
    customer, payment_method = card

    def charge(provider: PaymentProvider, request: CheckoutRequest) -> Checkout:
        AutoTopupAttempt.objects.filter(pk=attempt_id).update(
            intent=PaymentIntent.objects.get(reference=request.reference)
        )
        return _stripe(provider).charge_saved_method(
            request, customer=customer, payment_method=payment_method
        )

    try:
        intent = intent_create(
            account=topup.account,
            config=topup.config,
            amount=attempt.amount,
            actor=None,
            notify_url=provider_webhook_url(config=topup.config),
            return_url="",
            open_checkout=charge,
        )
    except PaymentError as exc:
        if AutoTopupAttempt.objects.filter(pk=attempt_id, intent__isnull=True).exists():
            # Refused before any charge (the top-up limits, a closed account).
            return _conclude(attempt_id, Status.SKIPPED, "; ".join(exc.messages))
        return _settle(attempt_id)
    _apply_answer(intent)
    return _settle(attempt_id)


def _apply_answer(intent: PaymentIntent) -> None:
    """Credit or fail the intent from Stripe's own account of the charge just made, as the
    stranded-payment sweep would; its webhook, when it comes, then changes nothing."""
    try:
        report = provider_for(intent.config).query(
            reference=intent.reference, provider_reference=intent.provider_reference
        )
    except (ProviderError, SecretUnavailable) as exc:
        # The webhook or the stranded-payment sweep settles it.
        logger.warning("auto top-up charge %s could not be asked about: %s", intent.reference, exc)
        return
    notification = Notification(
        event_id=f"query:{intent.reference}:{report.status}",
        reference=intent.reference,
        status=report.status,
        amount=report.amount,
        currency=report.currency,
        transaction_id=report.transaction_id,
        payload=report.payload,
    )
    try:
        notification_apply(config=intent.config, notification=notification, source="query")
    except NotificationRejected as rejection:
        logger.warning("auto top-up charge %s: Stripe's answer %s", intent.reference, rejection)


def _settle(attempt_id: int) -> str:
    """Conclude a pending attempt from its intent, once the intent has an outcome."""
    attempt = AutoTopupAttempt.objects.select_related("intent").get(pk=attempt_id)
    intent = attempt.intent
    if attempt.status != Status.PENDING or intent is None:
        return attempt.status
    if intent.status in CREDITED:
        return _conclude(attempt_id, Status.SUCCEEDED)
    if intent.status in NOT_PAID:
        return _conclude(attempt_id, Status.FAILED, intent.failure_reason or "Not charged.")
    return Status.PENDING


def _conclude(attempt_id: int, status: str, reason: str = "", *, notice: bool = True) -> str:
    """Record a pending attempt's outcome once: a success clears the failure count, a failure
    adds to it and may turn auto top-up off; the tenant is told of all but a success, which
    its receipt tells."""
    topup_id = AutoTopupAttempt.objects.values_list("autotopup_id", flat=True).get(pk=attempt_id)
    with transaction.atomic():
        # The auto top-up before its attempt, as autotopup_evaluate locks them.
        topup = (
            AutoTopup.objects.select_for_update()
            .select_related("config", "account__unit__property")
            .get(pk=topup_id)
        )
        attempt = AutoTopupAttempt.objects.select_for_update().get(pk=attempt_id)
        if attempt.status != Status.PENDING:
            return attempt.status
        attempt.status, attempt.reason = status, reason[:300]
        attempt.concluded_at = timezone.now()
        attempt.save(update_fields=["status", "reason", "concluded_at"])
        if status == Status.SUCCEEDED:
            topup.failures = 0
            topup.save(update_fields=["failures", "updated_at"])
        elif status == Status.FAILED:
            topup.failures += 1
            topup.save(update_fields=["failures", "updated_at"])
            if topup.failures >= max_failures():
                _disable(topup, actor=None, reason=f"{topup.failures} charges in a row failed.")
        if status != Status.SUCCEEDED and notice:
            _notice(topup, attempt)
    return status


def _notice(topup: AutoTopup, attempt: AutoTopupAttempt) -> None:
    """Tell the tenant an attempt did not charge: failed, skipped, or failed once too often."""
    account = topup.account
    if account.status != Account.Status.OPEN:
        return
    balance = LedgerAccount.objects.values_list("balance", flat=True).get(pk=account.wallet_id)
    context = {
        "balance": str(quantize(balance, attempt.currency)),
        "currency": attempt.currency,
        "reason": attempt.reason,
    }
    if not topup.enabled and attempt.status == Status.FAILED:
        event, context["reason"] = Event.AUTOTOPUP_DISABLED, topup.disabled_reason
    else:
        event = (
            Event.AUTOTOPUP_FAILED if attempt.status == Status.FAILED else Event.AUTOTOPUP_SKIPPED
        )
        context["amount"] = str(quantize(attempt.amount, attempt.currency))
    notify(
        account_id=account.pk,
        event=event,
        context=context,
        idempotency_key=f"autotopup:{topup.uuid}:{attempt.crossing}",
    )


def autotopup_sweep(*, limit: int = 200) -> dict[str, int]:
    """Conclude attempts whose payment has an outcome since (a webhook, the stranded-payment
    sweep), and hand on attempts whose worker went quiet before charging."""
    now = timezone.now()
    counts = {"settled": 0, "resumed": 0}
    answered = (
        AutoTopupAttempt.objects.filter(status=Status.PENDING, intent__isnull=False)
        .filter(intent__status__in=(*CREDITED, *NOT_PAID))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    for attempt_id in answered:
        if _settle(attempt_id) != Status.PENDING:
            counts["settled"] += 1
    stalled = (
        AutoTopupAttempt.objects.filter(
            status=Status.PENDING, intent__isnull=True, created_at__lt=now - ATTEMPT_LEASE
        )
        .filter(Q(started_at__isnull=True) | Q(started_at__lt=now - ATTEMPT_LEASE))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    for attempt_id in stalled:
        autotopup_attempt_task.delay(attempt_id)
        counts["resumed"] += 1
    return counts
