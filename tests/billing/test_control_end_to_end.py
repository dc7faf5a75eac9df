"""The control loop end to end: a real Celery worker on the Redis broker, a simulated Modbus
meter on loopback. Credit runs out, the supply is cut and confirmed; a top-up restores it."""

import asyncio
import subprocess
import sys
import threading
from decimal import Decimal

import pytest
from django.conf import settings

from billing.models import BalancePolicy, CutoffDecision
from billing.sweeps import cutoff_sweep
from meters.models import MeterProfile, RelayCommand
from meters.services import gateway_create, meter_connect
from meters.simulator import MeterSimulator
from prepaid.celery import app
from tests import factories
from tests.processes import process_env
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("builtin_profiles"),
]


@pytest.fixture
def simulator():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = MeterSimulator(gateways=1, meters_per_gateway=1, base_port=0)
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=10)
    yield sim
    asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


@pytest.fixture
def worker(tmp_path):
    # Tasks earlier tests sent and nobody ran would otherwise reach this worker first.
    app.control.purge()
    env = process_env()
    log = tmp_path / "worker.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "prepaid", "worker", "--pool", "threads",
         "--concurrency", "4", "--queues", "commands,billing", "--loglevel", "INFO",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=settings.BASE_DIR, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for(lambda: "ready." in log.read_text(), timeout=60)
    yield
    process.terminate()
    process.wait(timeout=30)


def test_credit_runs_out_the_supply_is_cut_and_a_top_up_restores_it(property_a1, simulator, worker):
    BalancePolicy.objects.create(
        property=property_a1, protected_from=None, protected_to=None, protect_holidays=False
    )
    account = factories.AccountFactory(unit__property=property_a1)
    gateway = gateway_create(
        property=property_a1,
        actor=None,
        name="sim",
        host="127.0.0.1",
        port=simulator.ports[0],
        timeout_ms=500,
    )
    meter = factories.MeterFactory(unit=account.unit, has_relay=True)
    profile = MeterProfile.objects.get(name="prepaid_sim_relay", organisation__isnull=True)
    meter_connect(meter=meter, actor=None, gateway=gateway, modbus_unit=1, profile=profile)

    assert cutoff_sweep() == {CutoffDecision.Outcome.CUT: 1}
    cut = RelayCommand.objects.get(meter=meter)
    wait_for(lambda: RelayCommand.objects.get(pk=cut.pk).state == "confirmed", timeout=30)
    assert simulator.meter(1, 1).relay_closed is False

    factories.TopupFactory(account=account, amount=Decimal("20.00"))
    wait_for(
        lambda: RelayCommand.objects.filter(meter=meter, close=True, state="confirmed").exists(),
        timeout=30,
    )
    assert simulator.meter(1, 1).relay_closed is True
    meter.refresh_from_db()
    assert meter.relay_closed is True
    outcomes = CutoffDecision.objects.filter(account=account).order_by("decided_at")
    assert [decision.outcome for decision in outcomes] == ["cut", "restored"]
