from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import Account
from accounts.selectors import (
    BalanceLevel,
    Connection,
    Supply,
    balance_level_of,
    connection_of,
    supply_of,
)
from billing.control import balance_policy_update
from billing.services import charges_post
from meters import services as meters
from meters.models import Meter
from meters.relay import relay_command_issue
from tests import factories

pytestmark = pytest.mark.django_db


def _tenancy(prop, name, *, topup=None, **meter_state):
    """An occupied unit with a metered relay; the meter as the last poll saw it."""
    account = factories.AccountFactory(unit__property=prop, unit__name=name)
    if topup is not None:
        factories.TopupFactory(account=account, amount=Decimal(topup))
    meter = factories.MeterFactory(unit=account.unit, serial=f"SN-{name}")
    Meter.objects.filter(pk=meter.pk).update(
        **{"online": True, "relay_closed": True, **meter_state}
    )
    return account


def _grid(client, prop, **params):
    return client.get(reverse("accounts:units", args=[prop.uuid]), params)


def _rows(response):
    return {unit.name: unit for unit in response.context["units"]}


# Status words and colours -----------------------------------------------------------------------


def test_balance_levels_tell_credit_from_low_credit_from_none():
    level = Decimal(50)
    assert balance_level_of(balance=Decimal("50.01"), mode="prepaid", low_level=level) == "good"
    assert balance_level_of(balance=Decimal(50), mode="prepaid", low_level=level) == "low"
    assert balance_level_of(balance=Decimal("0.01"), mode="prepaid", low_level=level) == "low"
    assert balance_level_of(balance=Decimal(0), mode="prepaid", low_level=level) == "empty"
    assert balance_level_of(balance=Decimal(-3), mode="prepaid", low_level=level) == "empty"
    assert balance_level_of(balance=Decimal(-3), mode="postpaid", low_level=level) == "postpaid"
    assert balance_level_of(balance=Decimal(5), mode="prepaid", low_level=None) == "good"
    assert balance_level_of(balance=None, mode=None, low_level=level) == "vacant"


def test_the_supply_is_pending_while_a_command_is_on_its_way_then_the_confirmed_state():
    assert supply_of([]) == Supply.NO_RELAY
    assert supply_of([(True, False)]) == Supply.ON
    assert supply_of([(False, False), (True, False)]) == Supply.OFF
    assert supply_of([(None, False)]) == Supply.UNKNOWN
    assert supply_of([(True, True)]) == Supply.PENDING


def test_one_offline_meter_makes_the_unit_offline():
    assert connection_of([]) == Connection.NO_METER
    assert connection_of([True, True]) == Connection.ONLINE
    assert connection_of([True, None]) == Connection.UNKNOWN
    assert connection_of([None, False]) == Connection.OFFLINE


def test_the_grid_shows_each_units_balance_supply_and_connection_in_words_and_colours(
    client, manager_a1, property_a1
):
    _tenancy(property_a1, "G1", topup="100")
    _tenancy(property_a1, "L1", topup="30")
    _tenancy(property_a1, "Z1", relay_closed=False)
    _tenancy(property_a1, "O1", topup="100", online=False)
    pending = _tenancy(property_a1, "P1", topup="100")
    relay_command_issue(
        meter=Meter.objects.get(unit=pending.unit), close=False, actor=None, reason="test"
    )
    factories.UnitFactory(property=property_a1, name="V1")
    client.force_login(manager_a1)
    response = _grid(client, property_a1)
    assert response.status_code == 200
    rows = _rows(response)
    assert (rows["G1"].balance_level, rows["G1"].tone) == (BalanceLevel.GOOD, "good")
    assert (rows["L1"].balance_level, rows["L1"].tone) == (BalanceLevel.LOW, "warn")
    assert (rows["Z1"].balance_level, rows["Z1"].supply) == (BalanceLevel.EMPTY, Supply.OFF)
    assert rows["Z1"].tone == "bad"
    assert (rows["O1"].connection, rows["O1"].tone) == (Connection.OFFLINE, "bad")
    assert (rows["P1"].supply, rows["P1"].tone) == (Supply.PENDING, "warn")
    assert (rows["V1"].balance_level, rows["V1"].connection) == ("vacant", Connection.NO_METER)
    html = response.content.decode()
    for words in ("In credit", "Low credit", "No credit", "Cut off", "Offline", "Switching"):
        assert words in html
    assert 'class="status-bad"' in html


def test_the_low_level_is_the_propertys_highest_warning_level(client, owner_a, property_a1):
    _tenancy(property_a1, "A", topup="80")
    client.force_login(owner_a)
    assert _rows(_grid(client, property_a1))["A"].balance_level == BalanceLevel.GOOD
    balance_policy_update(property=property_a1, actor=owner_a, warning_levels=["20", "100"])
    assert _rows(_grid(client, property_a1))["A"].balance_level == BalanceLevel.LOW
    balance_policy_update(property=property_a1, actor=owner_a, warning_levels=[])
    assert _rows(_grid(client, property_a1))["A"].balance_level == BalanceLevel.GOOD


def test_a_negative_balance_is_no_credit(client, owner_a, property_a1):
    account = _tenancy(property_a1, "D")
    charges_post(charges=[factories.ChargeInputFactory.build(account=account, net=Decimal(5))])
    client.force_login(owner_a)
    row = _rows(_grid(client, property_a1))["D"]
    assert (row.balance, row.balance_level) == (Decimal(-5), BalanceLevel.EMPTY)


def test_a_postpaid_tenancy_is_never_low(client, owner_a, property_a1):
    account = factories.AccountFactory(unit__property=property_a1, mode=Account.Mode.POSTPAID)
    client.force_login(owner_a)
    assert _rows(_grid(client, property_a1))[account.unit.name].balance_level == "postpaid"
    assert not _rows(_grid(client, property_a1, status="low"))


# Filters and search -----------------------------------------------------------------------------


@pytest.fixture
def mixed(property_a1):
    """One unit of each kind the filters tell apart."""
    _tenancy(property_a1, "GOOD", topup="100")
    _tenancy(property_a1, "LOW", topup="20")
    _tenancy(property_a1, "CUT", relay_closed=False)
    _tenancy(property_a1, "DARK", topup="100", online=False)
    _tenancy(property_a1, "NEW", topup="100", online=None)
    factories.UnitFactory(property=property_a1, name="EMPTY")
    return property_a1


@pytest.mark.parametrize(
    ("status", "names"),
    [
        ("all", {"GOOD", "LOW", "CUT", "DARK", "NEW", "EMPTY"}),
        ("occupied", {"GOOD", "LOW", "CUT", "DARK", "NEW"}),
        ("vacant", {"EMPTY"}),
        ("low", {"LOW", "CUT"}),
        ("cut_off", {"CUT"}),
        ("offline", {"DARK"}),
        ("online", {"GOOD", "LOW", "CUT"}),
        ("nonsense", {"GOOD", "LOW", "CUT", "DARK", "NEW", "EMPTY"}),
    ],
)
def test_the_status_filter_shows_just_those_units(client, manager_a1, mixed, status, names):
    client.force_login(manager_a1)
    response = _grid(client, mixed, status=status)
    assert set(_rows(response)) == names
    if status != "nonsense":
        assert response.context["status"] == status
        counts = dict((choice.value, number) for choice, number in response.context["filters"])
        assert counts[status] == len(names)


@pytest.mark.parametrize(
    ("query", "names"),
    [("cu", {"CUT"}), ("SN-DARK", {"DARK"}), ("no-such", set())],
)
def test_the_search_box_finds_units_by_name_or_meter_serial(client, owner_a, mixed, query, names):
    client.force_login(owner_a)
    assert set(_rows(_grid(client, mixed, q=query))) == names


def test_the_search_box_finds_units_by_tenant_name(client, owner_a, property_a1):
    account = _tenancy(property_a1, "T1", topup="100")
    account.tenant.name = "Zhang Wei"
    account.tenant.save(update_fields=["name"])
    _tenancy(property_a1, "T2")
    client.force_login(owner_a)
    assert set(_rows(_grid(client, property_a1, q="zhang"))) == {"T1"}


def test_filters_combine_and_sort_by_lowest_balance(client, owner_a, property_a1):
    for name, amount in [("A", "300"), ("B", "10"), ("C", "70")]:
        _tenancy(property_a1, name, topup=amount)
    factories.UnitFactory(property=property_a1, name="D")
    client.force_login(owner_a)
    rows = _grid(client, property_a1, sort="balance")
    assert [unit.name for unit in rows.context["units"]] == ["B", "C", "A", "D"]
    rows = _grid(client, property_a1, sort="balance", status="occupied", q="c")
    assert [unit.name for unit in rows.context["units"]] == ["C"]


# Links by role ----------------------------------------------------------------------------------


def test_units_link_to_their_tenancy_or_to_move_in_for_roles_that_operate(
    client, manager_a1, accountant_a, property_a1
):
    account = _tenancy(property_a1, "IN", topup="100")
    vacant = factories.UnitFactory(property=property_a1, name="OUT")
    meter = Meter.objects.get(unit=account.unit)
    move_in = reverse("accounts:move-in", args=[vacant.uuid])
    for user, sees_move_in in [(manager_a1, True), (accountant_a, False)]:
        client.force_login(user)
        html = _grid(client, property_a1).content.decode()
        assert reverse("accounts:account", args=[account.uuid]) in html
        assert reverse("accounts:tenant", args=[account.tenant.uuid]) in html
        assert reverse("meters:detail", args=[meter.uuid]) in html
        assert (move_in in html) is sees_move_in


# Scoping ----------------------------------------------------------------------------------------


def test_no_unit_of_another_organisation_or_unassigned_property_shows(
    client, manager_a1, owner_a, property_a1, property_a2, property_b1
):
    _tenancy(property_a1, "MINE", topup="100")
    _tenancy(property_a2, "SISTER", topup="100")
    _tenancy(property_b1, "FOREIGN", topup="100")
    client.force_login(manager_a1)
    assert set(_rows(client.get(reverse("accounts:units-all")))) == {"MINE"}
    assert _grid(client, property_a2).status_code == 404
    assert _grid(client, property_b1).status_code == 404
    client.force_login(owner_a)
    response = client.get(reverse("accounts:units-all"))
    assert set(_rows(response)) == {"MINE", "SISTER"}
    assert b"FOREIGN" not in response.content
    assert response.context["show_property"] is True


# The units list ---------------------------------------------------------------------------------


def test_the_units_list_filters_across_properties(client, owner_a, property_a1, property_a2):
    _tenancy(property_a1, "A-CUT", relay_closed=False)
    _tenancy(property_a2, "B-CUT", relay_closed=False)
    _tenancy(property_a2, "B-OK", topup="100")
    client.force_login(owner_a)
    response = client.get(reverse("accounts:units-all"), {"status": "cut_off"})
    assert response.status_code == 200
    assert set(_rows(response)) == {"A-CUT", "B-CUT"}


def test_the_units_list_pages_with_its_filters(client, owner_a, property_a1, monkeypatch):
    monkeypatch.setattr("accounts.views.units.UNITS_PER_PAGE", 2)
    for name in ["A", "B", "C"]:
        _tenancy(property_a1, name, topup="10")
    client.force_login(owner_a)
    first = client.get(reverse("accounts:units-all"), {"status": "low"})
    assert [unit.name for unit in first.context["units"]] == ["A", "B"]
    assert "status=low" in first.context["next_url"]
    second = client.get(first.context["next_url"])
    assert [unit.name for unit in second.context["units"]] == ["C"]


# htmx -------------------------------------------------------------------------------------------


def test_htmx_gets_only_the_grid_which_polls_itself_with_its_filters(client, owner_a, property_a1):
    _tenancy(property_a1, "U1", topup="100")
    client.force_login(owner_a)
    url = reverse("accounts:units", args=[property_a1.uuid])
    page = client.get(url, {"status": "occupied", "q": "U"}).content.decode()
    assert 'hx-trigger="every 10s"' in page
    assert "<html" in page
    partial = client.get(url, {"status": "occupied", "q": "U"}, headers={"HX-Request": "true"})
    html = partial.content.decode()
    assert html.lstrip().startswith('<section id="units-grid"')
    assert "<html" not in html
    assert 'name="status"' not in html
    assert 'hx-trigger="every 10s"' in html
    assert "status=occupied&amp;q=U" in html
    assert "U1" in html


def test_the_units_list_answers_htmx_with_the_same_partial(client, owner_a, property_a1):
    _tenancy(property_a1, "U1", topup="100")
    client.force_login(owner_a)
    response = client.get(reverse("accounts:units-all"), headers={"HX-Request": "true"})
    assert response.content.decode().lstrip().startswith('<section id="units-grid"')


# The properties list ----------------------------------------------------------------------------


def test_the_properties_list_counts_units_tenancies_meters_credit_and_trouble(
    client, owner_a, property_a1, property_a2
):
    _tenancy(property_a1, "A", topup="100")
    _tenancy(property_a1, "B", topup="20", online=False)
    _tenancy(property_a1, "C", relay_closed=False)
    factories.UnitFactory(property=property_a1, name="D")
    client.force_login(owner_a)
    response = client.get(reverse("accounts:properties"))
    assert response.status_code == 200
    first, second = response.context["properties"]
    assert first == property_a1
    assert second == property_a2
    assert (first.unit_count, first.open_account_count, first.meter_count) == (4, 3, 3)
    assert (first.offline_count, first.low_count, first.cut_off_count) == (1, 2, 1)
    assert first.credit_held == Decimal(120)
    assert (second.unit_count, second.credit_held) == (0, Decimal(0))
    html = response.content.decode()
    assert reverse("accounts:units", args=[property_a1.uuid]) in html
    assert reverse("billing:policy", args=[property_a1.uuid]) in html


def test_only_owners_get_the_links_to_policies(client, manager_a1, accountant_a, property_a1):
    policy = reverse("billing:policy", args=[property_a1.uuid])
    for user in (manager_a1, accountant_a):
        client.force_login(user)
        response = client.get(reverse("accounts:properties"))
        assert response.status_code == 200
        assert policy not in response.content.decode()


def test_a_limited_manager_sees_only_assigned_properties(client, manager_a1, property_b1):
    client.force_login(manager_a1)
    response = client.get(reverse("accounts:properties"))
    assert [prop.code for prop in response.context["properties"]] == ["A1"]
    assert b"A Two" not in response.content
    assert b"B One" not in response.content


# Query counts -----------------------------------------------------------------------------------


def _fill(prop, count, start):
    for n in range(count):
        state = [{}, {"online": False}, {"relay_closed": False}][n % 3]
        _tenancy(prop, f"Q{start + n:03d}", topup="30" if n % 2 else None, **state)
        factories.UnitFactory(property=prop, name=f"V{start + n:03d}")


@pytest.mark.parametrize(
    "url_name", ["accounts:units", "accounts:units-all", "accounts:properties"]
)
def test_the_pages_take_the_same_queries_for_3_units_or_30(
    client, owner_a, property_a1, django_assert_max_num_queries, url_name
):
    kwargs = {"property_id": property_a1.uuid} if url_name == "accounts:units" else {}
    url = reverse(url_name, kwargs=kwargs)
    client.force_login(owner_a)
    _fill(property_a1, 3, 0)
    with django_assert_max_num_queries(12) as few:
        client.get(url, {"q": "Q"})
    _fill(property_a1, 27, 3)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(url, {"q": "Q"})
    assert response.status_code == 200


def test_a_unit_with_two_meters_is_one_row_counted_once_and_as_bad_as_its_worst_meter(
    client, owner_a, property_a1
):
    account = _tenancy(property_a1, "TWO", topup="100")
    water = factories.MeterFactory(
        unit=account.unit, serial="SN-TWO-W", utility=Meter.Utility.WATER, has_relay=False
    )
    Meter.objects.filter(pk=water.pk).update(online=False)
    removed = factories.MeterFactory(unit=factories.UnitFactory(property=property_a1, name="R"))
    meters.meter_remove(meter=removed, actor=None, reason="broken")
    Meter.objects.filter(pk=removed.pk).update(online=False, relay_closed=False)
    client.force_login(owner_a)
    response = _grid(client, property_a1, status="offline")
    [row] = response.context["units"]
    assert (row.name, row.connection, row.supply) == ("TWO", Connection.OFFLINE, Supply.ON)
    assert [meter.serial for meter in row.meters] == ["SN-TWO", "SN-TWO-W"]
    counts = dict((choice.value, number) for choice, number in response.context["filters"])
    assert (counts["all"], counts["offline"], counts["online"], counts["cut_off"]) == (2, 1, 0, 0)
    assert _rows(_grid(client, property_a1))["R"].connection == Connection.NO_METER
