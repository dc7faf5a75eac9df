"""A real Mosquitto, configured only with what `mqtt_auth_export` writes, keeps every device to
its own topics and gives the backend what it needs."""

import os
import queue
import secrets
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from django.core.management import call_command

from meters.models import MqttDevice
from meters.mqtt_devices import mqtt_device_create, mqtt_device_rotate_credentials
from meters.protocols.mqtt_topics import SUBSCRIPTIONS

pytestmark = pytest.mark.django_db

MOSQUITTO = "/usr/sbin/mosquitto"
TIMEOUT = 5.0


@dataclass(frozen=True)
class Login:
    username: str
    password: str


@dataclass
class Broker:
    port: int
    directory: Path
    backend: Login
    logins: dict[str, Login] = field(default_factory=dict)
    devices: dict[str, MqttDevice] = field(default_factory=dict)

    def export(self, *extra: str) -> None:
        call_command(
            "mqtt_auth_export",
            "--password-file",
            str(self.directory / "passwd"),
            "--acl-file",
            str(self.directory / "acl"),
            *extra,
        )


class Session:
    """One MQTT v5 connection that records what the broker answers and delivers."""

    def __init__(self, port: int, login: Login | None) -> None:
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack: mqtt.ReasonCode | None = None
        self.subacks: dict[int, list[mqtt.ReasonCode]] = {}
        self.subscribed = threading.Condition()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"acl-test-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        if login is not None:
            self.client.username_pw_set(login.username, login.password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT), "no CONNACK"

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = reason_code
        self.connected.set()
        if reason_code.is_failure:
            # Without this, paho would keep retrying a login the broker has refused.
            client.disconnect()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.subscribed:
            self.subacks[mid] = reason_codes
            self.subscribed.notify_all()

    def _on_message(self, client, userdata, message):
        self.messages.put((message.topic, message.payload))

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, *filters: str) -> list[mqtt.ReasonCode]:
        _, mid = self.client.subscribe([(topic, 1) for topic in filters])
        with self.subscribed:
            assert self.subscribed.wait_for(lambda: mid in self.subacks, TIMEOUT), "no SUBACK"
            return self.subacks[mid]

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT)

    def received_until(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Every message delivered up to and including the sentinel (topic, payload)."""
        seen = []
        deadline = time.monotonic() + TIMEOUT
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=remaining)
            except queue.Empty:
                break
            seen.append(message)
            if message == (topic, payload):
                return seen
        pytest.fail(f"the sentinel on {topic} never arrived; got {seen}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mosquitto exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"mosquitto did not listen on {port}:\n{log.read_text()}")


@pytest.fixture
def broker(tmp_path, settings, property_a1, property_b1):
    port = _free_port()
    backend = Login("prepaid-backend", secrets.token_urlsafe(16))
    settings.MQTT_URL = f"mqtt://{backend.username}:{backend.password}@127.0.0.1:{port}"
    # Device B belongs to another organisation: topics are one namespace on the broker.
    broker = Broker(port=port, directory=tmp_path, backend=backend)
    for name, prop, fmt, key in [
        ("a", property_a1, "native", "SN-A"),
        ("b", property_b1, "native", "SN-B"),
        ("plug", property_a1, "tasmota", "plug-7"),
    ]:
        device, password = mqtt_device_create(
            property=prop, actor=None, name=f"Device {name}", format=fmt, key=key
        )
        broker.devices[name] = device
        broker.logins[name] = Login(device.username, password)
    broker.export()

    config = tmp_path / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {tmp_path / 'passwd'}",
        f"acl_file {tmp_path / 'acl'}",
        "persistence false",
        f"pid_file {tmp_path / 'mosquitto.pid'}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    if os.geteuid() == 0:
        # Started as root, mosquitto drops to the `mosquitto` user, which cannot read files
        # in pytest's private tmp directory.
        lines.append("user root")
    config.write_text("\n".join(lines) + "\n")
    log = tmp_path / "mosquitto.log"
    with log.open("w") as log_stream:
        # A fixed binary and the config file written just above: no outside input.
        process = subprocess.Popen(  # noqa: S603
            [MOSQUITTO, "-c", str(config)], stdout=log_stream, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_port(port, process, log)
        yield broker
    finally:
        process.terminate()
        try:
            process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def sessions(broker):
    opened: list[Session] = []

    def connect(name: str | None, *, password: str | None = None) -> Session:
        if name == "backend":
            login = broker.backend
        elif name is None:
            login = None
        else:
            login = broker.logins[name]
        if password is not None:
            login = Login(login.username, password)
        session = Session(broker.port, login)
        opened.append(session)
        return session

    yield connect
    for session in opened:
        session.close()


@pytest.fixture
def backend(sessions):
    session = sessions("backend")
    assert session.accepted, session.connack
    codes = session.subscribe(*SUBSCRIPTIONS)
    assert [code.is_failure for code in codes] == [False] * len(SUBSCRIPTIONS), codes
    return session


def test_the_backend_receives_each_devices_own_readings(sessions, backend):
    for name, topic, payload in [
        ("a", "meters/SN-A/telemetry", b'{"energy_kwh": 1.5}'),
        ("b", "meters/SN-B/telemetry", b'{"energy_kwh": 2.5}'),
        ("plug", "tele/plug-7/SENSOR", b'{"ENERGY": {"Total": 3.5}}'),
    ]:
        sessions(name).publish(topic, payload)
        assert backend.received_until(topic, payload)[-1] == (topic, payload)


@pytest.mark.parametrize(
    ("impostor", "forged_topic", "own_topic"),
    [
        ("a", "meters/SN-B/telemetry", "meters/SN-A/telemetry"),
        ("a", "meters/SN-B/cmd/ack", "meters/SN-A/telemetry"),
        ("a", "tele/plug-7/SENSOR", "meters/SN-A/telemetry"),
        ("plug", "meters/SN-A/telemetry", "tele/plug-7/SENSOR"),
        ("plug", "stat/plug-8/POWER", "tele/plug-7/SENSOR"),
    ],
)
def test_a_device_cannot_publish_as_another(sessions, backend, impostor, forged_topic, own_topic):
    session = sessions(impostor)
    assert session.accepted, session.connack
    session.publish(forged_topic, b"forged")
    # The broker keeps one publisher's QoS 1 messages in order, so once the sentinel from the
    # same connection arrives, the forged message would have arrived before it.
    sentinel = f"sentinel {uuid.uuid4()}".encode()
    session.publish(own_topic, sentinel)
    seen = backend.received_until(own_topic, sentinel)
    assert (forged_topic, b"forged") not in seen


@pytest.mark.parametrize("topic_filter", ["meters/SN-B/cmd", "meters/+/cmd", "#"])
def test_a_device_cannot_read_another_devices_commands(sessions, backend, topic_filter):
    device_a = sessions("a")
    forbidden, own = device_a.subscribe(topic_filter, "meters/SN-A/cmd")
    assert not own.is_failure, own
    # Whether or not the broker refuses the subscription outright (SUBACK `forbidden`), it must
    # deliver nothing of B's. B's command goes first, so it would arrive before A's.
    backend.publish("meters/SN-B/cmd", b'{"id": "for-b", "relay": "off"}')
    sentinel = b'{"id": "for-a", "relay": "on"}'
    backend.publish("meters/SN-A/cmd", sentinel)
    seen = device_a.received_until("meters/SN-A/cmd", sentinel)
    assert {topic for topic, _ in seen} == {"meters/SN-A/cmd"}, (forbidden, seen)


def test_a_device_receives_its_own_commands(sessions, backend):
    device_a = sessions("a")
    [code] = device_a.subscribe("meters/SN-A/cmd")
    assert not code.is_failure, code
    backend.publish("meters/SN-A/cmd", b'{"id": "x", "relay": "off"}')
    assert device_a.received_until("meters/SN-A/cmd", b'{"id": "x", "relay": "off"}')


def test_a_wrong_password_is_refused_at_connect(sessions, broker):
    session = sessions("a", password=broker.logins["b"].password)
    assert session.connack.is_failure, session.connack


def test_an_anonymous_client_is_refused_at_connect(sessions):
    assert sessions(None).connack.is_failure


def test_a_reload_after_rotation_cuts_off_the_old_password_at_once(sessions, broker):
    with_old_password, untouched = sessions("a"), sessions("b")
    assert with_old_password.accepted
    assert untouched.accepted
    new_password = mqtt_device_rotate_credentials(device=broker.devices["a"], actor=None)
    broker.export("--reload-pid-file", str(broker.directory / "mosquitto.pid"))
    # On reload mosquitto drops connections whose password no longer matches, and only those.
    assert with_old_password.disconnected.wait(TIMEOUT), "the old login stayed connected"
    assert not untouched.disconnected.is_set()
    assert not sessions("a").accepted
    assert sessions("a", password=new_password).accepted
