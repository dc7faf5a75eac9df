import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Organisation, Property, Unit
from accounts.services import Actor
from billing.charging import charge_meters, cursor_start
from meters.models import DetectorSettings, Gateway, Meter, MeterProfile, MqttDevice, Reading
from meters.protocols import mqtt_formats
from meters.protocols.modbus_profile import ProfileError, profile_from_dict
from prepaid.audit.services import (
    audit_record,
    create_audited,
    only_fields,
    update_audited,
)

METER_FIELDS = ("serial", "utility", "has_relay")
# What the detectors need to know about a meter: what feeds it (losses), its contracted power
# limit (overload) and whether it may export (reverse). A replacement keeps them.
METER_SETTINGS = ("feeder", "power_limit_w", "exports_energy")
# Feeders above feeders: a building's main meter, a floor's, a group's. Deeper is a mistake.
MAX_FEEDER_DEPTH = 20


@transaction.atomic
def meter_register(
    *,
    organisation: Organisation,
    actor: Actor,
    serial: str,
    utility: str,
    has_relay: bool = False,
    unit: Unit | None = None,
    installed_at: datetime | None = None,
    feeder: Meter | None = None,
    power_limit_w: int | None = None,
    exports_energy: bool = False,
) -> Meter:
    """Add a meter to the organisation's stock, installing it in a unit when one is given."""
    meter = Meter(
        organisation=organisation,
        serial=serial,
        utility=utility,
        has_relay=has_relay,
        power_limit_w=power_limit_w,
        exports_energy=exports_energy,
    )
    if unit is not None:
        _check_same_organisation(meter, unit)
        meter.unit = unit
        meter.installed_at = installed_at or timezone.now()
    _check_settings(meter, {"feeder": feeder, "power_limit_w": power_limit_w})
    meter.feeder = feeder
    return create_audited(
        meter,
        actor=actor,
        action="meter.register",
        fields=(*METER_FIELDS, "unit", "installed_at", *METER_SETTINGS),
        organisation_id=organisation.pk,
        property_id=unit.property_id if unit else None,
    )


@transaction.atomic
def meter_update(*, meter: Meter, actor: Actor, **changes: Any) -> Meter:
    """Change a meter's serial, relay or detector settings (`METER_SETTINGS`)."""
    only_fields(changes, (*METER_FIELDS, *METER_SETTINGS))
    _check_settings(meter, changes)
    update_audited(
        instance=meter,
        changes=changes,
        actor=actor,
        action="meter.update",
        organisation_id=meter.organisation_id,
        property_id=meter.unit.property_id if meter.unit_id else None,
    )
    return meter


@transaction.atomic
def meter_install(
    *, meter: Meter, unit: Unit, actor: Actor, installed_at: datetime | None = None
) -> Meter:
    """Install a meter from stock in a unit."""
    # NO KEY: rows that merely reference the meter (readings, charges) may still be written.
    meter = Meter.objects.select_for_update(no_key=True).get(pk=meter.pk)
    if meter.unit_id is not None:
        raise ValidationError({"unit": "The meter is already installed; remove it first."})
    _check_same_organisation(meter, unit)
    update_audited(
        instance=meter,
        changes={"unit": unit, "installed_at": installed_at or timezone.now()},
        actor=actor,
        action="meter.install",
        organisation_id=meter.organisation_id,
        property_id=unit.property_id,
    )
    return meter


@transaction.atomic
def meter_remove(
    *, meter: Meter, actor: Actor, reason: str, removed_at: datetime | None = None
) -> Meter:
    """Take a meter out of service. It keeps its unit and dates as history."""
    meter = (
        Meter.objects.select_for_update(of=("self",), no_key=True)
        .select_related("unit")
        .get(pk=meter.pk)
    )
    if meter.unit_id is None or meter.removed_at is not None:
        raise ValidationError("Only a meter in service can be removed.")
    update_audited(
        instance=meter,
        changes={"removed_at": removed_at or timezone.now()},
        actor=actor,
        action="meter.remove",
        organisation_id=meter.organisation_id,
        property_id=meter.unit.property_id,
        reason=reason,
    )
    return meter


def _check_same_organisation(meter: Meter, unit: Unit) -> None:
    if unit.property.organisation_id != meter.organisation_id:
        raise ValidationError({"unit": "The unit belongs to another organisation."})


def _check_settings(meter: Meter, changes: dict[str, Any]) -> None:
    """Refuse a power limit that is not positive, and a feeder that could not feed the meter."""
    limit = changes.get("power_limit_w")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValidationError({"power_limit_w": _("The power limit must be at least 1 W.")})
    feeder = changes.get("feeder")
    if feeder is not None and feeder.pk != meter.feeder_id:
        problem = _feeder_problem(meter, feeder)
        if problem:
            raise ValidationError({"feeder": problem})


def _feeder_problem(meter: Meter, feeder: Meter) -> str | None:
    if meter.pk is not None and feeder.pk == meter.pk:
        return _("A meter cannot feed itself.")
    if meter.unit_id is None:
        return _("Install the meter in a unit before giving it a feeder.")
    # Locked in a fixed order, so two changes that would together close a loop (A fed by B,
    # B fed by A) run one after the other and the second sees the first.
    locked = {
        row.pk: row
        for row in Meter.objects.select_for_update(of=("self",), no_key=True)
        .filter(pk__in=[pk for pk in (meter.pk, feeder.pk) if pk is not None])
        .select_related("unit")
        .order_by("pk")
    }
    feeder = locked.get(feeder.pk)
    if (
        feeder is None
        or feeder.organisation_id != meter.organisation_id
        or feeder.unit_id is None
        or feeder.unit.property_id != meter.unit.property_id
    ):
        return _("The feeder must be a meter of the same property.")
    if feeder.utility != meter.utility:
        return _("The feeder must measure the same utility.")
    if feeder.unit_id == meter.unit_id:
        return _("The feeder must be in another unit.")
    # Losses know feeders by their unit: a chain that comes back to this meter or its unit
    # would have a unit feed itself.
    upstream = feeder
    for _depth in range(MAX_FEEDER_DEPTH):
        if upstream.feeder_id is None:
            return None
        upstream = Meter.objects.only("pk", "unit_id", "feeder_id").get(pk=upstream.feeder_id)
        if upstream.pk == meter.pk or upstream.unit_id == meter.unit_id:
            return _("The feeder is fed by this meter: feeders cannot go round in a loop.")
    return _("The feeder has more than %(depth)s feeders above it.") % {"depth": MAX_FEEDER_DEPTH}


@transaction.atomic
def meter_replace(
    *,
    meter: Meter,
    actor: Actor,
    replaced_at: datetime,
    final_register: Decimal,
    new_serial: str,
    initial_register: Decimal,
) -> Meter:
    """Swap a meter: charge the old one up to its final reading, then measure the new one from
    its initial reading, at the same moment. Nothing is lost or counted twice."""
    meter = (
        Meter.objects.select_for_update(of=("self",), no_key=True)
        .select_related("unit__property")
        .get(pk=meter.pk)
    )
    if meter.unit_id is None or meter.removed_at is not None:
        raise ValidationError("Only a meter in service can be replaced.")
    if replaced_at > timezone.now() or replaced_at < meter.installed_at:
        raise ValidationError(
            {"replaced_at": "The replacement must be after installation and not in the future."}
        )
    if (
        meter.readings.filter(taken_at__gt=replaced_at)
        .exclude(status=Reading.Status.REJECTED)
        .exists()
    ):
        raise ValidationError({"replaced_at": "The old meter has readings after this moment."})
    final, created = Reading.objects.get_or_create(
        meter=meter,
        taken_at=replaced_at,
        defaults={"register": final_register, "source": Reading.Source.MANUAL},
    )
    if not created and final.register != final_register:
        raise ValidationError(
            {"final_register": f"The meter already reported {final.register} then."}
        )
    charge_meters(meter_ids=[meter.pk], skip_locked=False)
    final.refresh_from_db()
    if final.status == Reading.Status.REJECTED:
        raise ValidationError(
            {"final_register": f"The final reading was rejected: {final.reason}."}
        )
    meter_remove(
        meter=meter, actor=actor, reason=f"replaced by {new_serial}", removed_at=replaced_at
    )
    successor = meter_register(
        organisation=meter.organisation,
        actor=actor,
        serial=new_serial,
        utility=meter.utility,
        has_relay=meter.has_relay,
        unit=meter.unit,
        installed_at=replaced_at,
        feeder=meter.feeder,
        power_limit_w=meter.power_limit_w,
        exports_energy=meter.exports_energy,
    )
    # What the old meter fed, the new one feeds; the same for the property's main meter.
    fed = Meter.objects.filter(feeder=meter, removed_at__isnull=True).update(feeder=successor)
    DetectorSettings.objects.filter(main_meter=meter).update(main_meter=successor)
    Reading.objects.create(
        meter=successor,
        taken_at=replaced_at,
        register=initial_register,
        source=Reading.Source.MANUAL,
        status=Reading.Status.ACCEPTED,
    )
    cursor_start(meter=successor, taken_at=replaced_at, register=initial_register)
    audit_record(
        organisation_id=meter.organisation_id,
        property_id=meter.unit.property_id,
        actor=actor,
        action="meter.replace",
        instance=meter,
        after={
            "replaced_at": replaced_at.isoformat(),
            "final_register": str(final_register),
            "new_meter": str(successor.uuid),
            "initial_register": str(initial_register),
            "fed_meters": fed,
        },
    )
    return successor


# How far ahead of our clock a meter's timestamp may be before it is called wrong.
FUTURE_TOLERANCE = timedelta(minutes=5)
REGISTER_PLACES = 6
# A reading's alarm flags, the same bounds as over MQTT.
MAX_FLAGS = mqtt_formats.MAX_FLAGS
MAX_FLAG_LENGTH = mqtt_formats.MAX_FLAG_LENGTH


@dataclass(frozen=True)
class IngestResult:
    created: int
    duplicates: int


@transaction.atomic
def readings_ingest(
    *, meters: QuerySet[Meter], rows: Sequence[dict[str, Any]], source: str
) -> IngestResult:
    """Store pushed readings all or nothing: any bad row rejects the batch with a reason per row.

    `meters` are the meters the sender may report for (an organisation's, or a caller's scope).

    Rows carry `serial`, `taken_at` (aware datetime), `register` (Decimal) and optionally
    `power_w`, `voltage_v`, `current_a`, `relay_closed`, `export_register` (Decimal, the energy
    counted back into the grid) and `flags` (the meter's own alarm flags, a list of names). A
    reading a meter already reported for the same moment is a duplicate and is skipped.
    """
    serials = {str(row.get("serial", "")) for row in rows}
    known_meters = {meter.serial: meter for meter in meters.filter(serial__in=serials)}
    errors: list[str] = []
    readings: list[Reading] = []
    now = timezone.now()
    for index, row in enumerate(rows):
        problem = _reading_problem(row, known_meters, now)
        if problem:
            errors.append(f"row {index}: {problem}")
            continue
        readings.append(
            Reading(
                meter=known_meters[row["serial"]],
                taken_at=row["taken_at"],
                register=row["register"],
                power_w=row.get("power_w"),
                voltage_v=row.get("voltage_v"),
                current_a=row.get("current_a"),
                relay_closed=row.get("relay_closed"),
                export_register=row.get("export_register"),
                flags=row.get("flags") or None,
                source=source,
            )
        )
    if errors:
        raise ValidationError({"readings": errors})
    known = set(
        Reading.objects.filter(
            meter_id__in={reading.meter_id for reading in readings},
            taken_at__in={reading.taken_at for reading in readings},
        ).values_list("meter_id", "taken_at")
    )
    fresh = {}
    for reading in readings:
        key = (reading.meter_id, reading.taken_at)
        if key not in known:
            fresh.setdefault(key, reading)
    Reading.objects.bulk_create(fresh.values(), ignore_conflicts=True, batch_size=2000)
    return IngestResult(created=len(fresh), duplicates=len(readings) - len(fresh))


def _reading_problem(row: dict[str, Any], meters: dict[str, Meter], now: datetime) -> str | None:
    meter = meters.get(str(row.get("serial", "")))
    if meter is None:
        return f"unknown meter {row.get('serial')!r}"
    taken_at = row.get("taken_at")
    if not isinstance(taken_at, datetime) or timezone.is_naive(taken_at):
        return "taken_at must be a date and time with a time zone"
    if taken_at > now + FUTURE_TOLERANCE:
        return f"taken_at {taken_at.isoformat()} is in the future"
    for name in ("register", "export_register"):
        problem = _register_problem(name, row.get(name), required=name == "register")
        if problem:
            return problem
    flags = row.get("flags")
    if flags is not None and (
        not isinstance(flags, list | tuple)
        or len(flags) > MAX_FLAGS
        or not all(isinstance(flag, str) and 0 < len(flag) <= MAX_FLAG_LENGTH for flag in flags)
    ):
        return f"flags must be at most {MAX_FLAGS} names of 1 to {MAX_FLAG_LENGTH} characters"
    for name in ("power_w", "voltage_v", "current_a"):
        value = row.get(name)
        if value is not None and (not isinstance(value, int | float) or not math.isfinite(value)):
            return f"{name} must be a finite number"
    return None


def _register_problem(name: str, register: Any, *, required: bool) -> str | None:
    if register is None and not required:
        return None
    if not isinstance(register, Decimal) or not register.is_finite():
        return f"{name} must be a finite number"
    if register < 0:
        return f"{name} cannot be negative"
    if register.as_tuple().exponent < -REGISTER_PLACES:
        return f"{name} has more than {REGISTER_PLACES} decimal places"
    return None


def _profile_problems(definition: Any) -> list[str]:
    try:
        profile_from_dict(definition)
    except ProfileError as error:
        return list(error.problems)
    return []


@transaction.atomic
def meter_profile_create(
    *, organisation: Organisation, actor: Actor, name: str, definition: dict[str, Any]
) -> MeterProfile:
    """A meter model described as data; every problem in it is reported at once."""
    problems = _profile_problems(definition)
    if problems:
        raise ValidationError({"definition": problems})
    return create_audited(
        MeterProfile(organisation=organisation, name=name, definition=definition),
        actor=actor,
        action="meter_profile.create",
        fields=("name", "definition"),
        organisation_id=organisation.pk,
    )


@transaction.atomic
def meter_profile_update(*, profile: MeterProfile, actor: Actor, **changes: Any) -> MeterProfile:
    if profile.organisation_id is None:
        raise ValidationError("Built-in profiles cannot be changed; import a copy instead.")
    only_fields(changes, {"name", "definition"})
    if "definition" in changes and (problems := _profile_problems(changes["definition"])):
        raise ValidationError({"definition": problems})
    update_audited(
        instance=profile,
        changes=changes,
        actor=actor,
        action="meter_profile.update",
        organisation_id=profile.organisation_id,
    )
    return profile


GATEWAY_FIELDS = (
    "name",
    "framer",
    "host",
    "port",
    "serial_port",
    "baudrate",
    "timeout_ms",
    "retries",
    "gap_ms",
    "enabled",
)


@transaction.atomic
def gateway_create(*, property: Property, actor: Actor, **fields: Any) -> Gateway:
    only_fields(fields, GATEWAY_FIELDS, "Unknown field.")
    return create_audited(
        Gateway(organisation_id=property.organisation_id, property=property, **fields),
        actor=actor,
        action="gateway.create",
        fields=GATEWAY_FIELDS,
        organisation_id=property.organisation_id,
        property_id=property.pk,
    )


@transaction.atomic
def gateway_update(*, gateway: Gateway, actor: Actor, **changes: Any) -> Gateway:
    only_fields(changes, GATEWAY_FIELDS)
    update_audited(
        instance=gateway,
        changes=changes,
        actor=actor,
        action="gateway.update",
        organisation_id=gateway.organisation_id,
        property_id=gateway.property_id,
    )
    return gateway


@transaction.atomic
def meter_connect(
    *,
    meter: Meter,
    actor: Actor,
    gateway: Gateway | None,
    modbus_unit: int | None,
    profile: MeterProfile | None,
) -> Meter:
    """How a meter is read: its gateway and Modbus unit id, and its profile (or none of them,
    for meters that report over MQTT or HTTP)."""
    if gateway is not None and gateway.organisation_id != meter.organisation_id:
        raise ValidationError({"gateway": "The gateway belongs to another organisation."})
    if (gateway is None) != (modbus_unit is None):
        raise ValidationError({"modbus_unit": "A gateway and a unit id go together."})
    update_audited(
        instance=meter,
        changes={
            "gateway": gateway,
            "modbus_unit": modbus_unit,
            "profile": profile,
            # Read over Modbus (or pushed over HTTP) now, not over MQTT.
            "mqtt_device": None,
            "mqtt_channel": 0,
            "mqtt_sml_key": "",
        },
        actor=actor,
        action="meter.connect",
        organisation_id=meter.organisation_id,
        property_id=meter.unit.property_id if meter.unit_id else None,
    )
    return meter


@transaction.atomic
def meter_connect_mqtt(
    *,
    meter: Meter,
    actor: Actor,
    device: MqttDevice,
    channel: int = 0,
    sml_key: str = "",
) -> Meter:
    """Read a meter from a channel of an MQTT device instead of over Modbus."""
    if device.organisation_id != meter.organisation_id:
        raise ValidationError({"device": "The device belongs to another organisation."})
    if not 0 <= channel <= 31:
        raise ValidationError({"channel": "Channels are numbered 0 to 31."})
    if sml_key and device.format != MqttDevice.Format.TASMOTA:
        raise ValidationError({"sml_key": "Only Tasmota devices run SML scripts."})
    group, dot, key = sml_key.partition(".")
    if sml_key and not (group and dot and key):
        raise ValidationError({"sml_key": "Give the SML register as Group.Key, e.g. SML.Total_in."})
    taken = Meter.objects.filter(mqtt_device=device, mqtt_channel=channel).exclude(pk=meter.pk)
    if taken.exists():
        raise ValidationError({"channel": "Another meter already reads this channel."})
    update_audited(
        instance=meter,
        changes={
            "gateway": None,
            "modbus_unit": None,
            "profile": None,
            "mqtt_device": device,
            "mqtt_channel": channel,
            "mqtt_sml_key": sml_key,
        },
        actor=actor,
        action="meter.connect",
        organisation_id=meter.organisation_id,
        property_id=meter.unit.property_id if meter.unit_id else None,
    )
    return meter


BUILTIN_PROFILES = Path(__file__).resolve().parent / "profiles"


def builtin_profiles_sync(*, model: type[MeterProfile] = MeterProfile) -> int:
    """Create or refresh the shipped profiles (meters/profiles/*.json), shared by everyone.

    `model` lets the data migration pass its historical model.
    """
    paths = sorted(BUILTIN_PROFILES.glob("*.json"))
    for path in paths:
        definition = json.loads(path.read_text())
        model.objects.update_or_create(
            organisation=None, name=definition["name"], defaults={"definition": definition}
        )
    return len(paths)
