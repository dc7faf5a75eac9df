"""Bad input gets a 400 with field errors, never a 500."""

import pytest
from django.urls import reverse

from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_api(owner_a, api_as):
    return api_as(owner_a)


def test_a_property_with_unknown_zone_currency_and_country_lists_each_field(owner_api):
    response = owner_api.post(
        reverse("property-list"),
        {"name": "X", "code": "X1", "time_zone": "Mars/Base", "currency": "ABC", "country": "XX1"},
    )
    assert response.status_code == 400
    assert {"time_zone", "currency", "country"} <= set(response.json())


def test_a_duplicate_property_code_is_a_field_error(owner_api, property_a1):
    body = {"name": "Other", "code": "A1", "time_zone": "UTC", "currency": "CNY", "country": "CN"}
    response = owner_api.post(reverse("property-list"), body)
    assert response.status_code == 400
    assert "__all__" not in response.json()


def test_a_malformed_uuid_reference_is_a_field_error(owner_api):
    response = owner_api.post(reverse("unit-list"), {"property": "not-a-uuid", "name": "1"})
    assert response.status_code == 400
    assert response.json() == {"property": ["Give the object's id (a UUID)."]}


def test_malformed_json_is_a_400(owner_api):
    response = owner_api.generic(
        "POST", reverse("tenant-list"), "{not json", content_type="application/json"
    )
    assert response.status_code == 400


def test_moving_into_an_occupied_unit_is_a_400(owner_api, property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    newcomer = factories.TenantFactory(organisation=property_a1.organisation)
    response = owner_api.post(
        reverse("account-list"), {"tenant": str(newcomer.uuid), "unit": str(account.unit.uuid)}
    )
    assert response.status_code == 400
    assert response.json() == {"unit": ["This unit already has an open account."]}


def test_closing_a_closed_account_is_a_400(owner_api, property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    url = reverse("account-close", args=[account.uuid])
    assert owner_api.post(url, {}).status_code == 200
    response = owner_api.post(url, {})
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["This account is already closed."]}


def test_unknown_fields_in_a_tenant_are_ignored_and_bad_emails_rejected(owner_api):
    response = owner_api.post(reverse("tenant-list"), {"name": "T", "email": "nope"})
    assert response.status_code == 400
    assert "email" in response.json()


def test_a_bad_phone_number_is_a_field_error(owner_api):
    response = owner_api.post(reverse("tenant-list"), {"name": "T", "phone": "call me"})
    assert response.status_code == 400
    assert "phone" in response.json()


def test_a_meter_in_stock_then_installed_through_the_api(owner_api, property_a1):
    created = owner_api.post(
        reverse("meter-list"), {"serial": "API-1", "utility": "electricity", "has_relay": True}
    )
    assert created.status_code == 201, created.content
    unit = factories.UnitFactory(property=property_a1)
    installed = owner_api.post(
        reverse("meter-install", args=[created.json()["id"]]), {"unit": str(unit.uuid)}
    )
    assert installed.status_code == 200
    assert installed.json()["property"] == str(property_a1.uuid)


def test_limited_staff_must_install_new_meters_in_their_units(manager_a1, api_as):
    response = api_as(manager_a1).post(
        reverse("meter-list"), {"serial": "API-2", "utility": "water"}
    )
    assert response.status_code == 400
    assert "unit" in response.json()


def test_the_api_filters_units_by_property(owner_api, property_a1, property_a2):
    mine = factories.UnitFactory(property=property_a1)
    factories.UnitFactory(property=property_a2)
    rows = owner_api.get(reverse("unit-list"), {"property": str(property_a1.uuid)}).json()
    assert [row["id"] for row in rows["results"]] == [str(mine.uuid)]


def test_the_audit_log_pages_with_a_cursor(owner_api, property_a1):
    for number in range(5):
        factories.UnitFactory(property=property_a1, name=f"C{number}")
    first = owner_api.get(reverse("audit-log-list"), {"page_size": 2}).json()
    second = owner_api.get(first["next"]).json()
    assert len(first["results"]) == len(second["results"]) == 2
    assert not {r["id"] for r in first["results"]} & {r["id"] for r in second["results"]}


def test_integrations_authenticate_with_a_token(owner_a, client):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=owner_a)
    response = client.get(reverse("property-list"), HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 200
    bad = client.get(reverse("property-list"), HTTP_AUTHORIZATION="Token not-a-real-token")
    assert bad.status_code == 401
