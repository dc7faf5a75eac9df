"""Meter profiles through the API: a model the code has never seen is added as data."""

import json
from pathlib import Path

import pytest
from django.urls import reverse

import meters
from meters.models import MeterProfile

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("builtin_profiles")]

# A made-up prepaid meter: u32 x 0.01 kWh in holding registers, a relay set by writing one
# holding register with function 16, read back from a holding register.
NEVER_SEEN = {
    "name": "ACME PM-1",
    "manufacturer": "ACME",
    "model": "PM-1",
    "points": [
        {
            "quantity": "import_energy",
            "function": 3,
            "address": 0,
            "datatype": "u32",
            "word_order": "big",
            "scale": "0.01",
            "unit": "kWh",
        },
        {
            "quantity": "voltage",
            "function": 3,
            "address": 11,
            "datatype": "u16",
            "word_order": "big",
            "scale": "0.1",
            "unit": "V",
        },
    ],
    "relay": {
        "write_function": 16,
        "address": 40,
        "close_value": 0x55AA,
        "open_value": 0xAA55,
        "readback": {
            "function": 3,
            "address": 41,
            "datatype": "u16",
            "on_value": 1,
            "off_value": 0,
        },
    },
}


def test_the_built_in_profiles_are_shipped_as_data(owner_a, api_as):
    names = {
        row["name"] for row in api_as(owner_a).get(reverse("meter-profile-list")).json()["results"]
    }
    assert {"sdm120", "sdm630", "acrel_ddsy1352", "prepaid_sim_relay"} <= {n.lower() for n in names}


def test_an_owner_imports_a_new_model_without_code(owner_a, api_as):
    api = api_as(owner_a)
    response = api.post(
        reverse("meter-profile-list"), {"name": "ACME", "definition": NEVER_SEEN}, format="json"
    )
    assert response.status_code == 201, response.content
    exported = api.get(reverse("meter-profile-detail", args=[response.json()["id"]])).json()
    assert exported["definition"] == NEVER_SEEN
    assert exported["built_in"] is False


def test_an_invalid_profile_lists_every_bad_point(owner_a, api_as):
    energy, voltage = NEVER_SEEN["points"]
    bad = {
        **NEVER_SEEN,
        "points": [
            {**voltage, "datatype": "u24"},
            {**energy, "address": 20},
            {**voltage, "quantity": "current", "address": 21},
        ],
        "relay": {**NEVER_SEEN["relay"], "open_value": 0x55AA},
    }
    response = api_as(owner_a).post(
        reverse("meter-profile-list"), {"name": "Bad", "definition": bad}, format="json"
    )
    assert response.status_code == 400
    problems = " ".join(response.json()["definition"])
    assert "u24" in problems
    assert "overlap" in problems
    assert "relay" in problems
    assert not MeterProfile.objects.filter(name="Bad").exists()


def test_built_in_profiles_cannot_be_edited(owner_a, api_as):
    builtin = MeterProfile.objects.filter(organisation__isnull=True).first()
    response = api_as(owner_a).patch(
        reverse("meter-profile-detail", args=[builtin.uuid]), {"name": "Mine"}, format="json"
    )
    assert response.status_code == 400


def test_managers_cannot_add_profiles(manager_a1, api_as):
    response = api_as(manager_a1).post(
        reverse("meter-profile-list"), {"name": "X", "definition": NEVER_SEEN}, format="json"
    )
    assert response.status_code == 403


def test_every_shipped_profile_file_validates():
    for path in (Path(meters.__file__).parent / "profiles").glob("*.json"):
        assert MeterProfile.objects.filter(name=json.loads(path.read_text())["name"]).exists()
