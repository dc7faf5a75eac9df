"""Telling tenants: one notification per channel, rendered once, delivered with retries.

`notify` records what to send and hands email and SMS to the `notify` queue after commit, so a
slow or failing provider never holds up the billing that caused the message. `notification_send`
delivers one message; a failure is logged and retried with backoff (RETRY_DELAYS), and the
message fails for good after the last attempt. `notifications_retry_due`, run every minute by
beat, puts due messages back on the queue, so neither a failure nor a lost task strands one.

Delivery is at least once: a worker that dies after the provider took a message but before the
commit leaves it queued, and it is sent again when its lease runs out (REQUEUE_AFTER).
"""

import logging
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from accounts.models import Account, Tenant
from notifications import texts
from notifications.delivery import Attachment, DeliveryError, deliver
from notifications.events import ATTACHMENTS
from notifications.models import Channel, ChannelPreference, Notification
from notifications.selectors import channel_preference, portal_messages, routes
from notifications.tasks import send_notification
from prepaid.audit.services import only_fields, update_audited

logger = logging.getLogger(__name__)

Status = Notification.Status
# How long after each failed attempt the next one is made; after the last, the message fails.
RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# A due message enqueued longer ago than this was lost (a worker died, the broker forgot it),
# so the sweep enqueues it again. Well beyond the send task's time limit.
REQUEUE_AFTER = timedelta(minutes=10)
RETRY_BATCH = 500
CHANNEL_FIELDS = ("email", "sms", "portal")
KEY_MAX_LENGTH = Notification._meta.get_field("idempotency_key").max_length
SENT_FIELDS = (
    "status", "sent_at", "attempts", "provider_message_id", "next_attempt_at", "enqueued_at",
)  # fmt: skip


@transaction.atomic
def notify(
    *, account_id: int, event: str, context: dict, idempotency_key: str
) -> list[Notification]:
    """Tell an account's tenant about an event on every channel they chose and can be reached
    on. The same key returns the notifications made the first time and sends nothing again."""
    texts.validate_context(event=event, context=context)
    if not 0 < len(idempotency_key) <= KEY_MAX_LENGTH:
        raise ValidationError(
            {"idempotency_key": f"Give a key of 1 to {KEY_MAX_LENGTH} characters."}
        )
    existing = _existing(idempotency_key, account_id=account_id, event=event)
    if existing:
        return existing
    account = (
        Account.objects.select_related("tenant__notification_channels", "unit__property")
        .filter(pk=account_id)
        .first()
    )
    if account is None:
        raise ValidationError({"account": f"There is no account {account_id}."})
    if account.status != Account.Status.OPEN:
        raise ValidationError({"account": "Notifications go to the tenants of open accounts."})
    tenant, prop = account.tenant, account.unit.property
    language = texts.language_for(tenant.preferred_language)
    text = texts.render(
        event=event,
        language=language,
        context=context,
        recipient=texts.Recipient(
            tenant_name=tenant.name,
            property_name=prop.name,
            property_code=prop.code,
            unit_name=account.unit.name,
            time_zone=prop.time_zone,
        ),
    )
    now = timezone.now()
    rows = []
    for route in routes(tenant=tenant, preference=channel_preference(tenant=tenant)):
        portal, sms = route.channel == Channel.PORTAL, route.channel == Channel.SMS
        rows.append(
            Notification(
                account=account,
                tenant=tenant,
                event=event,
                channel=route.channel,
                recipient=route.recipient,
                language=language,
                template=texts.template_name(event=event, language=language),
                subject="" if sms else text.subject,
                body=text.sms if sms else text.body,
                context=context,
                idempotency_key=idempotency_key,
                # The portal delivers by storing: the message is there for the tenant now.
                status=Status.SENT if portal else Status.QUEUED,
                attempts=1 if portal else 0,
                sent_at=now if portal else None,
                next_attempt_at=None if portal else now,
                enqueued_at=None if portal else now,
            )
        )
    try:
        with transaction.atomic():
            created = Notification.objects.bulk_create(rows)
    except IntegrityError:
        # The same key, told at the same moment by another worker, which committed first.
        return _existing(idempotency_key, account_id=account_id, event=event)
    for notification in created:
        if notification.status == Status.QUEUED:
            _enqueue(notification.pk)
    return created


def _existing(idempotency_key: str, *, account_id: int, event: str) -> list[Notification]:
    found = list(Notification.objects.filter(idempotency_key=idempotency_key).order_by("pk"))
    if any(row.account_id != account_id or row.event != event for row in found):
        raise ValidationError(
            {"idempotency_key": "This key was already used for another account or event."}
        )
    return found


def _enqueue(notification_id: int) -> None:
    transaction.on_commit(lambda: send_notification.delay(notification_id))


def notification_send(*, notification_id: int) -> str:
    """Deliver one queued, due message and record how it went. Returns its status, or why
    nothing was done. Safe to run twice, and concurrently: the row is locked while it is sent,
    and a second worker finding it locked leaves it alone."""
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(skip_locked=True)
            .filter(pk=notification_id)
            .first()
        )
        if notification is None:
            exists = Notification.objects.filter(pk=notification_id).exists()
            return "busy" if exists else "missing"
        now = timezone.now()
        if notification.status != Status.QUEUED:
            return notification.status
        if notification.next_attempt_at is not None and notification.next_attempt_at > now:
            return "not due"
        try:
            message_id = deliver(
                channel=notification.channel,
                recipient=notification.recipient,
                subject=notification.subject,
                body=notification.body,
                attachments=_attachments(notification),
            )
        except DeliveryError as error:
            logger.warning("Notification %s not delivered: %s", notification.uuid, error)
            _record_failure(notification, str(error), permanent=error.permanent)
        except Exception as error:
            # Whatever the email backend or provider raised: recorded and retried like any
            # refusal, never allowed to leave the message queued without counting the attempt.
            logger.exception("Notification %s not delivered", notification.uuid)
            _record_failure(notification, f"{type(error).__name__}: {error}", permanent=False)
        else:
            _record_sent(notification, message_id)
        return notification.status


def _attachments(notification: Notification) -> list[Attachment]:
    """The files the message carries, made now from its context: email only."""
    hook = ATTACHMENTS.get(notification.event)
    if hook is None or notification.channel != Channel.EMAIL:
        return []
    return import_string(hook)(context=notification.context, language=notification.language)


def _record_sent(notification: Notification, message_id: str) -> None:
    notification.status, notification.sent_at = Status.SENT, timezone.now()
    notification.attempts += 1
    notification.provider_message_id = message_id[:200]
    notification.next_attempt_at = notification.enqueued_at = None
    notification.save(update_fields=SENT_FIELDS)


def _record_failure(notification: Notification, error: str, *, permanent: bool) -> None:
    notification.attempts += 1
    notification.last_error = error[:500]
    # The task that brought it here is done: the sweep enqueues the next attempt when it is due.
    notification.enqueued_at = None
    if permanent or notification.attempts >= MAX_ATTEMPTS:
        notification.status, notification.next_attempt_at = Status.FAILED, None
    else:
        delay = RETRY_DELAYS[notification.attempts - 1]
        notification.next_attempt_at = timezone.now() + delay
    notification.save(
        update_fields=["attempts", "last_error", "enqueued_at", "status", "next_attempt_at"]
    )


def notifications_retry_due(*, now: datetime | None = None) -> int:
    """Enqueue every queued message that is due and not already waiting on the queue (or
    waited there so long that its task was lost). Returns how many were enqueued."""
    now = now or timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            ids = list(
                Notification.objects.select_for_update(skip_locked=True)
                .filter(status=Status.QUEUED, next_attempt_at__lte=now)
                .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=now - REQUEUE_AFTER))
                .order_by("next_attempt_at")
                .values_list("pk", flat=True)[:RETRY_BATCH]
            )
            Notification.objects.filter(pk__in=ids).update(enqueued_at=now)
            for notification_id in ids:
                _enqueue(notification_id)
        total += len(ids)
        if len(ids) < RETRY_BATCH:
            return total


@transaction.atomic
def notifications_retry_failed(*, notification_ids: list[int], actor) -> int:
    """Give failed email and SMS messages a fresh set of attempts, now (staff, after fixing
    what made them fail). Audited per message. Returns how many were requeued."""
    now = timezone.now()
    failed = (
        Notification.objects.select_for_update(of=("self",))
        .select_related("account__unit__property")
        .filter(pk__in=notification_ids, status=Status.FAILED)
        .exclude(channel=Channel.PORTAL)
        .order_by("pk")
    )
    count = 0
    for notification in failed:
        update_audited(
            instance=notification,
            changes={"status": Status.QUEUED, "attempts": 0, "next_attempt_at": now},
            actor=actor,
            action="notification.retry",
            organisation_id=notification.account.unit.property.organisation_id,
            property_id=notification.account.unit.property_id,
        )
        Notification.objects.filter(pk=notification.pk).update(enqueued_at=now)
        _enqueue(notification.pk)
        count += 1
    return count


@transaction.atomic
def portal_message_read(*, notification: Notification, tenant_user) -> Notification:
    """Mark a portal message read by the tenant it was sent to; the first reading counts.
    Another tenant's message, or one not in the portal, is not found."""
    message = portal_messages(tenant_user=tenant_user).select_for_update().get(pk=notification.pk)
    if message.read_at is None:
        message.read_at = timezone.now()
        message.save(update_fields=["read_at"])
    return message


@transaction.atomic
def channel_preference_update(*, tenant: Tenant, actor, **changes: bool) -> ChannelPreference:
    """Choose which channels a tenant is told on (email, sms, portal); audited."""
    only_fields(changes, CHANNEL_FIELDS)
    preference, _ = ChannelPreference.objects.select_for_update().get_or_create(tenant=tenant)
    update_audited(
        instance=preference,
        changes=changes,
        actor=actor,
        action="notification_channels.update",
        organisation_id=tenant.organisation_id,
    )
    return preference
