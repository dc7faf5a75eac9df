"""The pure detectors (meters.detectors) on synthetic series: each with a known anomaly, and on
clean series, including the bad input that must never raise an alarm by itself (gaps,
estimated readings, rollovers, replaced meters)."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from meters.detectors import bypass, flatline, losses, overload, spikes, tamper
from meters.detectors.rules import Kind, LimitSource, Rules, Severity
from meters.detectors.series import (
    CLOSED,
    HOUR,
    OPEN,
    UNKNOWN,
    Interval,
    MeterSeries,
    RelayEvent,
    Sample,
    bounds,
    buckets,
    intervals,
    local_days,
    local_hours,
    merged,
    open_stretches,
    weeks_before,
)

ZONE = ZoneInfo("Asia/Shanghai")
# A Monday, 00:00 in Shanghai.
T0 = datetime(2026, 9, 7, tzinfo=ZONE).timestamp()
STEP = 900.0
RULES = Rules()


def readings(usage, *, start=T0, hours=24, step=STEP, register=100.0, **extra):
    """Samples every `step` seconds; `usage(t)` is the consumption of the step ending at t."""
    samples = [Sample(start, register, **extra)]
    for index in range(1, int(hours * HOUR / step) + 1):
        at = start + index * step
        register += usage(at)
        samples.append(Sample(at, round(register, 6), **extra))
    return samples


def meter(samples, key=1, **fields):
    return MeterSeries(meter=key, samples=samples, unit=key, **fields)


def flat(rate_per_hour):
    return lambda at: rate_per_hour * STEP / HOUR


def hourly_usage(at):
    """A household's day: a base load with morning and evening peaks."""
    hour = datetime.fromtimestamp(at - 1, ZONE).hour
    per_hour = 0.2 + (0.6 if hour in (7, 8) else 0) + (1.0 if 18 <= hour <= 21 else 0)
    return per_hour * STEP / HOUR


def ivs(series, rules=RULES):
    return intervals(series, max_gap=rules.max_gap)


# Series handling ---------------------------------------------------------------------------------


def test_a_register_that_rolls_over_counts_on_from_zero():
    series = meter(
        [Sample(T0, 99999.5), Sample(T0 + STEP, 0.25), Sample(T0 + 2 * STEP, 0.5)],
        rollover=100000.0,
    )
    assert [i.quantity for i in ivs(series)] == [0.75, 0.25]


def test_a_register_that_goes_backwards_without_rollover_is_unknown():
    series = meter([Sample(T0, 50.0), Sample(T0 + STEP, 40.0), Sample(T0 + 2 * STEP, 40.5)])
    assert [i.quantity for i in ivs(series)] == [None, 0.5]
    hour = buckets(ivs(series), [(T0, T0 + HOUR)])
    assert hour == [None]


def test_an_implausible_jump_is_unknown():
    series = meter([Sample(T0, 1.0), Sample(T0 + STEP, 500.0)], max_per_hour=100.0)
    assert ivs(series)[0].quantity is None


def test_estimated_readings_are_skipped_and_consumption_measured_across_them():
    samples = readings(flat(1.0), hours=1)
    samples[2] = samples[2]._replace(register=9999.0, estimated=True)
    series = meter(samples)
    assert len(ivs(series)) == 3
    assert buckets(ivs(series), [(T0, T0 + HOUR)]) == [1.0]


def test_a_gap_makes_the_hours_it_crosses_unknown_but_not_the_day_that_holds_it():
    samples = readings(flat(1.0), hours=24)
    # Silent from 09:00 to 13:00: the 13:00 reading carries the four hours at once.
    samples = [s for s in samples if not T0 + 9 * HOUR < s.at < T0 + 13 * HOUR]
    series = ivs(meter(samples))
    hours = buckets(series, local_hours(T0, T0 + 24 * HOUR, ZONE))
    assert hours[8] == 1.0
    assert hours[13] == 1.0
    assert hours[9:13] == [None, None, None, None]
    (day,) = local_days(T0, T0 + 24 * HOUR, ZONE)
    assert buckets(series, [(day[1], day[2])])[0] == 24.0


def test_a_replaced_meter_and_its_successor_cover_the_hour_together():
    old = meter(readings(flat(1.0), hours=10), key=1, removed=T0 + 10 * HOUR)
    new = meter(
        readings(flat(1.0), start=T0 + 10 * HOUR, hours=14, register=0.0),
        key=2,
        installed=T0 + 10 * HOUR,
    )
    series = merged([ivs(old), ivs(new)])
    assert buckets(series, [(T0 + 9 * HOUR, T0 + 11 * HOUR)]) == [2.0]


def test_an_hour_not_wholly_covered_is_unknown():
    series = ivs(meter(readings(flat(1.0), start=T0 + 1800, hours=2)))
    assert buckets(series, [(T0, T0 + HOUR), (T0 + HOUR, T0 + 2 * HOUR)]) == [None, 1.0]


def test_the_relay_is_open_from_its_confirmation_until_anything_else_is_asked():
    events = [
        RelayEvent(T0, UNKNOWN),
        RelayEvent(T0 + 60, OPEN),
        RelayEvent(T0 + 5 * HOUR, UNKNOWN),
        RelayEvent(T0 + 5 * HOUR + 30, CLOSED),
        RelayEvent(T0 + 8 * HOUR, OPEN),
    ]
    assert open_stretches(events, end=T0 + 10 * HOUR) == [
        (T0 + 60, T0 + 5 * HOUR),
        (T0 + 8 * HOUR, T0 + 10 * HOUR),
    ]


def test_the_same_hour_of_the_week_is_kept_across_a_dst_change():
    zone = ZoneInfo("Europe/London")
    # Monday 26 October 2026, 18:00 in London, the day after the clocks went back.
    hour = datetime(2026, 10, 26, 18, tzinfo=zone).timestamp()
    (before,) = weeks_before([hour], zone, 1)[hour]
    assert datetime.fromtimestamp(before, zone).hour == 18
    assert hour - before == 7 * 24 * HOUR + HOUR


# Bypass ------------------------------------------------------------------------------------------


def cut_off(samples, since, until=None):
    return open_stretches([RelayEvent(since, OPEN)], end=until or samples[-1].at)


def test_consumption_while_the_relay_is_confirmed_open_is_a_bypass():
    series = meter(readings(flat(0.4), hours=12), has_relay=True)
    outcome = bypass.detect(series, ivs(series), cut_off(series.samples, T0 + 3 * HOUR), RULES)
    (finding,) = outcome.findings
    assert finding.kind == Kind.BYPASS
    assert finding.severity == Severity.CRITICAL
    assert finding.key == f"bypass:1:{int(T0 + 3 * HOUR)}"
    assert finding.rule["quantity"] == 3.6
    assert finding.series["band"] == [int(T0 + 3 * HOUR), int(series.samples[-1].at)]


def test_no_consumption_or_creep_below_the_tolerance_while_open_is_no_bypass():
    samples = readings(flat(0.4), hours=3) + readings(
        lambda at: 0.01 if at % (2 * HOUR) == 0 else 0,
        start=T0 + 3 * HOUR + STEP,
        hours=9,
        register=101.2,
    )
    series = meter(samples, has_relay=True)
    outcome = bypass.detect(series, ivs(series), cut_off(samples, T0 + 3 * HOUR), RULES)
    assert outcome.findings == []


def test_a_reading_spanning_the_cut_off_does_not_count_as_consumption_while_open():
    # Readings hourly; the relay opens at 03:30, and the 04:00 reading carries 03:00-04:00.
    samples = readings(flat(0.4), hours=4, step=HOUR)
    samples += [Sample(T0 + 4 * HOUR + 900 * k, samples[-1].register) for k in range(1, 20)]
    series = meter(samples, has_relay=True)
    stretches = cut_off(samples, T0 + 3.5 * HOUR)
    assert bypass.detect(series, ivs(series), stretches, RULES).findings == []


def test_a_meter_without_relay_is_never_a_bypass():
    series = meter(readings(flat(0.4), hours=12), has_relay=False)
    outcome = bypass.detect(series, ivs(series), cut_off(series.samples, T0), RULES)
    assert outcome.findings == []


# Tamper and reverse ------------------------------------------------------------------------------


def test_a_cover_open_flag_is_one_tamper_finding_per_episode():
    samples = readings(flat(0.4), hours=6)
    for index in range(4, 8):
        samples[index] = samples[index]._replace(flags=("Cover-Open",))
    outcome = tamper.detect(meter(samples), RULES)
    (finding,) = outcome.findings
    assert finding.kind == Kind.TAMPER
    assert finding.rule == {"name": "tamper_flag", "flags": ["Cover-Open"], "readings": 4}


def test_a_reverse_connection_flag_is_a_reverse_finding():
    samples = readings(flat(0.4), hours=2)
    samples[3] = samples[3]._replace(flags=("reverse_connection", "low_battery"))
    (finding,) = tamper.detect(meter(samples), RULES).findings
    assert (finding.kind, finding.rule["flags"]) == (Kind.REVERSE, ["reverse_connection"])


def test_flags_that_are_no_tamper_signal_raise_nothing():
    samples = readings(flat(0.4), hours=2, flags=("low_battery", "overvoltage"))
    assert tamper.detect(meter(samples), RULES).findings == []


def test_power_flowing_backwards_on_several_readings_is_reverse():
    samples = readings(flat(0.4), hours=3, power_w=400.0)
    for index in (5, 6, 7):
        samples[index] = samples[index]._replace(power_w=-350.0)
    (finding,) = tamper.detect(meter(samples), RULES).findings
    assert finding.rule["name"] == "reverse_power"
    assert finding.rule["readings"] == 3


def test_one_negative_power_glitch_or_an_exporting_meter_is_not_reverse():
    samples = readings(flat(0.4), hours=3, power_w=400.0)
    samples[5] = samples[5]._replace(power_w=-350.0)
    assert tamper.detect(meter(samples), RULES).findings == []
    solar = readings(flat(0.4), hours=3, power_w=-900.0)
    assert tamper.detect(meter(solar, exports=True), RULES).findings == []


def test_export_energy_on_a_meter_that_should_not_export_is_reverse():
    samples = [s._replace(export=5.0 + index * 0.05) for index, s in enumerate(readings(flat(0.4)))]
    (finding,) = tamper.detect(meter(samples), RULES).findings
    assert finding.rule["name"] == "export"
    assert finding.rule["quantity"] == 4.8
    assert tamper.detect(meter(samples, exports=True), RULES).findings == []


def test_an_export_register_that_only_stands_still_or_resets_is_no_export():
    samples = [s._replace(export=5.0) for s in readings(flat(0.4))]
    samples[10] = samples[10]._replace(export=0.0)
    for index in range(11, len(samples)):
        samples[index] = samples[index]._replace(export=0.0)
    assert tamper.detect(meter(samples), RULES).findings == []


# Spikes ------------------------------------------------------------------------------------------


def month(usage=hourly_usage, *, days=29, **extra):
    return readings(usage, hours=days * 24, **extra)


def spike_outcome(series_list, *, occupied_since=T0, rules=RULES, judge_from=T0 + 28 * 24 * HOUR):
    series = merged([ivs(s, rules) for s in series_list])
    end = series[-1].end
    spans = local_hours(T0, end, ZONE)
    values = dict(zip([s[0] for s in spans], buckets(series, spans), strict=True))
    judged = {hour: value for hour, value in values.items() if hour >= judge_from}
    return spikes.detect(
        1,
        judged,
        history=values,
        weeks_before=weeks_before(judged, ZONE, rules.spike_weeks),
        occupied_since=occupied_since,
        rules=rules,
    )


def with_spike(at_hour, per_hour):
    def usage(at):
        if at_hour < at <= at_hour + HOUR:
            return per_hour * STEP / HOUR
        return hourly_usage(at)

    return usage


SPIKE_HOUR = T0 + 28 * 24 * HOUR + 14 * HOUR


def test_an_hour_far_above_the_median_for_that_hour_of_the_week_is_a_spike():
    outcome = spike_outcome([meter(month(with_spike(SPIKE_HOUR, 3.0)))])
    (finding,) = outcome.findings
    assert finding.kind == Kind.SPIKE
    assert finding.start == SPIKE_HOUR
    assert finding.rule["median"] == 0.2
    assert finding.rule["quantity"] == 3.0
    assert finding.rule["weeks"] == 4


def test_a_household_s_usual_day_has_no_spike():
    assert spike_outcome([meter(month())]).findings == []


def test_an_hour_above_k_times_a_tiny_median_but_below_the_minimum_is_no_spike():
    outcome = spike_outcome([meter(month(with_spike(SPIKE_HOUR, 0.45)))])
    assert outcome.findings == []


def test_without_enough_history_an_hour_is_not_judged():
    # The account moved in two weeks before: two earlier weeks only.
    moved_in = T0 + 14 * 24 * HOUR
    outcome = spike_outcome([meter(month(with_spike(SPIKE_HOUR, 3.0)))], occupied_since=moved_in)
    assert outcome.findings == []


def test_a_gap_s_catch_up_reading_is_no_spike():
    samples = month()
    samples = [s for s in samples if not SPIKE_HOUR - 5 * HOUR < s.at < SPIKE_HOUR + HOUR]
    assert spike_outcome([meter(samples)]).findings == []


def test_a_wrong_estimated_reading_is_no_spike():
    samples = month()
    index = next(i for i, s in enumerate(samples) if s.at == SPIKE_HOUR + 1800)
    samples[index] = samples[index]._replace(register=samples[index].register + 40, estimated=True)
    assert spike_outcome([meter(samples)]).findings == []


def test_a_register_rollover_is_no_spike():
    samples = month(register=100000.0 - 160.0)
    wrapped = [s._replace(register=round(s.register % 100000.0, 6)) for s in samples]
    assert spike_outcome([meter(wrapped, rollover=100000.0)]).findings == []


def test_a_meter_replacement_is_no_spike():
    swap = SPIKE_HOUR + 1800
    samples = month()
    old = meter([s for s in samples if s.at <= swap], key=1, removed=swap)
    offset = next(s.register for s in samples if s.at == swap)
    new = meter(
        [s._replace(register=round(s.register - offset, 6)) for s in samples if s.at >= swap],
        key=2,
        installed=swap,
    )
    assert spike_outcome([old, new]).findings == []


# Flat-lining -------------------------------------------------------------------------------------


def stuck_after(moment):
    return lambda at: 0 if at > moment else hourly_usage(at)


def flatline_outcome(samples, *, stretches=(), occupied_since=T0, has_credit=True):
    series = meter(samples)
    trusted = series.trusted()
    return flatline.detect(
        1,
        ivs(series),
        stretches=list(stretches),
        occupied_since=occupied_since,
        has_credit=has_credit,
        register=trusted[-1].register,
        rules=RULES,
    )


def test_no_consumption_for_days_on_an_occupied_supplied_unit_with_credit_is_a_flatline():
    samples = readings(stuck_after(T0 + 24 * HOUR), hours=5 * 24)
    (finding,) = flatline_outcome(samples).findings
    assert finding.kind == Kind.FLATLINE
    assert finding.start == T0 + 24 * HOUR
    assert finding.rule["days"] == 4.0
    assert finding.key == f"flatline:1:{samples[-1].register:.3f}"


def test_the_same_stuck_meter_seen_again_later_is_the_same_finding():
    first = flatline_outcome(readings(stuck_after(T0 + 24 * HOUR), hours=5 * 24)).findings[0]
    later = flatline_outcome(readings(stuck_after(T0 + 24 * HOUR), hours=6 * 24)).findings[0]
    assert first.key == later.key


def test_a_cut_off_a_unit_without_credit_or_a_vacant_one_is_no_flatline():
    samples = readings(stuck_after(T0 + 24 * HOUR), hours=5 * 24)
    opened = [(T0 + 30 * HOUR, T0 + 100 * HOUR)]
    assert flatline_outcome(samples, stretches=opened).findings == []
    assert flatline_outcome(samples, has_credit=False).findings == []
    assert flatline_outcome(samples, occupied_since=None).findings == []


def test_a_silent_meter_is_no_flatline():
    samples = readings(stuck_after(T0 + 24 * HOUR), hours=5 * 24)
    offline = [s for s in samples if not T0 + 50 * HOUR < s.at < T0 + 60 * HOUR]
    assert flatline_outcome(offline).findings == []


def test_fewer_days_than_the_limit_is_no_flatline_and_consumption_again_is_healthy():
    samples = readings(stuck_after(T0 + 3 * 24 * HOUR), hours=5 * 24)
    outcome = flatline_outcome(samples)
    assert outcome.findings == []
    assert outcome.healthy == {(1, Kind.FLATLINE)}


def test_a_new_tenant_s_first_days_are_no_flatline():
    samples = readings(stuck_after(T0), hours=5 * 24)
    assert flatline_outcome(samples, occupied_since=T0 + 3 * 24 * HOUR).findings == []


# Overload ----------------------------------------------------------------------------------------


def powered(watts):
    samples = readings(flat(1.0), hours=6)
    return [s._replace(power_w=watts(s.at)) for s in samples]


def test_power_above_the_limit_for_longer_than_the_minutes_is_an_overload():
    samples = powered(lambda at: 7000.0 if T0 + 2 * HOUR <= at <= T0 + 2.5 * HOUR else 1000.0)
    outcome = overload.detect(meter(samples, power_limit_w=5000.0), ivs(meter(samples)), RULES)
    (finding,) = outcome.findings
    assert finding.rule["minutes"] == 30
    assert finding.rule["peak_w"] == 7000.0
    assert not finding.ongoing
    assert outcome.healthy == {(1, Kind.OVERLOAD)}


def test_a_single_peak_or_no_limit_is_no_overload():
    samples = powered(lambda at: 9000.0 if at == T0 + 2 * HOUR else 1000.0)
    assert overload.detect(meter(samples, power_limit_w=5000.0), [], RULES).findings == []
    samples = powered(lambda at: 9000.0)
    assert overload.detect(meter(samples), [], RULES).findings == []


def test_the_property_limit_applies_as_the_source_says():
    samples = powered(lambda at: 6000.0)
    series = meter(samples)
    property_limit = Rules(overload_limit_w=5000.0, overload_limit_source=LimitSource.PROPERTY)
    (finding,) = overload.detect(series, [], property_limit).findings
    assert finding.ongoing
    assert finding.rule["limit_w"] == 5000.0
    only_meters = Rules(overload_limit_w=5000.0, overload_limit_source=LimitSource.METER)
    assert overload.detect(series, [], only_meters).findings == []


def test_a_meter_without_power_readings_is_judged_on_its_average_power():
    samples = readings(lambda at: 2.0 if at > T0 + 4 * HOUR else 0.25, hours=6)
    series = meter(samples, power_limit_w=5000.0)
    (finding,) = overload.detect(series, ivs(series), RULES).findings
    assert finding.rule["peak_w"] == 8000.0
    assert finding.rule["minutes"] == 120


# Losses ------------------------------------------------------------------------------------------

DAY1 = date(2026, 9, 7)


def day_values(series_list, start=T0, days=2):
    spans = [(low, high) for _, low, high in local_days(start, start + days * 24 * HOUR, ZONE)]
    return bounds(merged([ivs(s) for s in series_list]), spans)


def loss_outcome(feeder_usage, fed, days=2):
    feeder = day_values([meter(readings(feeder_usage, hours=days * 24 + 1))], days=days)
    fed_days = [day_values(parts, days=days) for parts in fed]
    found = [
        losses.loss_day(day, low, [feeder[index]], [values[index] for values in fed_days])
        for index, (day, low, _high) in enumerate(local_days(T0, T0 + days * 24 * HOUR, ZONE))
    ]
    known = [entry for entry in found if entry is not None]
    outcome = losses.detect(9, 90, known, judged=[DAY1, DAY1 + timedelta(days=1)], rules=RULES)
    return outcome, found


def households(count, hours=49):
    return [[meter(readings(flat(0.5), hours=hours), key=k)] for k in range(count)]


def silent(parts, low, high):
    parts[0].samples = [s for s in parts[0].samples if not low < s.at < high]


def test_a_feeder_losing_more_than_the_threshold_is_a_loss():
    outcome, _days = loss_outcome(flat(0.5 * 4 * 1.25), households(4))
    assert [f.rule["day"] for f in outcome.findings] == ["2026-09-07", "2026-09-08"]
    finding = outcome.findings[0]
    assert finding.rule["percent"] == 20.0
    assert finding.rule["margin"] == 0.0
    assert finding.kind == Kind.LOSS
    assert finding.key == "loss:90:2026-09-07"
    assert finding.series["series"][0]["key"] == "loss_percent"


def test_a_normal_loss_is_healthy():
    outcome, _days = loss_outcome(flat(0.5 * 4 * 1.03), households(4))
    assert outcome.findings == []
    assert outcome.healthy == {(9, Kind.LOSS)}


def test_a_gap_across_midnight_leaves_a_margin_and_a_clear_loss_still_raises():
    fed = households(4)
    # Silent from 20:00 to 04:00: its 4 kWh may belong to either day.
    silent(fed[0], T0 + 20 * HOUR, T0 + 28 * HOUR)
    outcome, days = loss_outcome(flat(0.5 * 4 * 1.25), fed)
    assert days[0].margin == 2.0
    assert days[0].least_percent == pytest.approx(100 / 6)
    assert len(outcome.findings) == 2


def test_a_day_whose_gap_could_hold_the_loss_is_not_judged_either_way():
    fed = households(1)
    silent(fed[0], T0 + 4 * HOUR, T0 + 44 * HOUR)
    outcome, days = loss_outcome(flat(0.5 * 1.12), fed)
    assert days[0].least_percent < RULES.loss_percent < days[0].most_percent
    assert outcome.findings == []
    assert outcome.healthy == set()


def test_a_day_with_an_unknown_interval_is_not_judged():
    fed = households(4)
    samples = fed[0][0].samples
    samples[30] = samples[30]._replace(register=samples[30].register - 50)
    outcome, days = loss_outcome(flat(0.5 * 4 * 1.25), fed)
    assert days[0] is None
    assert [f.rule["day"] for f in outcome.findings] == ["2026-09-08"]


def test_a_gap_inside_the_day_and_a_meter_replaced_mid_day_still_give_no_false_loss():
    fed = households(4)
    silent(fed[1], T0 + 5 * HOUR, T0 + 11 * HOUR)
    swap = T0 + 12 * HOUR
    samples = readings(flat(0.5), hours=49)
    offset = next(s.register for s in samples if s.at == swap)
    fed[2] = [
        meter([s for s in samples if s.at <= swap], key=20, removed=swap),
        meter(
            [s._replace(register=round(s.register - offset, 6)) for s in samples if s.at >= swap],
            key=21,
            installed=swap,
        ),
    ]
    outcome, days = loss_outcome(flat(0.5 * 4 * 1.03), fed)
    assert None not in days
    assert days[0].margin == 0.0
    assert outcome.findings == []


def test_a_small_feeder_day_is_not_judged():
    outcome, _days = loss_outcome(flat(0.1), [[meter(readings(flat(0.05), hours=49))]])
    assert outcome.findings == []


def test_interval_helpers_accept_empty_series():
    assert buckets([], [(T0, T0 + HOUR)]) == [None]
    assert flatline.zero_since([]) == (None, False)
    assert flatline.zero_since([Interval(T0, T0 + STEP, 0.0)]) == (T0, False)


def test_finding_charts_carry_whole_seconds():
    samples = readings(flat(0.4), hours=4)
    series = meter(samples, has_relay=True)
    finding = bypass.detect(series, ivs(series), cut_off(samples, T0 + HOUR + 0.5), RULES).findings[
        0
    ]
    assert all(isinstance(moment, int) for moment in finding.series["x"])
    assert datetime.fromtimestamp(finding.series["x"][0], UTC) >= datetime.fromtimestamp(
        T0 - 6 * HOUR, UTC
    )
