import uuid

from django.db import models
from django.db.models import Q

from accounts.models import Tenant
from notifications.events import Event
from prepaid.scoping import ScopedQuerySet


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    PORTAL = "portal", "Portal"


class NotificationQuerySet(ScopedQuerySet):
    organisation_lookup = "account__unit__property__organisation"
    property_lookup = "account__unit__property"


class Notification(models.Model):
    """One message to a tenant on one channel: what was sent, to whom, and how delivery went.

    The subject and body are rendered when the row is made, in the tenant's language, so the log
    holds exactly what the tenant got. Email and SMS start queued and are sent by the `notify`
    queue, with retries; portal messages are delivered the moment they exist.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.PROTECT, related_name="notifications"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="notifications")
    event = models.CharField(max_length=30, choices=Event.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    # An email address or an E.164 phone number; empty for the portal, where the tenant is it.
    recipient = models.CharField(max_length=254, blank=True)
    language = models.CharField(max_length=10, choices=Tenant.Language.choices)
    template = models.CharField(max_length=100)
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    context = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    # While queued: when the next attempt may be made.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When a send task was last put on the queue; empty once a worker has taken it and failed,
    # so the retry sweep knows which due messages already wait on the queue.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(max_length=200, blank=True)
    # The caller's key: the same event told twice is one notification per channel.
    idempotency_key = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key", "channel"], name="notification_key_channel_unique"
            ),
            models.CheckConstraint(
                condition=Q(status="queued") | Q(next_attempt_at__isnull=True),
                name="notification_only_queued_is_due",
            ),
        ]
        indexes = [
            # The retry sweep: queued messages by when they are due.
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="queued"), name="notification_due"
            ),
            models.Index(fields=["account", "created_at"], name="notification_account"),
            # A tenant's portal inbox.
            models.Index(
                fields=["tenant", "created_at"],
                condition=Q(channel="portal"),
                name="notification_portal_inbox",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} by {self.channel} to {self.recipient or self.tenant_id}"


class ChannelPreferenceQuerySet(ScopedQuerySet):
    organisation_lookup = "tenant__organisation"

    def property_filter(self, property_ids) -> Q:
        # Whoever may see the tenant may see how the tenant is told.
        return Q(tenant__in=Tenant.objects.filter(Tenant.objects.property_filter(property_ids)))


class ChannelPreference(models.Model):
    """The channels a tenant chose to be told on. Without a row, every channel is on; a channel
    is used only when the tenant can be reached on it (email needs an address, SMS a phone
    number; the portal always can)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.OneToOneField(
        Tenant, on_delete=models.CASCADE, related_name="notification_channels"
    )
    email = models.BooleanField(default=True)
    sms = models.BooleanField(default=True)
    portal = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ChannelPreferenceQuerySet.as_manager()

    def __str__(self) -> str:
        chosen = [channel.label for channel in Channel if getattr(self, channel.value)]
        return f"{self.tenant}: {', '.join(chosen) or 'no channels'}"

    def chosen(self, channel: str) -> bool:
        return getattr(self, Channel(channel).value)
