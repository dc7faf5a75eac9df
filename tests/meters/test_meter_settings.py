"""A meter's detector settings (feeder, contracted power limit, exports energy): set through the
API and the dashboard, validated, and kept when the meter is replaced."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from accounts.lifecycle import meter_swap
from meters.detection import detector_settings_update
from meters.models import DetectorSettings, Meter
from meters.services import meter_replace, meter_update
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def main(property_a1):
    return factories.MeterFactory(unit__property=property_a1, serial="MAIN-1")


@pytest.fixture
def sub(property_a1):
    return factories.MeterFactory(unit__property=property_a1, serial="SUB-1")


def _patch(api, meter, body):
    return api.patch(reverse("meter-detail", args=[meter.uuid]), body, format="json")


# API ----------------------------------------------------------------------------------------------


def test_a_meter_is_registered_with_its_feeder_limit_and_export(owner_a, api_as, main):
    unit = factories.UnitFactory(property=main.unit.property)
    response = api_as(owner_a).post(
        reverse("meter-list"),
        {
            "serial": "SOLAR-1",
            "utility": "electricity",
            "unit": str(unit.uuid),
            "feeder": str(main.uuid),
            "power_limit_w": 6000,
            "exports_energy": True,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["feeder"], body["power_limit_w"], body["exports_energy"]) == (
        str(main.uuid),
        6000,
        True,
    )
    meter = Meter.objects.get(uuid=body["id"])
    assert (meter.feeder, meter.power_limit_w, meter.exports_energy) == (main, 6000, True)


def test_the_settings_are_changed_audited_and_cleared(owner_a, api_as, main, sub):
    api = api_as(owner_a)
    response = _patch(api, sub, {"feeder": str(main.uuid), "power_limit_w": 4600})
    assert response.status_code == 200, response.content
    assert (response.json()["feeder"], response.json()["power_limit_w"]) == (str(main.uuid), 4600)
    log = AuditLog.objects.get(action="meter.update", object_id=str(sub.uuid))
    assert log.after == {"feeder": str(main.uuid), "power_limit_w": 4600}
    response = _patch(api, sub, {"feeder": None, "power_limit_w": None, "exports_energy": True})
    assert response.status_code == 200, response.content
    sub.refresh_from_db()
    assert (sub.feeder, sub.power_limit_w, sub.exports_energy) == (None, None, True)


def test_another_organisations_meter_is_no_feeder(owner_a, api_as, sub, property_b1):
    stranger = factories.MeterFactory(unit__property=property_b1)
    response = _patch(api_as(owner_a), sub, {"feeder": str(stranger.uuid)})
    assert response.status_code == 400
    assert response.json()["feeder"] == [f"No such object: {stranger.uuid}."]
    sub.refresh_from_db()
    assert sub.feeder is None


def test_a_meter_outside_the_callers_properties_is_no_feeder(manager_a1, api_as, sub, property_a2):
    elsewhere = factories.MeterFactory(unit__property=property_a2)
    response = _patch(api_as(manager_a1), sub, {"feeder": str(elsewhere.uuid)})
    assert response.status_code == 400
    assert response.json()["feeder"] == [f"No such object: {elsewhere.uuid}."]


def test_another_organisations_meter_cannot_be_changed(owner_b, api_as, sub):
    response = _patch(api_as(owner_b), sub, {"power_limit_w": 100})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("feeder", "message"),
    [
        ("self", "A meter cannot feed itself."),
        ("other_property", "The feeder must be a meter of the same property."),
        ("water", "The feeder must measure the same utility."),
        ("same_unit", "The feeder must be in another unit."),
        ("stock", "The feeder must be a meter of the same property."),
    ],
)
def test_a_feeder_that_cannot_feed_the_meter_is_refused(
    owner_a, api_as, sub, property_a2, feeder, message
):
    feeders = {
        "self": lambda: sub,
        "other_property": lambda: factories.MeterFactory(unit__property=property_a2),
        "water": lambda: factories.MeterFactory(
            unit__property=sub.unit.property, utility=Meter.Utility.WATER
        ),
        "same_unit": lambda: _old_meter_of(sub),
        "stock": lambda: factories.MeterFactory(
            unit=None, installed_at=None, organisation=sub.organisation
        ),
    }
    response = _patch(api_as(owner_a), sub, {"feeder": str(feeders[feeder]().uuid)})
    assert response.status_code == 400
    assert response.json() == {"feeder": [message]}


def _old_meter_of(meter):
    """A meter that was in the same unit before `meter`."""
    return Meter.objects.create(
        organisation=meter.organisation,
        serial=f"OLD-{meter.serial}",
        utility=meter.utility,
        unit=meter.unit,
        installed_at=meter.installed_at - timedelta(days=30),
        removed_at=meter.installed_at - timedelta(days=1),
    )


def test_feeders_cannot_go_round_in_a_loop(owner_a, api_as, main, sub):
    third = factories.MeterFactory(unit__property=main.unit.property)
    api = api_as(owner_a)
    assert _patch(api, sub, {"feeder": str(main.uuid)}).status_code == 200
    assert _patch(api, third, {"feeder": str(sub.uuid)}).status_code == 200
    response = _patch(api, main, {"feeder": str(third.uuid)})
    assert response.status_code == 400
    assert response.json() == {
        "feeder": ["The feeder is fed by this meter: feeders cannot go round in a loop."]
    }
    main.refresh_from_db()
    assert main.feeder is None


@pytest.mark.parametrize("limit", [0, -5, "lots"])
def test_a_power_limit_must_be_a_positive_number_of_watts(owner_a, api_as, sub, limit):
    response = _patch(api_as(owner_a), sub, {"power_limit_w": limit})
    assert response.status_code == 400
    assert "power_limit_w" in response.json()


def test_the_service_refuses_a_limit_that_is_not_positive(sub):
    with pytest.raises(ValidationError, match="at least 1 W"):
        meter_update(meter=sub, actor=None, power_limit_w=0)


def test_a_meter_in_stock_takes_no_feeder(owner_a, api_as, main):
    stock = factories.MeterFactory(unit=None, installed_at=None, organisation=main.organisation)
    response = _patch(api_as(owner_a), stock, {"feeder": str(main.uuid)})
    assert response.json() == {"feeder": ["Install the meter in a unit before giving it a feeder."]}


# Dashboard ----------------------------------------------------------------------------------------


def _settings_url(meter):
    return reverse("meters:settings", kwargs={"meter_id": meter.uuid})


def test_the_meter_page_shows_the_settings_and_a_form_to_change_them(client, owner_a, main, sub):
    meter_update(meter=sub, actor=None, feeder=main, power_limit_w=4600)
    client.force_login(owner_a)
    page = client.get(reverse("meters:detail", kwargs={"meter_id": sub.uuid})).content.decode()
    assert 'data-testid="settings-form"' in page
    assert f'<option value="{main.uuid}" selected>MAIN-1 ({main.unit.name})</option>' in page
    assert "4600 W" in page


def test_a_manager_sets_the_settings_from_the_dashboard(client, manager_a1, main, sub):
    client.force_login(manager_a1)
    response = client.post(
        _settings_url(sub),
        {"feeder": str(main.uuid), "power_limit_w": "5750", "exports_energy": "on"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("meters:detail", kwargs={"meter_id": sub.uuid})
    assert "The meter&#x27;s settings are saved." in response.content.decode()
    sub.refresh_from_db()
    assert (sub.feeder, sub.power_limit_w, sub.exports_energy) == (main, 5750, True)


def test_the_dashboard_refuses_another_organisations_meter_as_feeder(
    client, owner_a, sub, property_b1
):
    stranger = factories.MeterFactory(unit__property=property_b1)
    client.force_login(owner_a)
    response = client.post(_settings_url(sub), {"feeder": str(stranger.uuid)})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    sub.refresh_from_db()
    assert sub.feeder is None


def test_the_dashboard_shows_why_a_feeder_is_refused(client, owner_a, main, sub):
    meter_update(meter=sub, actor=None, feeder=main)
    client.force_login(owner_a)
    response = client.post(_settings_url(main), {"feeder": str(sub.uuid)})
    assert response.status_code == 400
    assert "feeders cannot go round in a loop" in response.content.decode()
    main.refresh_from_db()
    assert main.feeder is None


def test_the_dashboard_refuses_a_limit_of_zero(client, owner_a, sub):
    client.force_login(owner_a)
    response = client.post(_settings_url(sub), {"power_limit_w": "0"})
    assert response.status_code == 400
    sub.refresh_from_db()
    assert sub.power_limit_w is None


def test_another_organisations_meter_page_is_not_found(client, owner_b, sub):
    client.force_login(owner_b)
    assert client.post(_settings_url(sub), {"power_limit_w": "10"}).status_code == 404


def test_an_accountant_cannot_change_the_settings(client, accountant_a, sub):
    client.force_login(accountant_a)
    assert client.post(_settings_url(sub), {"power_limit_w": "10"}).status_code == 403
    page = client.get(reverse("meters:detail", kwargs={"meter_id": sub.uuid})).content.decode()
    assert 'data-testid="settings-form"' not in page


# Replacement --------------------------------------------------------------------------------------


@pytest.fixture
def configured(property_a1, main, sub):
    """`sub` fed by `main`, limited and exporting, and feeding a meter of its own; `main` is the
    property's main meter. Both in service for a day."""
    for meter in (main, sub):
        Meter.objects.filter(pk=meter.pk).update(installed_at=timezone.now() - timedelta(days=1))
        meter.refresh_from_db()
    meter_update(meter=sub, actor=None, feeder=main, power_limit_w=4600, exports_energy=True)
    fed = factories.MeterFactory(unit__property=property_a1)
    meter_update(meter=fed, actor=None, feeder=sub)
    detector_settings_update(property=property_a1, actor=None, main_meter=main)
    return main, sub, fed


def _replace(meter, serial):
    return meter_replace(
        meter=meter,
        actor=None,
        replaced_at=timezone.now() - timedelta(minutes=1),
        final_register=Decimal(10),
        new_serial=serial,
        initial_register=Decimal(0),
    )


def test_a_replacement_keeps_the_settings_and_what_the_meter_fed(configured):
    main, sub, fed = configured
    successor = _replace(sub, "SUB-2")
    assert (successor.feeder, successor.power_limit_w, successor.exports_energy) == (
        main,
        4600,
        True,
    )
    fed.refresh_from_db()
    assert fed.feeder == successor
    log = AuditLog.objects.get(action="meter.replace", object_id=str(sub.uuid))
    assert log.after["fed_meters"] == 1


def test_replacing_the_main_meter_makes_the_new_one_the_main_meter(configured, property_a1):
    main, sub, _ = configured
    successor = _replace(main, "MAIN-2")
    assert DetectorSettings.objects.get(property=property_a1).main_meter == successor
    sub.refresh_from_db()
    assert sub.feeder == successor


def test_a_swap_from_the_wizard_keeps_the_settings(configured):
    main, sub, fed = configured
    swap = meter_swap(
        meter=sub,
        actor=None,
        idempotency_key="swap-settings",
        final_register=Decimal(10),
        new_serial="SUB-3",
        initial_register=Decimal(0),
    )
    assert (swap.new.feeder, swap.new.power_limit_w, swap.new.exports_energy) == (main, 4600, True)
    fed.refresh_from_db()
    assert fed.feeder == swap.new
