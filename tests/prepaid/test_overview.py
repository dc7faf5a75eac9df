from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from accounts.selectors import Amount, Quantity
from billing.services import charges_post
from meters.alarms import alarm_clear, alarm_raise
from meters.models import Alarm, Meter
from tests import factories

pytestmark = pytest.mark.django_db

# 23:30 on 10 March in Shanghai; the local day turns at 16:00 UTC.
LATE_EVENING = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)


def _overview(client, **params):
    return client.get(reverse("overview"), params)


def _tenancy(prop, *, topup=None, **meter_state):
    account = factories.AccountFactory(unit__property=prop)
    if topup is not None:
        factories.TopupFactory(account=account, amount=Decimal(topup))
    meter = factories.MeterFactory(unit=account.unit)
    Meter.objects.filter(pk=meter.pk).update(
        **{"online": True, "relay_closed": True, **meter_state}
    )
    return account, meter


def _charge(account, meter, *, net, kind="energy", quantity="1", at=None):
    at = at or datetime.now(UTC)
    charges_post(
        charges=[
            factories.ChargeInputFactory.build(
                account=account,
                kind=kind,
                meter_id=meter.pk if kind == "energy" else None,
                period_start=at - timedelta(minutes=15),
                period_end=at,
                quantity=Decimal(quantity),
                net=Decimal(net),
                tax=Decimal("0.13") * Decimal(net),
            )
        ]
    )


def test_the_tiles_count_meters_credit_trouble_and_alarms(client, owner_a, property_a1):
    _tenancy(property_a1, topup="100")
    _tenancy(property_a1, topup="20", online=False)
    _, cut = _tenancy(property_a1, relay_closed=False, online=None)
    alarm_raise(meter=cut, kind=Alarm.Kind.COMMAND_FAILED, message="no answer", severity="critical")
    alarm_raise(meter=cut, kind=Alarm.Kind.TAMPER, message="cover opened")
    alarm_clear(meter=cut, kind=Alarm.Kind.TAMPER)
    client.force_login(owner_a)
    response = _overview(client)
    assert response.status_code == 200
    figures = response.context["figures"]
    assert (figures.meters_online, figures.meters_offline, figures.meters_unknown) == (1, 1, 1)
    assert figures.credit_held == [Amount(Decimal(120), "CNY")]
    assert (figures.units["cut_off"], figures.units["low"]) == (1, 2)
    assert (figures.open_alarms, figures.critical_alarms) == (1, 1)


def test_each_tile_links_to_its_list(client, owner_a, property_a1):
    client.force_login(owner_a)
    html = _overview(client).content.decode()
    units = reverse("accounts:units-all")
    for status in ("online", "offline", "cut_off", "low"):
        assert f'href="{units}?status={status}"' in html
    assert f'href="{reverse("meters:alarms")}"' in html
    assert f'href="{reverse("meters:list")}"' in html


def test_credit_held_is_summed_per_currency(client, owner_a, org_a, property_a1):
    dollars = factories.PropertyFactory(organisation=org_a, currency="USD", code="US")
    _tenancy(property_a1, topup="100")
    _tenancy(property_a1, topup="50")
    _tenancy(dollars, topup="7")
    client.force_login(owner_a)
    assert _overview(client).context["figures"].credit_held == [
        Amount(Decimal(150), "CNY"),
        Amount(Decimal(7), "USD"),
    ]


def test_revenue_and_consumption_are_for_the_propertys_own_local_day(client, owner_a, property_a1):
    with time_machine.travel(LATE_EVENING - timedelta(hours=1), tick=False):
        account, meter = _tenancy(property_a1, topup="100")
    with time_machine.travel(LATE_EVENING, tick=False):
        _charge(account, meter, net="4.00", quantity="5")
    midnight_passed = LATE_EVENING + timedelta(hours=1)
    with time_machine.travel(midnight_passed, tick=False):
        _charge(account, meter, net="1.50", quantity="2")
        _charge(account, meter, net="0.50", kind="standing")
        client.force_login(owner_a)
        figures = _overview(client).context["figures"]
    # Booked since 00:00 in Shanghai, net of tax; 15:30 UTC was still yesterday there.
    assert figures.revenue_today == [Amount(Decimal("2.00"), "CNY")]
    assert figures.consumption_today == [Quantity(Decimal(2), "kWh")]


def test_the_latest_events_merge_changes_and_alarms_newest_first(client, owner_a, property_a1):
    account, meter = _tenancy(property_a1, topup="100")
    alarm_raise(meter=meter, kind=Alarm.Kind.ANOMALY, message="jump")
    client.force_login(owner_a)
    response = _overview(client)
    events = response.context["figures"].events
    titles = [event.title for event in events]
    assert titles[0] == "Reading anomaly"
    assert {"Top-up recorded", "Meter registered", "Tenant moved in"} <= set(titles)
    assert events == sorted(events, key=lambda event: event.at, reverse=True)
    html = response.content.decode()
    assert reverse("accounts:account", args=[account.uuid]) in html
    assert reverse("meters:detail", args=[meter.uuid]) in html


def test_the_latest_events_stop_at_fifteen(client, owner_a, property_a1):
    for _ in range(12):
        _tenancy(property_a1, topup="10")
    client.force_login(owner_a)
    assert len(_overview(client).context["figures"].events) == 15


def test_nothing_of_another_organisation_or_unassigned_property_is_counted_or_shown(
    client, manager_a1, property_a1, property_a2, property_b1
):
    _tenancy(property_a1, topup="10")
    _, sister = _tenancy(property_a2, topup="200", online=False)
    _, foreign = _tenancy(property_b1, topup="300", relay_closed=False)
    alarm_raise(meter=sister, kind=Alarm.Kind.OFFLINE, message="sister")
    alarm_raise(meter=foreign, kind=Alarm.Kind.OFFLINE, message="foreign")
    client.force_login(manager_a1)
    response = _overview(client)
    figures = response.context["figures"]
    assert (figures.meters_online, figures.meters_offline) == (1, 0)
    assert figures.credit_held == [Amount(Decimal(10), "CNY")]
    assert (figures.units["cut_off"], figures.open_alarms) == (0, 0)
    assert {event.property for event in figures.events} == {property_a1}
    assert b"A Two" not in response.content
    assert b"B One" not in response.content


def test_the_overview_narrows_to_one_property(
    client, owner_a, manager_a1, property_a1, property_a2
):
    _tenancy(property_a1, topup="10")
    _tenancy(property_a2, topup="200")
    client.force_login(owner_a)
    response = _overview(client, property=str(property_a2.uuid))
    figures = response.context["figures"]
    assert figures.credit_held == [Amount(Decimal(200), "CNY")]
    assert {event.property for event in figures.events} == {property_a2}
    assert reverse("accounts:units", args=[property_a2.uuid]) + "?status=low" in (
        response.content.decode()
    )
    assert _overview(client, property="not-a-uuid").status_code == 404
    client.force_login(manager_a1)
    assert _overview(client, property=str(property_a2.uuid)).status_code == 404


def test_every_role_sees_the_overview(client, owner_a, manager_a1, accountant_a, property_a1):
    _tenancy(property_a1, topup="10")
    for user in (owner_a, manager_a1, accountant_a):
        client.force_login(user)
        response = _overview(client)
        assert response.status_code == 200
        assert b"Meters online" in response.content


def test_htmx_gets_only_the_figures_which_refresh_themselves(client, owner_a, property_a1):
    client.force_login(owner_a)
    html = client.get(reverse("overview"), headers={"HX-Request": "true"}).content.decode()
    assert html.lstrip().startswith('<div id="overview-figures"')
    assert "<html" not in html
    assert 'hx-trigger="every 30s"' in html


def test_the_overview_takes_the_same_queries_whatever_the_data(
    client, owner_a, org_a, property_a1, django_assert_max_num_queries
):
    def add(count):
        for n in range(count):
            account, meter = _tenancy(property_a1, topup="30", online=bool(n % 2))
            _charge(account, meter, net="1")
            alarm_raise(meter=meter, kind=Alarm.Kind.OFFLINE, message="offline")

    client.force_login(owner_a)
    add(2)
    with django_assert_max_num_queries(20) as few:
        _overview(client)
    add(15)
    factories.PropertyFactory(organisation=org_a)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert _overview(client).status_code == 200


def test_an_organisation_without_properties_sees_zeros(client, owner_b):
    from accounts.services import membership_create
    from prepaid.scoping import Role

    user = factories.UserFactory(username="owner-empty")
    empty = factories.OrganisationFactory(name="Empty", slug="empty")
    membership_create(user=user, organisation=empty, role=Role.OWNER, actor=None)
    client.force_login(user)
    figures = _overview(client).context["figures"]
    assert (figures.meters_online, figures.units["low"], figures.credit_held) == (0, 0, [])
    # Only the organisation's own, organisation-wide changes.
    assert {event.entry.action for event in figures.events} == {
        "organisation.create",
        "membership.create",
    }
    assert client.get(reverse("accounts:units-all")).status_code == 200
    assert client.get(reverse("accounts:properties")).status_code == 200
    assert client.get(reverse("accounts:search"), {"q": "anything"}).status_code == 200
