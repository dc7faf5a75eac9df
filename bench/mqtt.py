"""MQTT ingest benchmark: 1,000 devices publishing QoS 1 telemetry through the machine's
Mosquitto into PostgreSQL, beside a bare paho subscriber that only counts the same messages.
"""

import json
import multiprocessing
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import Result, bench_property, stopwatch

DEVICES = 1000
MESSAGES_PER_DEVICE = 30
PUBLISHERS = 2  # processes, each speaking for DEVICES / PUBLISHERS devices
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _devices(prefix: str) -> list[str]:
    """DEVICES native devices, each with an installed meter on its channel 0."""
    from meters.models import Meter, MqttDevice
    from meters.mqtt_devices import mqtt_password_hash

    prop = bench_property(prefix, f"Bench MQTT {prefix}")
    organisation = prop.organisation
    now = datetime.now(UTC)
    # Benchmark devices never log in: one throwaway credential for all of them.
    password_hash = mqtt_password_hash(secrets.token_urlsafe(16))
    keys = [f"{prefix}-{n:05d}" for n in range(DEVICES)]
    devices = MqttDevice.objects.bulk_create(
        MqttDevice(
            organisation=organisation,
            property=prop,
            name=key,
            format="native",
            key=key,
            username=f"bench-{key}",
            password_hash=password_hash,
            credentials_rotated_at=now,
        )
        for key in keys
    )
    Meter.objects.bulk_create(
        Meter(
            organisation=organisation,
            serial=device.key,
            utility="electricity",
            mqtt_device=device,
        )
        for device in devices
    )
    return keys


@contextmanager
def _mosquitto():
    """A Mosquitto of our own, configured as docs/mqtt.md advises for the backend: a deep
    queue, so a burst waits in the broker instead of being dropped at 1,000 messages."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "mosquitto.conf"
        config.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 1000000\nmax_inflight_messages 0\n"
        )
        broker = subprocess.Popen(
            [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "mosquitto did not start"
                    time.sleep(0.05)
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            broker.terminate()
            broker.wait(timeout=10)


def _broker(url: str):
    from meters.mqtt_client import BrokerAddress

    return BrokerAddress.from_url(url)


def _publish(url: str, keys: list[str], worker: int) -> None:
    """Publish every message of this worker's devices at QoS 1 and wait for the broker."""
    import paho.mqtt.client as mqtt

    from meters.mqtt_client import make_client

    address = _broker(url)
    client = make_client(f"bench-pub-{uuid.uuid4().hex[:8]}", address, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(address.host, address.port)
    client.loop_start()
    last = None
    for step in range(MESSAGES_PER_DEVICE):
        ts = (T0 + timedelta(minutes=15 * step)).isoformat()
        for key in keys[worker::PUBLISHERS]:
            body = {"ts": ts, "energy_kwh": step, "power_w": 230.5, "voltage_v": 229.9}
            last = client.publish(f"meters/{key}/telemetry", json.dumps(body), qos=1)
    last.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def _publishers(url: str, keys: list[str]) -> list[multiprocessing.Process]:
    from django.db import connections

    connections.close_all()
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(target=_publish, args=(url, keys, worker)) for worker in range(PUBLISHERS)
    ]
    for process in processes:
        process.start()
    return processes


def _bare_subscriber_rate(url: str, keys: list[str]) -> float:
    """Messages per second a paho subscriber that does nothing but count receives."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions

    from meters.mqtt_client import make_client
    from meters.mqtt_service import Settings

    expected = len(keys) * MESSAGES_PER_DEVICE
    received = 0
    subscribed = threading.Event()
    done = threading.Event()

    def on_message(client, userdata, message):
        nonlocal received
        received += 1
        if received == expected:
            done.set()

    address = _broker(url)
    client = make_client(f"bench-count-{uuid.uuid4().hex[:8]}", address)
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.ReceiveMaximum = Settings().receive_maximum  # as the ingest service asks
    client.connect(address.host, address.port, properties=properties)
    client.loop_start()
    client.subscribe("meters/+/telemetry", options=SubscribeOptions(qos=1))
    subscribed.wait(10)
    with stopwatch() as elapsed:
        processes = _publishers(url, keys)
        done.wait(300)
        for process in processes:
            process.join()
    client.disconnect()
    client.loop_stop()
    assert received == expected, (received, expected)
    return expected / elapsed["seconds"]


def _ingest_rate(url: str, keys: list[str]) -> float:
    """Readings per second stored by `manage.py mqtt_ingest` in its own process, counted in
    the database."""
    from django.db import connection

    from meters.models import Reading

    expected = len(keys) * MESSAGES_PER_DEVICE
    database = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
        f"{database['NAME']}",
        "MQTT_URL": url,
        "MQTT_INGEST_CLIENT_ID": f"bench-ingest-{uuid.uuid4().hex[:8]}",
    }
    root = Path(__file__).resolve().parent.parent
    ingest = subprocess.Popen(
        [sys.executable, "manage.py", "mqtt_ingest"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_until_subscribed(url, keys[0])
        before = Reading.objects.count()
        with stopwatch() as elapsed:
            processes = _publishers(url, keys)
            deadline = time.monotonic() + 300
            while Reading.objects.count() - before < expected and time.monotonic() < deadline:
                time.sleep(0.05)
            for process in processes:
                process.join()
        stored = Reading.objects.count() - before
    finally:
        ingest.terminate()
        ingest.communicate(timeout=60)
    assert stored == expected, f"{stored} readings stored, {expected} published"
    return expected / elapsed["seconds"]


def _wait_until_subscribed(url: str, key: str) -> None:
    """Publish a probe (a moment before the benchmark's own) until the ingest stores it."""
    import paho.mqtt.client as mqtt

    from meters.models import Reading
    from meters.mqtt_client import make_client

    address = _broker(url)
    client = make_client(f"bench-probe-{uuid.uuid4().hex[:8]}", address, protocol=mqtt.MQTTv311)
    client.connect(address.host, address.port)
    client.loop_start()
    probe = json.dumps({"ts": (T0 - timedelta(days=1)).isoformat(), "energy_kwh": 0})
    deadline = time.monotonic() + 60
    while not Reading.objects.filter(meter__serial=key).exists():
        assert time.monotonic() < deadline, "the ingest service never stored the probe"
        client.publish(f"meters/{key}/telemetry", probe, qos=1).wait_for_publish(5)
        time.sleep(0.3)
    client.disconnect()
    client.loop_stop()


def bench_mqtt_ingest() -> Result:
    keys = _devices("MQB")
    with _mosquitto() as url:
        baseline = _bare_subscriber_rate(url, keys)
        figure = _ingest_rate(url, keys)
    total = DEVICES * MESSAGES_PER_DEVICE
    return Result(
        name="mqtt-ingest",
        unit="readings/s",
        figure=figure,
        baseline=baseline,
        target=">= 5,000 readings/s, none lost",
        notes=f"{total} QoS 1 messages from {DEVICES} devices ({PUBLISHERS} publisher "
        "processes) through Mosquitto (deep queue, as docs/mqtt.md advises); readings counted in PostgreSQL; baseline: a paho "
        "subscriber that only counts the same messages",
    )
