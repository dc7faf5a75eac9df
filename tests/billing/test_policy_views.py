"""The policies editor: owners change a property's balance policy, audited; everyone else sees
it; the preview shows the next protected periods without saving anything."""

import re
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from accounts.models import PropertyHoliday
from billing.models import BalancePolicy
from billing.selectors import balance_policy
from prepaid.audit.models import AuditLog

pytestmark = pytest.mark.django_db

# Wednesday 18 November 2026, noon in Shanghai (UTC+8).
NOON = datetime(2026, 11, 18, 4, tzinfo=UTC)


def _url(prop):
    return reverse("billing:policy", kwargs={"property_id": prop.uuid})


def _preview_url(prop):
    return reverse("billing:policy-preview", kwargs={"property_id": prop.uuid})


def _windows(response) -> list[dict]:
    """The preview's windows as the page shows them: local start and end, running, holidays."""
    chunks = response.content.decode().split('<li data-testid="window"')[1:]
    windows = []
    for chunk in chunks:
        chunk = chunk.split("</li>")[0]
        times = re.findall(r'<time datetime="([^"]+)">', chunk)
        windows.append(
            {
                "start": times[0],
                "end": times[1] if len(times) > 1 else None,
                "running": chunk.startswith(" data-running"),
                "weekend": "Weekend" in chunk,
                "holidays": re.findall(r'data-holiday="([^"]+)"', chunk),
            }
        )
    return windows


def _form(**fields):
    data = {
        "warning_levels": "50, 20, 10",
        "warning_days": "",
        "cutoff_threshold": "0",
        "restore_threshold": "0",
        "grace_minutes": "0",
        "protected_from": "18:00",
        "protected_to": "08:00",
        "protect_holidays": "on",
    }
    data.update(fields)
    return {name: value for name, value in data.items() if value is not None}


def test_an_owner_sees_the_policy_in_force_and_can_save_it(client, owner_a, property_a1):
    BalancePolicy.objects.create(
        property=property_a1, warning_levels=["40.00", "15.00"], grace_minutes=30
    )
    client.force_login(owner_a)
    page = client.get(_url(property_a1))
    assert page.status_code == 200
    form = page.context["form"]
    assert form["warning_levels"].value() == "40, 15"
    assert form["grace_minutes"].value() == 30
    assert form["protected_from"].value() == time(18)
    assert 'data-testid="save-policy"' in page.content.decode()


@pytest.mark.parametrize("username", ["manager_a1", "accountant_a"])
def test_managers_and_accountants_see_the_policy_but_cannot_change_it(
    username, request, client, property_a1
):
    client.force_login(request.getfixturevalue(username))
    page = client.get(_url(property_a1))
    body = page.content.decode()
    assert page.status_code == 200
    assert all(field.field.disabled for field in page.context["form"])
    assert 'data-testid="save-policy"' not in body
    assert 'data-testid="read-only"' in body
    assert client.post(_url(property_a1), _form(grace_minutes="60")).status_code == 403
    assert balance_policy(property=property_a1).grace_minutes == 0


def test_saving_changes_the_policy_and_audits_before_and_after(client, owner_a, property_a1):
    client.force_login(owner_a)
    response = client.post(
        _url(property_a1),
        _form(
            warning_levels="30\uff0c10 5",  # a Chinese comma, and a space
            warning_days="3",
            cutoff_threshold="-10",
            restore_threshold="5.50",
            grace_minutes="45",
            protected_from="20:00",
            protected_to="07:30",
            protect_weekends="on",
            protect_holidays=None,
        ),
    )
    assert response.status_code == 302
    assert response["Location"] == _url(property_a1)
    policy = BalancePolicy.objects.get(property=property_a1)
    assert policy.warning_levels == ["30.00", "10.00", "5.00"]
    assert (policy.warning_days, policy.grace_minutes) == (3, 45)
    assert (policy.cutoff_threshold, policy.restore_threshold) == (Decimal(-10), Decimal("5.5"))
    assert (policy.protected_from, policy.protected_to) == (time(20), time(7, 30))
    assert (policy.protect_weekends, policy.protect_holidays) == (True, False)
    audit = AuditLog.objects.get(action="balance_policy.update")
    assert audit.actor == owner_a
    assert audit.property_id == property_a1.pk
    assert audit.before["grace_minutes"] == 0
    assert audit.after["grace_minutes"] == 45
    assert (audit.before["protect_holidays"], audit.after["protect_holidays"]) == (True, False)
    assert "The policy is saved." in client.get(response["Location"]).content.decode()


def test_saving_the_policy_unchanged_audits_nothing_new(client, owner_a, property_a1):
    client.force_login(owner_a)
    client.post(_url(property_a1), _form(grace_minutes="10"))
    client.post(_url(property_a1), _form(grace_minutes="10"))
    assert AuditLog.objects.filter(action="balance_policy.update").count() == 1


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"restore_threshold": "-5"}, "restore_threshold", "below the cut-off"),
        ({"cutoff_threshold": "0.001"}, "cutoff_threshold", "whole CNY minor units"),
        ({"cutoff_threshold": ""}, "cutoff_threshold", "Enter an amount"),
        ({"warning_levels": "50, lots"}, "warning_levels", "lots is not an amount"),
        ({"warning_levels": "50, -5"}, "warning_levels", "above zero"),
        ({"warning_levels": "1 2 3 4 5 6 7 8 9 10 11"}, "warning_levels", "at most 10"),
        ({"warning_days": "0"}, "warning_days", "greater than or equal to 1"),
        ({"warning_days": "61"}, "warning_days", "less than or equal to 60"),
        ({"grace_minutes": "1441"}, "grace_minutes", "less than or equal to 1440"),
        ({"grace_minutes": "-1"}, "grace_minutes", "greater than or equal to 0"),
        ({"protected_to": ""}, "protected_to", "or neither"),
        ({"protected_from": ""}, "protected_from", "or neither"),
        ({"protected_from": "25:00"}, "protected_from", "valid time"),
    ],
)
def test_invalid_values_are_refused_beside_their_field(
    fields, field, message, client, owner_a, property_a1
):
    client.force_login(owner_a)
    response = client.post(_url(property_a1), _form(**fields))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert message in " ".join(errors[field]), errors
    assert 'class="field invalid"' in response.content.decode()
    assert not BalancePolicy.objects.filter(property=property_a1).exists()
    assert not AuditLog.objects.filter(action="balance_policy.update").exists()


@time_machine.travel(NOON, tick=False)
def test_the_page_previews_the_next_five_protected_periods_in_local_time(
    client, owner_a, property_a1
):
    client.force_login(owner_a)
    windows = client.get(_url(property_a1)).context["windows"]
    assert len(windows) == 5
    # Nightly, 18:00 to 08:00 Shanghai time: 10:00 to 00:00 UTC.
    assert windows[0].start == datetime(2026, 11, 18, 10, tzinfo=UTC)
    assert windows[0].end == datetime(2026, 11, 19, 0, tzinfo=UTC)
    assert windows[4].start == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert not any(window.running for window in windows)


@time_machine.travel(NOON, tick=False)
def test_the_preview_follows_the_form_and_saves_nothing(client, manager_a1, property_a1):
    client.force_login(manager_a1)
    response = client.get(
        _preview_url(property_a1),
        {"protected_from": "", "protected_to": "", "protect_weekends": "on"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert "side-nav" not in response.content.decode()
    windows = _windows(response)
    assert len(windows) == 5
    # Weekends alone: Saturday 00:00 to Monday 00:00, Shanghai time.
    assert windows[0] == {
        "start": "2026-11-21T00:00:00+08:00",
        "end": "2026-11-23T00:00:00+08:00",
        "running": False,
        "weekend": True,
        "holidays": [],
    }
    assert not BalancePolicy.objects.filter(property=property_a1).exists()
    assert not AuditLog.objects.filter(action="balance_policy.update").exists()


@time_machine.travel(NOON, tick=False)
def test_the_preview_marks_a_protected_period_running_now(client, owner_a, property_a1):
    client.force_login(owner_a)
    response = client.get(
        _preview_url(property_a1), {"protected_from": "09:00", "protected_to": "13:00"}
    )
    first, second = _windows(response)[:2]
    assert (first["start"], first["end"], first["running"]) == (
        "2026-11-18T12:00:00+08:00",
        "2026-11-18T13:00:00+08:00",
        True,
    )
    assert (second["start"], second["running"]) == ("2026-11-19T09:00:00+08:00", False)


@time_machine.travel(NOON, tick=False)
def test_the_preview_names_the_holidays_a_protected_period_covers(client, owner_a, property_a1):
    PropertyHoliday.objects.create(property=property_a1, date=date(2026, 11, 25), name="Day off")
    client.force_login(owner_a)
    response = client.get(
        _preview_url(property_a1),
        {"protected_from": "", "protected_to": "", "protect_holidays": "on"},
    )
    first = _windows(response)[0]
    assert (first["start"], first["end"]) == (
        "2026-11-25T00:00:00+08:00",
        "2026-11-26T00:00:00+08:00",
    )
    assert first["holidays"] == ["2026-11-25"]


def test_the_preview_asks_for_complete_hours(client, owner_a, property_a1):
    client.force_login(owner_a)
    response = client.get(_preview_url(property_a1), {"protected_from": "18:00"})
    assert _windows(response) == []
    assert "Correct the protected hours" in response.content.decode()
    assert "or neither" in response.content.decode()


def test_the_preview_ignores_errors_outside_the_protected_periods(client, owner_a, property_a1):
    client.force_login(owner_a)
    response = client.get(
        _preview_url(property_a1),
        {"warning_levels": "lots", "protected_from": "18:00", "protected_to": "08:00"},
    )
    assert len(_windows(response)) == 5


def test_without_any_protection_the_preview_says_cut_offs_can_happen_any_time(
    client, owner_a, property_a1
):
    client.force_login(owner_a)
    response = client.get(_preview_url(property_a1), {"protected_from": "", "protected_to": ""})
    assert _windows(response) == []
    assert "at any time" in response.content.decode()


@time_machine.travel(NOON, tick=False)
def test_without_its_form_the_preview_shows_the_saved_policy(client, accountant_a, property_a1):
    BalancePolicy.objects.create(property=property_a1, protected_from=time(1), protected_to=time(2))
    client.force_login(accountant_a)
    windows = _windows(client.get(_preview_url(property_a1)))
    assert windows[0]["start"] == "2026-11-19T01:00:00+08:00"
