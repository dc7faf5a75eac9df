"""Simulated MQTT devices, for development, tests and benchmarks: native meters, Tasmota,
Shelly Gen2, Zigbee2MQTT and emonhub, publishing to a real broker.

A device is a (format, key) with one or more channels. Every channel is a `MeteredLoad`, the
Modbus simulator's household: an energy register that follows `meters.load_profile` and a relay
that stops consumption while open. Each device publishes its readings in its own dialect every
`interval` seconds (with jitter), announces itself with a retained online status and a will
saying offline, and obeys relay commands in its dialect, exactly as `mqtt_topics.relay_command`
sends them, confirming each the way the real device does. What it publishes is what
`mqtt_formats.parse` reads, in the format's own units: kWh for native, Tasmota and
Zigbee2MQTT, Wh for Shelly and emonhub. Registers are rounded down to the format's resolution,
so a published register never runs ahead of the simulated one.

Every device has its own paho client (its own client id, login and will, as a real device has),
and all the clients share one network thread: a selector loop that reads and writes their
sockets, keeps them alive, reconnects them with backoff and runs the publishing schedule.
Callbacks therefore run on that thread alone, and no device state needs a lock. Hundreds of
devices cost one thread and one socket each.

Timestamps in payloads are wall-clock time, not simulated time: with a speedup the simulated
clock runs ahead, and the backend rejects readings from the future. A JSON state file (the
Modbus simulator's format, keyed "mqtt:<format>:<key>:<channel>") carries registers and relays
across restarts.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import random
import selectors
import signal
import socket
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt

from meters.protocols.mqtt_formats import Format
from meters.protocols.mqtt_topics import key_problem
from meters.simulator import (
    MeteredLoad,
    SavedMeter,
    SimulatedClock,
    opening_register,
    read_state_file,
    write_state_file,
)

logger = logging.getLogger(__name__)

QOS = 1
DEFAULT_INTERVAL_S = 10.0
HOUSEKEEPING_S = 0.5  # keepalive pings and reconnect attempts are checked this often
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0
GOODBYE_TIMEOUT_S = 5.0
# A household's water follows the same daily shape as its electricity at about a twentieth of
# the numbers: 5-10 kWh a day become 0.25-0.5 m3.
WATER_M3_PER_KWH = Decimal("0.05")
MAX_TASMOTA_RELAYS = 32  # POWER1..POWER32

DeviceId = tuple[Format, str]


class Outgoing(NamedTuple):
    """A message a device publishes (at QoS 1)."""

    topic: str
    payload: bytes
    retain: bool = False


class MalformedCommand(ValueError):
    """A command the device cannot make sense of; it is logged and ignored."""


@dataclass(frozen=True)
class DeviceSpec:
    """One device to simulate.

    `channels` are numbered from 0, as `Meter.mqtt_channel`. `relay` None means the format's
    usual: a relay on every channel, except emonhub, which only reports. `water` makes a native
    meter report `volume_m3`. `sml_keys` gives Tasmota channels an SML script's register
    ("Group.Key", by channel; "" for none) besides ENERGY. `username`/`password` are the
    device's own broker login, when the broker wants one per device. A `deaf` device receives
    commands and ignores them; an `offline` one drops off the network without a goodbye right
    after it first comes online (so the broker publishes its will) and stays away.
    """

    format: Format
    key: str
    channels: int = 1
    relay: bool | None = None
    water: bool = False
    sml_keys: tuple[str, ...] = ()
    interval: float = DEFAULT_INTERVAL_S
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    deaf: bool = False
    offline: bool = False

    def __post_init__(self) -> None:
        fmt = Format(self.format)
        object.__setattr__(self, "format", fmt)
        if self.relay is None:
            object.__setattr__(self, "relay", fmt != Format.emonhub)
        if not self.key or any(c in self.key for c in "/+#") or self.key != self.key.strip():
            raise ValueError(f"{self.key!r} cannot be a topic level.")
        problem = key_problem(fmt, self.key)
        if problem:
            raise ValueError(problem)
        if self.channels < 1:
            raise ValueError("A device has at least one channel.")
        if fmt == Format.native and self.channels != 1:
            raise ValueError("A native meter reports one register on its own topics.")
        if fmt == Format.tasmota and self.channels > MAX_TASMOTA_RELAYS:
            raise ValueError(f"Tasmota switches at most {MAX_TASMOTA_RELAYS} relays.")
        if fmt == Format.emonhub and self.relay:
            raise ValueError("emonhub nodes only report; they have no relay.")
        if self.water and fmt != Format.native:
            raise ValueError("Only native meters report water (volume_m3).")
        if self.sml_keys and (fmt != Format.tasmota or len(self.sml_keys) > self.channels):
            raise ValueError("SML keys are for Tasmota, one per channel at most.")
        for sml_key in self.sml_keys:
            group, sep, name = sml_key.partition(".")
            if sml_key and not (sep and group and name):
                raise ValueError(f"An SML key looks like 'Group.Key', not {sml_key!r}.")
        if self.interval <= 0:
            raise ValueError("The publishing interval must be above 0 seconds.")

    @property
    def id(self) -> DeviceId:
        return (self.format, self.key)


def parse_device_ids(text: str, option: str) -> frozenset[DeviceId]:
    """Read the command-line form "tasmota:plug-1,native:SN0001"."""
    ids = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        fmt, sep, key = item.partition(":")
        try:
            ids.add((Format(fmt), key))
        except ValueError:
            raise ValueError(f"{option} wants format:key, got {item!r}.") from None
        if not sep or not key:
            raise ValueError(f"{option} wants format:key, got {item!r}.")
    return frozenset(ids)


@dataclass(frozen=True)
class ChannelReading:
    """What a channel shows at one moment. `register` is kWh, or m3 for water, unrounded."""

    register: Decimal
    power_w: float
    voltage_v: float
    current_a: float
    relay_closed: bool


def _down(value: Decimal, resolution: Decimal) -> float:
    """`value` rounded down to `resolution`, as a float whose repr is exactly those digits (a
    float's repr is the shortest that round-trips, and registers have far fewer than 15)."""
    return float(value.quantize(resolution, rounding=ROUND_DOWN))


def _json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _on_off(closed: bool) -> str:
    return "ON" if closed else "OFF"


def _switch_word(text: str, current: bool) -> bool:
    """Tasmota's and Zigbee2MQTT's relay words: ON, OFF or TOGGLE (and Tasmota's 1, 0, 2)."""
    word = text.strip().upper()
    if word in ("ON", "1"):
        return True
    if word in ("OFF", "0"):
        return False
    if word in ("TOGGLE", "2"):
        return not current
    raise MalformedCommand(f"{text[:40]!r} is not ON, OFF or TOGGLE")


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError) as error:
        raise MalformedCommand(f"not JSON: {error}") from None
    if not isinstance(body, dict):
        raise MalformedCommand("not a JSON object")
    return body


class SimulatedDevice:
    """A device's channels and dialect. Its network side belongs to `MqttSimulator`."""

    def __init__(
        self, spec: DeviceSpec, channels: list[MeteredLoad], clock: SimulatedClock, zone: ZoneInfo
    ) -> None:
        self.spec = spec
        self.channels = channels
        self.zone = zone
        self.clock = clock  # the simulator's, replaced at every start
        self._dialect = _DIALECTS[spec.format]
        self.client: mqtt.Client  # given by the simulator at every start
        self.connected = False
        self.subscribed = False
        self.dropped = False  # taken off the network on purpose: no reconnecting
        self.published = 0
        self.commands = 0
        self.reconnect_at = 0.0
        self.backoff = RECONNECT_MIN_S
        self.subscribe_mid: int | None = None

    def __repr__(self) -> str:
        return f"<SimulatedDevice {self.spec.format.value}:{self.spec.key}>"

    @property
    def ready(self) -> bool:
        """Connected, and listening for commands if it takes any."""
        return self.connected and (self.subscribed or not self.command_topics())

    def status(self, *, online: bool) -> Outgoing | None:
        """The retained availability message (and, offline, the will), or None."""
        return self._dialect.status(self.spec.key, online=online)

    def command_topics(self) -> list[str]:
        if not self.spec.relay:
            return []
        return self._dialect.command_topics(self.spec.key)

    def register(self, channel: int = 0) -> Decimal:
        """The channel's register as the device counts it: kWh, or m3 for water."""
        energy = self.channels[channel].energy_kwh
        return energy * WATER_M3_PER_KWH if self.spec.water else energy

    def readings(self) -> list[ChannelReading]:
        moment = self.clock.now()
        readings = []
        for number, load in enumerate(self.channels):
            load.advance(moment)
            power = load.power_w(moment)
            voltage = load.voltage_v()
            readings.append(
                ChannelReading(
                    register=self.register(number),
                    power_w=power,
                    voltage_v=voltage,
                    current_a=power / voltage,
                    relay_closed=load.relay_closed,
                )
            )
        return readings

    def telemetry(self) -> list[Outgoing]:
        return self._dialect.telemetry(self, self.readings(), datetime.now(UTC))

    def obey(self, topic: str, payload: bytes) -> list[Outgoing]:
        """Act on a command and return its confirmation. Raises MalformedCommand."""
        self.commands += 1
        if self.spec.deaf:
            logger.info("%r is deaf and ignores %s", self, topic)
            return []
        return self._dialect.obey(self, topic, payload)

    def switch(self, channel: int, closed: bool) -> None:
        self.channels[channel].switch(closed=closed, moment=self.clock.now())


class _Dialect(ABC):
    """How one format names its topics, reports and takes commands."""

    def status(self, key: str, *, online: bool) -> Outgoing | None:
        return None

    def command_topics(self, key: str) -> list[str]:
        return []

    @abstractmethod
    def telemetry(
        self, device: SimulatedDevice, readings: list[ChannelReading], now: datetime
    ) -> list[Outgoing]:
        """The messages that report these readings (every format reports)."""

    def obey(self, device: SimulatedDevice, topic: str, payload: bytes) -> list[Outgoing]:
        return []


class _Native(_Dialect):
    """prepaid's own meters: `meters/<serial>/...`, kWh (or m3), one register."""

    resolution = Decimal("0.001")

    def status(self, key: str, *, online: bool) -> Outgoing:
        return Outgoing(f"meters/{key}/status", b"online" if online else b"offline", True)

    def command_topics(self, key: str) -> list[str]:
        return [f"meters/{key}/cmd"]

    def telemetry(
        self, device: SimulatedDevice, readings: list[ChannelReading], now: datetime
    ) -> list[Outgoing]:
        reading = readings[0]
        body: dict[str, Any] = {
            "ts": now.astimezone(device.zone).isoformat(timespec="milliseconds")
        }
        if device.spec.water:
            body["volume_m3"] = _down(reading.register, self.resolution)
        else:
            body["energy_kwh"] = _down(reading.register, self.resolution)
            body["power_w"] = round(reading.power_w, 1)
            body["voltage_v"] = round(reading.voltage_v, 1)
            body["current_a"] = round(reading.current_a, 3)
        if device.spec.relay:
            body["relay"] = "on" if reading.relay_closed else "off"
        return [Outgoing(f"meters/{device.spec.key}/telemetry", _json(body))]

    def obey(self, device: SimulatedDevice, topic: str, payload: bytes) -> list[Outgoing]:
        body = _json_object(payload)
        command_id, relay = body.get("id"), body.get("relay")
        if not isinstance(command_id, str) or not command_id:
            raise MalformedCommand("no command id")
        if not isinstance(relay, str) or relay.lower() not in ("on", "off"):
            raise MalformedCommand(f"relay is {relay!r}, not on or off")
        closed = relay.lower() == "on"
        device.switch(0, closed)
        ack = {"id": command_id, "relay": "on" if closed else "off"}
        return [Outgoing(f"meters/{device.spec.key}/cmd/ack", _json(ack))]


class _Tasmota(_Dialect):
    """Tasmota: `tele/<topic>/SENSOR` in kWh, arrays on multi-channel devices, and POWERn."""

    resolution = Decimal("0.001")

    def status(self, key: str, *, online: bool) -> Outgoing:
        return Outgoing(f"tele/{key}/LWT", b"Online" if online else b"Offline", True)

    def command_topics(self, key: str) -> list[str]:
        return [f"cmnd/{key}/#"]

    def telemetry(
        self, device: SimulatedDevice, readings: list[ChannelReading], now: datetime
    ) -> list[Outgoing]:
        def each(values: list[Any]) -> Any:
            return values if len(values) > 1 else values[0]

        energy = {
            "Total": each([_down(r.register, self.resolution) for r in readings]),
            "Power": each([round(r.power_w) for r in readings]),
            "Voltage": each([round(r.voltage_v) for r in readings]),
            "Current": each([round(r.current_a, 3) for r in readings]),
        }
        # Tasmota's Time is the device's local time with no zone.
        body: dict[str, Any] = {
            "Time": now.astimezone(device.zone).replace(tzinfo=None).isoformat(timespec="seconds"),
            "ENERGY": energy,
        }
        for sml_key, reading in zip(device.spec.sml_keys, readings, strict=False):
            if sml_key:
                group, _, name = sml_key.partition(".")
                body.setdefault(group, {})[name] = _down(reading.register, self.resolution)
        return [Outgoing(f"tele/{device.spec.key}/SENSOR", _json(body))]

    def obey(self, device: SimulatedDevice, topic: str, payload: bytes) -> list[Outgoing]:
        command = topic.rsplit("/", 1)[-1].upper()
        if not command.startswith("POWER"):
            logger.info("%r does not simulate the Tasmota command %s", device, command)
            return []
        number = command.removeprefix("POWER")
        if number and not number.isdigit():
            raise MalformedCommand(f"no such relay: {command}")
        # POWER and POWER1 are the first relay; POWER0 is every relay at once.
        index = int(number) if number else 1
        if index > len(device.channels):
            raise MalformedCommand(f"no such relay: {command}")
        channels = range(len(device.channels)) if index == 0 else [index - 1]
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            raise MalformedCommand("not UTF-8") from None
        confirmations = []
        for channel in channels:
            # An empty payload asks for the state without changing it.
            if text.strip():
                device.switch(channel, _switch_word(text, device.channels[channel].relay_closed))
            confirmations += self._power_state(device, channel)
        return confirmations

    def _power_state(self, device: SimulatedDevice, channel: int) -> list[Outgoing]:
        # A single-relay device answers on POWER, a multi-relay one on POWER1, POWER2...
        name = "POWER" if len(device.channels) == 1 else f"POWER{channel + 1}"
        state = _on_off(device.channels[channel].relay_closed)
        key = device.spec.key
        return [
            Outgoing(f"stat/{key}/RESULT", _json({name: state})),
            Outgoing(f"stat/{key}/{name}", state.encode()),
        ]


class _Shelly(_Dialect):
    """Shelly Gen2: NotifyStatus on `<prefix>/events/rpc`, Wh, and Switch.Set RPCs."""

    resolution_wh = Decimal("0.001")

    def status(self, key: str, *, online: bool) -> Outgoing:
        return Outgoing(f"{key}/online", b"true" if online else b"false", True)

    def command_topics(self, key: str) -> list[str]:
        return [f"{key}/rpc"]

    def telemetry(
        self, device: SimulatedDevice, readings: list[ChannelReading], now: datetime
    ) -> list[Outgoing]:
        params: dict[str, Any] = {"ts": round(now.timestamp(), 2)}
        for n, reading in enumerate(readings):
            wh = _down(reading.register * 1000, self.resolution_wh)
            power = round(reading.power_w, 1)
            voltage = round(reading.voltage_v, 1)
            current = round(reading.current_a, 3)
            if device.spec.relay:
                params[f"switch:{n}"] = {
                    "id": n,
                    "output": reading.relay_closed,
                    "apower": power,
                    "voltage": voltage,
                    "current": current,
                    "aenergy": {"total": wh},
                }
            else:
                params[f"em1:{n}"] = {
                    "id": n,
                    "act_power": power,
                    "voltage": voltage,
                    "current": current,
                }
                params[f"em1data:{n}"] = {"id": n, "total_act_energy": wh}
        return [self._notify(device.spec.key, params)]

    def obey(self, device: SimulatedDevice, topic: str, payload: bytes) -> list[Outgoing]:
        body = _json_object(payload)
        method = body.get("method")
        if method not in ("Switch.Set", "Switch.Toggle"):
            logger.info("%r does not simulate the Shelly RPC %r", device, method)
            return []
        params = body.get("params")
        if not isinstance(params, dict):
            raise MalformedCommand("params is not an object")
        channel = params.get("id")
        if isinstance(channel, bool) or not isinstance(channel, int):
            raise MalformedCommand(f"switch id is {channel!r}")
        if not 0 <= channel < len(device.channels):
            raise MalformedCommand(f"no switch:{channel}")
        if method == "Switch.Toggle":
            closed = not device.channels[channel].relay_closed
        else:
            closed = params.get("on")
            if not isinstance(closed, bool):
                raise MalformedCommand(f"on is {closed!r}, not a boolean")
        device.switch(channel, closed)
        # A real Shelly also answers the RPC on `<src>/rpc`, but its own login may publish only
        # under its prefix (mqtt_topics.device_grants), and nobody reads those answers: the
        # status notification is the confirmation.
        change = {"id": channel, "output": closed}
        params_out = {"ts": round(time.time(), 2), f"switch:{channel}": change}
        return [self._notify(device.spec.key, params_out)]

    def _notify(self, key: str, params: dict[str, Any]) -> Outgoing:
        body = {"src": key, "dst": f"{key}/events", "method": "NotifyStatus", "params": params}
        return Outgoing(f"{key}/events/rpc", _json(body))


class _Zigbee2mqtt(_Dialect):
    """Zigbee2MQTT: the device's whole state on `zigbee2mqtt/<name>`, kWh, and `/set`.

    Channel 0 uses the plain keys (`state`, `energy`...), channel n the `_l<n+1>` ones, as
    `relay_command` addresses them.
    """

    resolution = Decimal("0.01")

    def status(self, key: str, *, online: bool) -> Outgoing:
        state = {"state": "online" if online else "offline"}
        return Outgoing(f"zigbee2mqtt/{key}/availability", _json(state), True)

    def command_topics(self, key: str) -> list[str]:
        return [f"zigbee2mqtt/{key}/set"]

    def telemetry(
        self, device: SimulatedDevice, readings: list[ChannelReading], now: datetime
    ) -> list[Outgoing]:
        body: dict[str, Any] = {"linkquality": 120}
        for n, reading in enumerate(readings):
            suffix = "" if n == 0 else f"_l{n + 1}"
            body[f"energy{suffix}"] = _down(reading.register, self.resolution)
            body[f"power{suffix}"] = round(reading.power_w, 1)
            body[f"voltage{suffix}"] = round(reading.voltage_v, 1)
            body[f"current{suffix}"] = round(reading.current_a, 3)
            if device.spec.relay:
                body[f"state{suffix}"] = _on_off(reading.relay_closed)
        return [Outgoing(f"zigbee2mqtt/{device.spec.key}", _json(body))]

    def obey(self, device: SimulatedDevice, topic: str, payload: bytes) -> list[Outgoing]:
        body = _json_object(payload)
        changes = []
        for name, value in body.items():
            channel = self._state_channel(name)
            if channel is None:
                continue  # brightness, color and the like: not a relay's business
            if channel >= len(device.channels):
                raise MalformedCommand(f"no such relay: {name}")
            if not isinstance(value, str):
                raise MalformedCommand(f"{name} is {value!r}")
            changes.append((channel, _switch_word(value, device.channels[channel].relay_closed)))
        if not changes:
            raise MalformedCommand("no state to set")
        for channel, closed in changes:
            device.switch(channel, closed)
        # Zigbee2MQTT confirms by publishing the device's whole state again.
        return device.telemetry()

    @staticmethod
    def _state_channel(name: str) -> int | None:
        if name == "state":
            return 0
        number = name.removeprefix("state_l")
        if number != name and number.isdigit() and int(number) >= 1:
            return int(number) - 1
        return None


class _Emonhub(_Dialect):
    """emonhub: `emon/<node>` JSON with E1.. in Wh and P1.. in W. No relay, no status."""

    def telemetry(
        self, device: SimulatedDevice, readings: list[ChannelReading], now: datetime
    ) -> list[Outgoing]:
        body: dict[str, Any] = {"time": int(now.timestamp())}
        for n, reading in enumerate(readings, start=1):
            body[f"E{n}"] = int(reading.register * 1000)  # whole Wh, rounded down
            body[f"P{n}"] = round(reading.power_w)
        return [Outgoing(f"emon/{device.spec.key}", _json(body))]


_DIALECTS: dict[Format, _Dialect] = {
    Format.native: _Native(),
    Format.tasmota: _Tasmota(),
    Format.shelly: _Shelly(),
    Format.zigbee2mqtt: _Zigbee2mqtt(),
    Format.emonhub: _Emonhub(),
}


def _state_key(spec: DeviceSpec, channel: int) -> str:
    return f"mqtt:{spec.format.value}:{spec.key}:{channel}"


class MqttSimulator:
    """Simulated MQTT devices against one broker, all on one network thread.

    `start()` returns at once; devices connect in the background (see `wait_online`) and keep
    reconnecting with backoff if the broker goes away. `stop()` publishes every device's offline
    status, disconnects cleanly and saves the state file.

    While it runs, other threads may call `stop`, `wait_online`, `take_offline`, `bring_online`
    and read `device(...)`, `devices` and `published`; the devices' channels are changed by the
    network thread alone.
    """

    def __init__(
        self,
        devices: Iterable[DeviceSpec],
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        seed: int = 1,
        zone: str = "Asia/Shanghai",
        speedup: float = 1.0,
        state_file: Path | str | None = None,
        save_interval: float = 5.0,
        jitter: float = 0.1,
        keepalive: int = 30,
        client_id_prefix: str = "prepaid-sim",
    ) -> None:
        specs = list(devices)
        if speedup <= 0:
            raise ValueError("The speedup must be above 0.")
        if not 0 <= jitter < 1:
            raise ValueError("The jitter is a fraction of the interval, from 0 to below 1.")
        ids = [spec.id for spec in specs]
        if len(set(ids)) != len(ids):
            raise ValueError("Each (format, key) can be simulated once.")
        self.specs = specs
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.tls = tls
        self.seed = seed
        self.zone = ZoneInfo(zone)
        self.speedup = speedup
        self.state_file = Path(state_file) if state_file is not None else None
        self.save_interval = save_interval
        self.jitter = jitter
        self.keepalive = keepalive
        self.client_id_prefix = client_id_prefix
        self._clock = SimulatedClock(speedup)
        self._devices: dict[DeviceId, SimulatedDevice] = {}
        # Entries for devices this run does not simulate, written back untouched.
        self._other_state: dict[str, SavedMeter] = {}
        self._random = random.Random(seed)  # noqa: S311 - schedule jitter, not security
        self._schedule: list[tuple[float, int, SimulatedDevice]] = []
        self._sequence = 0
        # The network thread's selector and its wake-up pair, made afresh at every start.
        self._selector: selectors.BaseSelector
        self._wake_read: socket.socket
        self._wake_write: socket.socket
        self._calls: deque[Callable[[], None]] = deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MqttSimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def devices(self) -> list[SimulatedDevice]:
        return list(self._devices.values())

    def device(self, fmt: Format | str, key: str) -> SimulatedDevice:
        return self._devices[(Format(fmt), key)]

    @property
    def published(self) -> int:
        """Messages published so far by all devices (telemetry, statuses and confirmations)."""
        return sum(device.published for device in self._devices.values())

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("The MQTT simulator is already running.")
        self._clock = SimulatedClock(self.speedup)
        moment = self._clock.now()
        if self._devices:
            for device in self._devices.values():
                device.clock = self._clock
                for load in device.channels:
                    load.resume(moment)
        else:
            self._create_devices(moment)
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        now = time.monotonic()
        self._schedule = []
        for device in self._devices.values():
            device.dropped = False
            device.reconnect_at = now
            device.client = self._client(device)
            # The first report comes at a random point of the first interval, so a fleet
            # started together does not publish in lockstep.
            self._plan(device, now + self._random.uniform(0, device.spec.interval))
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="mqtt-simulator", daemon=True)
        self._thread.start()

    def wait_online(self, timeout: float) -> bool:
        """Wait until every device (but the `offline` ones) is connected and subscribed."""
        deadline = time.monotonic() + timeout
        waiting = [d for d in self._devices.values() if not d.spec.offline]
        while True:
            waiting = [device for device in waiting if not device.ready]
            if not waiting or time.monotonic() >= deadline:
                return not waiting
            time.sleep(0.02)

    def stop(self) -> None:
        """Say offline, disconnect every device, stop the network thread and save the state."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake()
        self._thread.join(GOODBYE_TIMEOUT_S + 5)
        if self._thread.is_alive():
            logger.error("The MQTT simulator's network thread did not stop in time")
        self._thread = None
        moment = self._clock.now()
        for device in self._devices.values():
            for load in device.channels:
                load.advance(moment)
        self.save_state()

    def run_forever(self, on_started: Callable[[MqttSimulator], None] | None = None) -> None:
        """Run until SIGTERM or SIGINT, then stop and save the state. Main thread only."""
        stopping = threading.Event()
        previous = {
            signum: signal.signal(signum, lambda *_: stopping.set())
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self.start()
            if on_started is not None:
                on_started(self)
            while not stopping.wait(0.5):
                pass
        finally:
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def take_offline(self, fmt: Format | str, key: str) -> None:
        """Drop the device's connection without a goodbye, so the broker publishes its will,
        and keep it away until `bring_online`. Safe from any thread."""
        device = self.device(fmt, key)
        self._call_soon(lambda: self._drop(device))

    def bring_online(self, fmt: Format | str, key: str) -> None:
        device = self.device(fmt, key)

        def reconnect() -> None:
            device.dropped = False
            device.reconnect_at = time.monotonic()

        self._call_soon(reconnect)

    def save_state(self) -> None:
        """Write every channel's register and relay (atomically, as the Modbus simulator does)."""
        if self.state_file is None or not self._devices:
            return
        registers = dict(self._other_state)
        for device in self._devices.values():
            for channel, load in enumerate(device.channels):
                registers[_state_key(device.spec, channel)] = (load.energy_kwh, load.relay_closed)
        write_state_file(self.state_file, registers)

    # --- set-up ---------------------------------------------------------------------------

    def _create_devices(self, moment: datetime) -> None:
        saved = read_state_file(self.state_file) if self.state_file is not None else {}
        for spec in self.specs:
            loads = []
            for channel in range(spec.channels):
                name = _state_key(spec, channel)
                seed = zlib.crc32(f"{self.seed}:{name}".encode())
                energy, closed = saved.pop(name, (opening_register(seed), True))
                loads.append(
                    MeteredLoad(
                        seed=seed,
                        zone=self.zone,
                        energy_kwh=energy,
                        relay_closed=closed or not spec.relay,
                        rollover_at=None,
                        moment=moment,
                    )
                )
            self._devices[spec.id] = SimulatedDevice(spec, loads, self._clock, self.zone)
        self._other_state = saved

    def _client(self, device: SimulatedDevice) -> mqtt.Client:
        spec = device.spec
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{self.client_id_prefix}-{spec.format.value}-{spec.key}",
            protocol=mqtt.MQTTv311,  # what Tasmota, Shelly and most meters speak
            userdata=device,
        )
        if spec.username:
            client.username_pw_set(spec.username, spec.password)
        elif self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set()
        will = device.status(online=False)
        if will is not None:
            client.will_set(will.topic, will.payload, qos=QOS, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        client.connect_async(self.host, self.port, keepalive=self.keepalive, clean_start=True)
        return client

    # --- the network thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            next_housekeeping = 0.0
            next_save = time.monotonic() + self.save_interval
            while not self._stopping.is_set():
                now = time.monotonic()
                due = min(next_housekeeping, next_save)
                if self._schedule:
                    due = min(due, self._schedule[0][0])
                self._pump(max(0.0, due - now))
                now = time.monotonic()
                if now >= next_housekeeping:
                    next_housekeeping = now + HOUSEKEEPING_S
                    self._housekeeping(now)
                self._publish_due(now)
                if now >= next_save:
                    next_save = now + self.save_interval
                    self._save_while_running()
            self._say_goodbye()
        except Exception:
            logger.exception("The MQTT simulator's network loop failed")
        finally:
            self._close_network()

    def _pump(self, timeout: float) -> None:
        """Wait for socket events (at most `timeout`) and let each client handle its own."""
        for selected, mask in self._selector.select(timeout):
            device = selected.data
            if device is None:
                self._drain_wake()
                continue
            self._guarded(device, "network", lambda d=device, m=mask: self._serve(d, m))
        while self._calls:
            call = self._calls.popleft()
            try:
                call()
            except Exception:
                logger.exception("A call into the MQTT simulator failed")

    def _serve(self, device: SimulatedDevice, mask: int) -> None:
        client = device.client
        if mask & selectors.EVENT_READ:
            client.loop_read()
            # TLS may hold decrypted bytes the socket no longer signals.
            sock = client.socket()
            while sock is not None and getattr(sock, "pending", lambda: 0)():
                client.loop_read()
                sock = client.socket()
        if mask & selectors.EVENT_WRITE and client.socket() is not None:
            client.loop_write()

    def _housekeeping(self, now: float) -> None:
        for device in self._devices.values():
            client = device.client
            if client.socket() is not None:
                self._guarded(device, "keepalive", client.loop_misc)
            elif not device.dropped and now >= device.reconnect_at:
                self._connect(device, now)

    def _connect(self, device: SimulatedDevice, now: float) -> None:
        try:
            device.client.reconnect()
        except OSError as error:
            logger.warning("%r cannot reach %s:%s: %s", device, self.host, self.port, error)
            self._back_off(device, now)

    def _back_off(self, device: SimulatedDevice, now: float) -> None:
        device.reconnect_at = now + device.backoff * self._random.uniform(0.5, 1.5)
        device.backoff = min(device.backoff * 2, RECONNECT_MAX_S)

    def _publish_due(self, now: float) -> None:
        while self._schedule and self._schedule[0][0] <= now:
            due, _, device = heapq.heappop(self._schedule)
            if device.connected:
                self._guarded(device, "telemetry", lambda d=device: self._send(d, d.telemetry()))
            interval = device.spec.interval
            following = due + interval * self._random.uniform(1 - self.jitter, 1 + self.jitter)
            # A loop that fell behind (a stalled broker) starts afresh rather than catching up.
            self._plan(device, following if following > now else now + interval)

    def _plan(self, device: SimulatedDevice, at: float) -> None:
        self._sequence += 1
        heapq.heappush(self._schedule, (at, self._sequence, device))

    def _send(self, device: SimulatedDevice, messages: list[Outgoing]) -> list[Any]:
        infos = []
        for message in messages:
            info = device.client.publish(message.topic, message.payload, QOS, message.retain)
            device.published += 1
            infos.append(info)
        return infos

    def _save_while_running(self) -> None:
        try:
            self.save_state()
        except OSError:
            # Simulating goes on; the next save, or the one at stop, may well succeed.
            logger.exception("Could not save the MQTT simulator state to %s", self.state_file)

    def _say_goodbye(self) -> None:
        """Publish every connected device's offline status, wait for the broker to take them,
        then disconnect, which the broker does not answer with the will."""
        deadline = time.monotonic() + GOODBYE_TIMEOUT_S
        pending = []
        for device in self._devices.values():
            status = device.status(online=False)
            if device.connected and status is not None:
                pending += self._send(device, [status])
        while pending and time.monotonic() < deadline:
            self._pump(0.05)
            pending = [info for info in pending if not info.is_published()]
        for device in self._devices.values():
            if device.client.socket() is not None:
                device.client.disconnect()
        while time.monotonic() < deadline and any(
            device.client.socket() is not None for device in self._devices.values()
        ):
            self._pump(0.05)

    def _close_network(self) -> None:
        for device in self._devices.values():
            sock = device.client.socket()
            if sock is not None:
                # Past the goodbye's deadline: let the broker see the connection drop.
                self._forget_socket(sock)
                sock.close()
            device.connected = device.subscribed = False
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()

    def _drop(self, device: SimulatedDevice) -> None:
        device.dropped = True
        sock = device.client.socket()
        if sock is not None:
            # A shutdown without DISCONNECT: the broker sees the connection lost and publishes
            # the will; paho reads the end of the stream and reports the disconnection.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                logger.debug("%r was already disconnected", device)

    def _call_soon(self, call: Callable[[], None]) -> None:
        self._calls.append(call)
        self._wake()

    def _wake(self) -> None:
        if self._thread is None:
            return  # not running: the first turn of the loop will see the calls
        # A full pipe already wakes the loop; a closed one has nobody left to wake.
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_read.recv(4096):
                pass

    def _guarded(self, device: SimulatedDevice, what: str, action: Callable[[], object]) -> None:
        # One device's failure must not stop the others: log it and go on.
        try:
            action()
        except Exception:
            logger.exception("%r failed (%s)", device, what)

    # --- paho callbacks (all on the network thread) ----------------------------------------

    def _on_connect(self, client, device: SimulatedDevice, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.warning("%r was refused by the broker: %s", device, reason_code)
            return
        device.connected = True
        device.backoff = RECONNECT_MIN_S
        topics = device.command_topics()
        if topics:
            _, device.subscribe_mid = client.subscribe([(topic, QOS) for topic in topics])
        status = device.status(online=True)
        if status is not None:
            self._send(device, [status])
        if device.spec.offline:
            self._call_soon(lambda: self._drop(device))

    def _on_subscribe(self, client, device: SimulatedDevice, mid, reason_codes, properties) -> None:
        if mid != device.subscribe_mid:
            return
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            logger.warning("%r may not subscribe to its commands: %s", device, refused)
        device.subscribed = not refused

    def _on_disconnect(self, client, device: SimulatedDevice, flags, reason_code, props) -> None:
        was_connected = device.connected
        device.connected = device.subscribed = False
        if self._stopping.is_set() or device.dropped:
            return
        if was_connected:
            logger.warning("%r lost its connection: %s", device, reason_code)
        self._back_off(device, time.monotonic())

    def _on_message(self, client, device: SimulatedDevice, message: mqtt.MQTTMessage) -> None:
        # An exception here would end up in the network loop: catch everything.
        try:
            self._send(device, device.obey(message.topic, message.payload))
        except MalformedCommand as error:
            logger.warning("%r ignored a malformed command on %s: %s", device, message.topic, error)
        except Exception:
            logger.exception("%r failed on a command on %s", device, message.topic)

    def _on_socket_open(self, client, device: SimulatedDevice, sock) -> None:
        self._selector.register(sock, selectors.EVENT_READ, device)

    def _on_socket_close(self, client, device: SimulatedDevice, sock) -> None:
        self._forget_socket(sock)

    def _on_socket_register_write(self, client, device: SimulatedDevice, sock) -> None:
        self._watch(sock, device, selectors.EVENT_READ | selectors.EVENT_WRITE)

    def _on_socket_unregister_write(self, client, device: SimulatedDevice, sock) -> None:
        self._watch(sock, device, selectors.EVENT_READ)

    def _watch(self, sock, device: SimulatedDevice, events: int) -> None:
        try:
            self._selector.modify(sock, events, device)
        except (KeyError, ValueError):
            logger.debug("%r: socket no longer watched", device)

    def _forget_socket(self, sock) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            logger.debug("Socket already forgotten")
