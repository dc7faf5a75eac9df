import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from meters.detectors import rules as detector_rules
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
    # How it is read: a Modbus unit behind a gateway, read with a profile.
    gateway = models.ForeignKey(
        "Gateway", null=True, blank=True, on_delete=models.PROTECT, related_name="meters"
    )
    modbus_unit = models.PositiveSmallIntegerField(null=True, blank=True)
    profile = models.ForeignKey(
        "MeterProfile", null=True, blank=True, on_delete=models.PROTECT, related_name="meters"
    )
    # Or it reports over MQTT: one channel of a device (a meter, a plug, a multi-channel module).
    mqtt_device = models.ForeignKey(
        "MqttDevice", null=True, blank=True, on_delete=models.PROTECT, related_name="meters"
    )
    mqtt_channel = models.PositiveSmallIntegerField(default=0)
    # A Tasmota SML script's register, "Group.Key" (e.g. "SML.Total_in"), instead of ENERGY.
    mqtt_sml_key = models.CharField(max_length=100, blank=True)
    # What polling last saw. The relay state is the confirmed one, never the desired one.
    online = models.BooleanField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    missed_polls = models.PositiveIntegerField(default=0)
    relay_closed = models.BooleanField(null=True, blank=True)
    relay_confirmed_at = models.DateTimeField(null=True, blank=True)
    # The meter upstream that feeds this one (a group's feeder, or the property's main meter
    # when it is not the property's main meter itself): losses compare a feeder's day with the
    # sum of the meters it feeds.
    feeder = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="fed_meters"
    )
    # The contracted power limit of the supply this meter measures, in watts; above it for
    # long is an overload.
    power_limit_w = models.PositiveIntegerField(null=True, blank=True)
    # It may put energy back into the grid (solar panels): export and reverse power are normal.
    exports_energy = models.BooleanField(default=False, db_default=False)
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
            models.UniqueConstraint(
                fields=["gateway", "modbus_unit"],
                condition=Q(gateway__isnull=False),
                name="meter_one_per_gateway_unit",
            ),
            models.UniqueConstraint(
                fields=["mqtt_device", "mqtt_channel"],
                condition=Q(mqtt_device__isnull=False),
                name="meter_one_per_mqtt_channel",
            ),
            models.CheckConstraint(
                condition=Q(mqtt_device__isnull=True) | Q(gateway__isnull=True),
                name="meter_one_transport",
            ),
            # Modbus serial addresses 1 to 247; a meter behind a gateway has one.
            models.CheckConstraint(
                condition=Q(gateway__isnull=True, modbus_unit__isnull=True)
                | Q(gateway__isnull=False, modbus_unit__gte=1, modbus_unit__lte=247),
                name="meter_modbus_unit_valid",
            ),
            models.CheckConstraint(
                condition=Q(removed_at__isnull=True)
                | Q(installed_at__isnull=False, removed_at__gte=models.F("installed_at")),
                name="meter_removed_after_installed",
            ),
            models.CheckConstraint(
                condition=Q(feeder__isnull=True) | ~Q(feeder=models.F("pk")),
                name="meter_not_its_own_feeder",
            ),
            models.CheckConstraint(
                condition=Q(power_limit_w__isnull=True) | Q(power_limit_w__gte=1),
                name="meter_power_limit_positive",
                violation_error_message=_("The power limit must be at least 1 W."),
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
    # A value someone estimated (or the meter substituted) rather than read: charged like any
    # other, never trusted by the detectors.
    estimated = models.BooleanField(default=False, db_default=False)
    # The export register (energy back into the grid), when the meter reports one.
    export_register = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    # The meter's own alarm flags with this reading ("cover_open", "reverse"...).
    flags = models.JSONField(null=True, blank=True)

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


class MeterProfileQuerySet(models.QuerySet):
    def for_scope(self, scope):
        """Built-in profiles, shared by everyone, and the organisation's own."""
        return self.filter(Q(organisation__isnull=True) | Q(organisation_id=scope.organisation_id))


class MeterProfile(models.Model):
    """How to read one meter model and switch its relay, as data (see
    meters.protocols.modbus_profile). A new model needs a new profile, never new code."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Null for the built-in profiles every organisation can use.
    organisation = models.ForeignKey(
        "accounts.Organisation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    name = models.CharField(max_length=100)
    definition = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MeterProfileQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(organisation__isnull=True),
                name="profile_builtin_unique",
            ),
            models.UniqueConstraint(
                fields=["organisation", "name"],
                condition=Q(organisation__isnull=False),
                name="profile_name_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class GatewayQuerySet(ScopedQuerySet):
    organisation_lookup = "organisation"
    property_lookup = "property"


class Gateway(models.Model):
    """A Modbus connection: a TCP gateway with many RS485 meters behind it, a meter that speaks
    Modbus TCP itself, or a serial port on this machine."""

    class Framer(models.TextChoices):
        TCP = "tcp", "Modbus TCP"
        RTU_OVER_TCP = "rtu_over_tcp", "RTU over TCP (transparent gateway)"
        SERIAL = "serial", "RTU on a local serial port"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="gateways"
    )
    property = models.ForeignKey(
        "accounts.Property", on_delete=models.PROTECT, related_name="gateways"
    )
    name = models.CharField(max_length=100)
    framer = models.CharField(max_length=12, choices=Framer.choices, default=Framer.TCP)
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(default=502)
    serial_port = models.CharField(max_length=100, blank=True)
    baudrate = models.PositiveIntegerField(default=9600)
    timeout_ms = models.PositiveIntegerField(default=1000)
    retries = models.PositiveSmallIntegerField(default=1)
    # RS485 is half duplex: a pause between requests lets slow buses settle.
    gap_ms = models.PositiveIntegerField(default=20)
    enabled = models.BooleanField(default=True)
    # When a poll of its meters was last handed to a worker.
    last_polled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = GatewayQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "name"], name="gateway_name_unique"),
            models.CheckConstraint(
                condition=(Q(framer="serial") & ~Q(serial_port=""))
                | (~Q(framer="serial") & ~Q(host="") & Q(port__gte=1, port__lte=65535)),
                name="gateway_address_complete",
            ),
            models.CheckConstraint(condition=Q(timeout_ms__gte=50), name="gateway_timeout_sane"),
        ]

    def __str__(self) -> str:
        return self.name


class AlarmQuerySet(ScopedQuerySet):
    organisation_lookup = "organisation"
    property_lookup = "property"


class Alarm(models.Model):
    class Kind(models.TextChoices):
        OFFLINE = "offline", _("Meter offline")
        COMMAND_FAILED = "command_failed", _("Relay command failed")
        ANOMALY = "anomaly", _("Reading anomaly")
        TAMPER = "tamper", _("Tamper")
        REJECTED_INPUT = "rejected_input", _("Rejected input")
        # Raised by the detectors (meters.detection), with evidence.
        BYPASS = "bypass", _("Consumption while cut off")
        REVERSE = "reverse", _("Reverse flow or export")
        SPIKE = "spike", _("Consumption spike")
        FLATLINE = "flatline", _("No consumption")
        OVERLOAD = "overload", _("Overload")
        LOSS = "loss", _("Energy loss")

    DETECTED = (
        Kind.BYPASS,
        Kind.TAMPER,
        Kind.REVERSE,
        Kind.SPIKE,
        Kind.FLATLINE,
        Kind.OVERLOAD,
        Kind.LOSS,
    )

    class Severity(models.TextChoices):
        INFO = "info", _("Info")
        WARNING = "warning", _("Warning")
        CRITICAL = "critical", _("Critical")

    class Action(models.TextChoices):
        """What staff should do about a detected alarm (the alarm page says it in full)."""

        INSPECT_BYPASS = "inspect_bypass", _("Inspect for a bypass")
        INSPECT_TAMPER = "inspect_tamper", _("Inspect for tampering")
        CHECK_WIRING = "check_wiring", _("Check the wiring")
        ASK_TENANT = "ask_tenant", _("Ask the tenant")
        TEST_METER = "test_meter", _("Test the meter")
        REDUCE_LOAD = "reduce_load", _("Reduce the load")
        FIND_LOSS = "find_loss", _("Find the loss")

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="+"
    )
    property = models.ForeignKey(
        "accounts.Property", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    meter = models.ForeignKey(
        Meter, null=True, blank=True, on_delete=models.PROTECT, related_name="alarms"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    message = models.CharField(max_length=500)
    opened_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True)
    # What a detector saw: the rule that fired (with its figures) and the series, as a chart.
    evidence = models.JSONField(default=dict, blank=True)
    suggested_action = models.CharField(max_length=20, choices=Action.choices, blank=True)

    objects = AlarmQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # Raising an alarm that is already open adds nothing.
            models.UniqueConstraint(
                fields=["meter", "kind"],
                condition=Q(closed_at__isnull=True, meter__isnull=False),
                name="alarm_one_open_per_meter_kind",
            )
        ]
        indexes = [
            models.Index(fields=["organisation", "closed_at", "opened_at"], name="alarm_inbox")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.message}"


class MqttDeviceQuerySet(ScopedQuerySet):
    organisation_lookup = "organisation"
    property_lookup = "property"


class MqttDevice(models.Model):
    """Something that talks to our broker with its own login: a 4G meter, a smart plug, a DIN-rail
    module or a data concentrator. Its meters are its channels.

    `key` is how the device names itself in its topics, by format: the serial (native), the
    Tasmota topic, the Shelly prefix, the Zigbee2MQTT friendly name or the emonhub node.
    Topics are one namespace on the broker, so (format, key) is unique across organisations.
    """

    class Format(models.TextChoices):
        NATIVE = "native", "prepaid native (meters/<serial>/...)"
        TASMOTA = "tasmota", "Tasmota"
        SHELLY = "shelly", "Shelly Gen2 / Pro"
        ZIGBEE2MQTT = "zigbee2mqtt", "Zigbee2MQTT"
        EMONHUB = "emonhub", "OpenEnergyMonitor emonhub"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="mqtt_devices"
    )
    property = models.ForeignKey(
        "accounts.Property", on_delete=models.PROTECT, related_name="mqtt_devices"
    )
    name = models.CharField(max_length=100)
    format = models.CharField(max_length=12, choices=Format.choices)
    key = models.CharField(max_length=100)
    # The broker login. Only a Mosquitto-format hash is kept; the password is shown once.
    username = models.CharField(max_length=64, unique=True)
    password_hash = models.CharField(max_length=255)
    credentials_rotated_at = models.DateTimeField()
    online = models.BooleanField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MqttDeviceQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["format", "key"], name="mqtt_device_topic_unique"),
            models.UniqueConstraint(
                fields=["organisation", "name"], name="mqtt_device_name_unique"
            ),
            # Keys become topic levels: no wildcards, separators or control characters.
            models.CheckConstraint(
                condition=Q(key__regex=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"),
                name="mqtt_device_key_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class MqttRejection(models.Model):
    """How often a topic's messages were dropped, per reason. The device is set when the topic
    is one of ours; unknown topics and devices are counted too, for operators."""

    device = models.ForeignKey(
        MqttDevice, null=True, blank=True, on_delete=models.CASCADE, related_name="rejections"
    )
    # The topic's device part ("tasmota:plug-7") or, when no device could be told, the topic.
    source = models.CharField(max_length=200)
    reason = models.CharField(max_length=100)
    count = models.PositiveIntegerField(default=0)
    example = models.CharField(max_length=300, blank=True)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        ordering = ["-last_at"]
        constraints = [
            models.UniqueConstraint(fields=["source", "reason"], name="mqtt_rejection_unique")
        ]

    def __str__(self) -> str:
        return f"{self.source}: {self.reason} x{self.count}"


class RelayCommandQuerySet(ScopedQuerySet):
    organisation_lookup = "meter__organisation"
    property_lookup = "meter__unit__property"


class RelayCommand(models.Model):
    """A wish for a meter's relay (or valve) to be closed or open, and how it went.

    queued -> sent -> confirmed, or failed, or expired; a newer command supersedes an active
    one, so the latest wish wins and a stale one never overrides it.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        CONFIRMED = "confirmed", "Confirmed"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"
        SUPERSEDED = "superseded", "Superseded"

    ACTIVE = (State.QUEUED, State.SENT)

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="relay_commands")
    # True: close the relay (restore supply); False: open it (cut off).
    close = models.BooleanField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED)
    reason = models.CharField(max_length=300)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    deadline = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # A staff form's or an API client's key: the same request sent twice issues one command.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)

    objects = RelayCommandQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["meter"], condition=Q(state__in=["queued", "sent"]), name="relay_one_active"
            )
        ]

    def __str__(self) -> str:
        return f"{'restore' if self.close else 'cut off'} {self.meter_id} ({self.state})"


class MeterRejection(models.Model):
    """How often a meter sent something unusable, per reason: the rejected input staff see."""

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="rejections")
    reason = models.CharField(max_length=200)
    count = models.PositiveIntegerField(default=0)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        ordering = ["-last_at"]
        constraints = [
            models.UniqueConstraint(fields=["meter", "reason"], name="meter_rejection_unique")
        ]

    def __str__(self) -> str:
        return f"{self.meter_id}: {self.reason} x{self.count}"


class Finding(models.Model):
    """An anomaly a detector found, by its key, and the alarm it raised or added to.

    The key names the anomaly (its kind, meter and when it began), so detection over the same
    data finds the same keys: a repeat raises nothing, whether that alarm is still open or was
    resolved since.
    """

    key = models.CharField(max_length=200, unique=True)
    alarm = models.ForeignKey(Alarm, on_delete=models.CASCADE, related_name="findings")
    found_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.key


class LossDay(models.Model):
    """A feeder's local day: what it measured, what the units it feeds measured together, and
    so the loss between them, give or take the margin that gaps across a midnight leave. Only
    days every meter involved covered are kept."""

    property = models.ForeignKey(
        "accounts.Property", on_delete=models.CASCADE, related_name="loss_days"
    )
    # The feeder is known by its unit, so it stays the same feeder when its meter is replaced.
    feeder_unit = models.ForeignKey(
        "accounts.Unit", on_delete=models.CASCADE, related_name="loss_days"
    )
    day = models.DateField()
    feeder_quantity = models.DecimalField(max_digits=16, decimal_places=3)
    fed_quantity = models.DecimalField(max_digits=16, decimal_places=3)
    margin = models.DecimalField(max_digits=16, decimal_places=3, default=0)
    fed_units = models.PositiveIntegerField()

    class Meta:
        ordering = ["feeder_unit", "day"]
        constraints = [
            models.UniqueConstraint(fields=["feeder_unit", "day"], name="loss_day_unique")
        ]
        indexes = [models.Index(fields=["property", "day"], name="loss_day_property")]

    def __str__(self) -> str:
        return f"{self.feeder_unit_id} {self.day}: {self.feeder_quantity} / {self.fed_quantity}"


def _positive(places: str) -> list:
    return [MinValueValidator(Decimal(places))]


class DetectorSettings(models.Model):
    """A property's detector rules (meters.detectors.rules). A property without a row uses
    the defaults; `rules()` gives them to the pure detectors."""

    class LimitSource(models.TextChoices):
        METER = detector_rules.LimitSource.METER, _("Each meter's contracted limit")
        PROPERTY = detector_rules.LimitSource.PROPERTY, _("The property's limit, for every meter")
        METER_OR_PROPERTY = (
            detector_rules.LimitSource.METER_OR_PROPERTY,
            _("Each meter's contracted limit, else the property's"),
        )

    property = models.OneToOneField(
        "accounts.Property", on_delete=models.CASCADE, related_name="detector_settings"
    )
    max_gap_minutes = models.PositiveSmallIntegerField(
        default=detector_rules.MAX_GAP_MINUTES,
        validators=[MinValueValidator(5), MaxValueValidator(24 * 60)],
    )
    bypass_enabled = models.BooleanField(default=True)
    bypass_tolerance = models.DecimalField(
        max_digits=8,
        decimal_places=3,
        default=detector_rules.BYPASS_TOLERANCE,
        validators=_positive("0"),
    )
    tamper_enabled = models.BooleanField(default=True)
    reverse_power_w = models.PositiveIntegerField(
        default=detector_rules.REVERSE_POWER_W, validators=[MaxValueValidator(100_000)]
    )
    export_tolerance = models.DecimalField(
        max_digits=8,
        decimal_places=3,
        default=detector_rules.EXPORT_TOLERANCE,
        validators=_positive("0"),
    )
    spike_enabled = models.BooleanField(default=True)
    spike_k = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=detector_rules.SPIKE_K,
        validators=[MinValueValidator(Decimal("1.5")), MaxValueValidator(100)],
    )
    spike_minimum = models.DecimalField(
        max_digits=8,
        decimal_places=3,
        default=detector_rules.SPIKE_MINIMUM,
        validators=_positive("0"),
    )
    spike_weeks = models.PositiveSmallIntegerField(
        default=detector_rules.SPIKE_WEEKS, validators=[MinValueValidator(1), MaxValueValidator(8)]
    )
    spike_min_weeks = models.PositiveSmallIntegerField(
        default=detector_rules.SPIKE_MIN_WEEKS,
        validators=[MinValueValidator(1), MaxValueValidator(8)],
    )
    flatline_enabled = models.BooleanField(default=True)
    flatline_days = models.PositiveSmallIntegerField(
        default=detector_rules.FLATLINE_DAYS,
        validators=[MinValueValidator(1), MaxValueValidator(30)],
    )
    overload_enabled = models.BooleanField(default=True)
    overload_limit_source = models.CharField(
        max_length=20, choices=LimitSource.choices, default=LimitSource.METER_OR_PROPERTY
    )
    overload_limit_w = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(100)]
    )
    overload_minutes = models.PositiveSmallIntegerField(
        default=detector_rules.OVERLOAD_MINUTES,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
    )
    # Open the relay of a meter that is still overloaded, through the cut-off rules: never in a
    # protected period, never for a protected account.
    overload_trip = models.BooleanField(default=False)
    loss_enabled = models.BooleanField(default=True)
    loss_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=detector_rules.LOSS_PERCENT,
        validators=[MinValueValidator(Decimal("0.5")), MaxValueValidator(100)],
    )
    loss_minimum = models.DecimalField(
        max_digits=10,
        decimal_places=3,
        default=detector_rules.LOSS_MINIMUM,
        validators=_positive("0"),
    )
    # The property's main meter: every meter of its utility without a feeder of its own is fed
    # by it.
    main_meter = models.ForeignKey(
        Meter, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When detection last ran for the property (runs are spaced: see meters.detection).
    last_run_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "detector settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(spike_min_weeks__lte=models.F("spike_weeks")),
                name="detector_spike_weeks_enough",
            )
        ]

    def __str__(self) -> str:
        return f"Detector settings of {self.property_id}"

    def rules(self) -> detector_rules.Rules:
        return detector_rules.Rules(
            max_gap_minutes=self.max_gap_minutes,
            bypass=self.bypass_enabled,
            bypass_tolerance=float(self.bypass_tolerance),
            tamper=self.tamper_enabled,
            reverse_power_w=float(self.reverse_power_w),
            export_tolerance=float(self.export_tolerance),
            spike=self.spike_enabled,
            spike_k=float(self.spike_k),
            spike_minimum=float(self.spike_minimum),
            spike_weeks=self.spike_weeks,
            spike_min_weeks=self.spike_min_weeks,
            flatline=self.flatline_enabled,
            flatline_days=self.flatline_days,
            overload=self.overload_enabled,
            overload_minutes=self.overload_minutes,
            overload_limit_w=None
            if self.overload_limit_w is None
            else float(self.overload_limit_w),
            overload_limit_source=self.overload_limit_source,
            loss=self.loss_enabled,
            loss_percent=float(self.loss_percent),
            loss_minimum=float(self.loss_minimum),
        )
