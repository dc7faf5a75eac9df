"""Dropped MQTT messages are counted where staff and operators look, without the broker: the
batch service directly."""

import json

import pytest
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meters.models import Alarm, MqttRejection, Reading
from meters.mqtt_ingest import Message, messages_ingest
from tests.meters.mqtt_helpers import mqtt_device, mqtt_meter

pytestmark = pytest.mark.django_db


def _message(topic: str, payload: bytes) -> Message:
    return Message(topic, payload, timezone.now())


def test_staff_see_their_devices_dropped_messages_by_reason(property_a1, api_as, owner_a):
    device = mqtt_device(property_a1, "native")
    mqtt_meter(property_a1, device)
    topic = f"meters/{device.key}/telemetry"
    result = messages_ingest(
        messages=[_message(topic, b"{oops"), _message(topic, b"{oops"), _message(topic, b"[]")]
    )
    assert result.rejected == {"invalid json": 2, "wrong type": 1}
    body = api_as(owner_a).get(reverse("mqtt-device-detail", args=[device.uuid])).json()
    counts = {row["reason"]: row["count"] for row in body["rejections"]}
    assert counts == {"invalid json": 2, "wrong type": 1}


def test_a_meters_own_alarm_flags_open_one_tamper_alarm(property_a1):
    device = mqtt_device(property_a1, "native")
    meter = mqtt_meter(property_a1, device)
    body = json.dumps({"energy_kwh": 5, "alarms": ["cover_open", "reverse"]}).encode()
    for _ in range(2):
        messages_ingest(messages=[_message(f"meters/{device.key}/telemetry", body)])
    alarm = Alarm.objects.get(meter=meter)
    assert (alarm.kind, alarm.severity) == (Alarm.Kind.TAMPER, Alarm.Severity.CRITICAL)
    assert "cover_open, reverse" in alarm.message


def test_counts_add_up_across_batches(property_a1):
    device = mqtt_device(property_a1, "tasmota")
    mqtt_meter(property_a1, device)
    for _ in range(3):
        messages_ingest(messages=[_message(f"tele/{device.key}/SENSOR", b"{}")])
    assert MqttRejection.objects.get(device=device).count == 3


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    suffix=st.sampled_from(["telemetry", "status", "cmd/ack", "SENSOR", "LWT", "events/rpc"]),
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        ["ts", "energy_kwh", "ENERGY", "Total", "relay", "id", "params"]
                    ),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=8,
        ).map(lambda value: json.dumps(value).encode()),
    ),
)
def test_any_payload_is_stored_or_counted_and_never_raises(property_a1, suffix, payload):
    device = mqtt_device(property_a1, "native")
    mqtt_meter(property_a1, device)
    before = Reading.objects.count() + sum(MqttRejection.objects.values_list("count", flat=True))
    result = messages_ingest(messages=[_message(f"meters/{device.key}/{suffix}", payload)])
    after = Reading.objects.count() + sum(MqttRejection.objects.values_list("count", flat=True))
    assert after - before == result.readings + sum(result.rejected.values())
    assert result.readings + sum(result.rejected.values()) <= 1
