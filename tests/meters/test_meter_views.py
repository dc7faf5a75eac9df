"""The meter list, the meter page with its live parts and chart, and the relay switch."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from meters.alarms import alarm_raise
from meters.models import Alarm, Meter, MeterRejection, MqttRejection, Reading, RelayCommand
from meters.relay import relay_command_issue
from meters.selectors import ChartPeriod, meter_consumption
from meters.services import meter_connect_mqtt, readings_ingest
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 1, 15, 6, 30, tzinfo=UTC)  # 14:30 in Shanghai


def ingest(meter, *rows):
    """Readings as a poll would store them: (taken_at, register[, extra fields])."""
    readings_ingest(
        meters=Meter.objects.filter(pk=meter.pk),
        rows=[
            {"serial": meter.serial, "taken_at": taken_at, "register": Decimal(register), **extra}
            for taken_at, register, *more in rows
            for extra in [more[0] if more else {}]
        ],
        source=Reading.Source.MODBUS,
    )


def set_state(meter, **fields):
    Meter.objects.filter(pk=meter.pk).update(**fields)
    meter.refresh_from_db()


@pytest.fixture
def meter(property_a1):
    return factories.MeterFactory(unit__property=property_a1, unit__name="101", has_relay=True)


def detail(meter):
    return reverse("meters:detail", kwargs={"meter_id": meter.uuid})


def relay_url(meter):
    return reverse("meters:relay", kwargs={"meter_id": meter.uuid})


# The list ----------------------------------------------------------------------------------------


def test_the_list_shows_the_meters_in_scope_with_their_state(
    client, manager_a1, meter, property_a2, property_b1
):
    set_state(meter, online=False, relay_closed=False)
    ingest(meter, (timezone.now() - timedelta(minutes=5), 10))
    hidden = factories.MeterFactory(unit__property=property_a2, serial="OTHER-PROPERTY")
    foreign = factories.MeterFactory(unit__property=property_b1, serial="OTHER-ORG")
    client.force_login(manager_a1)
    response = client.get(reverse("meters:list"))
    assert response.status_code == 200
    page = response.content.decode()
    assert meter.serial in page
    assert "101" in page
    assert "A One" in page
    assert "Offline" in page
    assert "Cut off" in page
    assert hidden.serial not in page
    assert foreign.serial not in page


def test_the_list_filters_by_property_connection_and_relay(
    client, owner_a, property_a1, property_a2
):
    online_on = factories.MeterFactory(unit__property=property_a1, serial="ONLINE-ON")
    set_state(online_on, online=True, relay_closed=True)
    offline_cut = factories.MeterFactory(unit__property=property_a1, serial="OFFLINE-CUT")
    set_state(offline_cut, online=False, relay_closed=False)
    elsewhere = factories.MeterFactory(unit__property=property_a2, serial="ELSEWHERE")
    set_state(elsewhere, online=False, relay_closed=False)
    client.force_login(owner_a)

    def serials(**query):
        page = client.get(reverse("meters:list"), query).content.decode()
        return {serial for serial in ("ONLINE-ON", "OFFLINE-CUT", "ELSEWHERE") if serial in page}

    assert serials() == {"ONLINE-ON", "OFFLINE-CUT", "ELSEWHERE"}
    assert serials(property=str(property_a1.uuid)) == {"ONLINE-ON", "OFFLINE-CUT"}
    assert serials(online="offline") == {"OFFLINE-CUT", "ELSEWHERE"}
    assert serials(relay="open", property=str(property_a1.uuid)) == {"OFFLINE-CUT"}
    assert serials(q="online") == {"ONLINE-ON"}


def test_a_meter_with_a_command_on_its_way_is_listed_as_pending(client, owner_a, meter):
    relay_command_issue(meter=meter, close=False, actor=owner_a, reason="arrears")
    client.force_login(owner_a)
    page = client.get(reverse("meters:list"), {"relay": "pending"}).content.decode()
    assert meter.serial in page
    assert "Cut-off pending" in page


def test_an_htmx_filter_answers_with_the_table_alone(client, owner_a, meter):
    client.force_login(owner_a)
    response = client.get(reverse("meters:list"), HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert 'id="meters-table"' in page
    assert meter.serial in page
    assert "<html" not in page


def test_the_list_is_paginated(client, owner_a, property_a1):
    for number in range(55):
        factories.MeterFactory(unit__property=property_a1, serial=f"M{number:03d}")
    client.force_login(owner_a)
    second = client.get(reverse("meters:list"), {"page": 2}).content.decode()
    assert "M054" in second
    assert "M000" not in second
    assert "55 meters" in second


def _busy_meters(prop, count):
    for _ in range(count):
        meter = factories.MeterFactory(unit__property=prop)
        ingest(meter, (timezone.now() - timedelta(minutes=1), 1))
        relay_command_issue(meter=meter, close=False, actor=None, reason="test")


@pytest.mark.parametrize("count", [3, 30])
def test_the_list_takes_as_many_queries_for_30_meters_as_for_3(
    client, owner_a, property_a1, count, django_assert_max_num_queries
):
    _busy_meters(property_a1, count)
    client.force_login(owner_a)
    with django_assert_max_num_queries(9):
        response = client.get(reverse("meters:list"))
    assert response.content.decode().count('data-testid="meter-row"') == count


# The meter page ----------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_the_page_shows_the_live_reading_in_the_propertys_local_time(client, owner_a, meter):
    ingest(
        meter,
        (NOW - timedelta(hours=1), "1234.5", {"power_w": 1500.0, "voltage_v": 229.4}),
        (NOW - timedelta(minutes=30), "1235.25", {"current_a": 6.52}),
    )
    set_state(meter, online=True, relay_closed=True)
    client.force_login(owner_a)
    page = client.get(detail(meter)).content.decode()
    assert "1235.250 kWh" in page
    # 06:00 UTC is 14:00 in Shanghai.
    assert 'datetime="2025-01-15T14:00:00+08:00"' in page
    assert "6.52 A" in page
    assert 'data-state="on"' in page
    assert "Online" in page


def test_the_live_part_refreshes_itself_every_five_seconds(client, owner_a, meter):
    client.force_login(owner_a)
    response = client.get(detail(meter), {"part": "live"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert page.strip().startswith('<section class="card live-reading" id="live"')
    assert 'hx-trigger="every 5s"' in page
    assert "<html" not in page
    assert "Relay commands" not in page


def test_the_commands_part_shows_each_commands_state(client, owner_a, meter):
    cut = relay_command_issue(meter=meter, close=False, actor=owner_a, reason="arrears")
    RelayCommand.objects.filter(pk=cut.pk).update(state=RelayCommand.State.CONFIRMED)
    relay_command_issue(meter=meter, close=True, actor=None, reason="paid")
    client.force_login(owner_a)
    response = client.get(detail(meter), {"part": "commands"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert 'hx-trigger="every 5s"' in page
    assert page.index('data-state="queued"') < page.index('data-state="confirmed"')
    assert "Pending" in page
    assert "Confirmed" in page
    assert "Automatic" in page
    assert "arrears" in page
    assert "owner-a" in page


def test_a_manager_sees_the_relay_buttons_and_an_accountant_does_not(
    client, manager_a1, accountant_a, meter
):
    client.force_login(manager_a1)
    page = client.get(detail(meter)).content.decode()
    assert 'data-testid="cut-off"' in page
    assert 'data-testid="restore"' in page
    assert 'data-testid="cut_off-form"' in page
    client.force_login(accountant_a)
    page = client.get(detail(meter)).content.decode()
    assert 'data-testid="cut-off"' not in page
    assert 'data-testid="restore"' not in page
    assert "<dialog" not in page
    assert relay_url(meter) not in page
    assert 'data-testid="relay-state"' in page


def test_a_meter_without_a_relay_offers_no_switch(client, owner_a, property_a1):
    meter = factories.MeterFactory(unit__property=property_a1, has_relay=False)
    client.force_login(owner_a)
    page = client.get(detail(meter)).content.decode()
    assert 'data-testid="cut-off"' not in page
    assert "No relay" in page


@time_machine.travel(NOW, tick=False)
def test_the_chart_carries_hourly_consumption_over_48_hours(client, owner_a, meter):
    ingest(
        meter,
        (NOW - timedelta(hours=50), 100),
        (NOW - timedelta(hours=2, minutes=10), 110),
        (NOW - timedelta(minutes=20), "112.5"),
    )
    client.force_login(owner_a)
    response = client.get(detail(meter), {"part": "chart"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    start = html.index('data-chart="') + len('data-chart="')
    raw = html[start : html.index('"', start)].replace("&quot;", '"')
    chart = json.loads(raw)
    assert (chart["period"], chart["zone"], chart["unit"]) == ("hours", "Asia/Shanghai", "kWh")
    assert len(chart["x"]) == len(chart["y"]) == 48
    # The current hour (14:00 local, 06:00 UTC) is last; 04:20 UTC falls in the 04:00 hour.
    assert chart["x"][-1] == int(datetime(2025, 1, 15, 6, tzinfo=UTC).timestamp())
    assert Decimal(chart["y"][-1]) == Decimal("2.5")
    assert Decimal(chart["y"][-3]) == Decimal(10)
    assert sum(Decimal(value) for value in chart["y"]) == Decimal("12.5")


def test_consumption_is_daily_in_local_days_and_skips_rejected_readings(meter):
    now = datetime(2025, 1, 15, 6, 30, tzinfo=UTC)
    with time_machine.travel(now, tick=False):
        ingest(
            meter,
            # 23:30 on the 13th in Shanghai: the 13th, not the 14th as in UTC.
            (datetime(2025, 1, 13, 15, 30, tzinfo=UTC), 50),
            (datetime(2025, 1, 14, 3, tzinfo=UTC), 58),
            (datetime(2025, 1, 14, 4, tzinfo=UTC), 9000),
            (datetime(2025, 1, 15, 1, tzinfo=UTC), 61),
        )
    Reading.objects.filter(register=9000).update(status=Reading.Status.REJECTED)
    consumption = meter_consumption(meter=meter, period=ChartPeriod.DAYS, now=now)
    assert len(consumption.buckets) == 30
    *_, day_13, day_14, day_15 = consumption.buckets
    assert [day.start.day for day in (day_13, day_14, day_15)] == [13, 14, 15]
    assert [day.quantity for day in (day_13, day_14, day_15)] == [0, 8, 3]
    assert consumption.total == 11


def test_consumption_counts_on_across_a_register_rollover(property_a1):
    meter = factories.MeterFactory(unit__property=property_a1)
    set_state(meter, register_rollover=Decimal(100000))
    now = timezone.now()
    ingest(meter, (now - timedelta(hours=3), "99998"), (now - timedelta(hours=1), "3"))
    consumption = meter_consumption(meter=meter, period=ChartPeriod.HOURS, now=now)
    assert consumption.total == 5


def test_the_readings_table_is_paginated_newest_first(client, owner_a, meter):
    start = timezone.now() - timedelta(hours=2)
    ingest(meter, *[(start + timedelta(minutes=n), 1000 + n) for n in range(30)])
    client.force_login(owner_a)
    first = client.get(detail(meter)).content.decode()
    assert "1029.000" in first
    assert "1000.000" not in first
    response = client.get(detail(meter), {"part": "readings", "page": 2}, HTTP_HX_REQUEST="true")
    second = response.content.decode()
    assert 'id="readings"' in second
    assert "1000.000" in second
    assert "1029.000" not in second


def test_the_page_shows_rejected_input_and_the_meters_alarms(client, owner_a, meter, property_a1):
    now = timezone.now()
    MeterRejection.objects.create(
        meter=meter, reason="register went backwards", count=3, first_at=now, last_at=now
    )
    device = factories.MqttDeviceFactory(property=property_a1)
    meter_connect_mqtt(meter=meter, actor=None, device=device)
    MqttRejection.objects.create(
        device=device, source=device.key, reason="unparseable payload", count=7,
        first_at=now, last_at=now,
    )  # fmt: skip
    alarm_raise(meter=meter, kind=Alarm.Kind.ANOMALY, message="A jump of 900 kWh in an hour.")
    client.force_login(owner_a)
    page = client.get(detail(meter)).content.decode()
    assert "register went backwards" in page
    assert "unparseable payload" in page
    assert "A jump of 900 kWh in an hour." in page
    assert "Reading anomaly" in page


@pytest.mark.parametrize("count", [3, 30])
def test_the_page_takes_as_many_queries_for_30_readings_and_commands_as_for_3(
    client, owner_a, meter, count, django_assert_max_num_queries
):
    start = timezone.now() - timedelta(hours=count)
    ingest(meter, *[(start + timedelta(minutes=n), 1000 + n) for n in range(count)])
    for n in range(count):
        relay_command_issue(meter=meter, close=bool(n % 2), actor=owner_a, reason=f"r{n}")
        alarm_raise(meter=meter, kind=list(Alarm.Kind)[n % 5], message=f"alarm {n}")
    client.force_login(owner_a)
    with django_assert_max_num_queries(20):
        assert client.get(detail(meter)).status_code == 200


# Switching the relay -----------------------------------------------------------------------------


def cut_off(reason="Tenant asked for repairs.", key=None, action="cut_off"):
    return {"action": action, "reason": reason, "idempotency_key": str(key or uuid.uuid4())}


def test_a_manager_cuts_off_with_a_reason_and_the_command_is_queued_and_audited(
    client, manager_a1, meter, django_capture_on_commit_callbacks
):
    client.force_login(manager_a1)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(relay_url(meter), cut_off(), follow=True)
    command = RelayCommand.objects.get(meter=meter)
    assert (command.close, command.state) == (False, RelayCommand.State.QUEUED)
    assert (command.actor, command.reason) == (manager_a1, "Tenant asked for repairs.")
    assert len(callbacks) == 1
    assert AuditLog.objects.filter(action="relay.cut_off", actor=manager_a1).exists()
    assert response.redirect_chain[-1][0] == detail(meter)
    assert "Cut-off requested" in response.content.decode()


def test_a_restore_is_issued_as_a_restore(client, owner_a, meter):
    client.force_login(owner_a)
    client.post(relay_url(meter), cut_off(action="restore", reason="Paid at the counter."))
    assert RelayCommand.objects.get(meter=meter).close is True


def test_a_switch_needs_a_reason(client, owner_a, meter):
    client.force_login(owner_a)
    response = client.post(relay_url(meter), cut_off(reason="  "))
    assert response.status_code == 400
    assert not RelayCommand.objects.exists()
    page = response.content.decode()
    assert "This field is required." in page
    assert '<dialog id="cut_off-dialog" aria-labelledby="cut_off-title" open>' in page


def test_a_refused_htmx_switch_answers_with_the_form_and_its_errors(client, owner_a, meter):
    client.force_login(owner_a)
    response = client.post(relay_url(meter), cut_off(reason=""), HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert page.startswith("<form")
    assert "This field is required." in page
    assert "HX-Trigger-After-Settle" not in response
    assert not RelayCommand.objects.exists()


def test_submitting_the_same_form_twice_switches_once(client, owner_a, meter):
    client.force_login(owner_a)
    key = uuid.uuid4()
    client.post(relay_url(meter), cut_off(key=key))
    # The first cut-off already went through, so only the form's key can tell the repeat.
    RelayCommand.objects.update(state=RelayCommand.State.CONFIRMED)
    client.post(relay_url(meter), cut_off(key=key))
    assert RelayCommand.objects.filter(meter=meter).count() == 1
    client.post(relay_url(meter), cut_off())
    assert RelayCommand.objects.filter(meter=meter).count() == 2


def test_a_switch_of_an_offline_meter_is_queued_and_shown_as_pending(client, owner_a, meter):
    set_state(meter, online=False, relay_closed=True)
    client.force_login(owner_a)
    response = client.post(relay_url(meter), cut_off(), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response["HX-Trigger-After-Settle"] == "relay-issued"
    page = response.content.decode()
    assert RelayCommand.objects.get(meter=meter).state == RelayCommand.State.QUEUED
    assert "The meter is offline: the cut-off is queued" in page
    # The live parts come along out of band: still supplied, with the cut-off pending.
    assert 'id="commands"' in page
    assert 'data-state="queued"' in page
    assert "Pending" in page
    assert 'id="live"' in page
    assert 'hx-swap-oob="true"' in page
    assert 'data-state="on"' in page
    assert "Cut-off pending" in page
    # A fresh form, with a fresh key, replaces the one that was sent.
    assert page.startswith('<form method="post"')


def test_an_accountant_cannot_switch_the_supply(client, accountant_a, meter):
    client.force_login(accountant_a)
    assert client.post(relay_url(meter), cut_off()).status_code == 403
    assert not RelayCommand.objects.exists()


def test_a_meter_without_a_relay_cannot_be_switched(client, owner_a, property_a1):
    meter = factories.MeterFactory(unit__property=property_a1, has_relay=False)
    client.force_login(owner_a)
    response = client.post(relay_url(meter), cut_off(), HTTP_HX_REQUEST="true")
    assert "no relay or valve" in response.content.decode()
    assert not RelayCommand.objects.exists()


def test_a_refused_switch_leaves_its_form_usable(client, owner_a, property_a1):
    meter = factories.MeterFactory(unit__property=property_a1, has_relay=False)
    client.force_login(owner_a)
    form = cut_off()
    client.post(relay_url(meter), form)
    set_state(meter, has_relay=True)
    client.post(relay_url(meter), form)
    assert RelayCommand.objects.filter(meter=meter).count() == 1
