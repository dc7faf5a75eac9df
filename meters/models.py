import uuid
from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone

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
    # A household or shop draws far less than this; a register that jumps more is faulty.
    DEFAULT_MAX_PER_HOUR = {Utility.ELECTRICITY: Decimal(100), Utility.WATER: Decimal(10)}

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
    # The register counts up to this value and starts again from zero (e.g. 100000 on a
    # five-digit register); null when it never wraps in practice.
    register_rollover = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    # More consumption than this per hour between two readings is a fault, not usage.
    max_per_hour = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
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

    @property
    def plausible_per_hour(self) -> Decimal:
        return self.max_per_hour or self.DEFAULT_MAX_PER_HOUR[self.utility]


class ReadingQuerySet(ScopedQuerySet):
    organisation_lookup = "meter__organisation"
    property_lookup = "meter__unit__property"


class Reading(models.Model):
    """A cumulative register value as the meter reported it at one moment.

    Readings arrive from pollers, MQTT, HTTP pushes and people, in any order. Charging takes the
    new ones in time order per meter and marks each accepted, rejected (with the reason) or late.
    """

    class Source(models.TextChoices):
        MODBUS = "modbus", "Modbus"
        MQTT = "mqtt", "MQTT"
        HTTP = "http", "HTTP"
        MANUAL = "manual", "Manual"

    class Status(models.TextChoices):
        NEW = "new", "Not yet charged"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected as an anomaly"
        # Older than what was already charged: kept for the record, its span was charged.
        LATE = "late", "Arrived after its span was charged"

    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="readings")
    taken_at = models.DateTimeField()
    register = models.DecimalField(max_digits=20, decimal_places=6)
    power_w = models.FloatField(null=True, blank=True)
    voltage_v = models.FloatField(null=True, blank=True)
    current_a = models.FloatField(null=True, blank=True)
    relay_closed = models.BooleanField(null=True, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    received_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    reason = models.CharField(max_length=200, blank=True)

    objects = ReadingQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["meter", "taken_at"], name="reading_unique_time"),
            models.CheckConstraint(condition=Q(register__gte=0), name="reading_register_positive"),
        ]
        indexes = [
            models.Index(
                fields=["meter", "taken_at"], condition=Q(status="new"), name="reading_new"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.taken_at:%Y-%m-%d %H:%M} {self.register}"


class VacantConsumption(models.Model):
    """Consumption of a meter while no tenant account occupied its unit: nobody is charged,
    but the landlord sees it."""

    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="vacant_consumption")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    quantity = models.DecimalField(max_digits=20, decimal_places=6)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["meter", "period_start"], name="vacant_unique_start")
        ]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.quantity}"
