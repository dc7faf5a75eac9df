from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Account, Organisation
from billing.allocation import wallet_movement_allocate
from billing.models import LedgerAccount, LedgerTransaction, TopupLimits
from billing.services import (
    Entry,
    LedgerError,
    book_account,
    payment_topup_record,
    topup_amount_check,
    topup_limits_check,
    transaction_post,
)
from payments.models import (
    PROVIDER_SECRETS,
    PaymentIntent,
    Provider,
    ProviderConfig,
    ProviderEvent,
    Refund,
)
from payments.providers import build_provider
from payments.providers.base import (
    Answer,
    Checkout,
    CheckoutRequest,
    Notification,
    NotificationRejected,
    PaymentProvider,
    ProviderError,
    RefundRequest,
    RefundResult,
)
from payments.secrets import SecretUnavailable, seal, unseal
from payments.tasks import submit_refund
from prepaid.audit.services import acting_user, audit_record
from prepaid.inserts import insert, update
from prepaid.money import is_whole_minor_units, to_decimal

logger = logging.getLogger(__name__)
Kind = LedgerAccount.Kind


@transaction.atomic
def provider_config_save(
    *,
    organisation: Organisation,
    provider: str,
    actor,
    settings: Mapping[str, object] | None = None,
    secrets: Mapping[str, str] | None = None,
    enabled: bool = True,
) -> ProviderConfig:
    """Create or update an organisation's provider. Secrets left out, or given blank, keep their
    stored value, so a form never has to show a secret back to keep it."""
    if provider not in Provider.values:
        raise ValidationError({"provider": f"Choose one of {', '.join(Provider.values)}."})
    allowed = PROVIDER_SECRETS[provider]
    unknown = sorted(set(secrets or {}) - set(allowed))
    if unknown:
        raise ValidationError(
            {"secrets": f"{Provider(provider).label} takes no secret named {', '.join(unknown)}."}
        )
    config, created = ProviderConfig.objects.select_for_update().get_or_create(
        organisation=organisation, provider=provider
    )
    before = {"enabled": config.enabled, "settings": config.settings, **config.secrets_set()}
    changed_secrets = {name: value for name, value in (secrets or {}).items() if value.strip()}
    config.sealed_secrets = {
        **config.sealed_secrets,
        **{name: seal(value.strip()) for name, value in changed_secrets.items()},
    }
    if settings is not None:
        config.settings = dict(settings)
    config.enabled = enabled
    config.save()
    audit_record(
        organisation_id=organisation.pk,
        actor=actor,
        action="payments.provider.create" if created else "payments.provider.update",
        instance=config,
        before=None if created else before,
        # Which secrets changed, never their values.
        after={
            "enabled": config.enabled,
            "settings": config.settings,
            **config.secrets_set(),
            "secrets_changed": sorted(changed_secrets),
        },
    )
    return config


def provider_secret(*, config: ProviderConfig, name: str) -> str:
    """A secret in the clear, for the provider about to use it."""
    if name not in config.sealed_secrets:
        raise ValidationError(f"{config.get_provider_display()} has no {name} configured.")
    return unseal(config.sealed_secrets[name])


# Providers ----------------------------------------------------------------------------------------


def provider_for(config: ProviderConfig) -> PaymentProvider:
    return build_provider(
        config.provider,
        config.settings,
        lambda name: provider_secret(config=config, name=name),
    )


# Checkout ----------------------------------------------------------------------------------------

Status = PaymentIntent.Status
# Stripe refuses a Checkout Session that expires sooner than 30 minutes.
CHECKOUT_LIFETIME = timedelta(minutes=30)
# An intent still open this long after it was made is asked about at its provider.
STRANDED_AFTER = timedelta(minutes=15)
# How often one stranded intent is asked about, and how long after its checkout expired it is
# given up on when the provider still says nothing.
REQUERY_EVERY = timedelta(minutes=5)
EXPIRY_GRACE = timedelta(minutes=15)
OPEN_STATUSES = (Status.CREATED, Status.PENDING)


class PaymentError(ValidationError):
    pass


def checkout_amount_check(*, account: Account, amount: Decimal) -> Decimal:
    """What a counter top-up would check, as form errors, before the payer is sent off."""
    prop = account.unit.property
    try:
        amount = to_decimal(amount)
    except (TypeError, ValueError) as exc:
        raise PaymentError({"amount": _("Give the amount as a number.")}) from exc
    try:
        topup_amount_check(amount=amount, currency=prop.currency)
        topup_limits_check(
            status=account.status,
            limits=TopupLimits.objects.filter(property=prop).first() or TopupLimits(property=prop),
            balance=LedgerAccount.objects.values_list("balance", flat=True).get(
                pk=account.wallet_id
            ),
            amount=amount,
            currency=prop.currency,
        )
    except LedgerError as exc:
        raise PaymentError(getattr(exc, "error_dict", None) or exc.error_list) from exc
    return amount


def intent_create(
    *,
    account: Account,
    config: ProviderConfig,
    amount: Decimal,
    actor,
    notify_url: str,
    return_url: str,
    client: str = PaymentIntent.Client.DESKTOP,
    client_ip: str = "127.0.0.1",
    open_checkout: Callable[[PaymentProvider, CheckoutRequest], Checkout] | None = None,
) -> PaymentIntent:
    """Start an online payment: record the intent, then open a checkout at the provider.

    `return_url` may hold `{reference}`, filled in with the new intent's reference. The intent is
    committed before the provider is called, so a notification that arrives before we hear back
    from the checkout call still finds it. No database transaction is held open across the call.
    `open_checkout` stands in for the provider's create_checkout, for flows only one provider
    has (Stripe's saved cards: `payments.autotopup`).
    """
    prop = account.unit.property
    if config.organisation_id != prop.organisation_id or not config.enabled:
        raise PaymentError({"provider": _("This payment method is not available here.")})
    provider = provider_for(config)
    if not provider.online:
        raise PaymentError({"provider": _("This payment method is not available online.")})
    amount = checkout_amount_check(account=account, amount=amount)
    reference = uuid.uuid4().hex
    intent = PaymentIntent.objects.create(
        reference=reference,
        organisation_id=prop.organisation_id,
        property=prop,
        account=account,
        config=config,
        provider=config.provider,
        amount=amount,
        currency=prop.currency,
        client=client,
        return_url=return_url.replace("{reference}", reference),
        expires_at=timezone.now() + CHECKOUT_LIFETIME,
        created_by=acting_user(actor),
    )
    request = CheckoutRequest(
        reference=reference,
        amount=amount,
        currency=prop.currency,
        description=f"{prop.name} {account.unit.name}",
        return_url=intent.return_url,
        notify_url=notify_url,
        expires_at=intent.expires_at,
        client=client,
        client_ip=client_ip,
    )
    try:
        if open_checkout is None:
            checkout = provider.create_checkout(request)
        else:
            checkout = open_checkout(provider, request)
    except (ProviderError, SecretUnavailable) as exc:
        logger.warning("checkout failed at %s for %s: %s", config.provider, reference, exc)
        PaymentIntent.objects.filter(pk=intent.pk, status=Status.CREATED).update(
            status=Status.FAILED, failure_reason=str(exc)[:300], updated_at=timezone.now()
        )
        raise PaymentError(
            _("The payment provider could not be reached. Nothing was charged; try again.")
        ) from exc
    # Only from created: a notification may already have moved it on.
    PaymentIntent.objects.filter(pk=intent.pk, status=Status.CREATED).update(
        status=Status.PENDING,
        provider_reference=checkout.provider_reference[:200],
        redirect_url=checkout.redirect_url,
        qr_code=checkout.qr_code,
        updated_at=timezone.now(),
    )
    intent.refresh_from_db()
    return intent


# Notifications -----------------------------------------------------------------------------------


def _header_subset(headers: Mapping[str, str]) -> dict[str, str]:
    # Enough to see what a provider sent, without keeping cookies or auth of other callers.
    keep = ("content-type", "user-agent", "stripe-signature", "sandbox-signature")
    return {
        key: value[:500]
        for key, value in headers.items()
        if key.lower() in keep or key.lower().startswith("wechatpay-")
    }


def _reject(
    *,
    config: ProviderConfig,
    rejection: NotificationRejected,
    event_id: str = "",
    payload: dict | None = None,
    source: str = "webhook",
) -> ProviderEvent:
    logger.warning("rejected %s notification %s: %s", config.provider, event_id or "?", rejection)
    return ProviderEvent.objects.create(
        config=config,
        event_id=event_id[:200],
        source=source,
        outcome=ProviderEvent.Outcome.REJECTED,
        reason=rejection.reason,
        detail=rejection.detail[:300],
        payload=payload or {},
    )


class TooManyRejections(Exception):
    """The caller is past its limit of rejected notifications: this one was not recorded."""


def notification_receive(
    *,
    config: ProviderConfig,
    body: bytes,
    headers: Mapping[str, str],
    rejection_allowed: Callable[[], bool] | None = None,
) -> Answer:
    """Verify, record and act on one provider notification; returns what to answer.

    A rejected notification is stored with its reason and never credits. A verified one is
    applied under the intent's lock, once per event id, so replays, concurrent deliveries and
    events out of order credit exactly once. `rejection_allowed` is asked before a rejection is
    stored; when it says no, nothing is and TooManyRejections is raised.
    """
    provider = provider_for(config)
    try:
        notification = provider.parse_notification(body, headers)
    except NotificationRejected as rejection:
        if rejection_allowed is not None and not rejection_allowed():
            raise TooManyRejections from rejection
        raw = {"body": body[:4000].decode("utf-8", "replace"), "headers": _header_subset(headers)}
        _reject(config=config, rejection=rejection, payload=raw)
        return provider.answer_error(rejection)
    try:
        notification_apply(config=config, notification=notification, source="webhook")
    except NotificationRejected as rejection:
        if rejection_allowed is not None and not rejection_allowed():
            raise TooManyRejections from rejection
        _reject(
            config=config,
            rejection=rejection,
            event_id=notification.event_id,
            payload=notification.payload,
        )
        return provider.answer_error(rejection)
    return provider.answer_ok()


# Every notification runs these statements (`make bench webhooks`): they are plain SQL because
# compiling the ORM's equivalents cost more CPU than the database's own work.
_WEBHOOK_CONFIG_SQL = "SELECT * FROM payments_providerconfig WHERE uuid = %s AND provider = %s"
_INTENT_SQL = """
SELECT i.*, a.uuid AS account_uuid, a.wallet_id AS account_wallet_id
FROM payments_paymentintent i JOIN accounts_account a ON a.id = i.account_id
WHERE i.config_id = %s AND i.reference = %s
"""
_EVENT_SEEN_SQL = (
    "SELECT 1 FROM payments_providerevent "
    "WHERE config_id = %s AND event_id = %s AND outcome <> 'rejected'"
)


def webhook_config(*, provider: str, config_uuid: uuid.UUID | str) -> ProviderConfig | None:
    """The configuration a webhook URL names, or None."""
    found = ProviderConfig.objects.raw(_WEBHOOK_CONFIG_SQL, [config_uuid, provider])
    return next(iter(found), None)


def _intent_locked(*, config: ProviderConfig, reference: str) -> PaymentIntent | None:
    """The config's intent with this reference, locked (alone: not its account), with the
    account's identifiers the credit needs."""
    sql = _INTENT_SQL
    if connection.features.has_select_for_update_of:
        sql += " FOR UPDATE OF i"
    intent = next(iter(PaymentIntent.objects.raw(sql, [config.pk, reference])), None)
    if intent is not None:
        # The wallet and the uuid never change, so reading them without a lock is exact.
        intent.account = Account.from_db(
            connection.alias,
            ["id", "uuid", "wallet_id"],
            [intent.account_id, intent.account_uuid, intent.account_wallet_id],
        )
    return intent


def _event_seen(*, config: ProviderConfig, event_id: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(_EVENT_SEEN_SQL, [config.pk, event_id])
        return cursor.fetchone() is not None


@transaction.atomic
def notification_apply(
    *, config: ProviderConfig, notification: Notification, source: str
) -> ProviderEvent | None:
    """Act on what a provider told us, verified. Returns the event recorded, or None for one
    seen before. Raises NotificationRejected for an unknown intent or a wrong amount."""
    intent = _intent_locked(config=config, reference=notification.reference)
    if intent is None:
        raise NotificationRejected("unknown_intent", notification.reference[:100])
    # Under the intent's lock, and in a statement of its own (one joined to the lock would read
    # an older snapshot), so a concurrent delivery of the same event waits, then sees this.
    if _event_seen(config=config, event_id=notification.event_id):
        return None
    if notification.status == "succeeded" and (
        notification.amount != intent.amount
        or (notification.currency or "").upper() != intent.currency
    ):
        raise NotificationRejected(
            "amount",
            f"paid {notification.amount} {notification.currency}, "
            f"expected {intent.amount} {intent.currency}",
        )
    event = ProviderEvent(
        config=config,
        event_id=notification.event_id[:200],
        intent=intent,
        source=source,
        status=notification.status,
        payload=notification.payload,
    )
    if notification.status == "succeeded" and not intent.is_credited():
        # Recorded before the credit, which ends by numbering the receipt: the property-wide
        # number lock is then held for as few statements as possible.
        event.outcome = ProviderEvent.Outcome.APPLIED
        insert(event)
        _intent_credit(intent, notification)
        return event
    applied = _intent_advance(intent, notification)
    event.outcome = ProviderEvent.Outcome.APPLIED if applied else ProviderEvent.Outcome.IGNORED
    insert(event)
    return event


def _intent_credit(intent: PaymentIntent, notification: Notification) -> None:
    """Credit a locked intent's payment to its wallet and mark it paid."""
    # Also from failed or expired: a late success means the payer's money was taken.
    result = payment_topup_record(
        account=intent.account,
        amount=intent.amount,
        currency=intent.currency,
        provider=intent.provider,
        idempotency_key=f"payment:{intent.uuid}",
        reference=intent.reference,
    )
    intent.receipt = result.receipt
    intent.transaction_id = notification.transaction_id[:200]
    intent.status = Status.SUCCEEDED
    intent.succeeded_at = timezone.now()
    intent.failure_reason = ""
    update(
        intent,
        "receipt", "transaction_id", "status", "succeeded_at", "failure_reason", "updated_at",
    )  # fmt: skip


def _intent_advance(intent: PaymentIntent, notification: Notification) -> bool:
    """Move a locked intent on from what its provider said, short of a credit (see
    `_intent_credit`); whether anything changed."""
    status = notification.status
    if status == "succeeded" or intent.status not in OPEN_STATUSES:
        # Credited already; or out of order: a failure or expiry reported after the payment is
        # settled changes nothing.
        return False
    if status == "pending":
        if intent.status == Status.PENDING:
            return False
        intent.status = Status.PENDING
    elif status in ("failed", "expired"):
        intent.status = Status.FAILED if status == "failed" else Status.EXPIRED
        intent.failure_reason = str(notification.payload.get("failure_reason", ""))[:300]
    else:
        return False
    update(intent, "status", "failure_reason", "updated_at")
    return True


# Stranded payments -------------------------------------------------------------------------------


def stranded_intents_sweep(*, limit: int = 200) -> dict[str, int]:
    """Ask the providers about intents left open past STRANDED_AFTER: a lost notification must
    not strand a payment. Credited, failed or expired from what each provider says."""
    now = timezone.now()
    due = list(
        PaymentIntent.objects.filter(status__in=OPEN_STATUSES, created_at__lt=now - STRANDED_AFTER)
        .filter(Q(queried_at__isnull=True) | Q(queried_at__lt=now - REQUERY_EVERY))
        .select_related("config")
        .order_by("created_at")[:limit]
    )
    counts = {"queried": 0, "credited": 0, "closed": 0, "errors": 0}
    for intent in due:
        PaymentIntent.objects.filter(pk=intent.pk).update(queried_at=now)
        try:
            report = provider_for(intent.config).query(
                reference=intent.reference, provider_reference=intent.provider_reference
            )
        except (ProviderError, SecretUnavailable) as exc:
            logger.warning("query of %s at %s failed: %s", intent.reference, intent.provider, exc)
            counts["errors"] += 1
            continue
        counts["queried"] += 1
        status = report.status
        if status == "pending" and now > intent.expires_at + EXPIRY_GRACE:
            status = "expired"
        notification = Notification(
            event_id=f"query:{intent.reference}:{status}",
            reference=intent.reference,
            status=status,
            amount=report.amount,
            currency=report.currency,
            transaction_id=report.transaction_id,
            payload=report.payload,
        )
        try:
            event = notification_apply(
                config=intent.config, notification=notification, source="query"
            )
        except NotificationRejected as rejection:
            _reject(
                config=intent.config,
                rejection=rejection,
                event_id=notification.event_id,
                payload=report.payload,
                source="query",
            )
            continue
        if event is not None and event.outcome == ProviderEvent.Outcome.APPLIED:
            counts["credited" if status == "succeeded" else "closed"] += 1
    return counts


# Refunds -----------------------------------------------------------------------------------------

RefundStatus = Refund.Status
# A refund the provider has not confirmed is asked about again this often.
REFUND_RETRY_EVERY = timedelta(minutes=2)


@transaction.atomic
def refund_start(
    *, intent: PaymentIntent, amount: Decimal, reason: str, actor, idempotency_key: str = ""
) -> Refund:
    """Start paying back some or all of a payment, for a reason. Owners only (checked by the
    caller). The wallet is debited at once into refunds payable, so the credit cannot be spent
    while the provider works; the provider is asked after commit.

    Refused beyond what was paid and not yet refunded, and beyond the credit left in the
    wallet: consumed credit is not refunded here.
    """
    reason = reason.strip()
    if not reason:
        raise PaymentError({"reason": "Give a reason for the refund."})
    reference = idempotency_key or uuid.uuid4().hex
    if len(reference) > Refund._meta.get_field("reference").max_length:
        raise PaymentError({"idempotency_key": "Give a key of at most 64 characters."})
    intent = PaymentIntent.objects.select_for_update().select_related("property").get(pk=intent.pk)
    existing = Refund.objects.filter(reference=reference).first()
    if existing is not None:
        if existing.intent_id != intent.pk or existing.amount != to_decimal(amount):
            raise PaymentError(
                {"idempotency_key": "This key was already used for a different refund."}
            )
        return existing
    try:
        amount = to_decimal(amount)
    except (TypeError, ValueError) as exc:
        raise PaymentError({"amount": _("Give the amount as a number.")}) from exc
    if not intent.is_credited():
        raise PaymentError("Only a payment that was credited can be refunded.")
    if amount <= 0:
        raise PaymentError({"amount": "A refund must be more than zero."})
    if not is_whole_minor_units(amount, intent.currency):
        raise PaymentError({"amount": f"Give the amount in whole {intent.currency} minor units."})
    if amount > intent.refundable():
        raise PaymentError(
            {"amount": f"At most {intent.refundable()} {intent.currency} of this payment is left."}
        )
    wallet = LedgerAccount.objects.select_for_update().get(pk=intent.account.wallet_id)
    if amount > wallet.balance:
        raise PaymentError(
            {"amount": f"Only {max(wallet.balance, 0)} {intent.currency} of credit is left."}
        )
    held = transaction_post(
        property=intent.property,
        kind=LedgerTransaction.Kind.REFUND,
        entries=[
            Entry(wallet, -amount),
            Entry(book_account(property=intent.property, kind=Kind.REFUNDS_PAYABLE), amount),
        ],
        idempotency_key=f"refund:{reference}:hold",
        actor=actor,
        memo=reason,
    )
    refund = Refund.objects.create(
        reference=reference,
        intent=intent,
        amount=amount,
        reason=reason[:300],
        requested_by=acting_user(actor),
        hold_transaction=held.transaction,
    )
    # A postpaid payment refunded reopens the bills it had met as far as the credit left
    # cannot cover the refund (billing.allocation).
    wallet_movement_allocate(movement=held.transaction, payment=intent.receipt.transaction)
    intent.refunded_amount += amount
    intent.save(update_fields=["refunded_amount", "updated_at"])
    audit_record(
        organisation_id=intent.organisation_id,
        property_id=intent.property_id,
        actor=actor,
        action="payment.refund",
        instance=intent,
        after={"amount": str(amount), "refund": str(refund.uuid), "provider": intent.provider},
        reason=reason,
    )
    refund_id = refund.pk
    transaction.on_commit(lambda: submit_refund.delay(refund_id))
    return refund


def _refund_request(refund: Refund) -> RefundRequest:
    intent = refund.intent
    return RefundRequest(
        reference=intent.reference,
        transaction_id=intent.transaction_id,
        refund_reference=refund.reference,
        amount=refund.amount,
        total=intent.amount,
        currency=intent.currency,
        reason=refund.reason,
    )


def refund_submit(*, refund_id: int) -> str:
    """Ask the provider to pay a started refund back, and settle it from the answer. Safe to
    repeat: providers deduplicate on the refund's reference, so a retry never pays twice."""
    refund = Refund.objects.select_related("intent__config").get(pk=refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund.status
    provider = provider_for(refund.intent.config)
    request = _refund_request(refund)
    try:
        # The first attempt sends it; later ones (after an error or "processing") re-send it,
        # which each provider answers with the refund's current state.
        result = provider.refund(request)
    except (ProviderError, SecretUnavailable) as exc:
        logger.warning("refund %s at %s failed: %s", refund.reference, provider.name, exc)
        Refund.objects.filter(pk=refund.pk).update(attempted_at=timezone.now())
        return RefundStatus.PENDING
    return refund_conclude(refund_id=refund.pk, result=result)


@transaction.atomic
def refund_conclude(*, refund_id: int, result: RefundResult) -> str:
    """Settle a pending refund from the provider's answer: paid out, given back, or still
    waiting."""
    intent_id = Refund.objects.values_list("intent_id", flat=True).get(pk=refund_id)
    # The intent before the refund, in the order refund_start locks them.
    intent = PaymentIntent.objects.select_for_update().select_related("property").get(pk=intent_id)
    refund = Refund.objects.select_for_update().get(pk=refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund.status
    now = timezone.now()
    refund.attempted_at = now
    refund.provider_refund_id = result.provider_refund_id[:200] or refund.provider_refund_id
    if result.status == "pending":
        refund.save(update_fields=["attempted_at", "provider_refund_id"])
        return RefundStatus.PENDING
    prop = intent.property
    payable = book_account(property=prop, kind=Kind.REFUNDS_PAYABLE)
    if result.status == "succeeded":
        clearing = book_account(property=prop, kind=Kind.CLEARING, channel=intent.provider)
        paid = transaction_post(
            property=prop,
            kind=LedgerTransaction.Kind.REFUND_PAYOUT,
            entries=[Entry(payable, -refund.amount), Entry(clearing, refund.amount)],
            idempotency_key=f"refund:{refund.reference}:payout",
            memo=refund.reason,
        )
        refund.settle_transaction = paid.transaction
        refund.status = RefundStatus.SUCCEEDED
    else:
        hold = refund.hold_transaction
        released = transaction_post(
            property=prop,
            kind=LedgerTransaction.Kind.REVERSAL,
            entries=[
                Entry(posting.ledger_account, -posting.amount)
                for posting in hold.postings.select_related("ledger_account").order_by("pk")
            ],
            idempotency_key=f"refund:{refund.reference}:release",
            memo=f"Refund failed at the provider: {refund.reason}",
            reverses=hold,
        )
        refund.settle_transaction = released.transaction
        # The money is back in the wallet: on a postpaid account it meets the bills again.
        wallet_movement_allocate(movement=released.transaction)
        refund.status = RefundStatus.FAILED
        refund.failure_reason = str(result.payload.get("error", ""))[:300]
        intent.refunded_amount -= refund.amount
    refund.completed_at = now
    refund.save()
    settled = sum(
        intent.refunds.filter(status=RefundStatus.SUCCEEDED).values_list("amount", flat=True),
        Decimal(0),
    )
    intent.status = (
        Status.REFUNDED
        if settled == intent.amount
        else Status.PARTIALLY_REFUNDED
        if settled > 0
        else Status.SUCCEEDED
    )
    intent.save(update_fields=["refunded_amount", "status", "updated_at"])
    audit_record(
        organisation_id=intent.organisation_id,
        property_id=intent.property_id,
        action=f"payment.refund.{refund.status}",
        instance=intent,
        after={"refund": str(refund.uuid), "amount": str(refund.amount)},
    )
    return refund.status


def pending_refunds_retry(*, limit: int = 200) -> dict[str, int]:
    """Ask again about refunds the provider has not confirmed (an error, or still processing)."""
    cutoff = timezone.now() - REFUND_RETRY_EVERY
    due = Refund.objects.filter(status=RefundStatus.PENDING).filter(
        Q(attempted_at__isnull=True, created_at__lt=cutoff) | Q(attempted_at__lt=cutoff)
    )
    counts: dict[str, int] = {}
    for refund_id in due.order_by("created_at").values_list("pk", flat=True)[:limit]:
        status = refund_submit(refund_id=refund_id)
        counts[status] = counts.get(status, 0) + 1
    return counts
