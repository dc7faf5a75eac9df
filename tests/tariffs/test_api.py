import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

SHANGHAI = {
    "effective_from": "2026-01-01T00:00:00+08:00",
    "kind": "tou_tiered",
    "periods": {
        day: [
            {"name": "peak", "start": "06:00", "end": "22:00", "price": "0.617"},
            {"name": "valley", "start": "22:00", "end": "06:00", "price": "0.307"},
        ]
        for day in ("weekday", "weekend", "holiday")
    },
    "bands": [{"limit": "260", "price": "0"}, {"limit": None, "price": "0.30"}],
    "tax_rate": "0.13",
}


def test_owners_create_a_tariff_and_read_it_back(owner_a, property_a1, api_as):
    api = api_as(owner_a)
    body = {
        "property": str(property_a1.uuid),
        "utility": "electricity",
        "name": "Residential",
        "version": SHANGHAI,
    }
    response = api.post(reverse("tariff-list"), body, format="json")
    assert response.status_code == 201, response.content
    [version] = response.json()["versions"]
    assert version["periods"]["weekday"][1] == {
        "name": "valley",
        "start": "22:00",
        "end": "06:00",
        "price": "0.307000",
    }
    assert version["bands"] == [
        {"limit": "260.000000", "price": "0.000000"},
        {"limit": None, "price": "0.300000"},
    ]


def test_managers_and_accountants_cannot_set_prices(manager_a1, accountant_a, property_a1, api_as):
    body = {
        "property": str(property_a1.uuid),
        "utility": "water",
        "name": "W",
        "version": {**SHANGHAI, "kind": "flat", "flat_price": "3", "periods": {}, "bands": []},
    }
    for user in (manager_a1, accountant_a):
        assert api_as(user).post(reverse("tariff-list"), body, format="json").status_code == 403


def test_a_broken_tariff_gets_a_400_with_the_reason(owner_a, property_a1, api_as):
    broken = {**SHANGHAI, "bands": [{"limit": None, "price": "0"}, {"limit": "100", "price": "1"}]}
    body = {
        "property": str(property_a1.uuid),
        "utility": "electricity",
        "name": "X",
        "version": broken,
    }
    response = api_as(owner_a).post(reverse("tariff-list"), body, format="json")
    assert response.status_code == 400
    assert "band" in str(response.json()).lower()


def test_float_prices_in_json_are_accepted_only_as_decimal_strings(owner_a, property_a1, api_as):
    version = {
        "effective_from": "2026-01-01T00:00:00Z",
        "kind": "flat",
        "flat_price": "1.234567891",
    }
    body = {"property": str(property_a1.uuid), "utility": "water", "name": "W", "version": version}
    response = api_as(owner_a).post(reverse("tariff-list"), body, format="json")
    assert response.status_code == 400
    assert "flat_price" in response.json()["version"]
