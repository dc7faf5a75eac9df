"""Issue #8, in a browser: the staff meter page.

- The demo manager cuts a meter off and restores it from the meter page and watches the relay
  state change without reloading. The commands are executed by a real Celery worker against a
  simulated Modbus meter on loopback, as in the portal's browser test.
- The demo accountant sees the meter's state but no relay controls.
- The interface switches to Simplified Chinese through the language selector in the top bar.
"""

import asyncio
import threading

import pytest
from django.core.management import call_command
from django.urls import reverse
from playwright.sync_api import expect

from meters.models import Meter, RelayCommand
from meters.services import gateway_update
from meters.simulator import MeterSimulator
from prepaid.demo import DEMO_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The page asks for its live parts every 5 s; the worker needs a moment more.
SETTLED_MS = 20_000


@pytest.fixture
def relay_meter(live_server) -> Meter:
    """A meter with a relay, read over Modbus, in the property the demo manager runs."""
    call_command("seed_demo")
    return (
        Meter.objects.select_related("gateway")
        .filter(unit__property__code="RSG", gateway__isnull=False, has_relay=True)
        .order_by("serial")
        .first()
    )


@pytest.fixture
def simulated_meter(relay_meter):
    """The meter, simulated on loopback, at the address its gateway is reached on."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = MeterSimulator(gateways=1, meters_per_gateway=relay_meter.modbus_unit, base_port=0)
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=10)
    gateway_update(gateway=relay_meter.gateway, actor=None, port=sim.ports[0])
    yield sim.meter(1, relay_meter.modbus_unit)
    asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


def meter_page(meter: Meter) -> str:
    return reverse("meters:detail", kwargs={"meter_id": meter.uuid})


def switch(page, action: str, reason: str) -> None:
    """Open the action's confirmation dialog, give the reason and confirm."""
    page.click(f"[data-testid={action.replace('_', '-')}]")
    dialog = page.locator(f"#{action}-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("textarea[name=reason]").fill(reason)
    dialog.locator(f"[data-testid=confirm-{action}]").click()
    expect(dialog).to_be_hidden()


def test_a_manager_cuts_off_and_restores_a_meter_and_sees_the_relay_change_live(
    page, staff_sign_in, relay_meter, simulated_meter, celery_worker
):
    assert simulated_meter.relay_closed is True
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    staff_sign_in("manager", DEMO_PASSWORD, meter_page(relay_meter))
    # The consumption chart is drawn (uPlot, from the page's own data).
    expect(page.locator("[data-testid=chart] canvas")).to_have_count(1)
    relay = page.locator("[data-testid=relay-state]")
    latest = page.locator("[data-testid=command]").first
    # A reload from here on would clear the marker.
    page.evaluate("window.__noReload = 1")

    # While the worker holds the commands queue the cut-off is shown as pending, not done.
    with celery_worker.holding("commands"):
        switch(page, "cut_off", "Rewiring the flat's distribution board.")
        expect(page.locator("[data-testid=relay-status]")).to_contain_text("Cut-off requested")
        expect(latest).to_have_attribute("data-action", "cut_off")
        expect(latest).to_have_attribute("data-state", "queued")
        expect(relay).not_to_have_attribute("data-state", "off")
    expect(latest).to_have_attribute("data-state", "confirmed", timeout=SETTLED_MS)
    expect(relay).to_have_attribute("data-state", "off", timeout=SETTLED_MS)
    assert simulated_meter.relay_closed is False

    switch(page, "restore", "The rewiring is finished.")
    expect(latest).to_have_attribute("data-action", "restore", timeout=SETTLED_MS)
    expect(latest).to_have_attribute("data-state", "confirmed", timeout=SETTLED_MS)
    expect(relay).to_have_attribute("data-state", "on", timeout=SETTLED_MS)

    assert page.evaluate("window.__noReload") == 1
    assert script_errors == []
    assert simulated_meter.relay_closed is True
    commands = RelayCommand.objects.filter(meter=relay_meter).order_by("created_at")
    assert [(command.close, command.state) for command in commands] == [
        (False, "confirmed"),
        (True, "confirmed"),
    ]
    assert {command.actor.username for command in commands} == {"manager"}


def test_an_accountant_sees_the_relay_state_but_no_relay_buttons(page, staff_sign_in, relay_meter):
    staff_sign_in("accountant", DEMO_PASSWORD, meter_page(relay_meter))
    expect(page.locator("[data-testid=relay-state]")).to_be_visible()
    expect(page.locator("[data-testid=commands]")).to_be_visible()
    expect(page.locator("[data-testid=cut-off]")).to_have_count(0)
    expect(page.locator("[data-testid=restore]")).to_have_count(0)
    expect(page.locator("dialog")).to_have_count(0)
    expect(page.get_by_role("button", name="Cut off the supply")).to_have_count(0)


def test_the_interface_switches_to_simplified_chinese(page, staff_sign_in, relay_meter):
    meters = reverse("meters:list")
    staff_sign_in("manager", DEMO_PASSWORD, meters)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    with page.expect_navigation():
        page.select_option("#language", "zh-hans")

    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    assert page.url.endswith(meters)
    expect(page.get_by_role("button", name="退出登录")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    # The meter page renders in Chinese too, with the meters' own data unchanged.
    page.goto(meter_page(relay_meter))
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page.locator("h1")).to_contain_text(relay_meter.serial)
