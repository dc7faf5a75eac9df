"""The periods page: everyone who reads money sees a property's months; owners and accountants
close the next one, managers cannot."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from billing.freeze import freeze_due
from billing.models import ClosedPeriod, FreezeCursor
from billing.periods import next_month, period_close
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Tuesday 3 November 2026, noon in Shanghai.
NOW = datetime(2026, 11, 3, 4, tzinfo=UTC)
OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


def local(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
def october_frozen(property_a1):
    """A tenancy since 28 October, every day up to yesterday frozen: October is closable."""
    factories.AccountFactory(unit__property=property_a1, opened_at=local(date(2026, 10, 28)))
    freeze_due(now=NOW)
    return property_a1


def _url(prop):
    return reverse("billing:periods", kwargs={"property_id": prop.uuid})


def _row(page, month: str) -> str:
    return page.content.decode().split(f'data-testid="month-{month}"')[1].split("</tr>")[0]


@pytest.mark.parametrize("username", ["owner_a", "accountant_a"])
def test_owners_and_accountants_see_the_months_and_close_the_next_one(
    username, request, client, october_frozen
):
    user = request.getfixturevalue(username)
    client.force_login(user)
    page = client.get(_url(october_frozen))
    assert page.status_code == 200
    assert 'data-state="closable"' in _row(page, "2026-10")
    assert 'data-testid="close-month"' in _row(page, "2026-10")
    assert 'data-state="running"' in _row(page, "2026-11")
    assert 'data-testid="close-month"' not in _row(page, "2026-11")

    response = client.post(_url(october_frozen), {"month": "2026-10-01", "note": "Books agreed"})

    assert response.status_code == 302
    assert response["Location"] == _url(october_frozen)
    closed = ClosedPeriod.objects.get(property=october_frozen)
    assert (closed.month, closed.closed_by, closed.note) == (OCT, user, "Books agreed")
    assert AuditLog.objects.get(action="period.close").actor == user
    page = client.get(_url(october_frozen))
    row = _row(page, "2026-10")
    assert 'data-state="closed"' in row
    assert user.username in row
    assert "Books agreed" in row
    assert 'data-testid="close-month"' not in page.content.decode()
    assert "2026-10 is closed" in page.content.decode()


def test_a_manager_sees_the_months_without_a_button_and_cannot_close(
    client, manager_a1, october_frozen
):
    client.force_login(manager_a1)
    page = client.get(_url(october_frozen))
    assert page.status_code == 200
    assert 'data-state="closable"' in _row(page, "2026-10")
    assert 'data-testid="close-month"' not in page.content.decode()
    assert 'data-testid="read-only"' in page.content.decode()

    response = client.post(_url(october_frozen), {"month": "2026-10-01", "note": ""})

    assert response.status_code == 403
    assert not ClosedPeriod.objects.exists()


def test_closing_over_htmx_answers_with_the_months_partial(client, owner_a, october_frozen):
    client.force_login(owner_a)
    response = client.post(
        _url(october_frozen), {"month": "2026-10-01", "note": ""}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body
    assert body.lstrip().startswith('<section class="card" id="periods"')
    assert 'data-testid="notice"' in body
    assert 'data-state="closed"' in _row(response, "2026-10")


def test_a_month_that_cannot_close_is_refused_with_the_reason(client, owner_a, october_frozen):
    client.force_login(owner_a)
    response = client.post(_url(october_frozen), {"month": "2026-11-01", "note": ""})
    assert response.status_code == 400
    assert "2026-11 is not over yet in Asia/Shanghai" in response.content.decode()
    assert not ClosedPeriod.objects.exists()


def test_a_note_too_long_is_shown_beside_the_field(client, owner_a, october_frozen):
    client.force_login(owner_a)
    response = client.post(_url(october_frozen), {"month": "2026-10-01", "note": "x" * 301})
    assert response.status_code == 400
    assert "errorlist" in _row(response, "2026-10")
    assert not ClosedPeriod.objects.exists()


def test_closing_twice_closes_once(client, accountant_a, october_frozen):
    client.force_login(accountant_a)
    first = client.post(_url(october_frozen), {"month": "2026-10-01", "note": ""})
    second = client.post(_url(october_frozen), {"month": "2026-10-01", "note": ""})
    assert (first.status_code, second.status_code) == (302, 302)
    assert ClosedPeriod.objects.count() == 1
    assert AuditLog.objects.filter(action="period.close").count() == 1
    page = client.get(_url(october_frozen))
    assert "2026-10 was already closed" in page.content.decode()


def _history(prop, months: int):
    """`months` months of history before November, all of them frozen and closed."""
    first = OCT
    for _ in range(months - 1):
        first = (first - timedelta(days=1)).replace(day=1)
    factories.AccountFactory(unit__property=prop, opened_at=local(first))
    # Freezing every day of years of history is the freeze's own test; here it is only marked.
    FreezeCursor.objects.update_or_create(
        property=prop, defaults={"frozen_through": date(2026, 11, 2)}
    )
    month = first
    while month < NOV:
        period_close(property=prop, month=month, actor=None)
        month = next_month(month)


def test_the_page_takes_the_same_queries_however_many_months_are_closed(
    client, owner_a, property_a1, property_a2, django_assert_max_num_queries
):
    _history(property_a1, 3)
    _history(property_a2, 30)
    client.force_login(owner_a)
    client.get(_url(property_a1))
    for prop, months in ((property_a1, 3), (property_a2, 30)):
        with django_assert_max_num_queries(11):
            page = client.get(_url(prop))
        assert page.content.decode().count('data-state="closed"') == months
