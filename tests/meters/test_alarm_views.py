"""The alarms inbox: what it lists and filters, and acknowledging and resolving with notes."""

import pytest
from django.urls import reverse

from meters.alarms import alarm_acknowledge, alarm_raise, alarm_resolve
from meters.models import Alarm
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db


def raise_alarm(prop, kind=Alarm.Kind.OFFLINE, severity=Alarm.Severity.WARNING, message=None):
    meter = factories.MeterFactory(unit__property=prop)
    return alarm_raise(
        meter=meter, kind=kind, severity=severity, message=message or f"{kind} on {meter.serial}"
    )


def inbox(client, **query):
    return client.get(reverse("meters:alarms"), query).content.decode()


def acknowledge_url(alarm):
    return reverse("meters:alarm-acknowledge", kwargs={"alarm_id": alarm.uuid})


def resolve_url(alarm):
    return reverse("meters:alarm-resolve", kwargs={"alarm_id": alarm.uuid})


@pytest.fixture
def alarm(property_a1):
    return raise_alarm(property_a1, message="Meter SN1 has not answered for an hour.")


def test_the_inbox_lists_open_alarms_by_default(client, manager_a1, property_a1, property_a2):
    open_one = raise_alarm(property_a1, message="still open")
    acknowledged = raise_alarm(property_a1, message="someone is on it")
    alarm_acknowledge(alarm=acknowledged, actor=manager_a1)
    resolved = raise_alarm(property_a1, message="dealt with")
    alarm_resolve(alarm=resolved, actor=manager_a1, note="replaced the fuse")
    elsewhere = raise_alarm(property_a2, message="another property")
    client.force_login(manager_a1)
    page = inbox(client)
    assert open_one.message in page
    assert acknowledged.message in page
    assert resolved.message not in page
    assert elsewhere.message not in page
    assert "Meter offline" in page


def test_the_inbox_filters_by_property_kind_severity_and_state(
    client, owner_a, manager_a1, property_a1, property_a2
):
    offline = raise_alarm(property_a1, Alarm.Kind.OFFLINE, message="offline-a1")
    tamper = raise_alarm(
        property_a2, Alarm.Kind.TAMPER, Alarm.Severity.CRITICAL, message="tamper-a2"
    )
    failed = raise_alarm(property_a1, Alarm.Kind.COMMAND_FAILED, message="failed-a1")
    alarm_acknowledge(alarm=failed, actor=owner_a)
    resolved = raise_alarm(property_a2, Alarm.Kind.ANOMALY, message="anomaly-a2")
    alarm_resolve(alarm=resolved, actor=owner_a, note="a meter swap")
    messages = [alarm.message for alarm in (offline, tamper, failed, resolved)]
    client.force_login(owner_a)

    def shown(**query):
        page = inbox(client, **query)
        return {message for message in messages if message in page}

    assert shown(property=str(property_a1.uuid)) == {"offline-a1", "failed-a1"}
    assert shown(kind="tamper") == {"tamper-a2"}
    assert shown(severity="critical") == {"tamper-a2"}
    assert shown(state="acknowledged") == {"failed-a1"}
    assert shown(state="unacknowledged") == {"offline-a1", "tamper-a2"}
    assert shown(state="resolved") == {"anomaly-a2"}
    assert shown(state="all") == set(messages)


def test_the_gravest_alarms_come_first(client, owner_a, property_a1):
    raise_alarm(property_a1, severity=Alarm.Severity.INFO, message="minor")
    raise_alarm(property_a1, severity=Alarm.Severity.CRITICAL, message="grave")
    client.force_login(owner_a)
    page = inbox(client)
    assert page.index("grave") < page.index("minor")


@pytest.mark.parametrize("count", [3, 30])
def test_the_inbox_takes_as_many_queries_for_30_alarms_as_for_3(
    client, owner_a, property_a1, count, django_assert_max_num_queries
):
    for n in range(count):
        alarm = raise_alarm(property_a1, kind=list(Alarm.Kind)[n % 5])
        if n % 2:
            alarm_acknowledge(alarm=alarm, actor=owner_a, note="seen")
    client.force_login(owner_a)
    with django_assert_max_num_queries(8):
        page = inbox(client)
    assert page.count('data-testid="alarm"') == count


def test_acknowledging_swaps_the_row_and_keeps_the_note(client, manager_a1, alarm):
    client.force_login(manager_a1)
    response = client.post(
        acknowledge_url(alarm), {"note": "Calling the caretaker."}, HTTP_HX_REQUEST="true"
    )
    row = response.content.decode()
    assert row.strip().startswith(f'<tr id="alarm-{alarm.uuid}"')
    assert 'data-state="acknowledged"' in row
    assert "acknowledged by manager-a1" in row
    assert "Calling the caretaker." in row
    alarm.refresh_from_db()
    assert alarm.acknowledged_by == manager_a1
    assert alarm.closed_at is None
    assert AuditLog.objects.filter(action="alarm.acknowledge", actor=manager_a1).exists()


def test_an_alarm_can_be_acknowledged_without_a_note(client, owner_a, alarm):
    client.force_login(owner_a)
    response = client.post(acknowledge_url(alarm), {"next": reverse("meters:alarms")})
    assert response.status_code == 302
    assert response["Location"] == reverse("meters:alarms")
    alarm.refresh_from_db()
    assert alarm.acknowledged_at is not None
    assert alarm.notes == ""


def test_an_alarm_is_acknowledged_once(client, owner_a, manager_a1, alarm):
    alarm_acknowledge(alarm=alarm, actor=owner_a)
    client.force_login(manager_a1)
    response = client.post(acknowledge_url(alarm), {}, HTTP_HX_REQUEST="true")
    assert "already acknowledged" in response.content.decode()
    alarm.refresh_from_db()
    assert alarm.acknowledged_by == owner_a


def test_resolving_needs_a_note_of_what_was_done(client, manager_a1, alarm):
    client.force_login(manager_a1)
    response = client.post(resolve_url(alarm), {"note": ""}, HTTP_HX_REQUEST="true")
    assert "Say what was done to resolve the alarm." in response.content.decode()
    response = client.post(resolve_url(alarm), {"note": "  "})
    assert response.status_code == 400
    alarm.refresh_from_db()
    assert alarm.closed_at is None


def test_resolving_closes_the_alarm_with_its_note(client, manager_a1, alarm):
    client.force_login(manager_a1)
    response = client.post(
        resolve_url(alarm), {"note": "Gateway power restored."}, HTTP_HX_REQUEST="true"
    )
    row = response.content.decode()
    assert 'data-state="resolved"' in row
    assert "Gateway power restored." in row
    assert 'data-testid="resolve"' not in row
    alarm.refresh_from_db()
    assert alarm.closed_at is not None
    assert "Gateway power restored." in alarm.notes
    assert AuditLog.objects.filter(action="alarm.resolve", reason="Gateway power restored.")


def test_a_resolved_alarm_cannot_be_acknowledged(client, owner_a, alarm):
    alarm_resolve(alarm=alarm, actor=owner_a, note="done")
    client.force_login(owner_a)
    response = client.post(acknowledge_url(alarm), {"note": "late"})
    assert response.status_code == 400
    assert "already resolved" in response.content.decode()
    alarm.refresh_from_db()
    assert alarm.acknowledged_at is None


def test_an_accountant_sees_alarms_but_cannot_act_on_them(client, accountant_a, alarm):
    client.force_login(accountant_a)
    page = inbox(client)
    assert alarm.message in page
    assert 'data-testid="acknowledge"' not in page
    assert 'data-testid="resolve"' not in page
    assert client.post(acknowledge_url(alarm), {"note": "x"}).status_code == 403
    assert client.post(resolve_url(alarm), {"note": "x"}).status_code == 403
    alarm.refresh_from_db()
    assert alarm.acknowledged_at is None
    assert alarm.closed_at is None


def test_a_manager_sees_the_actions(client, manager_a1, alarm):
    client.force_login(manager_a1)
    page = inbox(client)
    assert 'data-testid="acknowledge"' in page
    assert 'data-testid="resolve"' in page
