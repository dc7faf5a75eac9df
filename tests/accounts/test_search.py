import pytest
from django.urls import reverse

from accounts import services
from meters import services as meters
from meters.models import Meter
from tests import factories

pytestmark = pytest.mark.django_db


def _search(client, query, **headers):
    return client.get(reverse("accounts:search"), {"q": query}, headers=headers)


@pytest.fixture
def tenancy(property_a1):
    account = factories.AccountFactory(
        unit__property=property_a1,
        unit__name="Flat 12B",
        tenant__name="Li Na",
        tenant__phone="+86 138 0013 8000",
    )
    factories.MeterFactory(unit=account.unit, serial="ACR-55501")
    return account


def test_a_tenant_is_found_by_name_and_links_to_the_tenant_and_the_tenancy(
    client, manager_a1, tenancy
):
    client.force_login(manager_a1)
    response = _search(client, "li n")
    assert response.status_code == 200
    [tenant] = response.context["results"].tenants
    assert tenant == tenancy.tenant
    html = response.content.decode()
    assert reverse("accounts:tenant", args=[tenancy.tenant.uuid]) in html
    assert reverse("accounts:account", args=[tenancy.uuid]) in html


@pytest.mark.parametrize("query", ["13800138000", "138 0013", "+86-138-0013-8000", "0013 8000"])
def test_a_tenant_is_found_by_phone_however_it_is_written(client, owner_a, tenancy, query):
    client.force_login(owner_a)
    assert response_tenants(_search(client, query)) == [tenancy.tenant]


def response_tenants(response):
    return response.context["results"].tenants


def test_a_unit_is_found_by_name_and_links_to_its_tenancy(client, owner_a, tenancy):
    client.force_login(owner_a)
    response = _search(client, "12b")
    [unit] = response.context["results"].units
    assert unit.name == "Flat 12B"
    assert unit.account_uuid == tenancy.uuid
    assert reverse("accounts:account", args=[tenancy.uuid]) in response.content.decode()


def test_a_vacant_unit_offers_a_move_in_to_those_who_operate(
    client, manager_a1, accountant_a, property_a1
):
    unit = factories.UnitFactory(property=property_a1, name="Shop 3")
    move_in = reverse("accounts:move-in", args=[unit.uuid])
    client.force_login(manager_a1)
    assert move_in in _search(client, "shop").content.decode()
    client.force_login(accountant_a)
    response = _search(client, "shop")
    assert [row.name for row in response.context["results"].units] == ["Shop 3"]
    assert move_in not in response.content.decode()


def test_a_meter_is_found_by_serial_and_links_to_its_page(client, owner_a, tenancy):
    client.force_login(owner_a)
    response = _search(client, "acr-555")
    [meter] = response.context["results"].meters
    assert meter.serial == "ACR-55501"
    assert meter.tenant_name == "Li Na"
    html = response.content.decode()
    assert reverse("meters:detail", args=[meter.uuid]) in html
    assert reverse("accounts:account", args=[tenancy.uuid]) in html


def test_a_removed_meter_is_still_found_but_marked(client, owner_a, tenancy):
    meter = Meter.objects.get(serial="ACR-55501")
    meters.meter_remove(meter=meter, actor=None, reason="replaced")
    client.force_login(owner_a)
    response = _search(client, "ACR")
    [found] = response.context["results"].meters
    assert found.removed_at is not None
    assert "Removed" in response.content.decode()


def test_nothing_outside_the_scope_is_found(client, manager_a1, property_a2, property_b1, tenancy):
    for prop, tag in [(property_a2, "sister"), (property_b1, "foreign")]:
        account = factories.AccountFactory(
            unit__property=prop, unit__name=f"Li {tag}", tenant__name=f"Li Na {tag}"
        )
        factories.MeterFactory(unit=account.unit, serial=f"ACR-{tag}")
    client.force_login(manager_a1)
    results = _search(client, "li").context["results"]
    assert [tenant.name for tenant in results.tenants] == ["Li Na"]
    assert results.units == []
    assert [meter.serial for meter in _search(client, "acr").context["results"].meters] == [
        "ACR-55501"
    ]


def test_a_tenant_not_yet_moved_in_is_found_by_a_limited_manager(client, manager_a1, org_a):
    services.tenant_create(organisation=org_a, actor=None, name="Newcomer Wu", phone="")
    client.force_login(manager_a1)
    [tenant] = response_tenants(_search(client, "wu"))
    assert tenant.open_accounts == []
    assert "No open tenancy" in _search(client, "wu").content.decode()


def test_a_one_character_query_asks_for_more(client, owner_a, tenancy):
    client.force_login(owner_a)
    response = _search(client, "L")
    assert response.context["results"] is None
    assert "at least 2 characters" in response.content.decode()


def test_no_match_says_so(client, owner_a, tenancy):
    client.force_login(owner_a)
    assert "Nothing matches" in _search(client, "zz-nothing").content.decode()


def test_the_live_search_box_gets_only_the_results(client, owner_a, tenancy):
    client.force_login(owner_a)
    page = _search(client, "li").content.decode()
    assert 'hx-trigger="keyup changed delay:300ms, search"' in page
    html = _search(client, "li", **{"HX-Request": "true"}).content.decode()
    assert html.lstrip().startswith('<div id="search-results"')
    assert "<html" not in html
    assert "Li Na" in html


def test_search_takes_the_same_queries_for_few_or_many_matches(
    client, owner_a, property_a1, django_assert_max_num_queries
):
    def add(count, start):
        for n in range(start, start + count):
            account = factories.AccountFactory(
                unit__property=property_a1, unit__name=f"Flat {n}", tenant__name=f"Flat Mate {n}"
            )
            factories.MeterFactory(unit=account.unit, serial=f"FLAT-{n}")

    client.force_login(owner_a)
    add(2, 0)
    with django_assert_max_num_queries(12) as few:
        _search(client, "flat")
    add(20, 2)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = _search(client, "flat")
    results = response.context["results"]
    assert (len(results.tenants), len(results.units), len(results.meters)) == (20, 20, 20)
