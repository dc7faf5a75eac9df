import builtins
import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from prepaid.scoping import ScopedQuerySet


class ExportJobQuerySet(ScopedQuerySet):
    organisation_lookup = "organisation"
    property_lookup = "property"


class ExportJob(models.Model):
    """A report export too large to stream in the request, written by a worker on the `reports`
    queue into a file under `REPORT_EXPORT_DIR` and kept for `REPORT_EXPORT_KEEP_HOURS`.

    A run claims the job by raising `attempts`; every later write of that run is conditional on
    its attempt, so a redelivered task starts the file again from scratch and a run overtaken by
    a newer one changes nothing.
    """

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        XLSX = "xlsx", "XLSX"

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")
        EXPIRED = "expired", _("Expired")

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Led by the (organisation, created_at) index.
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    property = models.ForeignKey("accounts.Property", on_delete=models.PROTECT, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The report's slug in `reports.catalogue.REPORTS`.
    report = models.CharField(max_length=64)
    # The report form's data as submitted: {field: value, or a list of values}.
    filters = models.JSONField()
    format = models.CharField(max_length=4, choices=Format.choices)
    # The language of the labels, as the requester read the page.
    language = models.CharField(max_length=16)
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    rows_total = models.PositiveIntegerField(default=0)
    rows_written = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    # The file's name inside REPORT_EXPORT_DIR, once done.
    file = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = ExportJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organisation", "created_at"], name="export_job_org_time"),
            models.Index(fields=["state", "expires_at"], name="export_job_expiry"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(format__in=["csv", "xlsx"]), name="export_job_format"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.report} {self.format} {self.uuid}"

    # `property` is the field here.
    @builtins.property
    def in_progress(self) -> bool:
        return self.state in (self.State.QUEUED, self.State.RUNNING)

    @builtins.property
    def percent(self) -> int:
        if self.state == self.State.DONE:
            return 100
        if not self.rows_total:
            return 0
        return min(100, self.rows_written * 100 // self.rows_total)
