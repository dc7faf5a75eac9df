"""MQTT payload parsers for real devices: native meters, Tasmota, Shelly Gen2, Zigbee2MQTT and
emonhub.

No ORM and no network: `parse()` turns one MQTT message (topic + payload bytes) into a
`Telemetry`, `Status` or `Ack`, returns None for a valid message we have no use for, and raises
`Rejected` (a `ValueError` with a stable `.reason`) for anything else. It never raises any other
exception for any topic or payload, so the subscriber can log a `Rejected` and move on.

Units are the trap here (see shared/domain.md, "Real devices over MQTT"):

- native, Tasmota and Zigbee2MQTT report energy in kWh;
- Shelly (`total_act`, `total_act_energy`, `aenergy.total`) and emonhub (`E1`..`E6`) report Wh.

The same goes for the export register (energy back into the grid), where a device has one:
native `export_kwh`, Tasmota `ENERGY.ExportActive` and Zigbee2MQTT `produced_energy` in kWh,
Shelly `total_act_ret`, `total_act_ret_energy` and `ret_aenergy.total` in Wh.

Registers come out in kWh (or m3 for water) as exact `Decimal`s: JSON is parsed with
`parse_float=Decimal` and Wh are divided by 1000 as Decimals, never through a float.
"""

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import Any

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_CLOCK_SKEW = timedelta(minutes=5)
# A native reading's alarm flags: a handful of short names, never a log.
MAX_FLAGS = 16
MAX_FLAG_LENGTH = 50

# Anything at or beyond 10**15 (kWh, Wh, W, V, A, s) is not a reading, and bounding magnitude
# and precision keeps every Decimal operation below exact (no rounding, no overflow).
_MAX_DIGITS = 15  # integer digits
_MIN_EXPONENT = -30
_WH_PER_KWH = Decimal(1000)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_EPOCH = Decimal(253402300800)  # 10000-01-01T00:00:00Z
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_NON_FINITE = re.compile(r"[+-]?(nan|snan|inf|infinity)", re.IGNORECASE)
# One decoder for every payload: json.loads() with these options would build one per call.
_JSON = json.JSONDecoder(parse_float=Decimal, parse_constant=Decimal)


class Format(StrEnum):
    native = "native"
    tasmota = "tasmota"
    shelly = "shelly"
    zigbee2mqtt = "zigbee2mqtt"
    emonhub = "emonhub"


@dataclass(frozen=True)
class Telemetry:
    """One reading. `register` is kWh (electricity) or m3 (water).

    `taken_at` is None when the payload carries no usable timestamp; the caller then uses the
    time it received the message. `export_register` is the energy the meter counted back into
    the grid, in kWh; `flags` are the meter's own alarm flags ("cover_open", "reverse"...).
    """

    register: Decimal
    taken_at: datetime | None = None
    power_w: Decimal | None = None
    voltage_v: Decimal | None = None
    current_a: Decimal | None = None
    relay_closed: bool | None = None
    flags: tuple[str, ...] = ()
    export_register: Decimal | None = None


@dataclass(frozen=True)
class Status:
    """Availability (LWT) of the device."""

    online: bool


@dataclass(frozen=True)
class Ack:
    """A device confirming a relay command (or reporting a relay change)."""

    command_id: str | None
    relay_closed: bool | None


class Rejected(ValueError):
    """A message we refuse. `reason` is a short stable category, the message says what."""

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}" if message else reason)


Parsed = Telemetry | Status | Ack | None


def parse(
    fmt: Format,
    topic: str,
    payload: bytes,
    *,
    device_key: str,
    channel: int = 0,
    sml_key: str | None = None,
    now: datetime,
) -> Parsed:
    """Parse one message for the device `device_key` (serial, Tasmota topic, Shelly prefix,
    Zigbee2MQTT friendly name or emonhub node).

    `channel` picks the 0-based channel of multi-channel devices (Tasmota arrays, Shelly
    `em1data:N` / `switch:N`, emonhub `E{channel+1}`). `sml_key` ("Group.Key", e.g.
    "SML.Total_in") makes a Tasmota SENSOR read an SML script's register instead of ENERGY.
    `now` must be aware: timestamps more than 5 minutes ahead of it are rejected.
    """
    if now.tzinfo is None:
        raise TypeError("now must be an aware datetime")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected("too large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    handler = _HANDLERS[Format(fmt)]
    return handler(_Message(topic, payload, device_key, channel, sml_key, now))


@dataclass(slots=True)
class _Message:
    topic: str
    payload: bytes
    device_key: str
    channel: int
    sml_key: str | None
    now: datetime

    def sub_topic(self, prefix: str, suffix: str = "") -> str | None:
        """The part of the topic after `<prefix>/<device_key>` (without its leading '/'), "" for
        the exact topic, None when the topic belongs to someone else."""
        base = f"{prefix}/{self.device_key}" if prefix else self.device_key
        if self.topic == base:
            return ""
        if self.topic.startswith(base + "/"):
            return self.topic[len(base) + 1 :]
        return None

    def text(self) -> str:
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected("invalid utf-8", f"payload on {self.topic!r}") from None

    def json(self) -> Any:
        text = self.text()
        try:
            return _JSON.decode(text)
        except (ValueError, ArithmeticError, RecursionError) as exc:
            # ValueError: JSONDecodeError and integers beyond the int-string limit;
            # ArithmeticError: Decimal exponents beyond what decimal can represent.
            raise Rejected("invalid json", f"payload on {self.topic!r}: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        return _object(self.json(), "payload")


def _unknown(msg: _Message) -> Rejected:
    return Rejected("unknown topic", f"{msg.topic!r} is not a topic of {msg.device_key!r}")


# --- value helpers -------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Rejected("wrong type", f"{field} must be an object, not {_type_name(value)}")
    return value


def _number(value: Any, field: str) -> Decimal:
    """A finite, sanely sized JSON number. Booleans and strings are not numbers (but a
    "NaN"/"Infinity" string is reported as not finite, which is what it is)."""
    if isinstance(value, bool):
        raise Rejected("wrong type", f"{field} must be a number, not a boolean")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str) and _NON_FINITE.fullmatch(value.strip()):
        raise Rejected("not finite", f"{field} is {value!r}")
    else:
        raise Rejected("wrong type", f"{field} must be a number, not {_type_name(value)}")
    return _checked(number, field)


def _checked(number: Decimal, field: str) -> Decimal:
    if not number.is_finite():
        raise Rejected("not finite", f"{field} is {number}")
    if not number:
        return Decimal(0)
    # adjusted() and as_tuple() are context-free: abs() would round and could overflow.
    exponent = number.as_tuple().exponent
    too_fine = isinstance(exponent, int) and exponent < _MIN_EXPONENT
    if number.adjusted() >= _MAX_DIGITS or too_fine:
        raise Rejected("out of range", f"{field} is {number}")
    return number


def _plain_number(text: str, field: str) -> Decimal:
    """A number sent as the whole payload (emonhub's per-key topics)."""
    text = text.strip()
    if _NON_FINITE.fullmatch(text):
        raise Rejected("not finite", f"{field} is {text!r}")
    if not _PLAIN_NUMBER.fullmatch(text):
        raise Rejected("wrong type", f"{field} is not a number")
    try:
        number = Decimal(text)
    except ArithmeticError:  # an exponent beyond what decimal can represent
        raise Rejected("out of range", f"{field} is {text[:40]!r}") from None
    return _checked(number, field)


def _energy(value: Any, field: str, *, wh: bool = False) -> Decimal:
    number = _number(value, field)
    if number < 0:
        raise Rejected("negative", f"{field} is {number}")
    if not wh:
        return number
    with localcontext() as ctx:
        ctx.prec = 60  # bounded inputs: the division by 1000 is exact
        return number / _WH_PER_KWH


def _optional_energy(
    obj: dict[str, Any] | None, key: str, field: str, *, wh: bool = False
) -> Decimal | None:
    value = None if obj is None else obj.get(key)
    return None if value is None else _energy(value, field, wh=wh)


def _optional_number(obj: dict[str, Any], key: str, field: str) -> Decimal | None:
    value = obj.get(key)
    return None if value is None else _number(value, field)


def _bool(value: Any, field: str) -> bool:
    """JSON true/false, or the strings on/off (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "on":
            return True
        if lowered == "off":
            return False
        raise Rejected("bad value", f"{field} is {value[:40]!r}, expected on/off")
    raise Rejected("wrong type", f"{field} must be a boolean, not {_type_name(value)}")


def _online(text: str, field: str) -> Status:
    lowered = text.strip().lower()
    if lowered in ("online", "true"):
        return Status(online=True)
    if lowered in ("offline", "false"):
        return Status(online=False)
    raise Rejected("bad value", f"{field} is {text[:40]!r}, expected online/offline")


def _timestamp(value: Any, field: str, now: datetime) -> datetime | None:
    """ISO 8601 with a zone, or epoch seconds. None when absent."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise Rejected("bad timestamp", f"{field} is {value[:40]!r}") from None
        if when.tzinfo is None or when.utcoffset() is None:
            raise Rejected("naive timestamp", f"{field} {value[:40]!r} has no time zone")
    else:
        seconds = _number(value, field)
        if not 0 <= seconds < _MAX_EPOCH:
            raise Rejected("bad timestamp", f"{field} is {seconds}")
        with localcontext() as ctx:
            ctx.prec = 60
            whole = int(seconds)
            micros = int((seconds - whole) * 1_000_000)
        when = _EPOCH + timedelta(seconds=whole, microseconds=micros)
    if when > now + MAX_CLOCK_SKEW:
        raise Rejected("timestamp in the future", f"{field} {when.isoformat()} is after {now}")
    return when


def _pick(value: Any, channel: int) -> Any:
    """Tasmota sends one value per channel as an array on multi-channel devices."""
    if isinstance(value, list):
        if not 0 <= channel < len(value):
            return None
        return value[channel]
    return value


# --- native --------------------------------------------------------------------------------


def _native(msg: _Message) -> Parsed:
    sub = msg.sub_topic("meters")
    if sub is None or sub == "":
        raise _unknown(msg)
    if sub == "status":
        return _online(msg.text(), "status")
    if sub == "cmd/ack":
        body = msg.json_object()
        command_id = body.get("id")
        if command_id is not None and not isinstance(command_id, str):
            raise Rejected("wrong type", f"id must be a string, not {_type_name(command_id)}")
        relay = body.get("relay")
        return Ack(command_id, None if relay is None else _bool(relay, "relay"))
    if sub != "telemetry":
        return None  # our own commands (cmd, cmd/...) and anything else the meter publishes
    body = msg.json_object()
    if "energy_kwh" in body and "volume_m3" in body:
        raise Rejected("ambiguous register", "both energy_kwh and volume_m3")
    key = "volume_m3" if "volume_m3" in body else "energy_kwh"
    if body.get(key) is None:
        raise Rejected("missing register", "no energy_kwh or volume_m3")
    register = _energy(body[key], key)
    relay = body.get("relay")
    alarms = body.get("alarms")
    if alarms is None:
        flags: tuple[str, ...] = ()
    elif isinstance(alarms, list) and all(isinstance(a, str) for a in alarms):
        flags = tuple(alarms)
    else:
        raise Rejected("wrong type", "alarms must be a list of strings")
    if len(flags) > MAX_FLAGS or any(not 0 < len(flag) <= MAX_FLAG_LENGTH for flag in flags):
        raise Rejected(
            "bad value",
            f"alarms must be at most {MAX_FLAGS} names of 1 to {MAX_FLAG_LENGTH} characters",
        )
    return Telemetry(
        register=register,
        taken_at=_timestamp(body.get("ts"), "ts", msg.now),
        power_w=_optional_number(body, "power_w", "power_w"),
        voltage_v=_optional_number(body, "voltage_v", "voltage_v"),
        current_a=_optional_number(body, "current_a", "current_a"),
        relay_closed=None if relay is None else _bool(relay, "relay"),
        flags=flags,
        export_register=_optional_energy(body, "export_kwh", "export_kwh"),
    )


# --- Tasmota -------------------------------------------------------------------------------


def _tasmota(msg: _Message) -> Parsed:
    # Tasmota's default FullTopic is %prefix%/%topic%/, so the device key sits second.
    kind = None
    for prefix in ("tele", "stat", "cmnd"):
        sub = msg.sub_topic(prefix)
        if sub:
            kind = (prefix, sub)
            break
    if kind is None:
        raise _unknown(msg)
    prefix, sub = kind
    if prefix == "tele" and sub == "LWT":
        return _online(msg.text(), "LWT")
    if prefix == "tele" and sub == "SENSOR":
        return _tasmota_sensor(msg)
    if prefix == "stat" and sub in _tasmota_power_topics(msg.channel):
        text = msg.text().strip().upper()
        if text in ("ON", "1"):
            return Ack(None, True)
        if text in ("OFF", "0"):
            return Ack(None, False)
        raise Rejected("bad value", f"{sub} is {text[:40]!r}, expected ON/OFF")
    return None  # STATE, RESULT, INFO*, other channels' POWERn, our own cmnd/...


def _tasmota_power_topics(channel: int) -> tuple[str, ...]:
    # A single-relay device answers on POWER; multi-relay devices on POWER1, POWER2...
    return ("POWER", "POWER1") if channel == 0 else (f"POWER{channel + 1}",)


def _tasmota_sensor(msg: _Message) -> Telemetry:
    body = msg.json_object()
    # "Time" is the device's local time without a zone (and with no guarantee the device's
    # timezone setting matches ours), so it cannot be turned into an instant: taken_at stays
    # None and the caller uses the receive time, which Tasmota's teleperiod keeps close anyway.
    if msg.sml_key is not None:
        group, sep, key = msg.sml_key.partition(".")
        if not sep or not group or not key:
            raise ValueError(f"sml_key must look like 'Group.Key', not {msg.sml_key!r}")
        sml = body.get(group)
        if sml is None:
            raise Rejected("missing register", f"no {group!r} group")
        value = _object(sml, group).get(key)
        if value is None:
            raise Rejected("missing register", f"no {msg.sml_key!r}")
        return Telemetry(register=_energy(value, msg.sml_key))
    energy = body.get("ENERGY")
    if energy is None:
        raise Rejected("missing register", "no ENERGY")
    energy = _object(energy, "ENERGY")
    total = _pick(energy.get("Total"), msg.channel)
    if total is None:
        raise Rejected("missing register", f"no ENERGY.Total for channel {msg.channel}")

    def optional(key: str) -> Decimal | None:
        value = _pick(energy.get(key), msg.channel)
        return None if value is None else _number(value, f"ENERGY.{key}")

    export = _pick(energy.get("ExportActive"), msg.channel)
    return Telemetry(
        register=_energy(total, "ENERGY.Total"),
        export_register=None if export is None else _energy(export, "ENERGY.ExportActive"),
        power_w=optional("Power"),
        voltage_v=optional("Voltage"),
        current_a=optional("Current"),
    )


# --- Shelly Gen2 ---------------------------------------------------------------------------


def _shelly(msg: _Message) -> Parsed:
    sub = msg.sub_topic("")
    if sub is None or sub == "":
        raise _unknown(msg)
    if sub == "online":
        return _online(msg.text(), "online")
    if sub != "events/rpc":
        return None  # <prefix>/rpc (our own commands), <prefix>/status/..., replies...
    body = msg.json_object()
    if body.get("method") not in ("NotifyStatus", "NotifyFullStatus"):
        return None  # NotifyEvent and friends
    params = _object(body.get("params"), "params")
    n = msg.channel

    def component(name: str) -> dict[str, Any] | None:
        value = params.get(name)
        return None if value is None else _object(value, name)

    emdata, em1data = component(f"emdata:{n}"), component(f"em1data:{n}")
    em, em1, switch = component(f"em:{n}"), component(f"em1:{n}"), component(f"switch:{n}")

    # The register and the export register come from the same component.
    register = export = None
    if emdata is not None and emdata.get("total_act") is not None:
        register = _energy(emdata["total_act"], f"emdata:{n}.total_act", wh=True)
        export = _optional_energy(emdata, "total_act_ret", f"emdata:{n}.total_act_ret", wh=True)
    elif em1data is not None and em1data.get("total_act_energy") is not None:
        field = f"em1data:{n}.total_act_energy"
        register = _energy(em1data["total_act_energy"], field, wh=True)
        field = f"em1data:{n}.total_act_ret_energy"
        export = _optional_energy(em1data, "total_act_ret_energy", field, wh=True)
    elif switch is not None and switch.get("aenergy") is not None:
        aenergy = _object(switch["aenergy"], f"switch:{n}.aenergy")
        if aenergy.get("total") is not None:
            register = _energy(aenergy["total"], f"switch:{n}.aenergy.total", wh=True)
            returned = switch.get("ret_aenergy")
            if returned is not None:
                returned = _object(returned, f"switch:{n}.ret_aenergy")
            field = f"switch:{n}.ret_aenergy.total"
            export = _optional_energy(returned, "total", field, wh=True)

    output = None
    if switch is not None and switch.get("output") is not None:
        output = switch["output"]
        if not isinstance(output, bool):
            raise Rejected("wrong type", f"switch:{n}.output must be a boolean")
    if register is None:
        # NotifyStatus only carries what changed: a relay flip comes alone.
        return None if output is None else Ack(None, output)

    # Power, voltage and current: the first of em:N, em1:N, switch:N that carries each.
    found: list[Decimal | None] = [None, None, None]
    for name, comp, keys in (
        (f"em:{n}", em, ("total_act_power", "a_voltage", "total_current")),
        (f"em1:{n}", em1, ("act_power", "voltage", "current")),
        (f"switch:{n}", switch, ("apower", "voltage", "current")),
    ):
        for i, key in enumerate(keys):
            if comp is not None and found[i] is None:
                found[i] = _optional_number(comp, key, f"{name}.{key}")
    power, voltage, current = found
    return Telemetry(
        register=register,
        export_register=export,
        taken_at=_timestamp(params.get("ts"), "params.ts", msg.now),
        power_w=power,
        voltage_v=voltage,
        current_a=current,
        relay_closed=output,
    )


# --- Zigbee2MQTT ---------------------------------------------------------------------------


def _zigbee2mqtt(msg: _Message) -> Parsed:
    sub = msg.sub_topic("zigbee2mqtt")
    if sub is None:
        raise _unknown(msg)
    if sub == "availability":
        text = msg.text()
        if text.lstrip().startswith("{"):
            state = msg.json_object().get("state")
            if not isinstance(state, str):
                raise Rejected("wrong type", "availability state must be a string")
            return _online(state, "availability state")
        return _online(text, "availability")
    if sub != "":
        return None  # <name>/set, <name>/get: commands, ours
    body = msg.json_object()
    state = body.get("state")
    relay = None if state is None else _bool(state, "state")
    if body.get("energy") is None:
        if relay is None:
            raise Rejected("missing register", "no energy")
        return Ack(None, relay)
    return Telemetry(
        register=_energy(body["energy"], "energy"),
        export_register=_optional_energy(body, "produced_energy", "produced_energy"),
        power_w=_optional_number(body, "power", "power"),
        voltage_v=_optional_number(body, "voltage", "voltage"),
        current_a=_optional_number(body, "current", "current"),
        relay_closed=relay,
    )


# --- emonhub -------------------------------------------------------------------------------


def _emonhub(msg: _Message) -> Parsed:
    sub = msg.sub_topic("emon")
    if sub is None:
        raise _unknown(msg)
    energy_key, power_key = f"E{msg.channel + 1}", f"P{msg.channel + 1}"
    if sub == energy_key:
        return Telemetry(register=_energy(_plain_number(msg.text(), sub), sub, wh=True))
    if sub == power_key:
        # A power value alone has no register to pair with, and a Telemetry needs one: check it
        # and drop it. emonhub's JSON form on emon/<node> carries energy and power together.
        _plain_number(msg.text(), sub)
        return None
    if sub != "":
        return None  # other keys (V1, T1, other channels, rssi...)
    body = msg.json_object()
    if body.get(energy_key) is None:
        raise Rejected("missing register", f"no {energy_key}")
    return Telemetry(
        register=_energy(body[energy_key], energy_key, wh=True),
        taken_at=_timestamp(body.get("time"), "time", msg.now),
        power_w=_optional_number(body, power_key, power_key),
    )


_HANDLERS = {
    Format.native: _native,
    Format.tasmota: _tasmota,
    Format.shelly: _shelly,
    Format.zigbee2mqtt: _zigbee2mqtt,
    Format.emonhub: _emonhub,
}
