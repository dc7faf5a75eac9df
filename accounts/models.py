import uuid
import zoneinfo
from decimal import Decimal
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Exists, OuterRef, Q

from prepaid.money import CurrencyError, validate_currency
from prepaid.scoping import Role, ScopedQuerySet


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(value: str) -> None:
    if value not in _time_zones():
        raise ValidationError(f"{value!r} is not an IANA time zone such as Asia/Shanghai.")


def validate_currency_code(value: str) -> None:
    try:
        validate_currency(value)
    except CurrencyError as error:
        raise ValidationError(str(error)) from None


validate_country_code = RegexValidator(
    r"^[A-Z]{2}$", "Use an ISO 3166-1 alpha-2 country code such as CN."
)
validate_phone = RegexValidator(
    r"^\+?[0-9][0-9 ()-]{5,22}$", "Enter a phone number such as +86 138 0013 8000."
)


class Organisation(models.Model):
    """A landlord or property-management company: the unit of data isolation."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    # Staff must sign in with a TOTP code as well as their password (owners set it).
    require_two_factor = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class PropertyQuerySet(ScopedQuerySet):
    property_lookup = "pk"


class Property(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="properties"
    )
    name = models.CharField(max_length=200)
    # Short code printed on receipts and statements, e.g. "RSA".
    code = models.CharField(
        max_length=12,
        validators=[RegexValidator(r"^[A-Z0-9-]+$", "Use capitals, digits and dashes.")],
    )
    time_zone = models.CharField(max_length=64, validators=[validate_time_zone])
    currency = models.CharField(max_length=3, validators=[validate_currency_code])
    # Public holidays come from this country's calendar (the `holidays` library).
    country = models.CharField(max_length=2, validators=[validate_country_code])
    address = models.TextField(blank=True)
    # How often its Modbus meters are read.
    poll_interval_minutes = models.PositiveSmallIntegerField(
        default=15, validators=[MinValueValidator(1), MaxValueValidator(60)]
    )
    # Missed polls in a row before a meter is called offline and an alarm opens.
    offline_after_missed_polls = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    # Kilograms of CO2 per kWh of grid electricity, for the tenants' carbon estimate. The default
    # is China's national grid average (MEE, 2022 data); set the local grid's figure.
    carbon_kg_per_kwh = models.DecimalField(
        max_digits=6,
        decimal_places=4,
        default=Decimal("0.5703"),
        validators=[MinValueValidator(0), MaxValueValidator(5)],
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PropertyQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "properties"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "name"], name="property_name_unique"),
            models.UniqueConstraint(fields=["organisation", "code"], name="property_code_unique"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class UnitQuerySet(ScopedQuerySet):
    organisation_lookup = "property__organisation"
    property_lookup = "property"


class Unit(models.Model):
    class Kind(models.TextChoices):
        FLAT = "flat", "Flat"
        SHOP = "shop", "Shop"
        ROOM = "room", "Room"
        OFFICE = "office", "Office"
        COMMON = "common", "Common area"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    property = models.ForeignKey(Property, on_delete=models.PROTECT, related_name="units")
    name = models.CharField(max_length=60)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FLAT)
    floor = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UnitQuerySet.as_manager()

    class Meta:
        ordering = ["property", "name"]
        constraints = [
            models.UniqueConstraint(fields=["property", "name"], name="unit_name_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.property.code} {self.name}"


class TenantQuerySet(ScopedQuerySet):
    def property_filter(self, property_ids) -> Q:
        # Limited staff see tenants who have an account at one of their properties, and tenants
        # with no account yet (registered but not moved in), so a manager can move them in.
        accounts = Account.objects.filter(tenant=OuterRef("pk"))
        return Q(Exists(accounts.filter(unit__property__in=property_ids))) | ~Q(Exists(accounts))


class Tenant(models.Model):
    """A person or business who occupies units through accounts."""

    class Language(models.TextChoices):
        ENGLISH = "en", "English"
        CHINESE_SIMPLIFIED = "zh-hans", "简体中文"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="tenants")
    name = models.CharField(max_length=200)
    phone = models.CharField(max_length=30, blank=True, validators=[validate_phone])
    email = models.EmailField(blank=True)
    preferred_language = models.CharField(
        max_length=10, choices=Language.choices, default=Language.ENGLISH
    )
    # The login for the self-service portal; one person may be a tenant of several landlords.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tenancies",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "user"],
                condition=Q(user__isnull=False),
                name="tenant_user_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class AccountQuerySet(ScopedQuerySet):
    organisation_lookup = "unit__property__organisation"
    property_lookup = "unit__property"


class Account(models.Model):
    """A tenant's occupation of a unit, from move-in to move-out, with its wallet."""

    class Mode(models.TextChoices):
        PREPAID = "prepaid", "Prepaid"
        POSTPAID = "postpaid", "Postpaid"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="accounts")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="accounts")
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.PREPAID)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    # Medical or vulnerable households: never cut off automatically.
    protected = models.BooleanField(default=False)
    wallet = models.OneToOneField(
        "billing.LedgerAccount", on_delete=models.PROTECT, related_name="tenant_account"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["unit"], condition=Q(status="open"), name="account_one_open_per_unit"
            ),
            models.CheckConstraint(
                condition=(Q(status="open") & Q(closed_at__isnull=True))
                | Q(status="closed", closed_at__isnull=False, closed_at__gte=models.F("opened_at")),
                name="account_closed_has_valid_date",
            ),
        ]
        indexes = [models.Index(fields=["unit", "opened_at"], name="account_unit_opened")]

    def __str__(self) -> str:
        return f"{self.tenant} @ {self.unit}"


class Membership(models.Model):
    """A staff user's place in an organisation: a role, optionally limited to some properties."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # One organisation per staff user keeps "the caller's organisation" unambiguous.
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership"
    )
    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="memberships"
    )
    role = models.CharField(max_length=12, choices=Role.choices)
    # Empty means every property of the organisation.
    properties = models.ManyToManyField(Property, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()}, {self.organisation})"


class PropertyHoliday(models.Model):
    """A property's own day off on top of its country's public holidays."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["date"]
        constraints = [
            models.UniqueConstraint(fields=["property", "date"], name="property_holiday_unique")
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.name}"
