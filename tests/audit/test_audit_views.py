"""The audit log page: what each caller may see, the filters, before and after side by side,
and a constant number of queries however many rows there are."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import transaction
from django.urls import reverse

from accounts import services
from billing.control import balance_policy_update
from prepaid.audit.models import AuditLog
from prepaid.audit.services import audit_record
from tests import factories

pytestmark = pytest.mark.django_db

URL = reverse("audit:log")


def _actions(response) -> list[str]:
    return [row.entry.action for row in response.context["rows"]]


def _objects(response) -> set[str]:
    return {row.entry.object_id for row in response.context["rows"]}


def test_an_accountant_reads_the_log_newest_first(client, accountant_a, property_a1, owner_a):
    unit = factories.UnitFactory(property=property_a1, name="101")
    services.unit_update(unit=unit, actor=owner_a, name="102")
    client.force_login(accountant_a)
    response = client.get(URL)
    assert response.status_code == 200
    rows = [row.entry for row in response.context["rows"]]
    assert rows[0].action == "unit.update"
    assert [row.created_at for row in rows] == sorted(
        (row.created_at for row in rows), reverse=True
    )


def test_a_manager_sees_only_the_changes_of_the_assigned_property(
    client, manager_a1, property_a1, property_a2
):
    mine = factories.UnitFactory(property=property_a1)
    theirs = factories.UnitFactory(property=property_a2)
    client.force_login(manager_a1)
    seen = _objects(client.get(URL))
    assert str(mine.uuid) in seen
    assert str(theirs.uuid) not in seen
    # The organisation's own rows belong to no property: only unlimited staff see them.
    assert {row.property_id for row in AuditLog.objects.filter(object_id__in=seen)} == {
        property_a1.pk
    }


def test_another_organisations_changes_are_never_listed(client, owner_b, property_a1):
    unit = factories.UnitFactory(property=property_a1)
    client.force_login(owner_b)
    response = client.get(URL, {"object": str(unit.uuid)})
    assert response.context["rows"] == []
    assert "No changes match these filters." in response.content.decode()


def test_before_and_after_are_shown_side_by_side_with_the_changes_marked(
    client, owner_a, property_a1
):
    balance_policy_update(property=property_a1, actor=owner_a, grace_minutes=45)
    client.force_login(owner_a)
    response = client.get(URL, {"action": "balance_policy.update"})
    (row,) = response.context["rows"]
    (change,) = row.changes
    assert (change.name, change.label, change.before, change.after, change.changed) == (
        "grace_minutes",
        "Grace minutes",
        "0",
        "45",
        True,
    )
    body = response.content.decode()
    assert "<del>0</del>" in body
    assert "<mark>45</mark>" in body
    assert "Balance policy" in body


def test_a_field_recorded_only_after_the_change_is_marked_as_new(client, owner_a, account):
    factories.TopupFactory(account=account, amount=Decimal("25.00"))
    client.force_login(owner_a)
    (row,) = client.get(URL, {"action": "topup.record"}).context["rows"]
    amount = next(change for change in row.changes if change.name == "amount")
    assert (amount.before, amount.after, amount.changed) == (None, "25.00", True)


def test_unchanged_values_beside_changed_ones_are_not_marked(client, owner_a, property_a1):
    unit = factories.UnitFactory(property=property_a1)
    with transaction.atomic():
        audit_record(
            organisation_id=property_a1.organisation_id,
            property_id=property_a1.pk,
            actor=owner_a,
            action="unit.check",
            instance=unit,
            before={"name": "A", "floor": "1"},
            after={"name": "B", "floor": "1"},
        )
    client.force_login(owner_a)
    (row,) = client.get(URL, {"action": "unit.check"}).context["rows"]
    assert [(change.name, change.changed) for change in row.changes] == [
        ("name", True),
        ("floor", False),
    ]


def test_the_log_filters_by_actor_and_by_the_system(client, owner_a, accountant_a, property_a1):
    unit = factories.UnitFactory(property=property_a1)
    services.unit_update(unit=unit, actor=owner_a, name="By owner")
    client.force_login(accountant_a)
    by_owner = client.get(URL, {"actor": "owner-a"})
    assert set(_actions(by_owner)) >= {"unit.update"}
    assert {row.entry.actor for row in by_owner.context["rows"]} == {owner_a}
    by_system = client.get(URL, {"actor": "~system"})
    assert "unit.create" in _actions(by_system)
    assert {row.entry.actor for row in by_system.context["rows"]} == {None}


def test_the_log_filters_by_object_type_and_by_object_id_or_label(client, owner_a, property_a1):
    first = factories.UnitFactory(property=property_a1, name="Garden flat")
    factories.UnitFactory(property=property_a1, name="Attic")
    client.force_login(owner_a)
    units = client.get(URL, {"object_type": "accounts.unit"})
    assert {row.entry.object_type for row in units.context["rows"]} == {"accounts.unit"}
    assert len(units.context["rows"]) == 2
    assert _objects(client.get(URL, {"object": str(first.uuid)})) == {str(first.uuid)}
    assert _objects(client.get(URL, {"object": "garden"})) == {str(first.uuid)}


def test_the_log_filters_by_action_and_property(client, owner_a, property_a1, property_a2):
    factories.UnitFactory(property=property_a1)
    other = factories.UnitFactory(property=property_a2)
    client.force_login(owner_a)
    response = client.get(URL, {"action": "unit.create", "property": str(property_a2.uuid)})
    assert _actions(response) == ["unit.create"]
    assert _objects(response) == {str(other.uuid)}


def test_the_log_filters_by_local_days(client, owner_a, property_a1):
    # 23:30 on the 17th and 00:30 on the 18th in Shanghai: one UTC day, two local ones.
    late = datetime(2026, 11, 17, 15, 30, tzinfo=UTC)
    with time_machine.travel(late, tick=False):
        evening = factories.UnitFactory(property=property_a1, name="Evening")
    with time_machine.travel(late + timedelta(hours=1), tick=False):
        morning = factories.UnitFactory(property=property_a1, name="Morning")
    client.force_login(owner_a)
    query = {"action": "unit.create", "property": str(property_a1.uuid)}
    on_the_18th = client.get(URL, {**query, "since": "2026-11-18", "until": "2026-11-18"})
    assert _objects(on_the_18th) == {str(morning.uuid)}
    up_to_the_17th = client.get(URL, {**query, "until": "2026-11-17"})
    assert _objects(up_to_the_17th) == {str(evening.uuid)}


def test_a_date_range_that_ends_before_it_starts_is_an_error(client, owner_a, property_a1):
    client.force_login(owner_a)
    response = client.get(URL, {"since": "2026-11-18", "until": "2026-11-01"})
    assert response.status_code == 200
    assert response.context["form"].has_error("until")
    assert response.context["rows"]


def test_an_htmx_request_gets_the_table_alone(client, owner_a, property_a1):
    client.force_login(owner_a)
    response = client.get(URL, {"action": "property.create"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="audit-table"')
    assert "side-nav" not in body
    assert 'data-action="property.create"' in body


def test_the_log_is_paginated_25_to_a_page(client, owner_a, property_a1):
    unit = factories.UnitFactory(property=property_a1)
    for number in range(30):
        services.unit_update(unit=unit, actor=owner_a, floor=str(number))
    client.force_login(owner_a)
    first = client.get(URL, {"action": "unit.update"})
    second = client.get(URL, {"action": "unit.update", "page": "2"})
    assert (len(first.context["rows"]), len(second.context["rows"])) == (25, 5)
    assert first.context["rows"][0].changes[0].after == "29"
    assert "page=2" in first.content.decode()
    assert "action=unit.update" in first.content.decode()


@pytest.mark.parametrize("count", [3, 30])
def test_the_log_takes_the_same_number_of_queries_whatever_its_length(
    count, client, owner_a, property_a1, django_assert_max_num_queries
):
    for _ in range(count):
        account = factories.AccountFactory(unit__property=property_a1)
        factories.TopupFactory(account=account)
    client.force_login(owner_a)
    client.get(URL)
    with django_assert_max_num_queries(11):
        response = client.get(URL)
    assert response.context["page"].paginator.count > 4 * count
