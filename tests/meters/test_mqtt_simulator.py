"""The simulator's MQTT devices against the real Mosquitto (MQTT_URL, 127.0.0.1:1883 by default).

What the devices publish is read with the backend's own parser, `mqtt_formats.parse`, and
commands are the backend's own, `mqtt_topics.relay_command`. Every device key carries a random
suffix so parallel runs never see each other's messages, and the retained statuses a test leaves
behind are cleared after it.
"""

import json
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest

from meters.mqtt_simulator import DeviceSpec, MqttSimulator, parse_device_ids
from meters.protocols.mqtt_formats import Ack, Format, Status, Telemetry, parse
from meters.protocols.mqtt_topics import relay_command
from meters.simulator import write_state_file
from tests.waiting import wait_for

BROKER = urlsplit(os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"))
HOST, PORT = BROKER.hostname or "127.0.0.1", BROKER.port or 1883
FAST = 0.2  # seconds between a test device's reports
DEADLINE = 15.0
# A published register is the simulated one rounded down to the format's resolution: at most
# 0.01 kWh below it (Zigbee2MQTT's two decimals), never above.
ROUNDING = Decimal("0.01")

# Where each format reports, by device key.
TELEMETRY = {
    Format.native: "meters/{key}/telemetry",
    Format.tasmota: "tele/{key}/SENSOR",
    Format.shelly: "{key}/events/rpc",
    Format.zigbee2mqtt: "zigbee2mqtt/{key}",
    Format.emonhub: "emon/{key}",
}
# Everything a device may publish, by device key.
DEVICE_TOPICS = {
    Format.native: ["meters/{key}/#"],
    Format.tasmota: ["tele/{key}/#", "stat/{key}/#"],
    Format.shelly: ["{key}/events/rpc", "{key}/online"],
    Format.zigbee2mqtt: ["zigbee2mqtt/{key}", "zigbee2mqtt/{key}/availability"],
    Format.emonhub: ["emon/{key}/#", "emon/{key}"],
}


def unique_key(label: str) -> str:
    return f"sim{label}{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes


class Broker:
    """A test client on the real broker: records what arrives on its subscriptions and
    publishes at QoS 1, waiting for the broker to take each message."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._acked: set[int] = set()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=unique_key("listener"),
            protocol=mqtt.MQTTv5,
        )
        if BROKER.username:
            self.client.username_pw_set(BROKER.username, BROKER.password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect(HOST, PORT)
        self.client.loop_start()
        wait_for(self.client.is_connected)

    def subscribe(self, *topics: str) -> None:
        _, mid = self.client.subscribe([(topic, 1) for topic in topics])
        wait_for(lambda: mid in self._acked)

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(DEADLINE)
        assert info.is_published()

    def since(self, start: int) -> list[Received]:
        with self._lock:
            return self.messages[start:]

    def mark(self) -> int:
        with self._lock:
            return len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, message.payload))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._acked.add(mid)


@pytest.fixture
def broker() -> Iterator[Broker]:
    client = Broker()
    yield client
    client.close()


def subscribe_to(broker: Broker, spec: DeviceSpec) -> None:
    broker.subscribe(*(topic.format(key=spec.key) for topic in DEVICE_TOPICS[spec.format]))


@contextmanager
def running(broker: Broker, *specs: DeviceSpec, **options) -> Iterator[MqttSimulator]:
    """Devices listened to by `broker` from before they connect, online, then stopped, and
    their retained statuses cleared."""
    for spec in specs:
        subscribe_to(broker, spec)
    simulator = MqttSimulator(specs, host=HOST, port=PORT, seed=11, **options)
    simulator.start()
    try:
        assert simulator.wait_online(DEADLINE)
        yield simulator
    finally:
        simulator.stop()
        for device in simulator.devices:
            status = device.status(online=False)
            if status is not None:
                broker.publish(status.topic, b"", retain=True)


def parsed(spec: DeviceSpec, message: Received, channel: int = 0, **kwargs):
    return parse(
        spec.format,
        message.topic,
        message.payload,
        device_key=spec.key,
        channel=channel,
        now=datetime.now(UTC),
        **kwargs,
    )


def next_reading(
    broker: Broker, spec: DeviceSpec, start: int, channel: int = 0, **kwargs
) -> tuple[int, Telemetry]:
    """The first telemetry from message number `start` on, and the number after it."""
    topic = TELEMETRY[spec.format].format(key=spec.key)

    def found() -> tuple[int, Telemetry] | None:
        for offset, message in enumerate(broker.since(start)):
            if message.topic == topic:
                reading = parsed(spec, message, channel, **kwargs)
                if isinstance(reading, Telemetry):
                    return start + offset + 1, reading
        return None

    return wait_for(found)


# --- reports --------------------------------------------------------------------------------


REPORTING = [
    pytest.param(DeviceSpec(Format.native, unique_key("n"), interval=FAST), id="native"),
    pytest.param(DeviceSpec(Format.tasmota, unique_key("t"), interval=FAST), id="tasmota"),
    pytest.param(
        DeviceSpec(Format.tasmota, unique_key("t2"), channels=2, interval=FAST), id="tasmota-2ch"
    ),
    pytest.param(
        DeviceSpec(Format.shelly, unique_key("s"), channels=2, interval=FAST), id="shelly-switch"
    ),
    pytest.param(
        DeviceSpec(Format.shelly, unique_key("e"), relay=False, interval=FAST), id="shelly-em1"
    ),
    pytest.param(DeviceSpec(Format.zigbee2mqtt, unique_key("z"), interval=FAST), id="zigbee2mqtt"),
    pytest.param(
        DeviceSpec(Format.emonhub, unique_key("h"), channels=2, interval=FAST), id="emonhub-2ch"
    ),
]


@pytest.mark.parametrize("spec", REPORTING)
def test_every_format_reports_its_registers_in_its_own_units(broker, spec):
    with running(broker, spec) as simulator:
        device = simulator.device(spec.format, spec.key)
        for channel in range(spec.channels):
            lowest = device.register(channel)
            _, reading = next_reading(broker, spec, 0, channel)
            highest = device.register(channel)
            # Wh mistaken for kWh (or the reverse) is a factor of 1000 off: far outside this.
            assert lowest - ROUNDING <= reading.register <= highest
            assert reading.power_w is not None
            assert 50 < reading.power_w < 10_000  # W, not kW
            if spec.format != Format.emonhub:
                assert 220 < reading.voltage_v < 240
            if spec.relay and spec.format in (Format.native, Format.shelly, Format.zigbee2mqtt):
                assert reading.relay_closed is True


def test_a_native_water_meter_reports_cubic_metres(broker):
    spec = DeviceSpec(Format.native, unique_key("w"), water=True, interval=FAST)
    with running(broker, spec) as simulator:
        device = simulator.device(spec.format, spec.key)
        lowest = device.register()
        _, reading = next_reading(broker, spec, 0)
        assert lowest - ROUNDING <= reading.register <= device.register()
        # The same household's electricity register, scaled down to a water meter's numbers.
        assert device.register() < device.channels[0].energy_kwh / 10


def test_a_tasmota_sml_script_register_is_reported_under_its_group(broker):
    spec = DeviceSpec(Format.tasmota, unique_key("m"), sml_keys=("SML.Total_in",), interval=FAST)
    with running(broker, spec) as simulator:
        device = simulator.device(spec.format, spec.key)
        lowest = device.register()
        _, reading = next_reading(broker, spec, 0, sml_key="SML.Total_in")
        assert lowest - ROUNDING <= reading.register <= device.register()


def test_devices_announce_themselves_retained_and_say_offline_when_stopped(broker):
    spec = DeviceSpec(Format.tasmota, unique_key("l"), interval=FAST)
    with running(broker, spec):
        wait_for(lambda: Status(online=True) in statuses(broker, spec))
    wait_for(lambda: statuses(broker, spec)[-1:] == [Status(online=False)])


def statuses(broker: Broker, spec: DeviceSpec) -> list[Status]:
    found = []
    for message in broker.since(0):
        if message.payload:
            reading = parsed(spec, message)
            if isinstance(reading, Status):
                found.append(reading)
    return found


# --- commands -------------------------------------------------------------------------------


SWITCHING = [
    pytest.param(DeviceSpec(Format.native, unique_key("n"), interval=FAST), 0, id="native"),
    pytest.param(DeviceSpec(Format.tasmota, unique_key("t"), interval=FAST), 0, id="tasmota"),
    pytest.param(
        DeviceSpec(Format.tasmota, unique_key("t2"), channels=2, interval=FAST),
        1,
        id="tasmota-POWER2",
    ),
    pytest.param(DeviceSpec(Format.shelly, unique_key("s"), interval=FAST), 0, id="shelly"),
    pytest.param(
        DeviceSpec(Format.shelly, unique_key("s2"), channels=2, interval=FAST),
        1,
        id="shelly-switch1",
    ),
    pytest.param(
        DeviceSpec(Format.zigbee2mqtt, unique_key("z"), interval=FAST), 0, id="zigbee2mqtt"
    ),
]


def confirmation(broker: Broker, spec: DeviceSpec, start: int, channel: int, closed: bool):
    """The first message from `start` on that reports the relay in the wanted state, and the
    number after it."""

    def found():
        for offset, message in enumerate(broker.since(start)):
            reading = parsed(spec, message, channel)
            if isinstance(reading, Ack | Telemetry) and reading.relay_closed is closed:
                return start + offset + 1, reading
        return None

    return wait_for(found)


@pytest.mark.parametrize(("spec", "channel"), SWITCHING)
def test_a_relay_command_is_obeyed_confirmed_in_the_dialect_and_stops_consumption(
    broker, spec, channel
):
    with running(broker, spec) as simulator:
        device = simulator.device(spec.format, spec.key)
        load = device.channels[channel]
        start = broker.mark()
        command = relay_command(
            spec.format, spec.key, channel=channel, close=False, command_id="c1"
        )
        broker.publish(command.topic, command.payload)

        after, confirmed = confirmation(broker, spec, start, channel, closed=False)
        if spec.format == Format.zigbee2mqtt:
            assert isinstance(confirmed, Telemetry)  # it confirms with its whole state
        else:
            assert isinstance(confirmed, Ack)
        if spec.format == Format.native:
            assert confirmed.command_id == "c1"
        assert load.relay_closed is False

        frozen = load.energy_kwh
        for _ in range(2):
            after, reading = next_reading(broker, spec, after, channel)
            assert reading.power_w == 0
            assert reading.relay_closed in (False, None)
        assert load.energy_kwh == frozen
        if spec.channels > 1:
            assert device.channels[0].relay_closed is True  # the other channel is untouched

        command = relay_command(spec.format, spec.key, channel=channel, close=True, command_id="c2")
        broker.publish(command.topic, command.payload)
        confirmation(broker, spec, after, channel, closed=True)
        wait_for(lambda: load.energy_kwh > frozen)


MALFORMED = [
    pytest.param(
        Format.native,
        [
            ("meters/{key}/cmd", b"not json"),
            ("meters/{key}/cmd", b'["off"]'),
            ("meters/{key}/cmd", b'{"relay": "off"}'),
            ("meters/{key}/cmd", b'{"id": "x", "relay": "maybe"}'),
        ],
        id="native",
    ),
    pytest.param(
        Format.tasmota,
        [
            ("cmnd/{key}/POWER", b"BANANA"),
            ("cmnd/{key}/POWER", b"\xff\xfe"),
            ("cmnd/{key}/POWER7", b"OFF"),
            ("cmnd/{key}/POWERX", b"OFF"),
        ],
        id="tasmota",
    ),
    pytest.param(
        Format.shelly,
        [
            ("{key}/rpc", b"{"),
            ("{key}/rpc", b'{"method": "Switch.Set", "params": []}'),
            ("{key}/rpc", b'{"method": "Switch.Set", "params": {"id": 5, "on": false}}'),
            ("{key}/rpc", b'{"method": "Switch.Set", "params": {"id": 0, "on": "off"}}'),
        ],
        id="shelly",
    ),
    pytest.param(
        Format.zigbee2mqtt,
        [
            ("zigbee2mqtt/{key}/set", b"OFF"),
            ("zigbee2mqtt/{key}/set", b'{"state": 0}'),
            ("zigbee2mqtt/{key}/set", b'{"state": "DIM"}'),
            ("zigbee2mqtt/{key}/set", b'{"brightness": 10}'),
        ],
        id="zigbee2mqtt",
    ),
]


@pytest.mark.parametrize(("fmt", "commands"), MALFORMED)
def test_malformed_commands_are_ignored_and_the_device_keeps_obeying(broker, fmt, commands):
    spec = DeviceSpec(fmt, unique_key("x"), interval=FAST)
    with running(broker, spec) as simulator:
        device = simulator.device(spec.format, spec.key)
        start = broker.mark()
        for topic, payload in commands:
            broker.publish(topic.format(key=spec.key), payload)
        command = relay_command(fmt, spec.key, channel=0, close=False, command_id="good")
        broker.publish(command.topic, command.payload)
        confirmation(broker, spec, start, 0, closed=False)
        # Commands arrive in the order they were sent: every bad one came, and changed nothing.
        assert device.commands == len(commands) + 1
        assert device.ready


def test_a_deaf_device_receives_commands_and_ignores_them(broker):
    spec = DeviceSpec(Format.native, unique_key("d"), interval=FAST, deaf=True)
    with running(broker, spec) as simulator:
        device = simulator.device(spec.format, spec.key)
        command = relay_command(spec.format, spec.key, channel=0, close=False, command_id="c1")
        broker.publish(command.topic, command.payload)
        wait_for(lambda: device.commands == 1)
        assert device.channels[0].relay_closed is True
        ack = f"meters/{spec.key}/cmd/ack"
        assert not [message for message in broker.since(0) if message.topic == ack]


def test_a_device_taken_offline_leaves_its_will_and_comes_back(broker):
    spec = DeviceSpec(Format.shelly, unique_key("o"), interval=FAST)
    with running(broker, spec) as simulator:
        simulator.take_offline(spec.format, spec.key)
        wait_for(lambda: statuses(broker, spec)[-1:] == [Status(online=False)])
        simulator.bring_online(spec.format, spec.key)
        wait_for(lambda: statuses(broker, spec)[-1:] == [Status(online=True)])
        assert simulator.wait_online(DEADLINE)


def test_an_offline_device_drops_off_after_connecting_and_stays_away(broker):
    spec = DeviceSpec(Format.zigbee2mqtt, unique_key("f"), interval=FAST, offline=True)
    subscribe_to(broker, spec)
    with MqttSimulator([spec], host=HOST, port=PORT) as simulator:
        wait_for(lambda: statuses(broker, spec)[-1:] == [Status(online=False)])
        assert not simulator.device(spec.format, spec.key).connected
    broker.publish(f"zigbee2mqtt/{spec.key}/availability", b"", retain=True)


# --- state, scale and configuration -----------------------------------------------------------


def test_registers_and_relays_survive_a_restart_through_the_state_file(broker, tmp_path: Path):
    state = tmp_path / "mqtt-state.json"
    write_state_file(state, {"1:1": (Decimal("12.5"), True)})  # a Modbus meter's, kept as is
    spec = DeviceSpec(Format.tasmota, unique_key("r"), channels=2, interval=FAST)
    with running(broker, spec, state_file=state) as simulator:
        command = relay_command(spec.format, spec.key, channel=1, close=False, command_id="c")
        start = broker.mark()
        broker.publish(command.topic, command.payload)
        confirmation(broker, spec, start, 1, closed=False)
    first = simulator.device(spec.format, spec.key)
    registers = [load.energy_kwh for load in first.channels]

    with running(broker, spec, state_file=state) as again:
        device = again.device(spec.format, spec.key)
        assert device.channels[0].energy_kwh >= registers[0]
        assert device.channels[1].energy_kwh == registers[1]
        assert device.channels[1].relay_closed is False
    entries = json.loads(state.read_text())["meters"]
    assert entries["1:1"] == {"energy_kwh": "12.5", "relay_closed": True}
    assert entries[f"mqtt:tasmota:{spec.key}:1"]["relay_closed"] is False


def test_two_hundred_devices_run_on_one_network_thread(broker):
    run = uuid.uuid4().hex[:8]
    formats = list(Format)
    specs = [
        DeviceSpec(formats[n % len(formats)], f"fleet{run}n{n}", interval=1.0) for n in range(200)
    ]
    for fmt in formats:
        # One wildcard per format for the whole fleet; other tests' devices are filtered out.
        broker.subscribe(TELEMETRY[fmt].format(key="+"))
    threads = threading.active_count()
    with MqttSimulator(specs, host=HOST, port=PORT) as simulator:
        assert threading.active_count() == threads + 1
        assert simulator.wait_online(30)

        def reporting() -> set[str]:
            return {m.topic for m in broker.since(0) if f"fleet{run}n" in m.topic}

        wait_for(lambda: len(reporting()) == len(specs), timeout=30)
    for spec in specs:
        status = simulator.device(spec.format, spec.key).status(online=False)
        if status is not None:
            broker.publish(status.topic, b"", retain=True)


def test_device_specs_refuse_what_the_format_cannot_say():
    with pytest.raises(ValueError, match="one register"):
        DeviceSpec(Format.native, "a", channels=2)
    with pytest.raises(ValueError, match="no relay"):
        DeviceSpec(Format.emonhub, "a", relay=True)
    with pytest.raises(ValueError, match="water"):
        DeviceSpec(Format.tasmota, "a", water=True)
    with pytest.raises(ValueError, match="topic level"):
        DeviceSpec(Format.tasmota, "a/b")
    with pytest.raises(ValueError, match="reserved"):
        DeviceSpec(Format.shelly, "tele")
    assert DeviceSpec(Format.emonhub, "a").relay is False
    assert DeviceSpec("shelly", "a").format == Format.shelly


def test_device_lists_on_the_command_line_name_format_and_key():
    assert parse_device_ids("tasmota:plug1, native:SN1,", "--x") == {
        (Format.tasmota, "plug1"),
        (Format.native, "SN1"),
    }
    with pytest.raises(ValueError, match="format:key"):
        parse_device_ids("plug1", "--x")
    with pytest.raises(ValueError, match="format:key"):
        parse_device_ids("modbus:1", "--x")


# --- the management command -----------------------------------------------------------------


@pytest.mark.skipif(
    not os.environ.get("DJANGO_SETTINGS_MODULE"),
    reason="needs the Django test database (run with the project's conftest)",
)
@pytest.mark.django_db
def test_the_command_simulates_each_database_device_with_its_meters_channels(property_a1):
    # Imported here: the rest of this file runs without Django.
    from meters import services
    from meters.management.commands.simulate_meters import mqtt_device_specs
    from meters.models import Meter
    from tests import factories

    def device(fmt: Format):
        return factories.MqttDeviceFactory(property=property_a1, format=fmt, key=unique_key("db"))

    def meter(on, channel=0, sml_key="", **kwargs):
        return services.meter_connect_mqtt(
            meter=factories.MeterFactory(unit__property=property_a1, **kwargs),
            actor=None,
            device=on,
            channel=channel,
            sml_key=sml_key,
        )

    plug = device(Format.tasmota)
    meter(plug, 0)
    meter(plug, 2, sml_key="SML.Total_in", has_relay=False)
    water = device(Format.native)
    meter(water, utility=Meter.Utility.WATER, has_relay=False)
    node = device(Format.emonhub)
    meter(node, 1, has_relay=False)
    impossible = device(Format.zigbee2mqtt)
    meter(impossible, utility=Meter.Utility.WATER)

    specs, problems = mqtt_device_specs(
        interval=2.5,
        credentials={plug.username: "its-password"},
        deaf=frozenset({(Format.tasmota, plug.key)}),
    )

    by_key = {spec.key: spec for spec in specs}
    assert by_key[plug.key] == DeviceSpec(
        Format.tasmota,
        plug.key,
        channels=3,
        relay=True,
        sml_keys=("", "", "SML.Total_in"),
        interval=2.5,
        username=plug.username,
        password="its-password",
        deaf=True,
    )
    assert by_key[water.key] == DeviceSpec(
        Format.native, water.key, relay=False, water=True, interval=2.5
    )
    assert by_key[node.key] == DeviceSpec(Format.emonhub, node.key, channels=2, interval=2.5)
    assert impossible.key not in by_key
    assert problems == [
        f"zigbee2mqtt:{impossible.key}: Only native meters report water (volume_m3)."
    ]
