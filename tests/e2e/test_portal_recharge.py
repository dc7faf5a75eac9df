"""Issue #7, in a browser: the demo tenant, cut off for want of credit, signs in to the portal,
recharges 50 through the sandbox's hosted page, and watches the balance rise by 50 and the
power come back on the return page, without reloading it.

Nothing is stubbed: the demo world is seeded by `manage.py seed_demo`; the cut-off and the
restore are decided by the billing services and executed by a real Celery worker against a
simulated Modbus meter on loopback; the sandbox delivers its signed webhook over HTTP to the
live server."""

import asyncio
import re
import threading
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import Account, Property
from billing.control import balance_policy_update
from billing.models import LedgerAccount
from billing.tasks import charge_meters_task
from meters.models import Meter, Reading, RelayCommand
from meters.services import gateway_update, readings_ingest
from meters.simulator import MeterSimulator
from prepaid.demo import DEMO_PASSWORD
from prepaid.money import quantize
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Every wait in the browser is for work the worker does after a commit; generous, but bounded.
SETTLED_MS = 20_000


@dataclass(frozen=True)
class DemoTenant:
    account: Account
    meter: Meter


@pytest.fixture
def demo_tenant(settings, live_server) -> DemoTenant:
    """The demo world as `make run` seeds it (the sandbox payment provider included), served
    by the live server."""
    call_command("seed_demo")
    account = Account.objects.get(tenant__user__username="tenant", status=Account.Status.OPEN)
    # The sandbox posts its webhook to the URL the portal gives it: this server's, whatever
    # the environment names.
    settings.PAYMENTS_PUBLIC_URL = live_server.url
    meter = Meter.objects.select_related("gateway").get(unit=account.unit, has_relay=True)
    return DemoTenant(account=account, meter=meter)


@pytest.fixture
def simulated_meter(demo_tenant):
    """The tenant's meter, simulated on loopback, at the address its gateway is reached on."""
    meter = demo_tenant.meter
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = MeterSimulator(gateways=1, meters_per_gateway=meter.modbus_unit, base_port=0)
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=10)
    gateway_update(gateway=meter.gateway, actor=None, port=sim.ports[0])
    yield sim.meter(1, meter.modbus_unit)
    asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


@pytest.fixture
def cut_off(demo_tenant, simulated_meter, celery_worker) -> Decimal:
    """Run the tenant's credit out for real: an hour's consumption is pushed and charged, and
    the worker decides the cut-off and opens the meter's relay. Returns the balance, to the
    currency's minor unit as the portal shows it."""
    account, meter = demo_tenant.account, demo_tenant.meter
    # Cut off whatever the hour: no protected night hours, weekends or holidays.
    balance_policy_update(
        property=Property.objects.get(pk=account.unit.property_id),
        actor=None,
        protected_from=None,
        protected_to=None,
        protect_weekends=False,
        protect_holidays=False,
    )
    now = timezone.now()
    readings_ingest(
        meters=Meter.objects.filter(pk=meter.pk),
        rows=[
            {"serial": meter.serial, "taken_at": now - timedelta(hours=hours), "register": register}
            for hours, register in [(2, Decimal(1000)), (1, Decimal(1005))]
        ],
        source=Reading.Source.HTTP,
    )
    # As a poll would: the worker charges the new readings, then checks for a cut-off.
    charge_meters_task.delay([meter.pk])
    wait_for(
        lambda: RelayCommand.objects.filter(meter=meter, close=False, state="confirmed").exists(),
        timeout=30,
        describe=lambda: list(RelayCommand.objects.filter(meter=meter).values("close", "state")),
    )
    assert simulated_meter.relay_closed is False
    wallet = LedgerAccount.objects.get(pk=account.wallet_id)
    assert wallet.balance < 0
    return quantize(wallet.balance, wallet.currency)


def test_a_cut_off_tenant_recharges_and_sees_the_power_come_back_without_reloading(
    page, demo_tenant, simulated_meter, cut_off, celery_worker
):
    account = demo_tenant.account
    page.goto(reverse("portal:sign-in"))
    page.fill("input[name=identifier]", "tenant@demo.example")
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("[data-testid=sign-in]")
    page.wait_for_url(re.compile(re.escape(reverse("portal:home", args=[account.uuid])) + "$"))

    balance = page.locator("[data-testid=balance]")
    expect(balance).to_have_attribute("data-amount", str(cut_off))
    expect(page.locator("[data-testid=relay]")).to_have_attribute("data-state", "off")
    before = Decimal(balance.get_attribute("data-amount"))

    page.click("[data-testid=recharge]")
    page.click("[data-testid=amount-50]")
    page.click("[data-testid=channel-sandbox]")
    page.click("[data-testid=pay]")
    page.wait_for_url(re.compile(r"/payments/sandbox/\w+/$"))
    # The restore waits until the return page is showing, so that page has to update itself
    # to show it, however fast the worker would have been.
    with celery_worker.holding("commands"):
        page.click("button[name=outcome][value=approve]")
        page.wait_for_url(re.compile(r"/portal/payments/\w+/$"))
        # A reload from here on would clear the marker and count a load.
        page.evaluate("window.__noReload = 1")
        loads = []
        page.on("load", lambda loaded: loads.append(loaded.url))
        expect(page.locator("[data-testid=relay]")).to_have_attribute("data-state", "off")

    expect(page.locator("[data-testid=payment-status]")).to_have_attribute(
        "data-status", "succeeded", timeout=SETTLED_MS
    )
    expect(page.locator("[data-testid=balance]")).to_have_attribute(
        "data-amount", str(before + Decimal(50)), timeout=SETTLED_MS
    )
    expect(page.locator("[data-testid=relay]")).to_have_attribute(
        "data-state", "on", timeout=SETTLED_MS
    )
    assert page.evaluate("window.__noReload") == 1
    assert loads == []

    # What the page shows is what happened: the worker closed the meter's relay.
    assert simulated_meter.relay_closed is True
    assert RelayCommand.objects.filter(
        meter=demo_tenant.meter, close=True, state="confirmed"
    ).exists()
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance == before + 50
