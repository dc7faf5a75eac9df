"""The tenancy pages: move-in, the tenancy and tenant pages, move-out with its preview and its
settlement statement (page and PDF), and the meter replacement wizard, per role."""

import asyncio
import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.lifecycle import move_in, move_out, reading_key
from accounts.models import Account, Tenant
from billing.models import LedgerAccount, LedgerTransaction, Receipt
from meters.models import Meter, MeterProfile, Reading
from meters.services import gateway_create, meter_connect, meter_remove, readings_ingest
from meters.simulator import MeterSimulator
from prepaid.audit.models import AuditLog
from tariffs.services import tariff_create
from tests import factories

pytestmark = pytest.mark.django_db

TARIFF = {"kind": "flat", "flat_price": "1.00", "tax_rate": "0", "standing_charge_per_day": "0"}


def read(meter, when, register):
    readings_ingest(
        meters=Meter.objects.filter(pk=meter.pk),
        rows=[{"serial": meter.serial, "taken_at": when, "register": Decimal(register)}],
        source="http",
    )


@pytest.fixture
def meter(property_a1):
    """A vacant unit's meter on a flat tariff, last read at 900 a day ago."""
    tariff_create(
        property=property_a1,
        utility="electricity",
        name="Residential",
        actor=None,
        version={"effective_from": timezone.now() - timedelta(days=30), **TARIFF},
    )
    day_ago = timezone.now() - timedelta(days=1)
    meter = factories.MeterFactory(unit__property=property_a1, installed_at=day_ago)
    read(meter, day_ago, "900")
    return meter


@pytest.fixture
def tenancy(meter):
    """The meter's unit let to a tenant with 100 of credit, from a reading of 1000 an hour ago."""
    account = move_in(
        unit=meter.unit,
        actor=None,
        idempotency_key="fixture",
        new_tenant={"name": "Chen Jie", "phone": "", "email": "", "preferred_language": "en"},
        opening_readings={meter.pk: Decimal(1000)},
        now=timezone.now() - timedelta(hours=1),
    ).account
    factories.TopupFactory(account=account, amount=Decimal(100))
    return account


def as_user(client, user):
    client.force_login(user)
    return client


def move_in_data(**changes):
    return {
        "idempotency_key": str(uuid.uuid4()),
        "tenant_choice": "new",
        "name": "Zhang Min",
        "phone": "+86 138 0013 8000",
        "email": "zhang@example.test",
        "preferred_language": "zh-hans",
        "mode": "prepaid",
        "deposit_amount": "",
        "deposit_channel": "cash",
        "topup_amount": "",
        "topup_channel": "cash",
        **changes,
    }


# Move-in -----------------------------------------------------------------------------------------


def test_a_manager_moves_a_new_tenant_in_with_an_opening_reading_deposit_and_top_up(
    client, manager_a1, meter
):
    url = reverse("accounts:move-in", args=[meter.unit.uuid])
    page = as_user(client, manager_a1).get(url)
    assert page.status_code == 200
    assert reading_key(meter) in page.content.decode()
    data = move_in_data(
        **{reading_key(meter): "1000.5", "deposit_amount": "200", "topup_amount": "50"}
    )
    response = client.post(url, data)
    account = Account.objects.get(unit=meter.unit)
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:account", args=[account.uuid])
    assert (account.tenant.name, account.tenant.preferred_language) == ("Zhang Min", "zh-hans")
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance == Decimal(50)
    assert Receipt.objects.get(account=account).amount == Decimal(50)
    assert LedgerTransaction.objects.filter(kind="deposit").count() == 1
    opening = Reading.objects.get(meter=meter, taken_at=account.opened_at)
    assert (opening.register, opening.source) == (Decimal("1000.5"), "manual")
    audit = AuditLog.objects.get(action="account.move_in")
    assert audit.actor == manager_a1
    assert audit.after["idempotency_key"] == data["idempotency_key"]


def test_a_double_submitted_move_in_opens_one_tenancy_with_one_top_up(client, owner_a, meter):
    url = reverse("accounts:move-in", args=[meter.unit.uuid])
    data = move_in_data(**{reading_key(meter): "1000", "topup_amount": "50"})
    first = as_user(client, owner_a).post(url, data)
    second = client.post(url, data)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert Account.objects.filter(unit=meter.unit).count() == 1
    assert Receipt.objects.count() == 1


def test_an_existing_tenant_moves_in(client, owner_a, meter, org_a):
    tenant = factories.TenantFactory(organisation=org_a, name="Wang Fang")
    url = reverse("accounts:move-in", args=[meter.unit.uuid])
    data = move_in_data(
        tenant_choice="existing", tenant=str(tenant.uuid), name="", **{reading_key(meter): "1000"}
    )
    assert as_user(client, owner_a).post(url, data).status_code == 302
    assert Account.objects.get(unit=meter.unit).tenant == tenant


def test_the_move_in_form_can_start_with_a_tenant_chosen(client, owner_a, meter, org_a):
    tenant = factories.TenantFactory(organisation=org_a)
    url = reverse("accounts:move-in", args=[meter.unit.uuid])
    form = as_user(client, owner_a).get(url, {"tenant": tenant.uuid}).context["form"]
    assert form["tenant_choice"].value() == "existing"
    assert form["tenant"].value() == str(tenant.uuid)


def test_a_move_in_with_bad_input_shows_the_errors_beside_the_fields_and_writes_nothing(
    client, manager_a1, meter
):
    url = reverse("accounts:move-in", args=[meter.unit.uuid])
    data = move_in_data(name="", **{reading_key(meter): "-3", "deposit_amount": "x"})
    response = as_user(client, manager_a1).post(url, data)
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"name", reading_key(meter), "deposit_amount"}
    assert not Tenant.objects.exists()
    assert not AuditLog.objects.filter(action="account.move_in").exists()


def test_a_top_up_refused_by_the_limits_is_shown_beside_it_and_nothing_is_written(
    client, manager_a1, meter
):
    url = reverse("accounts:move-in", args=[meter.unit.uuid])
    data = move_in_data(**{reading_key(meter): "1000", "topup_amount": "9000"})
    response = as_user(client, manager_a1).post(url, data)
    assert response.status_code == 400
    assert "topup_amount" in response.context["form"].errors
    assert not Account.objects.exists()
    assert not Tenant.objects.exists()
    assert not Reading.objects.filter(source="manual").exists()


def test_the_move_in_page_of_an_occupied_unit_says_who_lives_there(client, owner_a, tenancy):
    url = reverse("accounts:move-in", args=[tenancy.unit.uuid])
    response = as_user(client, owner_a).get(url)
    assert tenancy.tenant.name in response.content.decode()
    refused = client.post(url, move_in_data(**{reading_key(Meter.objects.get()): "1001"}))
    assert refused.status_code == 400
    assert Account.objects.filter(unit=tenancy.unit).count() == 1


# The tenancy and the tenant ----------------------------------------------------------------------


def test_the_tenancy_page_shows_the_balance_meters_and_money_with_buttons_for_operators(
    client, manager_a1, accountant_a, tenancy
):
    url = reverse("accounts:account", args=[tenancy.uuid])
    page = as_user(client, manager_a1).get(url).content.decode()
    meter = Meter.objects.get(unit=tenancy.unit)
    assert 'data-amount="100.00"' in page
    assert reverse("meters:detail", args=[meter.uuid]) in page
    assert reverse("accounts:move-out", args=[tenancy.uuid]) in page
    assert reverse("billing:topup", args=[tenancy.uuid]) in page
    assert reverse("accounts:meter-replace", args=[meter.uuid]) in page
    assert Receipt.objects.get().display_number() in page
    seen = as_user(client, accountant_a).get(url).content.decode()
    assert 'data-amount="100.00"' in seen
    assert reverse("accounts:move-out", args=[tenancy.uuid]) not in seen
    assert reverse("accounts:meter-replace", args=[meter.uuid]) not in seen


def test_the_tenancy_summary_is_its_own_partial_for_htmx(client, owner_a, tenancy):
    url = reverse("accounts:account", args=[tenancy.uuid])
    response = as_user(client, owner_a).get(url, {"part": "summary"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith("<section")
    assert 'hx-trigger="every 10s"' in body


@pytest.mark.parametrize("count", [3, 30])
def test_the_tenancy_page_takes_the_same_queries_however_much_money_moved(
    client, owner_a, tenancy, count, django_assert_max_num_queries
):
    for _ in range(count):
        factories.TopupFactory(account=tenancy, amount=Decimal(1))
    as_user(client, owner_a)
    with django_assert_max_num_queries(16):
        assert client.get(reverse("accounts:account", args=[tenancy.uuid])).status_code == 200


@pytest.mark.parametrize("count", [3, 30])
def test_the_tenant_page_takes_the_same_queries_however_many_tenancies(
    client, owner_a, org_a, property_a1, count, django_assert_max_num_queries
):
    tenant = factories.TenantFactory(organisation=org_a)
    for _ in range(count):
        factories.AccountFactory(unit__property=property_a1, tenant=tenant)
    as_user(client, owner_a)
    with django_assert_max_num_queries(8):
        response = client.get(reverse("accounts:tenant", args=[tenant.uuid]))
    assert len(response.context["tenancies"]) == count


def test_a_limited_manager_sees_only_the_tenancies_at_their_properties(
    client, manager_a1, org_a, property_a1, property_a2
):
    tenant = factories.TenantFactory(organisation=org_a)
    here = factories.AccountFactory(unit__property=property_a1, tenant=tenant)
    there = factories.AccountFactory(unit__property=property_a2, tenant=tenant)
    page = as_user(client, manager_a1).get(reverse("accounts:tenant", args=[tenant.uuid]))
    body = page.content.decode()
    assert reverse("accounts:account", args=[here.uuid]) in body
    assert reverse("accounts:account", args=[there.uuid]) not in body


# Move-out ----------------------------------------------------------------------------------------


def preview(client, account, meter, register="1010", **extra):
    url = reverse("accounts:move-out", args=[account.uuid])
    data = {
        "action": "preview",
        "idempotency_key": str(uuid.uuid4()),
        "refund_channel": "cash",
        reading_key(meter): register,
        **extra,
    }
    return client.post(url, data)


def confirm_data(response) -> dict:
    """The preview's hidden fields, as the confirm button posts them."""
    data = dict(response.context["carry"])
    data["action"] = "confirm"
    return data


def test_a_move_out_preview_shows_the_settlement_and_writes_nothing(client, manager_a1, tenancy):
    meter = Meter.objects.get(unit=tenancy.unit)
    as_user(client, manager_a1)
    form = client.get(reverse("accounts:move-out", args=[tenancy.uuid]))
    assert form.status_code == 200
    transactions = LedgerTransaction.objects.count()
    response = preview(client, tenancy, meter)
    assert response.status_code == 200
    assert response.context["step"] == "preview"
    statement = response.context["statement"]
    assert (statement.energy_net, statement.refund) == (Decimal(10), Decimal(90))
    assert 'data-testid="row-refund" data-amount="-90.00"' in response.content.decode()
    assert LedgerTransaction.objects.count() == transactions
    assert Account.objects.get(pk=tenancy.pk).status == Account.Status.OPEN


def test_confirming_the_preview_settles_closes_and_shows_the_statement(client, manager_a1, tenancy):
    meter = Meter.objects.get(unit=tenancy.unit)
    as_user(client, manager_a1)
    shown = preview(client, tenancy, meter)
    url = reverse("accounts:move-out", args=[tenancy.uuid])
    response = client.post(url, confirm_data(shown))
    settlement_url = reverse("accounts:settlement", args=[tenancy.uuid])
    assert response.status_code == 302
    assert response["Location"] == settlement_url
    account = Account.objects.get(pk=tenancy.pk)
    assert account.status == Account.Status.CLOSED
    assert account.closed_at == shown.context["statement"].closed_at
    page = client.get(settlement_url)
    assert page.context["statement"] == shown.context["statement"]
    assert 'data-testid="row-closing" data-amount="0.00"' in page.content.decode()
    pdf = client.get(reverse("accounts:settlement-pdf", args=[tenancy.uuid]))
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    # The move-out page of an ended tenancy is its statement.
    assert client.get(url)["Location"] == settlement_url


def test_a_double_submitted_move_out_settles_once(client, owner_a, tenancy):
    meter = Meter.objects.get(unit=tenancy.unit)
    as_user(client, owner_a)
    data = confirm_data(preview(client, tenancy, meter))
    url = reverse("accounts:move-out", args=[tenancy.uuid])
    assert client.post(url, data).status_code == 302
    transactions = LedgerTransaction.objects.count()
    assert client.post(url, data).status_code == 302
    assert LedgerTransaction.objects.count() == transactions
    assert LedgerTransaction.objects.filter(kind="refund").count() == 1


def test_confirming_without_a_preview_is_refused(client, owner_a, tenancy):
    meter = Meter.objects.get(unit=tenancy.unit)
    url = reverse("accounts:move-out", args=[tenancy.uuid])
    data = {
        "action": "confirm",
        "idempotency_key": str(uuid.uuid4()),
        "refund_channel": "cash",
        reading_key(meter): "1010",
    }
    response = as_user(client, owner_a).post(url, data)
    assert response.status_code == 400
    assert Account.objects.get(pk=tenancy.pk).status == Account.Status.OPEN


@pytest.mark.parametrize(
    ("register", "message"),
    [("", "required"), ("-1", "greater than or equal"), ("990", "register went backwards")],
)
def test_a_bad_final_reading_is_shown_beside_the_meter_and_writes_nothing(
    client, manager_a1, tenancy, register, message
):
    meter = Meter.objects.get(unit=tenancy.unit)
    transactions = LedgerTransaction.objects.count()
    response = preview(as_user(client, manager_a1), tenancy, meter, register=register)
    assert response.status_code == 400
    errors = response.context["form"].errors[reading_key(meter)]
    assert any(message in error for error in errors), errors
    assert LedgerTransaction.objects.count() == transactions
    assert not Reading.objects.filter(source="manual", register=990).exists()


def test_the_htmx_preview_answers_with_the_step_alone(client, owner_a, tenancy):
    meter = Meter.objects.get(unit=tenancy.unit)
    url = reverse("accounts:move-out", args=[tenancy.uuid])
    data = {
        "action": "preview",
        "idempotency_key": str(uuid.uuid4()),
        "refund_channel": "bank",
        reading_key(meter): "1010",
    }
    response = as_user(client, owner_a).post(url, data, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="move-out" data-step="preview"')
    assert "<html" not in body


def test_reading_a_meter_that_is_not_on_modbus_asks_for_the_reading_by_hand(
    client, manager_a1, tenancy
):
    meter = Meter.objects.get(unit=tenancy.unit)
    url = reverse("accounts:move-out", args=[tenancy.uuid])
    data = {"action": "read", "idempotency_key": str(uuid.uuid4()), "refund_channel": "cash"}
    response = as_user(client, manager_a1).post(url, data)
    assert response.status_code == 200
    assert "cannot be read on demand" in response.content.decode()
    assert not Reading.objects.filter(meter=meter, source="modbus").exists()


@pytest.fixture
def simulated(property_a1, tenancy, builtin_profiles):
    """The tenancy's meter behind a simulated Modbus gateway on loopback."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = MeterSimulator(gateways=1, meters_per_gateway=1, base_port=0)
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=10)
    gateway = gateway_create(
        property=property_a1,
        actor=None,
        name="sim",
        host="127.0.0.1",
        port=sim.ports[0],
        timeout_ms=500,
        retries=0,
    )
    profile = MeterProfile.objects.get(name="prepaid_sim_relay", organisation__isnull=True)
    meter = Meter.objects.get(unit=tenancy.unit)
    meter_connect(meter=meter, actor=None, gateway=gateway, modbus_unit=1, profile=profile)
    yield sim.meter(1, 1)
    asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


def test_reading_a_modbus_meter_on_demand_fills_in_its_final_reading(
    client, manager_a1, tenancy, simulated
):
    meter = Meter.objects.get(unit=tenancy.unit)
    url = reverse("accounts:move-out", args=[tenancy.uuid])
    data = {"action": "read", "idempotency_key": str(uuid.uuid4()), "refund_channel": "cash"}
    response = as_user(client, manager_a1).post(url, data)
    reading = Reading.objects.get(meter=meter, source="modbus")
    assert abs(reading.register - simulated.energy_kwh) < Decimal("0.01")
    field = response.context["form"][reading_key(meter)]
    assert Decimal(field.value()) == reading.register
    assert "Read from the meter" in response.content.decode()


def test_the_settlement_pdf_of_an_open_tenancy_is_not_found(client, owner_a, tenancy):
    url = reverse("accounts:settlement-pdf", args=[tenancy.uuid])
    assert as_user(client, owner_a).get(url).status_code == 404


def test_the_settlement_pdf_comes_in_the_language_asked_for(client, owner_a, account):
    move_out(account=account, actor=None, idempotency_key="k", moved_out_at=timezone.now())
    url = reverse("accounts:settlement-pdf", args=[account.uuid])
    as_user(client, owner_a)
    english, chinese = client.get(url), client.get(url, {"language": "zh-hans"})
    assert english.content.startswith(b"%PDF")
    assert chinese.content.startswith(b"%PDF")
    # The Chinese one embeds the CID font for its labels.
    assert b"STSong-Light" in chinese.content
    assert b"STSong-Light" not in english.content


# Meter replacement -------------------------------------------------------------------------------


def wizard(client, meter, **data):
    return client.post(reverse("accounts:meter-replace", args=[meter.uuid]), data)


def test_the_meter_replacement_wizard_walks_three_steps_and_replaces_the_meter(
    client, manager_a1, tenancy
):
    meter = Meter.objects.get(unit=tenancy.unit)
    as_user(client, manager_a1)
    start = client.get(reverse("accounts:meter-replace", args=[meter.uuid]))
    key = str(start.context["form"]["idempotency_key"].value())
    step_two = wizard(client, meter, action="step2", idempotency_key=key, final_register="1004")
    assert step_two.context["step"] == 2
    fields = dict(step_two.context["carry"])
    assert fields == {"final_register": "1004"}
    step_three = wizard(
        client,
        meter,
        action="step3",
        idempotency_key=key,
        new_serial="NEW-9",
        initial_register="12",
        keep_connection="yes",
        **fields,
    )
    assert step_three.context["step"] == 3
    confirm = dict(step_three.context["carry"], action="confirm", idempotency_key=key)
    response = wizard(client, meter, **confirm)
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:account", args=[tenancy.uuid])
    new = Meter.objects.get(serial="NEW-9")
    assert new.unit == tenancy.unit
    assert Meter.objects.get(pk=meter.pk).removed_at is not None
    assert LedgerAccount.objects.get(pk=tenancy.wallet_id).balance == Decimal(96)
    # Submitted twice, it replaces once.
    assert wizard(client, meter, **confirm).status_code == 302
    assert Meter.objects.filter(unit=tenancy.unit).count() == 2


def test_the_wizard_refuses_a_serial_already_registered_at_its_step(client, owner_a, tenancy):
    meter = Meter.objects.get(unit=tenancy.unit)
    taken = factories.MeterFactory(organisation=meter.organisation, unit=None, installed_at=None)
    response = wizard(
        as_user(client, owner_a),
        meter,
        action="confirm",
        idempotency_key=str(uuid.uuid4()),
        final_register="1004",
        new_serial=taken.serial,
        initial_register="0",
        keep_connection="yes",
    )
    assert response.status_code == 400
    assert response.context["step"] == 2
    assert "new_serial" in response.context["form"].errors
    assert Meter.objects.get(pk=meter.pk).removed_at is None


def test_the_wizard_keeps_each_steps_errors_at_that_step(client, owner_a, tenancy):
    meter = Meter.objects.get(unit=tenancy.unit)
    response = wizard(
        as_user(client, owner_a), meter, action="step2", idempotency_key=str(uuid.uuid4())
    )
    assert response.status_code == 400
    assert response.context["step"] == 1
    assert "final_register" in response.context["form"].errors


def test_a_removed_meter_offers_no_replacement(client, owner_a, tenancy):
    meter = Meter.objects.get(unit=tenancy.unit)
    meter_remove(meter=meter, actor=None, reason="broken")
    response = as_user(client, owner_a).get(reverse("accounts:meter-replace", args=[meter.uuid]))
    assert "no longer in service" in response.content.decode()
