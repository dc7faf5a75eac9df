from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import BalancePolicy
from prepaid.audit.models import AuditLog

pytestmark = pytest.mark.django_db


def _url(prop):
    return reverse("property-balance-policy", args=[prop.uuid])


def test_a_property_without_a_policy_shows_the_safe_defaults(property_a1, api_as, accountant_a):
    body = api_as(accountant_a).get(_url(property_a1)).json()
    assert (body["cutoff_threshold"], body["protected_from"], body["protected_to"]) == (
        "0.0000",
        "18:00:00",
        "08:00:00",
    )
    assert (body["protect_holidays"], body["warning_levels"]) == (True, ["50", "20", "10"])


def test_an_owner_changes_the_policy_and_it_is_audited(property_a1, api_as, owner_a):
    response = api_as(owner_a).patch(
        _url(property_a1),
        {"cutoff_threshold": "-20", "warning_levels": ["10", "30", "30"], "grace_minutes": 15},
        format="json",
    )
    assert response.status_code == 200, response.json()
    policy = BalancePolicy.objects.get(property=property_a1)
    assert (policy.cutoff_threshold, policy.warning_levels, policy.grace_minutes) == (
        Decimal("-20"),
        ["30.00", "10.00"],
        15,
    )
    row = AuditLog.objects.get(action="balance_policy.update")
    assert (row.actor, row.before["grace_minutes"], row.after["grace_minutes"]) == (owner_a, 0, 15)


def test_an_owner_turns_on_the_days_left_warning_and_off_again(property_a1, api_as, owner_a):
    api = api_as(owner_a)
    assert (
        api.patch(_url(property_a1), {"warning_days": 3}, format="json").json()["warning_days"] == 3
    )
    assert api.patch(_url(property_a1), {"warning_days": None}, format="json").status_code == 200
    assert BalancePolicy.objects.get(property=property_a1).warning_days is None


def test_a_manager_may_read_but_not_change_it(property_a1, api_as, manager_a1):
    api = api_as(manager_a1)
    assert api.get(_url(property_a1)).status_code == 200
    assert api.patch(_url(property_a1), {"grace_minutes": 5}, format="json").status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"restore_threshold": "-5"},
        {"warning_levels": ["0"]},
        {"warning_levels": ["1.005"]},
        {"protected_from": "18:00", "protected_to": None},
        {"grace_minutes": 2000},
        {"warning_days": 0},
        {"warning_days": 61},
    ],
)
def test_an_inconsistent_policy_is_refused_with_a_reason(property_a1, api_as, owner_a, body):
    response = api_as(owner_a).patch(_url(property_a1), body, format="json")
    assert response.status_code == 400
    assert not BalancePolicy.objects.filter(property=property_a1, grace_minutes__gt=0).exists()
