"""Detection for one property: load its data for a window in a few queries, run the pure
detectors (meters.detectors) with the property's rules, and raise or clear alarms.

A run after a charge run looks at the last day. It reads, whatever the property's size:

- the property's meters, their feeder links, the open accounts and their wallets, the policy;
- every reading of the window (rejected ones never count), and the relay commands;
- for the accounts with hours worth judging, the last reading of each hour in the same hours of
  the previous weeks (the spike baselines);
- for the units that counted nothing all window, their readings back to the flat-lining limit;
- the feeders' stored loss days (the trend); then writes in one transaction.

Every finding has a key naming the anomaly; a key seen before raises nothing, so re-running
detection over the same window adds nothing, whether its alarm is open or resolved. A finding
whose alarm kind is already open for the meter adds to that alarm (the latest evidence, counted).
Conditions that can end are cleared by the runner when it sees them end: flat-lining when the
meter counts again, overload when power is back under the limit, loss when a day is back under
the threshold. Bypass, tamper, reverse and spike alarms are closed by staff only.

An overloaded meter's relay may be opened automatically (`DetectorSettings.overload_trip`),
under the cut-off rules: never in a protected period and never for a protected account.
"""

from __future__ import annotations

import json
import time as clock
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, FloatField, Func, Q, QuerySet, TextField
from django.db.models.functions import Cast, TruncHour
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from accounts.models import Account, Property
from accounts.selectors import holiday_calendar
from billing.models import LedgerAccount
from billing.protection import protected_until
from billing.selectors import balance_policy, protected_periods
from meters.alarms import alarm_clear, alarm_raise
from meters.detectors import bypass, flatline, losses, overload, spikes, tamper
from meters.detectors.findings import Finding as Found
from meters.detectors.findings import Outcome
from meters.detectors.rules import Kind
from meters.detectors.series import (
    CLOSED,
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
    relay_events,
    weeks_before,
)
from meters.models import Alarm, DetectorSettings, Finding, LossDay, Meter, Reading, RelayCommand
from meters.relay import relay_command_issue
from prepaid.audit.services import only_fields, update_audited

WINDOW = timedelta(days=1)
# Detection after every charge run would repeat itself: a property's runs are this far apart.
MIN_INTERVAL = timedelta(minutes=10)
# The spike baselines read each hour's last reading from this much around the window's hours.
HISTORY_MARGIN = timedelta(hours=2)

ACTIONS = {
    Kind.BYPASS: Alarm.Action.INSPECT_BYPASS,
    Kind.TAMPER: Alarm.Action.INSPECT_TAMPER,
    Kind.REVERSE: Alarm.Action.CHECK_WIRING,
    Kind.SPIKE: Alarm.Action.ASK_TENANT,
    Kind.FLATLINE: Alarm.Action.TEST_METER,
    Kind.OVERLOAD: Alarm.Action.REDUCE_LOAD,
    Kind.LOSS: Alarm.Action.FIND_LOSS,
}
# The alarm kinds the runner closes when it sees their condition end.
CLEARED = (Kind.FLATLINE, Kind.OVERLOAD, Kind.LOSS)


class Trip(StrEnum):
    """What became of an automatic overload trip."""

    TRIPPED = "tripped"
    PROTECTED_PERIOD = "protected_period"
    PROTECTED_ACCOUNT = "protected_account"
    ALREADY_OPEN = "already_open"


@dataclass
class DetectionRun:
    meters: int = 0
    readings: int = 0
    findings: int = 0
    # Findings that opened an alarm, that added to one already open, and that were seen before.
    raised: int = 0
    repeated: int = 0
    known: int = 0
    cleared: int = 0
    trips: dict[str, int] = field(default_factory=dict)
    # Where the time went: reading the data, detecting, writing alarms.
    load_seconds: float = 0.0
    detect_seconds: float = 0.0
    write_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "meters": self.meters,
            "readings": self.readings,
            "findings": self.findings,
            "raised": self.raised,
            "repeated": self.repeated,
            "known": self.known,
            "cleared": self.cleared,
            "trips": self.trips,
        }


# Settings -----------------------------------------------------------------------------------------


def detector_settings(*, property: Property) -> DetectorSettings:
    """The property's detector settings; the defaults when it has set none."""
    try:
        return property.detector_settings
    except DetectorSettings.DoesNotExist:
        return DetectorSettings(property=property)


SETTINGS_FIELDS = (
    "max_gap_minutes",
    "bypass_enabled",
    "bypass_tolerance",
    "tamper_enabled",
    "reverse_power_w",
    "export_tolerance",
    "spike_enabled",
    "spike_k",
    "spike_minimum",
    "spike_weeks",
    "spike_min_weeks",
    "flatline_enabled",
    "flatline_days",
    "overload_enabled",
    "overload_limit_source",
    "overload_limit_w",
    "overload_minutes",
    "overload_trip",
    "loss_enabled",
    "loss_percent",
    "loss_minimum",
    "main_meter",
)


@transaction.atomic
def detector_settings_update(*, property: Property, actor, **changes) -> DetectorSettings:
    """Change a property's detector rules; audited."""
    only_fields(changes, SETTINGS_FIELDS)
    settings = DetectorSettings.objects.select_for_update().filter(property=property).first()
    if settings is None:
        settings = DetectorSettings.objects.create(property=property)
    main = changes.get("main_meter")
    if main is not None and (main.unit_id is None or main.unit.property_id != property.pk):
        raise ValidationError({"main_meter": _("The main meter must be one of this property's.")})
    weeks = changes.get("spike_weeks", settings.spike_weeks)
    if changes.get("spike_min_weeks", settings.spike_min_weeks) > weeks:
        raise ValidationError(
            {"spike_min_weeks": _("The history needed cannot be longer than the history read.")}
        )
    update_audited(
        instance=settings,
        changes=changes,
        actor=actor,
        action="detector_settings.update",
        organisation_id=property.organisation_id,
        property_id=property.pk,
    )
    return settings


# Scheduling ---------------------------------------------------------------------------------------


def detection_enqueue(*, meter_ids: Iterable[int] | None = None, now: datetime | None = None):
    """After charging: detect on the properties of these meters (None: of the meters heard
    from lately), once the charge run has committed."""
    from meters.tasks import detect_property_task

    meters = Meter.objects.filter(unit__isnull=False)
    if meter_ids is None:
        meters = meters.filter(last_seen_at__gte=(now or timezone.now()) - MIN_INTERVAL)
    else:
        meters = meters.filter(pk__in=list(meter_ids))
    property_ids = sorted(set(meters.values_list("unit__property_id", flat=True)))
    for property_id in property_ids:
        transaction.on_commit(lambda pk=property_id: detect_property_task.delay(pk))
    return property_ids


def detection_claim(*, property_id: int, now: datetime | None = None) -> bool:
    """Whether this worker may run detection for the property now: one run per MIN_INTERVAL,
    claimed with a compare-and-set, so concurrent charge runs start one detection."""
    now = now or timezone.now()
    DetectorSettings.objects.bulk_create(
        [DetectorSettings(property_id=property_id)], ignore_conflicts=True
    )
    return bool(
        DetectorSettings.objects.filter(property_id=property_id)
        .filter(Q(last_run_at__isnull=True) | Q(last_run_at__lte=now - MIN_INTERVAL))
        .update(last_run_at=now)
    )


# Loading ------------------------------------------------------------------------------------------


class _Epoch(Func):
    """A moment as POSIX seconds, which the detectors work in."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)::double precision"
    output_field = FloatField()


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


_SAMPLE_COLUMNS = (
    "meter_id",
    _Epoch(F("taken_at")),
    Cast("register", FloatField()),
    "estimated",
    "power_w",
    "relay_closed",
    Cast("export_register", FloatField()),
    # As text, parsed only when present: a JSON converter on every row costs more than the rest
    # of the row.
    Cast("flags", TextField()),
)


def _samples(readings: QuerySet[Reading]) -> Iterable[tuple[int, Sample]]:
    rows = (
        readings.exclude(status=Reading.Status.REJECTED)
        .order_by("meter_id", "taken_at")
        .values_list(*_SAMPLE_COLUMNS)
    )
    for meter_id, at, register, estimated, power, relay, export, flags in rows.iterator(
        chunk_size=20000
    ):
        yield (
            meter_id,
            Sample(
                at,
                register,
                estimated,
                power,
                relay,
                export,
                tuple(json.loads(flags)) if flags else (),
            ),
        )


@dataclass
class _Group:
    """The meters of one utility in one unit, oldest first: before and after replacements."""

    unit_id: int
    utility: str
    meters: list[Meter] = field(default_factory=list)

    @property
    def subject(self) -> Meter:
        """The meter the group's alarms go on: the one in service, or else the last one."""
        return self.meters[-1]


class _Data:
    def __init__(self, prop: Property, settings: DetectorSettings, start: datetime, end: datetime):
        self.property = prop
        self.rules = settings.rules()
        self.settings = settings
        self.zone = ZoneInfo(prop.time_zone)
        self.start, self.end = start, end
        # Flat-lining reads back its limit and a day; the relay's history goes back as far as
        # the spike baselines, whose weeks with the supply cut off say nothing.
        self.lookback = min(
            start - timedelta(weeks=self.rules.spike_weeks),
            end - timedelta(days=self.rules.flatline_days + 1),
        )
        self.meters: dict[int, Meter] = {
            meter.pk: meter
            for meter in Meter.objects.filter(unit__property=prop, installed_at__lte=end)
            .exclude(removed_at__lt=self.lookback)
            .select_related("unit")
            .order_by("installed_at", "pk")
        }
        self.groups: dict[tuple[int, str], _Group] = {}
        for meter in self.meters.values():
            key = (meter.unit_id, meter.utility)
            self.groups.setdefault(key, _Group(*key)).meters.append(meter)
        self.accounts = {
            account.unit_id: account
            for account in Account.objects.filter(
                unit__property=prop, status=Account.Status.OPEN
            ).select_related("wallet")
        }
        self.threshold = balance_policy(property=prop).cutoff_threshold
        self.series = {meter_id: self._series(meter) for meter_id, meter in self.meters.items()}
        self.readings = 0
        for meter_id, sample in _samples(
            Reading.objects.filter(
                meter__unit__property=prop, taken_at__gte=start, taken_at__lte=end
            )
        ):
            if meter_id in self.series:
                self.series[meter_id].samples.append(sample)
                self.readings += 1
        self.events = self._relay_events()
        # (feeder group, day, fed units) of each day the loss detector could judge.
        self.loss_days: list[tuple[tuple[int, str], losses.LossDay, int]] = []

    def _series(self, meter: Meter) -> MeterSeries:
        return MeterSeries(
            meter=meter.pk,
            unit=meter.unit_id,
            installed=_epoch(meter.installed_at),
            removed=_epoch(meter.removed_at),
            rollover=None if meter.register_rollover is None else float(meter.register_rollover),
            max_per_hour=float(meter.plausible_per_hour),
            has_relay=meter.has_relay,
            exports=meter.exports_energy,
            power_limit_w=None if meter.power_limit_w is None else float(meter.power_limit_w),
        )

    def _relay_events(self) -> dict[int, list[RelayEvent]]:
        """Each meter's relay as its commands and readings tell it: unknown from a command's
        creation, confirmed open or closed when it is confirmed. The latest command before the
        period says how the period began."""
        commands = RelayCommand.objects.filter(meter__unit__property=self.property)
        columns = ("meter_id", "close", "state", _Epoch(F("created_at")), _Epoch(F("finished_at")))
        earlier = (
            commands.filter(created_at__lt=self.lookback)
            .order_by("meter_id", "-created_at")
            .distinct("meter_id")
            .values_list(*columns)
        )
        during = commands.filter(created_at__gte=self.lookback, created_at__lte=self.end)
        events: dict[int, list[RelayEvent]] = defaultdict(list)
        for meter_id, close, state, created, finished in [
            *earlier,
            *during.values_list(*columns),
        ]:
            events[meter_id].append(RelayEvent(created, UNKNOWN))
            if state == RelayCommand.State.CONFIRMED and finished is not None:
                events[meter_id].append(RelayEvent(finished, CLOSED if close else OPEN))
        for meter_id, series in self.series.items():
            events[meter_id] += relay_events(s for s in series.samples if not s.estimated)
        return events

    def extend(self, meter_ids: Sequence[int], since: datetime) -> None:
        """Read the readings of these meters from `since` to the window's start too."""
        if not meter_ids:
            return
        earlier: dict[int, list[Sample]] = defaultdict(list)
        for meter_id, sample in _samples(
            Reading.objects.filter(
                meter_id__in=meter_ids, taken_at__gte=since, taken_at__lt=self.start
            )
        ):
            earlier[meter_id].append(sample)
        for meter_id, samples in earlier.items():
            series = self.series[meter_id]
            series.samples = samples + series.samples
            self.readings += len(samples)
            self.events[meter_id] += relay_events(s for s in samples if not s.estimated)

    def hour_history(self, meter_ids: Sequence[int]) -> dict[int, list[Sample]]:
        """The last trusted reading of each hour, in the window's hours of the previous weeks."""
        if not meter_ids:
            return {}
        slices = Q()
        for week in range(1, self.rules.spike_weeks + 1):
            shift = timedelta(weeks=week)
            slices |= Q(
                taken_at__gte=self.start - shift - HISTORY_MARGIN,
                taken_at__lte=self.end - shift + HISTORY_MARGIN,
            )
        rows = (
            Reading.objects.filter(slices, meter_id__in=meter_ids, estimated=False)
            .exclude(status=Reading.Status.REJECTED)
            .annotate(hour=TruncHour("taken_at", tzinfo=UTC))
            .order_by("meter_id", "hour", "-taken_at")
            .distinct("meter_id", "hour")
            .values_list("meter_id", "hour", _Epoch(F("taken_at")), Cast("register", FloatField()))
        )
        history: dict[int, list[Sample]] = defaultdict(list)
        for meter_id, _hour, at, register in rows.iterator(chunk_size=20000):
            history[meter_id].append(Sample(at, register))
            self.readings += 1
        return history

    def credit(self, account: Account) -> bool:
        """Postpaid accounts are never short of credit; prepaid ones are above the cut-off."""
        return account.mode == Account.Mode.POSTPAID or account.wallet.balance > self.threshold


# Detecting ----------------------------------------------------------------------------------------


def _unit_label(meter: Meter) -> str:
    return Meter.REGISTER_UNITS[meter.utility]


def _stretches(data: _Data, group: _Group) -> list[tuple[float, float]]:
    end = data.end.timestamp()
    return sorted(
        stretch
        for meter in group.meters
        for stretch in open_stretches(data.events.get(meter.pk, ()), end=end)
    )


def _detect(data: _Data) -> Outcome:
    rules = data.rules
    gap = rules.max_gap
    outcome = Outcome()
    meter_intervals = {
        meter_id: intervals(series, max_gap=gap) for meter_id, series in data.series.items()
    }
    end = data.end.timestamp()
    for meter_id, series in data.series.items():
        meter = data.meters[meter_id]
        ivs = meter_intervals[meter_id]
        stretches = open_stretches(data.events.get(meter_id, ()), end=end)
        outcome.add(bypass.detect(series, ivs, stretches, rules, unit=_unit_label(meter)))
        outcome.add(tamper.detect(series, rules))
        if meter.removed_at is None:
            outcome.add(overload.detect(series, ivs, rules))
    outcome.add(_spikes(data, meter_intervals))
    outcome.add(_flatline(data, meter_intervals))
    outcome.add(_losses(data, meter_intervals))
    return outcome


def _group_intervals(group: _Group, meter_intervals: dict[int, list[Interval]]) -> list[Interval]:
    return merged(meter_intervals[meter.pk] for meter in group.meters)


def _spikes(data: _Data, meter_intervals: dict[int, list[Interval]]) -> Outcome:
    outcome = Outcome()
    rules = data.rules
    if not rules.spike:
        return outcome
    spans = local_hours(data.start.timestamp(), data.end.timestamp(), data.zone)
    candidates: dict[tuple[int, str], dict[float, float | None]] = {}
    for key, group in data.groups.items():
        if key[0] not in data.accounts:
            continue
        values = buckets(_group_intervals(group, meter_intervals), spans)
        if any(value is not None and value > rules.spike_minimum for value in values):
            candidates[key] = {span[0]: value for span, value in zip(spans, values, strict=True)}
    if not candidates:
        return outcome
    earlier = weeks_before([span[0] for span in spans], data.zone, rules.spike_weeks)
    history_spans = sorted({(hour, hour + 3600) for hours in earlier.values() for hour in hours})
    history = data.hour_history(
        [meter.pk for key in candidates for meter in data.groups[key].meters]
    )
    for key, hours in candidates.items():
        group = data.groups[key]
        parts = []
        for meter in group.meters:
            series = data.series[meter.pk]
            past = MeterSeries(
                meter=meter.pk,
                samples=history.get(meter.pk, []),
                installed=series.installed,
                removed=series.removed,
                rollover=series.rollover,
                max_per_hour=series.max_per_hour,
            )
            parts.append(intervals(past, max_gap=rules.max_gap))
        past_values = buckets(merged(parts), history_spans)
        outcome.add(
            spikes.detect(
                group.subject.pk,
                hours,
                history={
                    span[0]: value for span, value in zip(history_spans, past_values, strict=True)
                },
                weeks_before=earlier,
                occupied_since=data.accounts[key[0]].opened_at.timestamp(),
                rules=rules,
                stretches=_stretches(data, group),
                unit=_unit_label(group.subject),
            )
        )
    return outcome


def _flatline(data: _Data, meter_intervals: dict[int, list[Interval]]) -> Outcome:
    outcome = Outcome()
    rules = data.rules
    if not rules.flatline:
        return outcome
    # Units that counted nothing all window may have counted nothing for longer: read back.
    silent = []
    for key, group in data.groups.items():
        account = data.accounts.get(key[0])
        if account is None or not data.credit(account):
            continue
        ivs = _group_intervals(group, meter_intervals)
        since, consumed = flatline.zero_since(ivs)
        if ivs and not consumed and since <= data.start.timestamp() + rules.max_gap:
            silent.append(key)
    if silent:
        ids = [meter.pk for key in silent for meter in data.groups[key].meters]
        data.extend(ids, data.end - timedelta(days=rules.flatline_days) - timedelta(days=1))
        for meter_id in ids:
            meter_intervals[meter_id] = intervals(data.series[meter_id], max_gap=rules.max_gap)
    for key, group in data.groups.items():
        account = data.accounts.get(key[0])
        subject = data.series[group.subject.pk].trusted()
        outcome.add(
            flatline.detect(
                group.subject.pk,
                _group_intervals(group, meter_intervals),
                stretches=_stretches(data, group),
                occupied_since=None if account is None else account.opened_at.timestamp(),
                has_credit=account is not None and data.credit(account),
                register=subject[-1].register if subject else None,
                rules=rules,
                unit=_unit_label(group.subject),
            )
        )
    return outcome


@dataclass
class _Feeder:
    unit_id: int
    utility: str
    fed: set[int] = field(default_factory=set)


def _feeders(data: _Data) -> dict[tuple[int, str], _Feeder]:
    """Which unit feeds which: a unit follows the feeder of its latest meter that names one,
    else the property's main meter (for the main meter's utility)."""
    links: dict[tuple[int, str], int] = {}
    for unit_id, utility, feeder_unit in (
        Meter.objects.filter(unit__property=data.property, feeder__isnull=False)
        .order_by("installed_at", "pk")
        .values_list("unit_id", "utility", "feeder__unit_id")
    ):
        links[(unit_id, utility)] = feeder_unit
    main = data.settings.main_meter if data.settings.main_meter_id else None
    feeders: dict[tuple[int, str], _Feeder] = {}
    for unit_id, utility in data.groups:
        feeder_unit = links.get((unit_id, utility))
        if feeder_unit is None and main is not None and main.utility == utility:
            feeder_unit = main.unit_id
        if feeder_unit is None or feeder_unit == unit_id:
            continue
        key = (feeder_unit, utility)
        if key in data.groups:
            feeders.setdefault(key, _Feeder(*key)).fed.add(unit_id)
    return feeders


def _losses(data: _Data, meter_intervals: dict[int, list[Interval]]) -> Outcome:
    outcome = Outcome()
    rules = data.rules
    if not rules.loss:
        return outcome
    feeders = _feeders(data)
    days = local_days(data.start.timestamp(), data.end.timestamp(), data.zone)
    if not feeders or not days:
        return outcome
    computed: dict[tuple[int, str], list[losses.LossDay]] = defaultdict(list)
    spans = [(low, high) for _, low, high in days]

    def daily(key):
        group = data.groups.get(key)
        if group is None:
            return None
        in_service = [
            meter
            for meter in group.meters
            if data.series[meter.pk].samples or meter.removed_at is None
        ]
        if not in_service:
            return None
        return bounds(_group_intervals(group, meter_intervals), spans)

    for key, feeder in list(feeders.items()):
        feeder_values = daily(key)
        if feeder_values is None:
            # The feeder's meters are all out of service: nothing to compare with.
            del feeders[key]
            continue
        fed_values = [
            values
            for values in (daily((unit_id, feeder.utility)) for unit_id in sorted(feeder.fed))
            if values is not None
        ]
        for index, (day, low, _high) in enumerate(days):
            entry = losses.loss_day(
                day, low, [feeder_values[index]], [values[index] for values in fed_values]
            )
            if entry is not None:
                computed[key].append(entry)
                data.loss_days.append((key, entry, len(fed_values)))
    stored = _stored_loss_days(data, feeders, days[0][0])
    judged = [day for day, _, _ in days]
    for key, feeder in feeders.items():
        fresh = {entry.day: entry for entry in computed[key]}
        trend = sorted({**{entry.day: entry for entry in stored.get(key[0], [])}, **fresh}.values())
        outcome.add(
            losses.detect(
                data.groups[key].subject.pk,
                feeder.unit_id,
                trend,
                judged=judged,
                rules=rules,
                unit=_unit_label(data.groups[key].subject),
            )
        )
    return outcome


def _stored_loss_days(data: _Data, feeders, first: date) -> dict[int, list[losses.LossDay]]:
    """The feeders' days before the window, for the trend."""
    stored: dict[int, list[losses.LossDay]] = defaultdict(list)
    rows = LossDay.objects.filter(
        feeder_unit_id__in=[key[0] for key in feeders],
        day__gte=first - timedelta(days=losses.TREND_DAYS),
        day__lt=first,
    ).order_by("day")
    for row in rows:
        low = datetime.combine(row.day, datetime.min.time(), tzinfo=data.zone).timestamp()
        stored[row.feeder_unit_id].append(
            losses.LossDay(
                row.day, low, float(row.feeder_quantity), float(row.fed_quantity), float(row.margin)
            )
        )
    return stored


# Writing ------------------------------------------------------------------------------------------


def _number(value, places: int = 3) -> str:
    return formats.number_format(round(float(value), places), places, use_l10n=True)


def _local(seconds: float, zone: ZoneInfo) -> str:
    return formats.date_format(
        timezone.localtime(_moment(seconds), zone), "SHORT_DATETIME_FORMAT", use_l10n=True
    )


def finding_message(found: Found, meter: Meter, zone: ZoneInfo) -> str:
    """The alarm's one-line message, in the active language."""
    rule = found.rule
    name = rule["name"]
    serial = meter.serial
    if name == Kind.BYPASS:
        return _(
            "Meter %(serial)s counted %(quantity)s %(unit)s while its relay was confirmed open "
            "(since %(since)s)."
        ) % {
            "serial": serial,
            "quantity": _number(rule["quantity"]),
            "unit": rule["unit"],
            "since": _local(rule["open_since"], zone),
        }
    if name == "tamper_flag":
        return _("Meter %(serial)s reports tampering: %(flags)s.") % {
            "serial": serial,
            "flags": ", ".join(rule["flags"]),
        }
    if name == "reverse_flag":
        return _("Meter %(serial)s reports reverse flow: %(flags)s.") % {
            "serial": serial,
            "flags": ", ".join(rule["flags"]),
        }
    if name == "reverse_power":
        return _("Meter %(serial)s measured power flowing backwards, down to %(power)s W.") % {
            "serial": serial,
            "power": _number(rule["lowest_w"], 0),
        }
    if name == "export":
        return _(
            "Meter %(serial)s counted %(quantity)s kWh of export, but it is not set to export."
        ) % {"serial": serial, "quantity": _number(rule["quantity"])}
    if name == Kind.SPIKE:
        return _(
            "Meter %(serial)s counted %(quantity)s %(unit)s in the hour from %(hour)s; it "
            "usually counts %(median)s %(unit)s in that hour of the week."
        ) % {
            "serial": serial,
            "quantity": _number(rule["quantity"]),
            "unit": rule["unit"],
            "hour": _local(rule["hour"], zone),
            "median": _number(rule["median"]),
        }
    if name == Kind.FLATLINE:
        return _(
            "Meter %(serial)s has counted nothing for %(days)s days, although the unit is "
            "occupied, has credit and is supplied."
        ) % {"serial": serial, "days": _number(rule["days"], 1)}
    if name == Kind.OVERLOAD:
        return _(
            "Meter %(serial)s drew up to %(power)s W for %(minutes)s minutes, above its limit "
            "of %(limit)s W."
        ) % {
            "serial": serial,
            "power": _number(rule["peak_w"], 0),
            "minutes": rule["minutes"],
            "limit": _number(rule["limit_w"], 0),
        }
    return _(
        "Feeder %(serial)s lost %(percent)s%% on %(day)s: it measured %(feeder)s %(unit)s, the "
        "meters it feeds %(fed)s %(unit)s."
    ) % {
        "serial": serial,
        "percent": _number(rule["percent"], 1),
        "day": formats.date_format(date.fromisoformat(rule["day"]), "SHORT_DATE_FORMAT"),
        "feeder": _number(rule["feeder"]),
        "fed": _number(rule["fed"]),
        "unit": rule["unit"],
    }


def _evidence(found: Found, data: _Data) -> dict:
    return {
        "detector": found.kind,
        "key": found.key,
        "rule": found.rule,
        "chart": found.series,
        "start": int(found.start),
        "end": int(found.end),
        "ongoing": found.ongoing,
        "window": [int(data.start.timestamp()), int(data.end.timestamp())],
        "zone": data.property.time_zone,
    }


def _write(data: _Data, outcome: Outcome, run: DetectionRun, now: datetime) -> None:
    found = sorted(outcome.findings, key=lambda f: (f.start, f.key))
    with transaction.atomic():
        seen = dict(
            Finding.objects.filter(key__in=[f.key for f in found]).values_list("key", "alarm_id")
        )
        trips = _overload_trips(data, found, seen, run, now)
        rows = []
        for finding in found:
            if finding.key in seen:
                run.known += 1
                continue
            meter = data.meters[finding.subject]
            evidence = _evidence(finding, data)
            if finding.key in trips:
                evidence["trip"] = trips[finding.key]
            alarm = alarm_raise(
                meter=meter,
                kind=finding.kind,
                message=finding_message(finding, meter, data.zone),
                severity=finding.severity,
                evidence=evidence,
                suggested_action=ACTIONS[finding.kind],
            )
            if alarm.evidence.get("occurrences", 1) > 1:
                run.repeated += 1
            else:
                run.raised += 1
            seen[finding.key] = alarm.pk
            rows.append(Finding(key=finding.key, alarm=alarm, found_at=now))
        Finding.objects.bulk_create(rows, ignore_conflicts=True)
        ongoing = {(f.subject, f.kind) for f in found}
        healthy = outcome.healthy - ongoing
        if healthy:
            open_alarms = Alarm.objects.filter(
                meter_id__in={meter_id for meter_id, _kind in healthy},
                kind__in=CLEARED,
                closed_at__isnull=True,
            ).values_list("meter_id", "kind")
            for meter_id, kind in set(open_alarms) & healthy:
                run.cleared += alarm_clear(
                    meter=data.meters[meter_id], kind=kind, note=_CLEAR_NOTES[kind]()
                )
        _store_loss_days(data)


_CLEAR_NOTES = {
    Kind.FLATLINE: lambda: _("The meter counts consumption again."),
    Kind.OVERLOAD: lambda: _("The power is back under the limit."),
    Kind.LOSS: lambda: _("The feeder's loss is back under the threshold."),
}


def _store_loss_days(data: _Data) -> None:
    LossDay.objects.bulk_create(
        [
            LossDay(
                property=data.property,
                feeder_unit_id=key[0],
                day=entry.day,
                feeder_quantity=Decimal(str(round(entry.feeder, 3))),
                fed_quantity=Decimal(str(round(entry.fed, 3))),
                margin=Decimal(str(round(entry.margin, 3))),
                fed_units=fed_units,
            )
            for key, entry, fed_units in data.loss_days
        ],
        update_conflicts=True,
        unique_fields=["feeder_unit", "day"],
        update_fields=["feeder_quantity", "fed_quantity", "margin", "fed_units"],
    )


def _overload_trips(data, found, seen, run: DetectionRun, now: datetime) -> dict[str, dict]:
    """Trip the meters still overloaded when the property asks for it; what became of each
    trip, by finding key. A trip already made for an overload is not made again."""
    if not (data.rules.overload and data.settings.overload_trip):
        return {}
    outcomes = {}
    for finding in found:
        meter = data.meters[finding.subject]
        if finding.kind != Kind.OVERLOAD or not finding.ongoing or not meter.has_relay:
            continue
        outcome, command = overload_trip(
            meter=meter,
            key=finding.key,
            reason=_(
                "Overload: up to %(peak)s W against a limit of %(limit)s W for %(minutes)s minutes."
            )
            % {
                "peak": _number(finding.rule["peak_w"], 0),
                "limit": _number(finding.rule["limit_w"], 0),
                "minutes": finding.rule["minutes"],
            },
            now=now,
        )
        run.trips[outcome] = run.trips.get(outcome, 0) + 1
        record = {"outcome": outcome, "at": now.isoformat()}
        if command is not None:
            record["command"] = str(command.uuid)
        outcomes[finding.key] = record
        if finding.key in seen:
            alarm = Alarm.objects.filter(pk=seen[finding.key], closed_at__isnull=True).first()
            if alarm is not None and alarm.evidence.get("trip") != record:
                alarm.evidence = {**alarm.evidence, "trip": record}
                alarm.save(update_fields=["evidence"])
    return outcomes


@transaction.atomic
def overload_trip(
    *, meter: Meter, key: str, reason: str, now: datetime | None = None
) -> tuple[str, RelayCommand | None]:
    """Open an overloaded meter's relay, under the cut-off rules: never for a protected account,
    never in a protected period (the next run after it ends trips a meter still overloaded).

    The occupant is re-read with its wallet locked, in the lock order of billing.services.
    Keyed by the overload, so one overload trips once however often it is seen."""
    now = now or timezone.now()
    meter = Meter.objects.select_related("unit__property").get(pk=meter.pk)
    prop = meter.unit.property
    account = Account.objects.filter(unit_id=meter.unit_id, status=Account.Status.OPEN).first()
    if account is not None:
        LedgerAccount.objects.select_for_update().get(pk=account.wallet_id)
        account = Account.objects.get(pk=account.pk)
        if account.protected:
            return Trip.PROTECTED_ACCOUNT, None
    until = protected_until(
        protected_periods(balance_policy(property=prop)),
        at=now,
        zone=ZoneInfo(prop.time_zone),
        is_holiday=holiday_calendar(property=prop),
    )
    if until is not None:
        return Trip.PROTECTED_PERIOD, None
    idempotency_key = f"overload-trip:{key}"
    earlier = RelayCommand.objects.filter(idempotency_key=idempotency_key).first()
    if earlier is not None:
        return Trip.TRIPPED, earlier
    active = RelayCommand.objects.filter(meter=meter, state__in=RelayCommand.ACTIVE).first()
    if (active is not None and not active.close) or (
        active is None and meter.relay_closed is False
    ):
        return Trip.ALREADY_OPEN, None
    command = relay_command_issue(
        meter=meter, close=False, actor=None, reason=reason, idempotency_key=idempotency_key
    )
    return Trip.TRIPPED, command


# The run ------------------------------------------------------------------------------------------


def detection_window(*, property: Property, now: datetime) -> tuple[datetime, datetime]:
    """The last day; from the start of yesterday when a feeder's yesterday is not judged yet."""
    start = now - WINDOW
    settings = detector_settings(property=property)
    zone = ZoneInfo(property.time_zone)
    yesterday = timezone.localtime(now, zone).date() - timedelta(days=1)
    has_feeders = (
        settings.main_meter_id is not None
        or Meter.objects.filter(unit__property=property, feeder__isnull=False).exists()
    )
    if has_feeders and not LossDay.objects.filter(property=property, day=yesterday).exists():
        midnight = datetime.combine(yesterday, datetime.min.time(), tzinfo=zone)
        start = min(start, midnight - timedelta(minutes=settings.max_gap_minutes))
    return start, now


def detect_property(
    *,
    property: Property,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> DetectionRun:
    """Run every detector over one property's window (by default `detection_window`) and
    raise, add to or clear its alarms."""
    now = now or timezone.now()
    if start is None or end is None:
        start, end = detection_window(property=property, now=now)
    started = clock.perf_counter()
    settings = detector_settings(property=property)
    data = _Data(property, settings, start, end)
    loaded = clock.perf_counter()
    outcome = _detect(data)
    detected = clock.perf_counter()
    run = DetectionRun(meters=len(data.meters), findings=len(outcome.findings))
    _write(data, outcome, run, now)
    run.readings = data.readings
    run.load_seconds = loaded - started
    run.detect_seconds = detected - loaded
    run.write_seconds = clock.perf_counter() - detected
    return run
