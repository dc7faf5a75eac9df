import uuid

from django.conf import settings
from django.db import models

from prepaid.scoping import ScopedQuerySet


class AuditLog(models.Model):
    """One append-only record of a change, written by a service in the change's transaction.

    The database refuses UPDATE and DELETE on this table (see the migration), so history cannot
    be rewritten, not even by code that bypasses the ORM.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Led by the organisation indexes below.
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # Set when the change belongs to one property, so staff limited to properties see it.
    property = models.ForeignKey(
        "accounts.Property", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Null for changes made by the system itself (schedules, workers, seeding).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organisation", "created_at"], name="audit_org_time"),
            models.Index(
                fields=["organisation", "action", "created_at"], name="audit_org_action_time"
            ),
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_id}"
