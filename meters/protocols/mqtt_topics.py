"""Which device a topic belongs to, what the backend subscribes to, how each dialect takes a
relay command, and which topics each device's login may use.

Pure: no ORM and no network. Together with `mqtt_formats` (payloads) this is everything prepaid
knows about topics, so the ingest service, the command sender, the broker ACL export and the
simulator cannot disagree.
"""

import json
import zlib
from dataclasses import dataclass

from meters.protocols.mqtt_formats import Format

# First topic levels that belong to a dialect or to prepaid: a Shelly prefix may not be one,
# or its login's `<prefix>/#` grant would reach into another dialect's devices.
RESERVED_LEVELS = frozenset({"meters", "tele", "stat", "cmnd", "zigbee2mqtt", "emon", "prepaid"})
HEARTBEAT_TOPIC = "prepaid/ingest/heartbeat"
# Shelly answers an RPC on `<src>/rpc`; nobody reads those answers (the switch's status
# notification is the confirmation), so the backend's src need not be subscribed.
SHELLY_SOURCE = "prepaid"

SUBSCRIPTIONS = (
    "meters/+/telemetry",
    "meters/+/status",
    "meters/+/cmd/ack",
    "tele/+/SENSOR",
    "tele/+/LWT",
    "stat/+/+",
    "+/events/rpc",
    "+/online",
    "zigbee2mqtt/+",
    "zigbee2mqtt/+/availability",
    "emon/#",
)

_PREFIXED = {
    "meters": Format.native,
    "tele": Format.tasmota,
    "stat": Format.tasmota,
    "cmnd": Format.tasmota,
    "zigbee2mqtt": Format.zigbee2mqtt,
    "emon": Format.emonhub,
}


def key_problem(fmt: Format, key: str) -> str | None:
    """Why `key` cannot name a device of this format, or None."""
    if fmt == Format.shelly and key in RESERVED_LEVELS:
        return f"{key!r} is a reserved first topic level; choose another Shelly prefix."
    if fmt == Format.zigbee2mqtt and key == "bridge":
        return "'bridge' is Zigbee2MQTT's own topic."
    return None


def device_of(topic: str) -> tuple[Format, str] | None:
    """The (format, key) of the device a topic belongs to, or None for a topic of nobody's."""
    levels = topic.split("/")
    if len(levels) < 2 or not levels[1]:
        return None
    head = levels[0]
    fmt = _PREFIXED.get(head)
    if fmt is not None:
        if fmt == Format.zigbee2mqtt and levels[1] == "bridge":
            return None
        return fmt, levels[1]
    if head in RESERVED_LEVELS or not head:
        return None
    if levels[1:] in (["events", "rpc"], ["online"], ["rpc"]):
        return Format.shelly, head
    return None


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes


class NoRelay(ValueError):
    """The dialect has no way to switch a relay."""


def relay_command(fmt: Format, key: str, *, channel: int, close: bool, command_id: str) -> Publish:
    """The message that asks the device to close (restore) or open (cut off) its relay."""
    if fmt == Format.native:
        body = {"id": command_id, "relay": "on" if close else "off"}
        return Publish(f"meters/{key}/cmd", json.dumps(body).encode())
    if fmt == Format.tasmota:
        power = "POWER" if channel == 0 else f"POWER{channel + 1}"
        return Publish(f"cmnd/{key}/{power}", b"ON" if close else b"OFF")
    if fmt == Format.shelly:
        body = {
            "id": zlib.crc32(command_id.encode()) & 0x7FFFFFFF,
            "src": SHELLY_SOURCE,
            "method": "Switch.Set",
            "params": {"id": channel, "on": close},
        }
        return Publish(f"{key}/rpc", json.dumps(body).encode())
    if fmt == Format.zigbee2mqtt:
        state = "state" if channel == 0 else f"state_l{channel + 1}"
        return Publish(
            f"zigbee2mqtt/{key}/set", json.dumps({state: "ON" if close else "OFF"}).encode()
        )
    raise NoRelay(f"{Format(fmt).value} devices report only; they have no relay to switch.")


def device_grants(fmt: Format, key: str) -> list[tuple[str, str]]:
    """(access, topic) pairs a device's own login needs, and nothing more."""
    if fmt == Format.native:
        return [
            ("write", f"meters/{key}/telemetry"),
            ("write", f"meters/{key}/status"),
            ("write", f"meters/{key}/cmd/ack"),
            ("read", f"meters/{key}/cmd"),
        ]
    if fmt == Format.tasmota:
        return [("write", f"tele/{key}/#"), ("write", f"stat/{key}/#"), ("read", f"cmnd/{key}/#")]
    if fmt == Format.shelly:
        return [("write", f"{key}/events/rpc"), ("write", f"{key}/online"), ("read", f"{key}/rpc")]
    if fmt == Format.zigbee2mqtt:
        return [
            ("write", f"zigbee2mqtt/{key}"),
            ("write", f"zigbee2mqtt/{key}/availability"),
            ("read", f"zigbee2mqtt/{key}/set"),
        ]
    return [("write", f"emon/{key}"), ("write", f"emon/{key}/#")]


def backend_grants() -> list[tuple[str, str]]:
    """What the ingest service and the command sender need: read every device topic, write
    commands in each dialect and the heartbeat."""
    reads = [("read", topic) for topic in SUBSCRIPTIONS]
    writes = [
        ("write", "meters/+/cmd"),
        ("write", "cmnd/+/+"),
        ("write", "+/rpc"),
        ("write", "zigbee2mqtt/+/set"),
        ("readwrite", HEARTBEAT_TOPIC),
    ]
    return reads + writes
