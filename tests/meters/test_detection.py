"""The detection runner (meters.detection) end to end on PostgreSQL: a property's readings,
relay commands, accounts and feeders in, alarms with evidence out, once; the overload trip under
the cut-off rules; and the scheduling after a charge run."""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.db.models import F
from django.utils import timezone

from accounts.models import Property, Unit
from billing.models import BalancePolicy
from meters import detection
from meters.alarms import alarm_raise, alarm_resolve
from meters.detection import (
    Trip,
    detect_property,
    detection_claim,
    detection_enqueue,
    detector_settings_update,
)
from meters.models import Alarm, DetectorSettings, Finding, LossDay, Meter, Reading, RelayCommand
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db

# Wednesday 30 September 2026, 12:00 in Shanghai: not a protected hour, not a holiday.
END = datetime(2026, 9, 30, 4, tzinfo=UTC)
START = END - timedelta(days=1)
STEP = timedelta(minutes=15)


def unit_meter(prop, *, installed=END - timedelta(days=40), credit="100.00", account=True, **kw):
    meter = factories.MeterFactory(unit__property=prop, installed_at=installed, **kw)
    if account:
        opened = factories.AccountFactory(unit=meter.unit, opened_at=installed)
        if credit:
            factories.TopupFactory(account=opened, amount=Decimal(credit))
    return meter


def put(meter, start, end, *, per_hour=0.4, register=100.0, step=STEP, usage=None, **fields):
    """Readings every `step` from start to end, `usage(at)` the consumption of the step that
    starts at `at`; returns the register the next reading would have."""
    rows, at = [], start
    while at <= end:
        rows.append(
            Reading(
                meter=meter,
                taken_at=at,
                register=Decimal(str(round(register, 6))),
                source=Reading.Source.HTTP,
                status=Reading.Status.ACCEPTED,
                **fields,
            )
        )
        register += usage(at) if usage else per_hour * step.total_seconds() / 3600
        at += step
    Reading.objects.bulk_create(rows)
    return register


def run(prop, *, start=START, end=END, now=None):
    # Fetched afresh, as the task does: the settings a test changed are read again.
    prop = Property.objects.get(pk=prop.pk)
    return detect_property(property=prop, start=start, end=end, now=now or end)


def alarms(kind=None):
    found = Alarm.objects.all()
    return list(found.filter(kind=kind) if kind else found)


def cut_off(meter, at):
    RelayCommand.objects.create(
        meter=meter,
        close=False,
        state=RelayCommand.State.CONFIRMED,
        reason="Credit ran out.",
        created_at=at,
        deadline=at + timedelta(hours=1),
        finished_at=at + timedelta(seconds=20),
    )
    Meter.objects.filter(pk=meter.pk).update(relay_closed=False, relay_confirmed_at=at)


# Bypass, once ------------------------------------------------------------------------------------


def test_the_runner_raises_a_bypass_alarm_with_its_evidence_once(property_a1, owner_a):
    meter = unit_meter(property_a1, credit=None)
    cut_off(meter, END - timedelta(hours=10))
    put(meter, START, END)
    first = run(property_a1)
    (alarm,) = alarms(Alarm.Kind.BYPASS)
    assert (first.raised, first.known) == (1, 0)
    assert alarm.severity == Alarm.Severity.CRITICAL
    assert alarm.suggested_action == Alarm.Action.INSPECT_BYPASS
    assert meter.serial in alarm.message
    rule = alarm.evidence["rule"]
    assert rule["name"] == "bypass"
    assert rule["quantity"] == pytest.approx(3.9, abs=0.11)
    assert alarm.evidence["chart"]["series"][0]["key"] == "consumption"
    assert alarm.evidence["chart"]["band"][0] == int(
        (END - timedelta(hours=10, seconds=-20)).timestamp()
    )

    again = run(property_a1)
    assert (again.raised, again.repeated, again.known) == (0, 0, 1)
    alarm_resolve(alarm=alarm, actor=owner_a, note="Sealed the meter.")
    after_resolving = run(property_a1)
    assert after_resolving.raised == 0
    assert len(alarms(Alarm.Kind.BYPASS)) == 1
    assert Finding.objects.get().alarm == alarm


def test_no_consumption_while_cut_off_raises_nothing(property_a1):
    meter = unit_meter(property_a1, credit=None)
    cut_off(meter, END - timedelta(hours=10))
    last = put(meter, START, END - timedelta(hours=10))
    put(meter, END - timedelta(hours=10) + STEP, END, per_hour=0, register=last)
    run(property_a1)
    assert alarms() == []


# Spikes against history, and bad input that raises nothing ----------------------------------------


def household(at):
    local = at.astimezone(property_zone())
    return (0.2 + (1.0 if 18 <= local.hour <= 21 else 0)) * STEP.total_seconds() / 3600


def property_zone():
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Shanghai")


def with_history(prop, usage=household, register=100.0, **kw):
    """A meter with four weeks of hourly readings, then the window at quarter hours."""
    meter = unit_meter(prop, **kw)

    def hourly(at):
        return usage(at) * 4

    register = put(
        meter,
        START - timedelta(days=28),
        START - timedelta(hours=1),
        usage=hourly,
        register=register,
        step=timedelta(hours=1),
    )
    return meter, register


SPIKE_AT = datetime(2026, 9, 30, 1, tzinfo=UTC)  # 09:00-10:00 in Shanghai


def spiky(at):
    if SPIKE_AT <= at < SPIKE_AT + timedelta(hours=1):
        return 4.0 * STEP.total_seconds() / 3600
    return household(at)


def test_the_runner_raises_a_spike_against_four_weeks_of_history(property_a1):
    meter, register = with_history(property_a1)
    put(meter, START, END, usage=spiky, register=register)
    first = run(property_a1)
    (alarm,) = alarms()
    assert alarm.kind == Alarm.Kind.SPIKE
    assert first.raised == 1
    rule = alarm.evidence["rule"]
    assert rule["hour"] == int(SPIKE_AT.timestamp())
    assert rule["median"] == pytest.approx(0.2)
    assert rule["weeks"] == 4
    assert alarm.suggested_action == Alarm.Action.ASK_TENANT
    assert run(property_a1).raised == 0


def test_gaps_estimated_readings_rollovers_and_replacements_raise_nothing(property_a1, owner_a):
    # A gap of five hours whose catch-up reading carries them all.
    gappy, register = with_history(property_a1)
    put(gappy, START, SPIKE_AT - timedelta(hours=4), usage=household, register=register)
    put(gappy, SPIKE_AT + timedelta(hours=1), END, usage=household, register=register + 6)
    # A wrong estimated reading, and a rejected one, in the middle of normal ones.
    estimated, register = with_history(property_a1)
    last = put(estimated, START, END, usage=household, register=register)
    Reading.objects.filter(meter=estimated, taken_at=SPIKE_AT + STEP).update(
        register=Decimal(last + 50), estimated=True
    )
    Reading.objects.create(
        meter=estimated,
        taken_at=SPIKE_AT + timedelta(minutes=7),
        register=Decimal(9999),
        source=Reading.Source.HTTP,
        status=Reading.Status.REJECTED,
    )
    # A register that rolls over during the window.
    rolling, register = with_history(property_a1, register=99750.0)
    Meter.objects.filter(pk=rolling.pk).update(register_rollover=Decimal(100000))
    put(rolling, START, END, usage=household, register=register)
    Reading.objects.filter(meter=rolling, register__gte=Decimal(100000)).update(
        register=F("register") - Decimal(100000)
    )
    assert Reading.objects.filter(meter=rolling, taken_at__gt=START, register__lt=1000).exists()
    # A meter replaced at the spike hour: the new one starts from zero.
    replaced, register = with_history(property_a1)
    swap = SPIKE_AT + timedelta(minutes=30)
    put(replaced, START, swap, usage=household, register=register)
    Meter.objects.filter(pk=replaced.pk).update(removed_at=swap)
    successor = factories.MeterFactory(unit=replaced.unit, installed_at=swap, serial="NEW-1")
    put(successor, swap, END, usage=household, register=0.0)
    run(property_a1)
    assert alarms() == []


# Flat-lining -------------------------------------------------------------------------------------


def test_a_flatline_is_raised_and_cleared_when_the_meter_counts_again(property_a1):
    meter = unit_meter(property_a1)
    Meter.objects.filter(pk=meter.pk).update(relay_closed=True)
    put(meter, END - timedelta(days=5), END, per_hour=0, register=321.0)
    first = run(property_a1)
    (alarm,) = alarms()
    assert alarm.kind == Alarm.Kind.FLATLINE
    assert first.raised == 1
    # The runner reads back to the limit and a day: enough to see the stretch, not all of it.
    assert alarm.evidence["rule"]["days"] == pytest.approx(4, abs=0.1)
    assert alarm.evidence["rule"]["register"] == 321.0
    later = END + timedelta(hours=6)
    put(meter, END + STEP, later, per_hour=0.5, register=321.0)
    cleared = run(property_a1, start=later - timedelta(days=1), end=later)
    alarm.refresh_from_db()
    assert cleared.cleared == 1
    assert alarm.closed_at is not None
    assert alarm.notes == "The meter counts consumption again."


def test_a_unit_without_credit_or_vacant_is_no_flatline(property_a1):
    broke = unit_meter(property_a1, credit=None)
    vacant = unit_meter(property_a1, account=False)
    for meter in (broke, vacant):
        put(meter, END - timedelta(days=5), END, per_hour=0, register=50.0)
    run(property_a1)
    assert alarms() == []


# Losses ------------------------------------------------------------------------------------------

DAY_START = datetime(2026, 9, 28, 16, tzinfo=UTC)  # 29 September, 00:00 in Shanghai
DAY_END = DAY_START + timedelta(days=1)


def feeder_setup(prop, *, loss):
    common = Unit.objects.create(property=prop, name="Main supply", kind=Unit.Kind.COMMON)
    main = factories.MeterFactory(
        unit=common, installed_at=END - timedelta(days=40), has_relay=False
    )
    window = (DAY_START - timedelta(hours=1), DAY_END + timedelta(hours=1))
    for _ in range(3):
        put(unit_meter(prop), *window, per_hour=0.5)
    put(main, *window, per_hour=1.5 * (1 + loss), register=1000.0)
    DetectorSettings.objects.create(property=prop, main_meter=main)
    return main, common, window


def test_a_main_meter_losing_energy_raises_a_loss_alarm_with_its_trend(property_a1):
    main, common, window = feeder_setup(property_a1, loss=0.3)
    for days_before, fed in ((2, "36.0"), (1, "35.0")):
        LossDay.objects.create(
            property=property_a1,
            feeder_unit=common,
            day=(DAY_START + timedelta(hours=8)).date() - timedelta(days=days_before),
            feeder_quantity=Decimal("38.0"),
            fed_quantity=Decimal(fed),
            fed_units=3,
        )
    result = run(property_a1, start=window[0], end=window[1])
    (alarm,) = alarms()
    assert alarm.kind == Alarm.Kind.LOSS
    assert alarm.meter == main
    assert result.raised == 1
    rule = alarm.evidence["rule"]
    assert rule["day"] == "2026-09-29"
    assert (rule["feeder"], rule["fed"]) == (pytest.approx(46.8), pytest.approx(36.0))
    loss_series = alarm.evidence["chart"]["series"][0]
    assert loss_series["key"] == "loss_percent"
    assert len(loss_series["values"]) == 3
    stored = LossDay.objects.get(feeder_unit=common, day="2026-09-29")
    assert (stored.fed_quantity, stored.fed_units) == (Decimal("36.000"), 3)


def test_a_normal_loss_stores_the_day_and_raises_nothing(property_a1):
    _main, common, window = feeder_setup(property_a1, loss=0.03)
    run(property_a1, start=window[0], end=window[1])
    assert alarms() == []
    assert LossDay.objects.filter(feeder_unit=common).count() == 1


def test_a_group_feeder_named_on_its_meters_is_compared_with_them_only(property_a1):
    common = Unit.objects.create(property=property_a1, name="Block B", kind=Unit.Kind.COMMON)
    feeder = factories.MeterFactory(unit=common, installed_at=END - timedelta(days=40))
    window = (DAY_START - timedelta(hours=1), DAY_END + timedelta(hours=1))
    fed = [unit_meter(property_a1) for _ in range(2)]
    Meter.objects.filter(pk__in=[m.pk for m in fed]).update(feeder=feeder)
    for meter in fed:
        put(meter, *window, per_hour=0.5)
    put(unit_meter(property_a1), *window, per_hour=5.0)  # fed by nobody
    put(feeder, *window, per_hour=1.0 * 1.02, register=10.0)
    run(property_a1, start=window[0], end=window[1])
    assert alarms() == []
    assert LossDay.objects.get(feeder_unit=common).fed_units == 2


# Overload and its trip ---------------------------------------------------------------------------


def overloaded(prop, **kw):
    meter = unit_meter(prop, **kw)
    Meter.objects.filter(pk=meter.pk).update(power_limit_w=3000, relay_closed=True)
    put(meter, START, END - timedelta(minutes=45), per_hour=1.0, power_w=1000.0)
    put(meter, END - timedelta(minutes=30), END, per_hour=5.0, register=200.0, power_w=5200.0)
    DetectorSettings.objects.update_or_create(property=prop, defaults={"overload_trip": True})
    return meter


def test_an_overload_trips_the_supply_once_outside_protected_periods(property_a1):
    meter = overloaded(property_a1)
    result = run(property_a1)
    (alarm,) = alarms(Alarm.Kind.OVERLOAD)
    (command,) = RelayCommand.objects.filter(meter=meter)
    assert command.close is False
    assert command.idempotency_key.startswith("overload-trip:")
    assert result.trips == {Trip.TRIPPED: 1}
    assert alarm.evidence["trip"]["outcome"] == Trip.TRIPPED
    assert alarm.evidence["trip"]["command"] == str(command.uuid)
    run(property_a1)
    assert RelayCommand.objects.filter(meter=meter).count() == 1


def test_an_overload_in_a_protected_period_does_not_trip(property_a1):
    meter = overloaded(property_a1)
    BalancePolicy.objects.create(
        property=property_a1, protected_from=time(11), protected_to=time(13)
    )
    result = run(property_a1)
    assert not RelayCommand.objects.filter(meter=meter).exists()
    assert result.trips == {Trip.PROTECTED_PERIOD: 1}
    (alarm,) = alarms(Alarm.Kind.OVERLOAD)
    assert alarm.evidence["trip"]["outcome"] == Trip.PROTECTED_PERIOD


def test_an_overload_on_a_protected_account_does_not_trip(property_a1):
    meter = overloaded(property_a1)
    meter.unit.accounts.update(protected=True)
    result = run(property_a1)
    assert not RelayCommand.objects.filter(meter=meter).exists()
    assert result.trips == {Trip.PROTECTED_ACCOUNT: 1}


def test_without_the_trip_setting_an_overload_only_raises_an_alarm(property_a1):
    meter = overloaded(property_a1)
    DetectorSettings.objects.filter(property=property_a1).update(overload_trip=False)
    run(property_a1)
    assert len(alarms(Alarm.Kind.OVERLOAD)) == 1
    assert not RelayCommand.objects.filter(meter=meter).exists()


# Tamper ------------------------------------------------------------------------------------------


def test_tamper_flags_and_export_stored_with_readings_raise_alarms(property_a1):
    flagged = unit_meter(property_a1)
    put(flagged, START, END)
    Reading.objects.filter(meter=flagged, taken_at__gte=END - timedelta(hours=1)).update(
        flags=["cover_open"]
    )
    exporting = unit_meter(property_a1)
    put(exporting, START, END)
    for reading in Reading.objects.filter(meter=exporting):
        hours = (reading.taken_at - START).total_seconds() / 3600
        reading.export_register = Decimal(str(round(hours * 0.1, 3)))
        reading.save(update_fields=["export_register"])
    run(property_a1)
    assert {(a.meter_id, a.kind) for a in alarms()} == {
        (flagged.pk, Alarm.Kind.TAMPER),
        (exporting.pk, Alarm.Kind.REVERSE),
    }


# Queries, scheduling, services -------------------------------------------------------------------


@pytest.mark.parametrize("units", [3, 12])
def test_detection_reads_a_property_in_a_constant_number_of_queries(
    property_a1, units, django_assert_max_num_queries
):
    for _ in range(units):
        meter, register = with_history(property_a1)
        put(meter, START, END, usage=household, register=register)
    with django_assert_max_num_queries(13):
        result = run(property_a1)
    assert result.findings == 0
    assert result.meters == units


def test_detection_is_claimed_once_per_interval(property_a1):
    assert detection_claim(property_id=property_a1.pk, now=END)
    assert not detection_claim(property_id=property_a1.pk, now=END + timedelta(minutes=5))
    assert detection_claim(property_id=property_a1.pk, now=END + detection.MIN_INTERVAL)


def test_a_charge_run_enqueues_detection_of_its_properties_after_commit(
    property_a1, property_a2, django_capture_on_commit_callbacks
):
    first = factories.MeterFactory(unit__property=property_a1)
    factories.MeterFactory(unit__property=property_a2)
    with mock.patch("meters.tasks.detect_property_task.delay") as delay:
        with django_capture_on_commit_callbacks() as callbacks:
            assert detection_enqueue(meter_ids=[first.pk]) == [property_a1.pk]
            delay.assert_not_called()
        for callback in callbacks:
            callback()
    delay.assert_called_once_with(property_a1.pk)


def test_the_charge_task_asks_for_detection_only_when_it_charged(property_a1):
    from billing.tasks import charge_meters_task

    meter = factories.MeterFactory(unit__property=property_a1)
    with mock.patch("meters.detection.detection_enqueue") as enqueue:
        charge_meters_task(meter_ids=[meter.pk])
    enqueue.assert_not_called()


def test_raising_an_open_alarm_again_takes_the_new_evidence_and_counts_it(property_a1):
    meter = factories.MeterFactory(unit__property=property_a1)
    first = alarm_raise(
        meter=meter, kind=Alarm.Kind.SPIKE, message="first", evidence={"rule": {"n": 1}}
    )
    again = alarm_raise(
        meter=meter,
        kind=Alarm.Kind.SPIKE,
        message="second",
        evidence={"rule": {"n": 2}},
        suggested_action=Alarm.Action.ASK_TENANT,
    )
    again.refresh_from_db()
    assert again.pk == first.pk
    assert again.message == "second"
    assert again.evidence["rule"] == {"n": 2}
    assert again.evidence["occurrences"] == 2
    assert again.evidence["first_seen"] == first.opened_at.isoformat()
    assert again.suggested_action == Alarm.Action.ASK_TENANT


def test_the_settings_service_is_audited_and_refuses_impossible_rules(
    property_a1, property_a2, owner_a
):
    from django.core.exceptions import ValidationError

    detector_settings_update(property=property_a1, actor=owner_a, spike_k=Decimal("6"))
    assert DetectorSettings.objects.get(property=property_a1).spike_k == Decimal("6")
    entry = AuditLog.objects.get(action="detector_settings.update")
    assert entry.after == {"spike_k": "6"}
    with pytest.raises(ValidationError):
        detector_settings_update(property=property_a1, actor=owner_a, spike_min_weeks=6)
    elsewhere = factories.MeterFactory(unit__property=property_a2)
    with pytest.raises(ValidationError):
        detector_settings_update(property=property_a1, actor=owner_a, main_meter=elsewhere)


def test_the_detection_task_runs_once_per_interval(property_a1):
    from meters.tasks import detect_property_task

    meter = unit_meter(property_a1, credit=None)
    cut_off(meter, timezone.now() - timedelta(hours=10))
    put(meter, timezone.now() - timedelta(days=1), timezone.now())
    first = detect_property_task(property_a1.pk)
    assert first["raised"] == 1
    assert detect_property_task(property_a1.pk) == {"skipped": "ran recently"}
    assert DetectorSettings.objects.get(property=property_a1).last_run_at is not None
