"""Turning MQTT messages into readings, device states and relay confirmations, a batch at a
time, all or nothing.

`messages_ingest` is the service: one transaction per batch. The caller (meters.mqtt_service)
acknowledges the batch's messages to the broker only after it returns, so a crash at any point
loses nothing: the broker delivers the unacknowledged messages again, and storing them again
adds nothing (a reading is unique per meter and moment).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from meters.alarms import alarm_clear, alarm_raise
from meters.models import Alarm, Meter, MqttDevice, MqttRejection, Reading
from meters.protocols.mqtt_formats import Ack, Format, Rejected, Status, Telemetry, parse
from meters.protocols.mqtt_topics import device_of
from meters.relay import relay_state_observed

log = logging.getLogger(__name__)

SEEN_RESOLUTION = timedelta(seconds=30)


class Message(NamedTuple):
    topic: str
    payload: bytes
    received_at: datetime


@dataclass
class BatchResult:
    readings: int = 0
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)
    confirmations: int = 0


@dataclass(frozen=True)
class _Channel:
    meter_id: int
    channel: int
    sml_key: str | None


@dataclass(frozen=True)
class _Device:
    id: int
    format: Format
    key: str
    channels: tuple[_Channel, ...]


def _devices(keys: set[tuple[str, str]]) -> dict[tuple[str, str], _Device]:
    if not keys:
        return {}
    # Rows of (device, meter) rather than model instances: a busy ingest looks up a thousand
    # devices at a time, and building their models took 15 times as long as these rows.
    rows = (
        MqttDevice.objects.filter(
            format__in={fmt for fmt, _ in keys}, key__in={key for _, key in keys}
        )
        .order_by()
        .values_list(
            "pk",
            "format",
            "key",
            "meters__pk",
            "meters__mqtt_channel",
            "meters__mqtt_sml_key",
            "meters__removed_at",
        )
    )
    found: dict[tuple[str, str], tuple[int, list[_Channel]]] = {}
    for pk, fmt, key, meter_id, channel, sml_key, removed_at in rows:
        if (fmt, key) not in keys:
            continue
        _, channels = found.setdefault((fmt, key), (pk, []))
        if meter_id is not None and removed_at is None:
            channels.append(_Channel(meter_id, channel, sml_key or None))
    return {
        (fmt, key): _Device(
            pk, Format(fmt), key, tuple(sorted(channels, key=attrgetter("channel")))
        )
        for (fmt, key), (pk, channels) in found.items()
    }


class DeviceDirectory:
    """Devices and their meters by topic key, remembered for `ttl` seconds: a busy ingest sees
    the same thousand devices in every batch. A device registered, or a meter connected, is
    seen within `ttl`; so is one removed, whose messages until then are stored as before."""

    def __init__(self, ttl: float = 10.0) -> None:
        self.ttl = ttl
        self._known: dict[tuple[str, str], tuple[float, _Device | None]] = {}

    def lookup(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], _Device]:
        now = time.monotonic()
        missing = {key for key in keys if self._known.get(key, (0.0, None))[0] < now}
        if missing:
            found = _devices(missing)
            for key in missing:
                self._known[key] = (now + self.ttl, found.get(key))
        return {key: device for key in keys if (device := self._known[key][1]) is not None}


class SeenMarks:
    """When this process last wrote that each device and meter was seen (and each meter online),
    so that a batch writes only those due again, SEEN_RESOLUTION later, instead of asking the
    database about every meter in every batch. Only the ingest service takes an MQTT meter
    offline, and it forgets a meter's mark when it does; a meter without a mark is asked about
    as before."""

    def __init__(self) -> None:
        self.devices: dict[int, datetime] = {}
        self.meters: dict[int, datetime] = {}

    @staticmethod
    def due(marks: dict[int, datetime], seen: dict[int, datetime]) -> dict[int, datetime]:
        return {
            pk: at
            for pk, at in seen.items()
            if (mark := marks.get(pk)) is None or mark < at - SEEN_RESOLUTION
        }


class _Row(NamedTuple):
    """A reading to store, in the column order of _READINGS_COPY."""

    meter_id: int
    taken_at: datetime
    register: Decimal
    power_w: float | None
    voltage_v: float | None
    current_a: float | None
    relay_closed: bool | None
    received_at: datetime
    export_register: Decimal | None
    # The meter's alarm flags as JSON text, None when it reported none.
    flags: str | None


@dataclass
class _Batch:
    result: BatchResult = field(default_factory=BatchResult)
    readings: dict[tuple[int, datetime], _Row] = field(default_factory=dict)
    undated: dict[int, _Row] = field(default_factory=dict)
    rejections: dict[tuple[str, str], tuple[int | None, int, str]] = field(default_factory=dict)
    seen_devices: dict[int, datetime] = field(default_factory=dict)
    seen_meters: dict[int, datetime] = field(default_factory=dict)
    statuses: dict[int, bool] = field(default_factory=dict)
    flags: dict[int, tuple[str, ...]] = field(default_factory=dict)
    relays: list[tuple[int, bool, str | None]] = field(default_factory=list)

    def reject(self, source: str, device_id: int | None, reason: str, example: str) -> None:
        _, count, _ = self.rejections.get((source, reason), (device_id, 0, ""))
        self.rejections[(source, reason)] = (device_id, count + 1, example[:300])
        self.result.rejected[reason] += 1


def messages_ingest(
    *,
    messages: Sequence[Message],
    directory: DeviceDirectory | None = None,
    marks: SeenMarks | None = None,
) -> BatchResult:
    """Store what a batch of MQTT messages says, in one transaction. Never raises for bad
    input: each unusable message is counted per device (or topic) and reason."""
    batch = _Batch()
    routed = [(message, device_of(message.topic)) for message in messages]
    directory = directory or DeviceDirectory(ttl=0)
    devices = directory.lookup({device for _, device in routed if device is not None})
    for message, device_key in routed:
        if device_key is None:
            batch.reject(message.topic, None, "unknown topic", message.topic)
            continue
        device = devices.get(device_key)
        if device is None:
            batch.reject(f"{device_key[0]}:{device_key[1]}", None, "unknown device", message.topic)
            continue
        _message(batch, device, message)
    marks = marks or SeenMarks()
    seen_devices = marks.due(marks.devices, batch.seen_devices)
    seen_meters = marks.due(marks.meters, batch.seen_meters)
    with transaction.atomic():
        status_meters = _store(batch, seen_meters=seen_meters, seen_devices=seen_devices)
    marks.devices.update(seen_devices)
    marks.meters.update(seen_meters)
    for meter_id in status_meters:
        marks.meters.pop(meter_id, None)
    # Each confirmation locks its command and may schedule a retry: after the readings commit,
    # each in its own transaction (the batch is acknowledged only after all of them).
    for meter_id, closed, command_uuid in batch.relays:
        if relay_state_observed(meter_id=meter_id, closed=closed, command_uuid=command_uuid):
            batch.result.confirmations += 1
    return batch.result


def _message(batch: _Batch, device: _Device, message: Message) -> None:
    source = f"{device.format.value}:{device.key}"
    batch.seen_devices[device.id] = message.received_at
    channels = device.channels or (_Channel(0, 0, None),)
    for channel in channels:
        try:
            parsed = parse(
                device.format,
                message.topic,
                message.payload,
                device_key=device.key,
                channel=channel.channel,
                sml_key=channel.sml_key,
                now=message.received_at,
            )
        except Rejected as rejected:
            batch.reject(source, device.id, rejected.reason, str(rejected))
            return
        if isinstance(parsed, Status):
            batch.statuses[device.id] = parsed.online
            return
        if not device.channels:
            if parsed is not None:
                batch.reject(source, device.id, "no meter on the device", message.topic)
            return
        if isinstance(parsed, Ack) and parsed.relay_closed is not None:
            batch.relays.append((channel.meter_id, parsed.relay_closed, parsed.command_id))
        elif isinstance(parsed, Telemetry):
            _telemetry(batch, channel.meter_id, parsed, message.received_at)


def _telemetry(batch: _Batch, meter_id: int, telemetry: Telemetry, received_at: datetime) -> None:
    batch.seen_meters[meter_id] = received_at
    reading = _Row(
        meter_id,
        telemetry.taken_at or received_at,
        telemetry.register,
        _float(telemetry.power_w),
        _float(telemetry.voltage_v),
        _float(telemetry.current_a),
        telemetry.relay_closed,
        received_at,
        telemetry.export_register,
        json.dumps(telemetry.flags) if telemetry.flags else None,
    )
    if telemetry.taken_at is None:
        # Without the device's own timestamp a redelivered message cannot be told from a new
        # one by time; the latest undated reading per meter in the batch is the one kept, and
        # one equal to what the meter last said is a heartbeat, not a reading (see _store).
        batch.undated[meter_id] = reading
    else:
        batch.readings.setdefault((meter_id, reading.taken_at), reading)
    if telemetry.relay_closed is not None:
        batch.relays.append((meter_id, telemetry.relay_closed, None))
    if telemetry.flags:
        batch.flags[meter_id] = telemetry.flags


def _float(value: Decimal | None) -> float | None:
    # Power, voltage and current are measurements for charts, stored as floats; money and
    # registers never are.
    return None if value is None else float(value)


def _store(
    batch: _Batch, *, seen_meters: dict[int, datetime], seen_devices: dict[int, datetime]
) -> list[int]:
    """Write the batch; the meters whose online state its device statuses set."""
    result = batch.result
    rows = list(batch.readings.values()) + _changed_undated(batch.undated)
    result.readings = _readings_insert(rows)
    result.duplicates = len(batch.readings) + len(batch.undated) - result.readings
    _seen(seen_meters, seen_devices)
    status_meters = _statuses_apply(batch.statuses)
    if batch.flags:
        _flags_raise(batch.flags)
    _rejections_count(batch.rejections, now=timezone.now())
    return status_meters


def _flags_raise(flags: dict[int, tuple[str, ...]]) -> None:
    """A meter's own alarm flags (cover open, reverse connection...) open a tamper alarm; one
    already open for the meter is not opened again."""
    for meter in Meter.objects.filter(pk__in=flags).select_related("unit"):
        alarm_raise(
            meter=meter,
            kind=Alarm.Kind.TAMPER,
            severity=Alarm.Severity.CRITICAL,
            message=f"Meter {meter.serial} reports: {', '.join(flags[meter.pk])}.",
        )


# The busiest write there is (make bench mqtt-ingest): on PostgreSQL the batch is copied into a
# temporary table and inserted from there, skipping what is already stored, in two statements
# whatever its size.
_READINGS_TABLE = """
CREATE TEMPORARY TABLE IF NOT EXISTS mqtt_readings_batch (
    meter_id bigint, taken_at timestamptz, register numeric, power_w double precision,
    voltage_v double precision, current_a double precision, relay_closed boolean,
    received_at timestamptz, export_register numeric, flags text
) ON COMMIT DELETE ROWS
"""
_READINGS_COPY = (
    "COPY mqtt_readings_batch (meter_id, taken_at, register, power_w, voltage_v, current_a, "
    "relay_closed, received_at, export_register, flags) FROM STDIN (FORMAT BINARY)"
)
# Binary rows cost a third of text ones to write, and the server need not parse them.
_READINGS_COPY_TYPES = (
    "int8",
    "timestamptz",
    "numeric",
    "float8",
    "float8",
    "float8",
    "bool",
    "timestamptz",
    "numeric",
    "text",
)
_READINGS_INSERT = """
INSERT INTO meters_reading (meter_id, taken_at, register, power_w, voltage_v, current_a,
                            relay_closed, received_at, export_register, flags, source, status,
                            reason)
SELECT DISTINCT ON (meter_id, taken_at) meter_id, taken_at, register, power_w, voltage_v,
       current_a, relay_closed, received_at, export_register, flags::jsonb, 'mqtt', 'new', ''
FROM mqtt_readings_batch
ON CONFLICT (meter_id, taken_at) DO NOTHING
"""


def _readings_insert(rows: list[_Row]) -> int:
    """Store the readings not stored yet; how many that was."""
    if not rows:
        return 0
    if connection.vendor != "postgresql":
        readings = [
            Reading(
                **{**row._asdict(), "flags": None if row.flags is None else json.loads(row.flags)},
                source=Reading.Source.MQTT,
            )
            for row in rows
        ]
        known = set(
            Reading.objects.filter(
                meter_id__in={row.meter_id for row in rows},
                taken_at__in={row.taken_at for row in rows},
            ).values_list("meter_id", "taken_at")
        )
        fresh = [r for r in readings if (r.meter_id, r.taken_at) not in known]
        Reading.objects.bulk_create(fresh, ignore_conflicts=True)
        return len(fresh)
    with connection.cursor() as cursor:
        cursor.execute(_READINGS_TABLE)
        with cursor.copy(_READINGS_COPY) as copy:
            copy.set_types(_READINGS_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
        cursor.execute(_READINGS_INSERT)
        return cursor.rowcount


def _seen(meters: dict[int, datetime], devices: dict[int, datetime]) -> None:
    """Mark meters that reported as online and seen. To the nearest SEEN_RESOLUTION: writing
    every meter's row in every batch would cost more than storing the readings."""
    if devices:
        seen = max(devices.values())
        MqttDevice.objects.filter(pk__in=devices).filter(
            Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=seen - SEEN_RESOLUTION)
        ).update(last_seen_at=seen)
    if not meters:
        return
    seen = max(meters.values())
    back = Meter.objects.filter(pk__in=meters, online=False).select_related("unit")
    for meter in back:
        alarm_clear(meter=meter, kind=Alarm.Kind.OFFLINE, note="the meter reports again")
    Meter.objects.filter(pk__in=meters).filter(
        Q(last_seen_at__isnull=True)
        | Q(last_seen_at__lt=seen - SEEN_RESOLUTION)
        | ~Q(online=True)
        | ~Q(missed_polls=0)
    ).update(last_seen_at=seen, online=True, missed_polls=0)


def _changed_undated(undated: dict[int, _Row]) -> list[_Row]:
    if not undated:
        return []
    latest = dict(
        Meter.objects.filter(pk__in=undated)
        .annotate(
            last_register=Subquery(
                Reading.objects.filter(meter=OuterRef("pk"))
                .order_by("-taken_at")
                .values("register")[:1]
            )
        )
        .values_list("pk", "last_register")
    )
    return [
        reading for meter_id, reading in undated.items() if latest[meter_id] != reading.register
    ]


def _statuses_apply(statuses: dict[int, bool]) -> list[int]:
    """Set the devices' and their meters' online state; the meters it looked at."""
    if not statuses:
        return []
    MqttDevice.objects.filter(pk__in=[pk for pk, online in statuses.items() if online]).update(
        online=True
    )
    MqttDevice.objects.filter(pk__in=[pk for pk, online in statuses.items() if not online]).update(
        online=False
    )
    meters = Meter.objects.filter(mqtt_device_id__in=statuses, removed_at__isnull=True)
    checked = []
    for meter in meters.select_related("unit", "mqtt_device"):
        checked.append(meter.pk)
        online = statuses[meter.mqtt_device_id]
        if meter.online == online:
            continue
        Meter.objects.filter(pk=meter.pk).update(online=online)
        if online:
            alarm_clear(meter=meter, kind=Alarm.Kind.OFFLINE, note="the device is back online")
        else:
            alarm_raise(
                meter=meter,
                kind=Alarm.Kind.OFFLINE,
                message=f"Meter {meter.serial}: its MQTT device {meter.mqtt_device} went offline.",
            )
    return checked


def _rejections_count(
    rejections: dict[tuple[str, str], tuple[int | None, int, str]], now: datetime
) -> None:
    for (source, reason), (device_id, count, example) in rejections.items():
        changes = {"count": F("count") + count, "last_at": now, "example": example}
        if MqttRejection.objects.filter(source=source, reason=reason).update(**changes):
            continue
        MqttRejection.objects.create(
            source=source,
            reason=reason,
            device_id=device_id,
            count=count,
            example=example,
            first_at=now,
            last_at=now,
        )
    if rejections:
        log.info("mqtt rejections: %s", {key: value[1] for key, value in rejections.items()})


@transaction.atomic
def rejection_record(*, message: Message, reason: str) -> None:
    """Count one message as dropped for `reason`, on its own."""
    device_key = device_of(message.topic)
    device_id = None
    source = message.topic
    if device_key is not None:
        source = f"{device_key[0]}:{device_key[1]}"
        device_id = (
            MqttDevice.objects.filter(format=device_key[0], key=device_key[1])
            .values_list("pk", flat=True)
            .first()
        )
    _rejections_count({(source, reason): (device_id, 1, message.topic)}, now=timezone.now())
