"""Pointing a meter at a channel of an MQTT device, through the API."""

import pytest
from django.urls import reverse

from meters import services
from meters.models import Meter
from tests import factories
from tests.meters.mqtt_helpers import mqtt_device

pytestmark = pytest.mark.django_db


def _connect(api, meter, **body):
    return api.post(reverse("meter-connect-mqtt", args=[meter.uuid]), body, format="json")


def test_a_meter_reads_from_a_channel_of_a_device_instead_of_modbus(property_a1, api_as, owner_a):
    gateway = services.gateway_create(
        property=property_a1, actor=None, name="Gateway", host="127.0.0.1"
    )
    meter = factories.MeterFactory(unit__property=property_a1)
    services.meter_connect(meter=meter, actor=None, gateway=gateway, modbus_unit=3, profile=None)
    device = mqtt_device(property_a1, "tasmota")
    response = _connect(api_as(owner_a), meter, device=str(device.uuid), channel=1, sml_key="SML.E")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["mqtt_device"], body["mqtt_channel"], body["mqtt_sml_key"]) == (
        str(device.uuid),
        1,
        "SML.E",
    )
    stored = Meter.objects.get(pk=meter.pk)
    assert (stored.gateway, stored.modbus_unit) == (None, None)


def test_two_meters_cannot_read_one_channel(property_a1, api_as, owner_a):
    device = mqtt_device(property_a1, "shelly")
    first, second = factories.MeterFactory.create_batch(2, unit__property=property_a1)
    assert _connect(api_as(owner_a), first, device=str(device.uuid)).status_code == 200
    response = _connect(api_as(owner_a), second, device=str(device.uuid))
    assert response.status_code == 400
    assert "channel" in response.json()


def test_sml_registers_are_for_tasmota_devices_only(property_a1, api_as, owner_a):
    device = mqtt_device(property_a1, "native")
    meter = factories.MeterFactory(unit__property=property_a1)
    response = _connect(api_as(owner_a), meter, device=str(device.uuid), sml_key="SML.E")
    assert response.status_code == 400
    assert "sml_key" in response.json()


def test_another_organisations_device_cannot_be_named(property_a1, property_b1, api_as, owner_a):
    theirs = mqtt_device(property_b1, "native")
    meter = factories.MeterFactory(unit__property=property_a1)
    response = _connect(api_as(owner_a), meter, device=str(theirs.uuid))
    assert response.status_code == 400
    assert Meter.objects.get(pk=meter.pk).mqtt_device is None
