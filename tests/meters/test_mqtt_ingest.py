"""The ingest service against the real Mosquitto: every format end to end, duplicates, order,
bad input, and the persistent session."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal

import paho.mqtt.client as mqtt
import pytest
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from meters.models import Alarm, Meter, MqttRejection, Reading
from meters.mqtt_client import BrokerAddress, make_client
from meters.mqtt_service import HEARTBEAT_CACHE_KEY
from tests.meters.mqtt_helpers import (
    Mosquitto,
    Publisher,
    mqtt_device,
    mqtt_meter,
    running_ingest,
    unique,
    wait_for,
)
from tests.processes import process_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def publisher():
    client = Publisher()
    yield client
    client.close()


def _registers(meter):
    return list(
        Reading.objects.filter(meter=meter).order_by("taken_at").values_list("register", flat=True)
    )


def test_each_format_is_stored_in_kwh_whatever_unit_the_device_reports(property_a1, publisher):
    now = timezone.now().replace(microsecond=0)
    native = mqtt_meter(property_a1, mqtt_device(property_a1, "native"))
    tasmota = mqtt_meter(property_a1, mqtt_device(property_a1, "tasmota"), channel=1)
    shelly = mqtt_meter(property_a1, mqtt_device(property_a1, "shelly"))
    z2m = mqtt_meter(property_a1, mqtt_device(property_a1, "zigbee2mqtt"))
    emon = mqtt_meter(property_a1, mqtt_device(property_a1, "emonhub"), channel=1)
    sml = mqtt_meter(property_a1, mqtt_device(property_a1, "tasmota"), sml_key="SML.Total_in")
    messages = [
        (f"meters/{native.mqtt_device.key}/telemetry", {"ts": now.isoformat(), "energy_kwh": 12.5}),
        (f"tele/{tasmota.mqtt_device.key}/SENSOR", {"ENERGY": {"Total": [1.0, 2.813]}}),
        (
            f"{shelly.mqtt_device.key}/events/rpc",
            {
                "method": "NotifyStatus",
                "params": {"ts": now.timestamp(), "switch:0": {"aenergy": {"total": 1500.5}}},
            },
        ),
        (f"zigbee2mqtt/{z2m.mqtt_device.key}", {"energy": 3.25, "power": 120, "state": "ON"}),
        (f"emon/{emon.mqtt_device.key}", {"time": now.timestamp(), "E1": 1, "E2": 2500}),
        (f"tele/{sml.mqtt_device.key}/SENSOR", {"SML": {"Total_in": 7042.1}}),
    ]
    with running_ingest():
        for topic, body in messages:
            publisher.publish(topic, json.dumps(body))
        wait_for(lambda: Reading.objects.count() == 6)
    assert _registers(native) == [Decimal("12.5")]
    assert _registers(tasmota) == [Decimal("2.813")]
    assert _registers(shelly) == [Decimal("1.5005")]
    assert _registers(z2m) == [Decimal("3.25")]
    assert _registers(emon) == [Decimal("2.5")]
    assert _registers(sml) == [Decimal("7042.1")]
    stored = Reading.objects.get(meter=native)
    assert (stored.source, stored.taken_at) == (Reading.Source.MQTT, now)
    assert Reading.objects.get(meter=z2m).power_w == 120.0
    assert Meter.objects.get(pk=z2m.pk).online is True


def test_a_redelivered_or_repeated_message_adds_no_reading(property_a1, publisher):
    native = mqtt_meter(property_a1, mqtt_device(property_a1, "native"))
    plug = mqtt_meter(property_a1, mqtt_device(property_a1, "tasmota"))
    now = timezone.now()
    dated = json.dumps({"ts": (now - timedelta(minutes=1)).isoformat(), "energy_kwh": 5})
    undated = json.dumps({"ENERGY": {"Total": 1.25}})
    with running_ingest():
        for _ in range(3):
            publisher.publish(f"meters/{native.mqtt_device.key}/telemetry", dated)
            publisher.publish(f"tele/{plug.mqtt_device.key}/SENSOR", undated)
        # Messages from one client arrive in order: once this one is stored, all are.
        sentinel = json.dumps({"ts": now.isoformat(), "energy_kwh": 6})
        publisher.publish(f"meters/{native.mqtt_device.key}/telemetry", sentinel)
        wait_for(lambda: len(_registers(native)) == 2)
    assert _registers(native) == [Decimal(5), Decimal(6)]
    assert _registers(plug) == [Decimal("1.25")]


def test_an_older_reading_arriving_late_is_placed_in_time(property_a1, publisher):
    meter = mqtt_meter(property_a1, mqtt_device(property_a1, "native"))
    topic = f"meters/{meter.mqtt_device.key}/telemetry"
    now = timezone.now()
    with running_ingest():
        publisher.publish(topic, json.dumps({"ts": now.isoformat(), "energy_kwh": 20}))
        earlier = now - timedelta(minutes=15)
        publisher.publish(topic, json.dumps({"ts": earlier.isoformat(), "energy_kwh": 19}))
        wait_for(lambda: len(_registers(meter)) == 2)
    assert _registers(meter) == [Decimal(19), Decimal(20)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "invalid json"),
        (b"\xff\xfe", "invalid utf-8"),
        (b'{"energy_kwh": "NaN"}', "not finite"),
        (b'{"energy_kwh": -1}', "negative"),
        (b'{"energy_kwh": true}', "wrong type"),
        (
            json.dumps({"energy_kwh": 1, "ts": "2999-01-01T00:00:00+00:00"}).encode(),
            "timestamp in the future",
        ),
        (b'{"x": "' + b"a" * 70_000 + b'"}', "too large"),
    ],
)
def test_bad_input_is_dropped_counted_per_device_and_reason_and_the_service_goes_on(
    property_a1, publisher, payload, reason
):
    meter = mqtt_meter(property_a1, mqtt_device(property_a1, "native"))
    key = meter.mqtt_device.key
    with running_ingest():
        publisher.publish(f"meters/{key}/telemetry", payload)
        publisher.publish(f"meters/{key}/telemetry", payload)
        publisher.publish(f"meters/{key}/telemetry", json.dumps({"energy_kwh": 3}))
        wait_for(lambda: _registers(meter))
    assert _registers(meter) == [Decimal(3)]
    rejection = MqttRejection.objects.get(source=f"native:{key}")
    assert (rejection.device, rejection.reason, rejection.count) == (meter.mqtt_device, reason, 2)


def test_unknown_devices_and_topics_are_counted_for_operators(property_a1, publisher):
    stranger = unique("stranger")
    with running_ingest():
        publisher.publish(f"meters/{stranger}/telemetry", json.dumps({"energy_kwh": 1}))
        publisher.publish("zigbee2mqtt/bridge", b"{}")
        wait_for(lambda: MqttRejection.objects.filter(source="zigbee2mqtt/bridge").exists())
    assert MqttRejection.objects.get(source=f"native:{stranger}").reason == "unknown device"
    assert MqttRejection.objects.get(source="zigbee2mqtt/bridge").reason == "unknown topic"
    assert not Reading.objects.exists()


def test_the_last_will_takes_the_meters_offline_with_an_alarm_and_back(property_a1, publisher):
    device = mqtt_device(property_a1, "tasmota")
    meter = mqtt_meter(property_a1, device)
    with running_ingest():
        publisher.publish(f"tele/{device.key}/LWT", "Offline")
        wait_for(lambda: Alarm.objects.filter(meter=meter, closed_at__isnull=True).exists())
        assert Meter.objects.get(pk=meter.pk).online is False
        publisher.publish(f"tele/{device.key}/LWT", "Online")
        wait_for(lambda: Meter.objects.get(pk=meter.pk).online)
    alarm = Alarm.objects.get(meter=meter)
    assert (alarm.kind, alarm.closed_at is not None) == (Alarm.Kind.OFFLINE, True)
    device.refresh_from_db()
    assert device.online is True


def test_a_reading_after_the_last_will_brings_the_meter_back_online(property_a1, publisher):
    device = mqtt_device(property_a1, "native")
    meter = mqtt_meter(property_a1, device)
    topic = f"meters/{device.key}/telemetry"
    with running_ingest():
        publisher.publish(topic, json.dumps({"energy_kwh": 1}))
        wait_for(lambda: Meter.objects.get(pk=meter.pk).online)
        publisher.publish(f"meters/{device.key}/status", "offline")
        wait_for(lambda: Meter.objects.get(pk=meter.pk).online is False)
        # Seen a moment ago, but taken offline since: this reading brings it back at once.
        publisher.publish(topic, json.dumps({"energy_kwh": 2}))
        wait_for(lambda: Meter.objects.get(pk=meter.pk).online)
    alarm = Alarm.objects.get(meter=meter)
    assert (alarm.kind, alarm.closed_at is not None) == (Alarm.Kind.OFFLINE, True)


def test_a_lone_message_is_stored_at_once_not_after_a_wait_for_more(property_a1, publisher):
    meter = mqtt_meter(property_a1, mqtt_device(property_a1, "native"))
    body = json.dumps({"ts": timezone.now().isoformat(), "energy_kwh": 7})
    with running_ingest(flush_ms=5000):
        started = time.monotonic()
        publisher.publish(f"meters/{meter.mqtt_device.key}/telemetry", body)
        wait_for(lambda: _registers(meter), timeout=10)
        stored_after = time.monotonic() - started
    assert stored_after < 2.5


def test_messages_published_while_ingest_is_down_all_arrive_exactly_once(property_a1, publisher):
    meter = mqtt_meter(property_a1, mqtt_device(property_a1, "native"))
    topic = f"meters/{meter.mqtt_device.key}/telemetry"
    client_id = unique("ingest")
    with running_ingest(client_id):
        pass  # the broker now holds a session with our subscriptions
    start = timezone.now() - timedelta(hours=1)
    for n in range(1000):
        taken_at = start + timedelta(seconds=n)
        publisher.publish(topic, json.dumps({"ts": taken_at.isoformat(), "energy_kwh": n}))
    with running_ingest(client_id):
        wait_for(lambda: Reading.objects.filter(meter=meter).count() >= 1000, timeout=60)
    assert Reading.objects.filter(meter=meter).count() == 1000
    assert _registers(meter) == [Decimal(n) for n in range(1000)]


def _ingest_process(client_id: str) -> subprocess.Popen:
    env = process_env(MQTT_INGEST_CLIENT_ID=client_id)
    return subprocess.Popen(
        [sys.executable, "manage.py", "mqtt_ingest", "--batch-size", "50"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_an_ingest_killed_mid_batch_loses_and_duplicates_nothing(property_a1, publisher):
    meter = mqtt_meter(property_a1, mqtt_device(property_a1, "native"))
    topic = f"meters/{meter.mqtt_device.key}/telemetry"
    start = timezone.now() - timedelta(hours=2)
    total = 3000

    def publish(n):
        taken_at = start + timedelta(seconds=n)
        publisher.publish(topic, json.dumps({"ts": taken_at.isoformat(), "energy_kwh": n}))

    client_id = unique("ingest")
    process = _ingest_process(client_id)
    try:
        # Until the new process has subscribed, messages reach nobody: repeat the first one
        # (the same moment, so it is stored once) until it arrives.
        wait_for(
            lambda: publish(0) or Reading.objects.filter(meter=meter).exists(),
            timeout=30,
            interval=0.3,
        )
        for n in range(1, total):
            publish(n)
        wait_for(lambda: Reading.objects.filter(meter=meter).count() > 300, timeout=30)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        stored_at_kill = Reading.objects.filter(meter=meter).count()
        process = _ingest_process(client_id)
        wait_for(lambda: Reading.objects.filter(meter=meter).count() == total, timeout=60)
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors.decode()[-2000:]
    assert stored_at_kill < total
    assert _registers(meter) == [Decimal(n) for n in range(total)]


def test_sigterm_stores_what_arrived_and_exits_cleanly(property_a1, publisher):
    meter = mqtt_meter(property_a1, mqtt_device(property_a1, "native"))
    process = _ingest_process(unique("ingest"))
    body = json.dumps({"ts": timezone.now().isoformat(), "energy_kwh": 1})
    try:
        wait_for(
            lambda: (
                publisher.publish(f"meters/{meter.mqtt_device.key}/telemetry", body)
                or Reading.objects.filter(meter=meter).exists()
            ),
            timeout=30,
            interval=0.3,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors.decode()[-2000:]


def test_with_the_embedded_demo_broker_ingest_falls_back_to_mqtt_3_1_1(property_a1):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"mqtt://127.0.0.1:{port}"
    broker = subprocess.Popen(
        [sys.executable, "manage.py", "mqtt_broker"],
        cwd=settings.BASE_DIR,
        env=process_env(MQTT_URL=url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    meter = mqtt_meter(property_a1, mqtt_device(property_a1, "native"))
    address = BrokerAddress.from_url(url)
    try:
        wait_for(lambda: _accepts(port))
        device = make_client(unique("device"), address, protocol=mqtt.MQTTv311)
        device.connect(address.host, address.port)
        device.loop_start()
        body = json.dumps({"ts": timezone.now().isoformat(), "energy_kwh": 4})
        with running_ingest(address=address) as service:
            wait_for(
                lambda: (
                    device.publish(f"meters/{meter.mqtt_device.key}/telemetry", body, qos=1)
                    and _registers(meter)
                ),
                interval=0.3,
            )
        device.disconnect()
        device.loop_stop()
    finally:
        broker.terminate()
        broker.wait(timeout=10)
    assert service.protocol == mqtt.MQTTv311
    assert _registers(meter) == [Decimal(4)]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_after_the_broker_restarts_the_ingest_reconnects_and_subscribes_again(
    property_a1, tmp_path
):
    meter = mqtt_meter(property_a1, mqtt_device(property_a1, "native"))
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        with running_ingest(address=broker.address) as service:
            broker.stop()
            wait_for(lambda: not service.totals.connected)
            broker.start()
            device = make_client(unique("device"), broker.address, protocol=mqtt.MQTTv311)
            device.connect(broker.address.host, broker.address.port)
            device.loop_start()
            body = json.dumps({"ts": timezone.now().isoformat(), "energy_kwh": 8})
            wait_for(
                lambda: (
                    device.publish(f"meters/{meter.mqtt_device.key}/telemetry", body, qos=1)
                    and _registers(meter)
                ),
                timeout=60,
                interval=0.5,
            )
            device.disconnect()
            device.loop_stop()
    finally:
        broker.stop()
    assert _registers(meter) == [Decimal(8)]


def test_the_service_beats_where_the_health_check_reads_it(property_a1):
    cache.delete(HEARTBEAT_CACHE_KEY)

    def connected_beat():
        beat = cache.get(HEARTBEAT_CACHE_KEY)
        return beat if beat and beat["connected"] else None

    with running_ingest(heartbeat_s=0.1) as service:
        beat = wait_for(connected_beat)
    assert beat["pid"] == os.getpid()
    assert beat["started_at"] == service.totals.started_at.isoformat()
