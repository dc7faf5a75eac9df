"""The control loop end to end: a real Celery worker on the Redis broker, a simulated Modbus
meter on loopback. Credit runs out, the supply is cut and confirmed; a top-up restores it, and
the tenant is told each step."""

import asyncio
import subprocess
import sys
import threading
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from billing.models import BalancePolicy, CutoffDecision, LedgerAccount
from billing.sweeps import cutoff_sweep
from meters.models import MeterProfile, RelayCommand
from meters.polling import poll_gateways
from meters.services import gateway_create, meter_connect
from meters.simulator import MeterSimulator
from notifications.models import Notification
from tariffs.services import tariff_create
from tests import factories
from tests.processes import process_env
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("builtin_profiles"),
]


@pytest.fixture
def simulator(request):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    # Half a minute of a household's use every second: credit runs out within seconds.
    speedup = getattr(request, "param", 1.0)
    sim = MeterSimulator(gateways=1, meters_per_gateway=1, base_port=0, speedup=speedup)
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=10)
    yield sim
    asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


@pytest.fixture
def worker(tmp_path):
    env = process_env()
    log = tmp_path / "worker.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "prepaid", "worker", "--pool", "threads",
         "--concurrency", "4", "--queues", "commands,billing,notify",
         # Tasks earlier tests sent to these queues and nobody ran would reach it first.
         "--purge", "--loglevel", "INFO",
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


@pytest.mark.parametrize("simulator", [30.0], indirect=True)
def test_polled_consumption_runs_the_credit_out_and_the_tenant_is_told_each_step(
    property_a1, simulator, worker
):
    BalancePolicy.objects.create(
        property=property_a1,
        protected_from=None,
        protected_to=None,
        protect_holidays=False,
        warning_levels=["0.50"],
    )
    tariff_create(
        property=property_a1,
        utility="electricity",
        name="Dear",
        actor=None,
        version={"effective_from": timezone.now(), "kind": "flat", "flat_price": "100.00"},
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
    factories.TopupFactory(account=account, amount=Decimal("1.00"))

    def polled_until_cut() -> bool:
        # Each poll hands its readings to the worker, which charges them and checks for a
        # cut-off.
        poll_gateways(gateway_ids=[gateway.pk])
        return RelayCommand.objects.filter(meter=meter, close=False, state="confirmed").exists()

    wait_for(polled_until_cut, timeout=90, interval=1.0)
    assert simulator.meter(1, 1).relay_closed is False
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance <= 0

    factories.TopupFactory(account=account, amount=Decimal("20.00"))
    wait_for(
        lambda: RelayCommand.objects.filter(meter=meter, close=True, state="confirmed").exists(),
        timeout=30,
    )
    assert simulator.meter(1, 1).relay_closed is True
    expected = ["balance_low", "cutoff_done", "restore_done", "topup_received", "topup_received"]

    def told() -> list[str]:
        return sorted(
            Notification.objects.filter(account=account, channel="portal").values_list(
                "event", flat=True
            )
        )

    wait_for(lambda: told() == expected, timeout=30, describe=told)
