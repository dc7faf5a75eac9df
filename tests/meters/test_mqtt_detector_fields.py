"""Export registers and the meter's own alarm flags, end to end through the real Mosquitto:
each dialect's export field lands on the reading in kWh, native alarm flags with it."""

import json
from decimal import Decimal

import pytest
from django.utils import timezone

from meters.models import MqttRejection, Reading
from tests.meters.mqtt_helpers import (
    Publisher,
    mqtt_device,
    mqtt_meter,
    running_ingest,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def publisher():
    client = Publisher()
    yield client
    client.close()


def _stored(meter):
    return list(
        Reading.objects.filter(meter=meter)
        .order_by("taken_at")
        .values_list("register", "export_register", "flags")
    )


def test_each_dialects_export_register_is_stored_in_kwh_with_the_native_flags(
    property_a1, publisher
):
    now = timezone.now().replace(microsecond=0)
    native = mqtt_meter(property_a1, mqtt_device(property_a1, "native"))
    tasmota = mqtt_meter(property_a1, mqtt_device(property_a1, "tasmota"))
    shelly = mqtt_meter(property_a1, mqtt_device(property_a1, "shelly"))
    z2m = mqtt_meter(property_a1, mqtt_device(property_a1, "zigbee2mqtt"))
    messages = [
        (
            f"meters/{native.mqtt_device.key}/telemetry",
            {
                "ts": now.isoformat(),
                "energy_kwh": 12.5,
                "export_kwh": 0.75,
                "alarms": ["cover_open", "reverse"],
            },
        ),
        (
            f"tele/{tasmota.mqtt_device.key}/SENSOR",
            {"ENERGY": {"Total": 2.813, "ExportActive": 0.5}},
        ),
        (
            f"{shelly.mqtt_device.key}/events/rpc",
            {
                "method": "NotifyStatus",
                "params": {
                    "ts": now.timestamp(),
                    "emdata:0": {"total_act": 123456, "total_act_ret": 2500.5},
                },
            },
        ),
        (f"zigbee2mqtt/{z2m.mqtt_device.key}", {"energy": 3.25, "produced_energy": 1.125}),
    ]
    with running_ingest():
        for topic, body in messages:
            publisher.publish(topic, json.dumps(body))
        wait_for(lambda: Reading.objects.count() == 4)
    assert _stored(native) == [(Decimal("12.5"), Decimal("0.75"), ["cover_open", "reverse"])]
    assert _stored(tasmota) == [(Decimal("2.813"), Decimal("0.5"), None)]
    assert _stored(shelly) == [(Decimal("123.456"), Decimal("2.5005"), None)]
    assert _stored(z2m) == [(Decimal("3.25"), Decimal("1.125"), None)]


def test_a_bad_export_or_flag_drops_the_message_and_is_counted(property_a1, publisher):
    meter = mqtt_meter(property_a1, mqtt_device(property_a1, "native"))
    key = meter.mqtt_device.key
    with running_ingest():
        publisher.publish(
            f"meters/{key}/telemetry", json.dumps({"energy_kwh": 1, "export_kwh": -1})
        )
        publisher.publish(f"meters/{key}/telemetry", json.dumps({"energy_kwh": 2, "alarms": [""]}))
        publisher.publish(f"meters/{key}/telemetry", json.dumps({"energy_kwh": 3}))
        wait_for(lambda: Reading.objects.filter(meter=meter).exists())
    assert _stored(meter) == [(Decimal(3), None, None)]
    counted = dict(
        MqttRejection.objects.filter(source=f"native:{key}").values_list("reason", "count")
    )
    assert counted == {"negative": 1, "bad value": 1}
