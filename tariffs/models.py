import uuid

from django.conf import settings
from django.db import models

from meters.models import Meter
from prepaid.scoping import ScopedQuerySet


class TariffQuerySet(ScopedQuerySet):
    organisation_lookup = "property__organisation"
    property_lookup = "property"


class Tariff(models.Model):
    """What a property charges for one utility. Its prices live in dated, immutable versions."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    property = models.ForeignKey(
        "accounts.Property", on_delete=models.PROTECT, related_name="tariffs"
    )
    utility = models.CharField(max_length=12, choices=Meter.Utility.choices)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TariffQuerySet.as_manager()

    class Meta:
        ordering = ["property", "utility"]
        constraints = [
            models.UniqueConstraint(fields=["property", "utility"], name="tariff_one_per_utility")
        ]

    def __str__(self) -> str:
        return self.name


class TariffVersion(models.Model):
    """Prices in force from `effective_from` until the next version of the same tariff.

    Bands and periods are stored as the pricing engine's data, validated by it on the way in:
    bands `[{"limit": "100" | null, "price": "1.00"}]`, periods
    `{"weekday": [{"name": "peak", "start": "08:00", "end": "22:00", "price": "1.20"}], ...}`.
    """

    class Kind(models.TextChoices):
        FLAT = "flat", "Flat"
        TIERED = "tiered", "Tiered"
        TOU = "tou", "Time of use"
        TOU_TIERED = "tou_tiered", "Time of use with tier surcharges"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="versions")
    effective_from = models.DateTimeField()
    kind = models.CharField(max_length=12, choices=Kind.choices)
    flat_price = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    bands = models.JSONField(default=list, blank=True)
    periods = models.JSONField(default=dict, blank=True)
    standing_charge_per_day = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    tax_rate = models.DecimalField(max_digits=6, decimal_places=4, default=0)
    prices_include_tax = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["tariff", "effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["tariff", "effective_from"], name="tariff_version_unique_start"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tariff} from {self.effective_from:%Y-%m-%d %H:%M}"
