"""The alarm page (evidence chart, rule, suggested action, acknowledging and resolving) and a
property's detector settings page, per role."""

import json

import pytest
from django.urls import reverse

from meters.alarms import alarm_raise
from meters.models import Alarm, DetectorSettings, Meter
from prepaid.audit.models import AuditLog
from tests import factories
from tests.meters.staff_urls_detectors import SPIKE_EVIDENCE, detected_alarm, settings_form

pytestmark = pytest.mark.django_db


def alarm_url(alarm_id):
    return reverse("meters:alarm", kwargs={"alarm_id": alarm_id})


def settings_url(prop):
    return reverse("meters:detector-settings", kwargs={"property_id": prop.uuid})


@pytest.fixture
def spike(property_a1):
    return Alarm.objects.get(uuid=detected_alarm(property_a1)["alarm_id"])


# The alarm page ----------------------------------------------------------------------------------


def test_the_alarm_page_shows_the_rule_the_suggested_action_and_the_evidence(
    client, manager_a1, spike
):
    client.force_login(manager_a1)
    response = client.get(alarm_url(spike.uuid))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Consumption spike" in page
    assert "The median of that hour of the week over the 4 weeks before was 0.400 kWh" in page
    assert "Ask the tenant about the unusual consumption" in page
    chart = json.loads(response.context["chart_json"])
    assert [line["label"] for line in chart["series"]] == ["Consumption", "Spike threshold"]
    assert chart["zone"] == "Asia/Shanghai"
    assert chart["band"] == SPIKE_EVIDENCE["chart"]["band"]
    assert chart["series"][1]["limit"] is True
    assert 'data-testid="evidence-table"' in page
    assert "js/alarm-chart.js" in page
    assert 'data-testid="acknowledge"' in page
    assert 'data-testid="resolve"' in page


def test_an_accountant_sees_the_alarm_but_cannot_act_on_it(client, accountant_a, spike):
    client.force_login(accountant_a)
    page = client.get(alarm_url(spike.uuid)).content.decode()
    assert "Ask the tenant" in page
    assert 'data-testid="resolve"' not in page


def test_an_alarm_without_evidence_is_shown_without_a_chart(client, owner_a, property_a1):
    meter = factories.MeterFactory(unit__property=property_a1)
    alarm = alarm_raise(meter=meter, kind=Alarm.Kind.OFFLINE, message="No answer for an hour.")
    client.force_login(owner_a)
    response = client.get(alarm_url(alarm.uuid))
    page = response.content.decode()
    assert response.status_code == 200
    assert "No answer for an hour." in page
    assert "data-alarm-chart" not in page
    assert 'data-testid="rule"' not in page


def test_acknowledging_and_resolving_from_the_alarm_page_come_back_to_it(client, manager_a1, spike):
    client.force_login(manager_a1)
    here = alarm_url(spike.uuid)
    acknowledged = client.post(
        reverse("meters:alarm-acknowledge", kwargs={"alarm_id": spike.uuid}),
        {"note": "Calling the tenant.", "next": here},
    )
    assert acknowledged.status_code == 302
    assert acknowledged["Location"] == here
    resolved = client.post(
        reverse("meters:alarm-resolve", kwargs={"alarm_id": spike.uuid}),
        {"note": "A new heater.", "next": here},
    )
    assert resolved["Location"] == here
    spike.refresh_from_db()
    assert spike.closed_at is not None
    page = client.get(here).content.decode()
    assert 'data-testid="resolve"' not in page
    assert "A new heater." in page


def test_the_alarm_page_shows_an_overload_trip_outcome(client, owner_a, property_a1):
    meter = factories.MeterFactory(unit__property=property_a1)
    alarm = alarm_raise(
        meter=meter,
        kind=Alarm.Kind.OVERLOAD,
        message="Overload.",
        evidence={
            "rule": {
                "name": "overload",
                "peak_w": 6200.0,
                "limit_w": 5000.0,
                "minutes": 30,
                "limit_minutes": 15,
            },
            "trip": {"outcome": "protected_period"},
        },
        suggested_action=Alarm.Action.REDUCE_LOAD,
    )
    client.force_login(owner_a)
    page = client.get(alarm_url(alarm.uuid)).content.decode()
    assert "The supply was not cut off: it is a protected period." in page
    assert "stayed above the limit of 5000 W for 30 minutes" in page


def test_the_alarm_page_takes_the_same_queries_whatever_the_evidence(
    client, owner_a, property_a1, django_assert_max_num_queries
):
    meter = factories.MeterFactory(unit__property=property_a1)
    small = alarm_raise(meter=meter, kind=Alarm.Kind.SPIKE, message="s", evidence=SPIKE_EVIDENCE)
    long_chart = {
        **SPIKE_EVIDENCE,
        "chart": {
            **SPIKE_EVIDENCE["chart"],
            "x": list(range(0, 3600 * 300, 3600)),
            "series": [{"key": "consumption", "values": [0.5] * 300}],
        },
    }
    other = factories.MeterFactory(unit__property=property_a1)
    large = alarm_raise(meter=other, kind=Alarm.Kind.SPIKE, message="l", evidence=long_chart)
    client.force_login(owner_a)
    for alarm in (small, large):
        with django_assert_max_num_queries(8):
            assert client.get(alarm_url(alarm.uuid)).status_code == 200


# Detector settings -------------------------------------------------------------------------------


def test_an_owner_changes_the_detector_settings_audited(client, owner_a, property_a1):
    main = factories.MeterFactory(unit__property=property_a1)
    client.force_login(owner_a)
    response = client.post(
        settings_url(property_a1),
        settings_form(
            spike_k="5.50",
            flatline_days="5",
            overload_trip="on",
            overload_limit_w="6000",
            loss_percent="8",
            main_meter=str(main.pk),
        ),
    )
    assert response.status_code == 302
    settings = DetectorSettings.objects.get(property=property_a1)
    assert str(settings.spike_k) == "5.50"
    assert (settings.flatline_days, settings.overload_trip) == (5, True)
    assert (settings.overload_limit_w, settings.main_meter) == (6000, main)
    entry = AuditLog.objects.get(action="detector_settings.update")
    assert entry.actor == owner_a
    assert entry.after["flatline_days"] == 5
    page = client.get(settings_url(property_a1)).content.decode()
    assert "The detector settings are saved." in page


def test_the_settings_page_shows_the_defaults_before_anything_is_saved(
    client, accountant_a, property_a1
):
    client.force_login(accountant_a)
    response = client.get(settings_url(property_a1))
    form = response.context["form"]
    assert response.status_code == 200
    assert form["spike_k"].value() == DetectorSettings._meta.get_field("spike_k").default
    assert all(field.disabled for field in form.fields.values())
    assert 'data-testid="read-only"' in response.content.decode()
    assert not DetectorSettings.objects.exists()


def test_a_manager_reads_the_settings_but_cannot_change_them(client, manager_a1, property_a1):
    client.force_login(manager_a1)
    assert client.get(settings_url(property_a1)).status_code == 200
    refused = client.post(settings_url(property_a1), settings_form(spike_k="9"))
    assert refused.status_code == 403
    assert not DetectorSettings.objects.exists()


def test_impossible_settings_are_refused_beside_their_fields(client, owner_a, property_a1):
    client.force_login(owner_a)
    response = client.post(
        settings_url(property_a1),
        settings_form(spike_k="1.0", spike_weeks="2", spike_min_weeks="3"),
    )
    assert response.status_code == 400
    form = response.context["form"]
    assert "spike_k" in form.errors
    assert not DetectorSettings.objects.filter(spike_k="1.0").exists()


def test_a_main_meter_of_another_property_cannot_be_chosen(
    client, owner_a, property_a1, property_a2
):
    elsewhere = factories.MeterFactory(unit__property=property_a2)
    client.force_login(owner_a)
    response = client.post(settings_url(property_a1), settings_form(main_meter=str(elsewhere.pk)))
    assert response.status_code == 400
    assert "main_meter" in response.context["form"].errors


@pytest.mark.parametrize("feeders", [2, 8])
def test_the_feeders_table_takes_the_same_queries_whatever_its_length(
    client, owner_a, property_a1, feeders, django_assert_max_num_queries
):
    for _ in range(feeders):
        feeder = factories.MeterFactory(unit__property=property_a1)
        fed = factories.MeterFactory(unit__property=property_a1)
        Meter.objects.filter(pk=fed.pk).update(feeder=feeder)
    client.force_login(owner_a)
    with django_assert_max_num_queries(9):
        response = client.get(settings_url(property_a1))
    assert len(response.context["feeders"]) == feeders
    assert response.context["feeders"][0].fed == 1
