"""Polling over real Modbus TCP to the simulator on loopback."""

import asyncio
import dataclasses
import threading
from decimal import Decimal

import pytest

from meters.models import Alarm, MeterProfile, MeterRejection, Reading
from meters.polling import poll_gateways
from meters.services import gateway_create, meter_connect
from meters.simulator import Faults, MeterSimulator
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("builtin_profiles")]


@pytest.fixture
def simulator():
    """One gateway with 6 meters: unit 3 never answers, unit 5 answers with exceptions."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    faults = Faults(dead=frozenset({(1, 3)}), exceptions=frozenset({(1, 5)}))
    sim = MeterSimulator(gateways=1, meters_per_gateway=6, base_port=0, faults=faults)
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=10)
    yield sim
    asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


@pytest.fixture
def fleet(property_a1, simulator):
    gateway = gateway_create(
        property=property_a1,
        actor=None,
        name="sim",
        host="127.0.0.1",
        port=simulator.ports[0],
        timeout_ms=300,
        retries=0,
        gap_ms=2,
    )
    profile = MeterProfile.objects.get(name="prepaid_sim_relay", organisation__isnull=True)
    meters = {}
    for unit_id in range(1, 7):
        meter = factories.MeterFactory(unit__property=property_a1, has_relay=True)
        meters[unit_id] = meter_connect(
            meter=meter, actor=None, gateway=gateway, modbus_unit=unit_id, profile=profile
        )
    return gateway, meters


def test_a_poll_stores_a_reading_per_answering_meter_with_its_register(fleet, simulator):
    gateway, meters = fleet
    run = poll_gateways(gateway_ids=[gateway.pk])
    assert (run.meters, run.answered, run.readings) == (6, 5, 4)
    reading = Reading.objects.get(meter=meters[1])
    sim_energy = simulator.meter(1, 1).energy_kwh
    assert abs(reading.register - sim_energy) < Decimal("0.01")
    assert 200 < reading.voltage_v < 260
    assert reading.relay_closed is True
    assert reading.source == "modbus"
    meters[1].refresh_from_db()
    assert (meters[1].online, meters[1].relay_closed) == (True, True)


def test_a_dead_meter_does_not_stall_its_neighbours(fleet):
    gateway, meters = fleet
    run = poll_gateways(gateway_ids=[gateway.pk])
    assert Reading.objects.filter(meter__in=[meters[n] for n in (4, 6)]).count() == 2
    # One timeout for the dead meter, not one per neighbour after it.
    assert run.seconds < 2.5


def test_missed_polls_raise_an_offline_alarm_which_closes_when_it_answers(
    fleet, simulator, property_a1
):
    from accounts.services import property_update

    property_update(property=property_a1, actor=None, offline_after_missed_polls=2)
    gateway, meters = fleet
    poll_gateways(gateway_ids=[gateway.pk])
    meters[3].refresh_from_db()
    assert (meters[3].online, meters[3].missed_polls) == (None, 1)
    for _ in range(2):
        poll_gateways(gateway_ids=[gateway.pk])
    dead = meters[3]
    dead.refresh_from_db()
    assert (dead.online, dead.missed_polls) == (False, 3)
    alarm = Alarm.objects.get(meter=dead, kind="offline", closed_at__isnull=True)
    assert "No answer for 2 polls" in alarm.message
    [missed] = MeterRejection.objects.filter(meter=dead)
    assert (missed.count, missed.reason.startswith("no answer")) == (3, True)
    revived = simulator.meter(1, 3)
    revived.faults = dataclasses.replace(revived.faults, dead=False)
    poll_gateways(gateway_ids=[gateway.pk])
    alarm.refresh_from_db()
    assert alarm.closed_at is not None


def test_exception_answers_are_counted_per_meter_and_reason(fleet):
    gateway, meters = fleet
    poll_gateways(gateway_ids=[gateway.pk])
    poll_gateways(gateway_ids=[gateway.pk])
    rejection = MeterRejection.objects.get(meter=meters[5])
    assert rejection.count == 2
    assert "exception" in rejection.reason
    meters[5].refresh_from_db()
    assert meters[5].online is True


def test_a_poll_hands_its_readings_to_charging(fleet, django_capture_on_commit_callbacks):
    gateway, _ = fleet
    with django_capture_on_commit_callbacks() as callbacks:
        poll_gateways(gateway_ids=[gateway.pk])
    assert len(callbacks) == 1


def test_due_gateways_are_handed_out_once_per_polling_interval(property_a1, property_a2):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.services import property_update
    from meters.polling import GATEWAYS_PER_TASK, gateways_due_claim

    property_update(property=property_a2, actor=None, poll_interval_minutes=60)
    fast = [
        gateway_create(property=property_a1, actor=None, name=f"A1-{n}", host="10.0.0.1")
        for n in range(GATEWAYS_PER_TASK + 1)
    ]
    slow = gateway_create(property=property_a2, actor=None, name="A2", host="10.0.0.2")
    gateway_create(property=property_a1, actor=None, name="off", host="10.0.0.3", enabled=False)
    now = timezone.now()
    shards = gateways_due_claim(now=now)
    assert [len(shard) for shard in shards] == [GATEWAYS_PER_TASK, 2]
    assert gateways_due_claim(now=now + timedelta(minutes=1)) == []
    later = gateways_due_claim(now=now + timedelta(minutes=15))
    assert sorted(pk for shard in later for pk in shard) == sorted(g.pk for g in fast)
    assert slow.pk not in {pk for shard in later for pk in shard}
    assert slow.pk in {
        pk for shard in gateways_due_claim(now=now + timedelta(minutes=60)) for pk in shard
    }


def test_polling_tasks_go_to_the_poll_queue():
    from meters.tasks import poll_due_gateways, poll_gateways_task
    from prepaid.celery import app

    for task in (poll_due_gateways, poll_gateways_task):
        assert app.amqp.router.route({}, task.name)["queue"].name == "poll"


def test_staff_see_a_meters_rejected_input_counted_by_reason(fleet, owner_a, api_as):
    from django.urls import reverse

    gateway, meters = fleet
    poll_gateways(gateway_ids=[gateway.pk])
    shown = api_as(owner_a).get(reverse("meter-detail", args=[meters[5].uuid])).json()
    [rejection] = shown["rejections"]
    assert rejection["count"] == 1
    assert "exception" in rejection["reason"]
