import uuid

from django.db import models
from django.db.models import Q

from prepaid.scoping import ScopedQuerySet


class MeterQuerySet(ScopedQuerySet):
    organisation_lookup = "organisation"
    # Meters in stock (no unit) are visible only to staff who see every property.
    property_lookup = "unit__property"


class Meter(models.Model):
    class Utility(models.TextChoices):
        ELECTRICITY = "electricity", "Electricity"
        WATER = "water", "Water"

    REGISTER_UNITS = {Utility.ELECTRICITY: "kWh", Utility.WATER: "m³"}

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="meters"
    )
    serial = models.CharField(max_length=64)
    utility = models.CharField(max_length=12, choices=Utility.choices)
    unit = models.ForeignKey(
        "accounts.Unit", null=True, blank=True, on_delete=models.PROTECT, related_name="meters"
    )
    installed_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    # A relay for electricity, a valve for water: remote cut-off and restore.
    has_relay = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MeterQuerySet.as_manager()

    class Meta:
        ordering = ["serial"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "serial"], name="meter_serial_unique"),
            # One meter of each utility in service per unit at a time.
            models.UniqueConstraint(
                fields=["unit", "utility"],
                condition=Q(unit__isnull=False, removed_at__isnull=True),
                name="meter_one_active_per_unit_utility",
            ),
            # A meter is installed in a unit from a moment, or sits in stock with neither.
            models.CheckConstraint(
                condition=Q(unit__isnull=True, installed_at__isnull=True)
                | Q(unit__isnull=False, installed_at__isnull=False),
                name="meter_installed_has_unit_and_date",
            ),
            models.CheckConstraint(
                condition=Q(removed_at__isnull=True)
                | Q(installed_at__isnull=False, removed_at__gte=models.F("installed_at")),
                name="meter_removed_after_installed",
            ),
        ]

    def __str__(self) -> str:
        return self.serial

    @property
    def register_unit(self) -> str:
        return self.REGISTER_UNITS[self.utility]
