"""Relay commands to MQTT meters, round trip through the real Mosquitto: published in the
device's dialect, obeyed by a simulated device, confirmed by its own report via the ingest."""

import pytest

from meters.models import Meter, RelayCommand
from meters.mqtt_simulator import DeviceSpec, MqttSimulator
from meters.relay import relay_command_execute, relay_command_issue, relay_command_unconfirmed
from tests.meters.mqtt_helpers import broker, mqtt_device, mqtt_meter, running_ingest, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

State = RelayCommand.State


def _simulated(device, **options):
    address = broker()
    spec = DeviceSpec(device.format, device.key, interval=3600, **options)
    return MqttSimulator([spec], host=address.host, port=address.port, seed=1)


@pytest.mark.parametrize(
    ("fmt", "channel"), [("native", 0), ("tasmota", 1), ("shelly", 1), ("zigbee2mqtt", 0)]
)
def test_a_cut_off_is_obeyed_and_confirmed_in_each_dialect(property_a1, fmt, channel):
    device = mqtt_device(property_a1, fmt)
    meter = mqtt_meter(property_a1, device, channel=channel)
    channels = {"channels": channel + 1} if channel else {}
    with running_ingest(), _simulated(device, **channels) as simulator:
        assert simulator.wait_online(30)
        command = relay_command_issue(meter=meter, close=False, actor=None, reason="no credit")
        assert relay_command_execute(command_id=command.pk) == State.SENT
        wait_for(lambda: RelayCommand.objects.get(pk=command.pk).state == State.CONFIRMED)
        assert simulator.device(fmt, device.key).channels[channel].relay_closed is False
    assert Meter.objects.get(pk=meter.pk).relay_closed is False


def test_a_device_that_never_confirms_is_retried_then_failed(property_a1):
    device = mqtt_device(property_a1, "tasmota")
    meter = mqtt_meter(property_a1, device)
    with running_ingest(), _simulated(device, deaf=True) as simulator:
        assert simulator.wait_online(30)
        command = relay_command_issue(meter=meter, close=False, actor=None, reason="no credit")
        assert relay_command_execute(command_id=command.pk) == State.SENT
        assert relay_command_unconfirmed(command_id=command.pk, attempt=1) == State.QUEUED
    command.refresh_from_db()
    assert "did not confirm" in command.last_error
    assert command.next_attempt_at is not None


def test_a_late_confirmation_check_of_a_confirmed_attempt_changes_nothing(property_a1):
    device = mqtt_device(property_a1, "native")
    meter = mqtt_meter(property_a1, device)
    with running_ingest(), _simulated(device) as simulator:
        assert simulator.wait_online(30)
        command = relay_command_issue(meter=meter, close=False, actor=None, reason="no credit")
        relay_command_execute(command_id=command.pk)
        wait_for(lambda: RelayCommand.objects.get(pk=command.pk).state == State.CONFIRMED)
    assert relay_command_unconfirmed(command_id=command.pk, attempt=1) == State.CONFIRMED


def test_an_emonhub_meter_has_no_relay_to_switch(property_a1):
    meter = mqtt_meter(property_a1, mqtt_device(property_a1, "emonhub"))
    command = relay_command_issue(meter=meter, close=False, actor=None, reason="no credit")
    assert relay_command_execute(command_id=command.pk) == State.QUEUED
    command.refresh_from_db()
    assert "no relay" in command.last_error
