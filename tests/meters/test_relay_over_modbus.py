"""Relay commands executed the way the commands worker runs them, over real Modbus TCP to the
meter simulator on loopback."""

import asyncio
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from meters.models import Alarm, MeterProfile
from meters.relay import relay_command_execute, relay_command_issue
from meters.services import gateway_create, meter_connect
from meters.simulator import Faults, MeterSimulator
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("builtin_profiles")]


@pytest.fixture
def simulator():
    """Two meters behind one simulated gateway; unit 2 never answers."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = MeterSimulator(
        gateways=1, meters_per_gateway=2, base_port=0, faults=Faults(dead=frozenset({(1, 2)}))
    )
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=10)
    yield sim
    asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


def connected_meter(property_a1, simulator, unit_id):
    gateway = gateway_create(
        property=property_a1,
        actor=None,
        name=f"sim {unit_id}",
        host="127.0.0.1",
        port=simulator.ports[0],
        timeout_ms=300,
        gap_ms=5,
    )
    meter = factories.MeterFactory(unit__property=property_a1, has_relay=True)
    profile = MeterProfile.objects.get(name="prepaid_sim_relay", organisation__isnull=True)
    return meter_connect(
        meter=meter, actor=None, gateway=gateway, modbus_unit=unit_id, profile=profile
    )


def test_a_cut_off_switches_the_meter_and_is_confirmed_by_read_back(property_a1, simulator):
    meter = connected_meter(property_a1, simulator, 1)
    command = relay_command_issue(meter=meter, close=False, actor=None, reason="arrears")
    assert relay_command_execute(command_id=command.pk) == "confirmed"
    assert simulator.meter(1, 1).relay_closed is False
    meter.refresh_from_db()
    assert meter.relay_closed is False
    restore = relay_command_issue(meter=meter, close=True, actor=None, reason="paid")
    assert relay_command_execute(command_id=restore.pk) == "confirmed"
    assert simulator.meter(1, 1).relay_closed is True


def test_an_unanswering_meter_is_retried_then_fails_with_an_alarm(property_a1, simulator):
    meter = connected_meter(property_a1, simulator, 2)
    command = relay_command_issue(
        meter=meter,
        close=False,
        actor=None,
        reason="arrears",
        deadline=timezone.now() + timedelta(seconds=1),
    )
    state = relay_command_execute(command_id=command.pk)
    command.refresh_from_db()
    assert (state, command.attempts) == ("failed", 1)
    assert "timed out" in command.last_error.lower() or "no response" in command.last_error.lower()
    assert Alarm.objects.filter(meter=meter, kind="command_failed", closed_at__isnull=True).exists()
    meter.refresh_from_db()
    assert meter.relay_closed is None


def test_executing_a_finished_command_again_changes_nothing(property_a1, simulator):
    meter = connected_meter(property_a1, simulator, 1)
    command = relay_command_issue(meter=meter, close=False, actor=None, reason="arrears")
    relay_command_execute(command_id=command.pk)
    assert relay_command_execute(command_id=command.pk) == "confirmed"
    command.refresh_from_db()
    assert command.attempts == 1


def test_an_unanswered_attempt_puts_the_next_one_on_the_commands_queue(property_a1, simulator):
    from kombu import Connection

    from prepaid.celery import app

    meter = connected_meter(property_a1, simulator, 2)
    command = relay_command_issue(meter=meter, close=False, actor=None, reason="arrears")
    with Connection(app.conf.broker_url) as connection:
        queue = connection.SimpleQueue("commands")
        queue.clear()
        assert relay_command_execute(command_id=command.pk) == "queued"
        message = queue.get(timeout=5)
        message.ack()
    assert message.headers["task"] == "meters.tasks.execute_relay_command"
    assert message.headers["eta"] is not None
    assert message.decode()[0] == [command.pk]
