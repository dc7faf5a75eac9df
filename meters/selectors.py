"""What the staff dashboard reads about meters and alarms: every query through the caller's scope,
each list in a constant number of queries whatever its length."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from django.db.models import Case, IntegerField, Max, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from accounts.models import Account, Property
from meters.models import Alarm, Meter, MeterRejection, MqttRejection, Reading, RelayCommand
from prepaid.scoping import Scope


class Online(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


class Relay(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    PENDING = "pending"


def meter_zone(meter: Meter) -> zoneinfo.ZoneInfo:
    """The time zone a meter's times are shown in: its property's, or UTC for one in stock."""
    if meter.unit_id is None:
        return zoneinfo.ZoneInfo("UTC")
    return meter.unit.property.zone


def _active_command(field: str) -> Subquery:
    return Subquery(
        RelayCommand.objects.filter(meter=OuterRef("pk"), state__in=RelayCommand.ACTIVE).values(
            field
        )[:1]
    )


def meters_for_list(
    *,
    scope: Scope,
    property: Property | None = None,
    utility: str = "",
    online: str = "",
    relay: str = "",
    q: str = "",
) -> QuerySet[Meter]:
    """The meters in the caller's scope with their property, last reading time and the wish of
    any relay command still on its way (`pending_close`: True restore, False cut-off)."""
    meters = (
        Meter.objects.for_scope(scope)
        .select_related("unit__property")
        .annotate(
            last_reading_at=Subquery(
                Reading.objects.filter(meter=OuterRef("pk"))
                .order_by("-taken_at")
                .values("taken_at")[:1]
            ),
            pending_close=_active_command("close"),
        )
        .order_by("serial", "pk")
    )
    if property is not None:
        meters = meters.filter(unit__property=property)
    if utility:
        meters = meters.filter(utility=utility)
    if online == Online.ONLINE:
        meters = meters.filter(online=True)
    elif online == Online.OFFLINE:
        meters = meters.filter(online=False)
    elif online == Online.UNKNOWN:
        meters = meters.filter(online__isnull=True)
    if relay == Relay.OPEN:
        meters = meters.filter(has_relay=True, relay_closed=False)
    elif relay == Relay.CLOSED:
        meters = meters.filter(has_relay=True, relay_closed=True)
    elif relay == Relay.PENDING:
        meters = meters.filter(pending_close__isnull=False)
    if q:
        meters = meters.filter(Q(serial__icontains=q) | Q(unit__name__icontains=q))
    return meters


def meter_page_queryset() -> QuerySet[Meter]:
    """What the meter page fetches its meter from (through the caller's scope), with what the
    page shows of it."""
    return Meter.objects.select_related(
        "unit__property", "gateway", "profile", "mqtt_device", "feeder__unit"
    ).annotate(pending_close=_active_command("close"))


def meter_latest_reading(*, meter: Meter) -> Reading | None:
    return Reading.objects.filter(meter=meter).order_by("-taken_at").first()


def meter_readings(*, meter: Meter) -> QuerySet[Reading]:
    """Every reading of the meter, newest first, with the verdict of charging on each."""
    return Reading.objects.filter(meter=meter).order_by("-taken_at", "-pk")


def meter_commands(*, meter: Meter, limit: int = 10) -> list[RelayCommand]:
    """The latest relay commands of the meter, newest first."""
    return list(
        RelayCommand.objects.filter(meter=meter)
        .select_related("actor")
        .order_by("-created_at", "-pk")[:limit]
    )


def meter_active_command(*, meter: Meter) -> RelayCommand | None:
    return RelayCommand.objects.filter(meter=meter, state__in=RelayCommand.ACTIVE).first()


def meter_rejections(*, meter: Meter) -> list[MeterRejection]:
    """What the meter sent that could not be used, counted per reason."""
    return list(MeterRejection.objects.filter(meter=meter).order_by("-last_at"))


def meter_mqtt_rejections(*, meter: Meter) -> list[MqttRejection]:
    """Messages of the meter's MQTT device that were dropped, counted per reason."""
    if meter.mqtt_device_id is None:
        return []
    return list(MqttRejection.objects.filter(device_id=meter.mqtt_device_id).order_by("-last_at"))


def meter_alarms(*, scope: Scope, meter: Meter, limit: int = 20) -> list[Alarm]:
    """The meter's alarms, the open ones first, then the latest closed ones."""
    return list(
        _alarm_rows(Alarm.objects.for_scope(scope).filter(meter=meter)).order_by(
            "-closed_at", "-opened_at"
        )[:limit]
    )


def meter_open_account(*, scope: Scope, meter: Meter) -> Account | None:
    """The open account of the unit the meter is installed in, if any."""
    if meter.unit_id is None or meter.removed_at is not None:
        return None
    return (
        Account.objects.for_scope(scope)
        .filter(unit_id=meter.unit_id, status=Account.Status.OPEN)
        .select_related("tenant")
        .first()
    )


# Consumption -------------------------------------------------------------------------------------


class ChartPeriod(StrEnum):
    HOURS = "hours"  # hourly over the last 48 hours
    DAYS = "days"  # daily over the last 30 days


BUCKETS = {ChartPeriod.HOURS: 48, ChartPeriod.DAYS: 30}


@dataclass(frozen=True)
class Bucket:
    start: datetime  # in the property's local time
    quantity: Decimal


@dataclass(frozen=True)
class Consumption:
    period: ChartPeriod
    unit: str
    zone: str
    buckets: list[Bucket]

    @property
    def total(self) -> Decimal:
        return sum((bucket.quantity for bucket in self.buckets), Decimal(0))


def _bucket_starts(period: ChartPeriod, now: datetime, zone: zoneinfo.ZoneInfo) -> list[datetime]:
    """The local starts of the period's buckets, oldest first, the current one last."""
    local = now.astimezone(zone)
    count = BUCKETS[period]
    if period == ChartPeriod.HOURS:
        # Hours are counted in UTC so that a daylight-saving change neither skips nor
        # repeats one; each is then shown at its local time.
        this_hour = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        return [(this_hour - timedelta(hours=n)).astimezone(zone) for n in range(count - 1, -1, -1)]
    today = local.date()
    days = [today - timedelta(days=n) for n in range(count - 1, -1, -1)]
    return [_local_midnight(day, zone) for day in days]


def _local_midnight(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _step(meter: Meter, before: Decimal, after: Decimal) -> Decimal:
    """Consumption between two register values, across a rollover of the register."""
    used = after - before
    if used < 0 and meter.register_rollover:
        used += meter.register_rollover
    return max(used, Decimal(0))


def meter_consumption(
    *, meter: Meter, period: ChartPeriod, now: datetime | None = None
) -> Consumption:
    """Consumption per local hour (last 48 h) or local day (last 30 days), from the register
    readings that were not rejected as anomalies. A bucket holds what the register advanced
    by up to its last reading, so the use of hours without readings shows in the next hour
    that has one."""
    now = now or timezone.now()
    zone = meter_zone(meter)
    starts = _bucket_starts(period, now, zone)
    since = starts[0]
    usable = Reading.objects.filter(meter=meter).exclude(status=Reading.Status.REJECTED)
    trunc = TruncHour if period == ChartPeriod.HOURS else TruncDay
    # Each bucket's last reading time, then those readings: plain GROUP BY, which SQLite (the
    # demo) runs as well as PostgreSQL.
    last_taken = dict(
        usable.filter(taken_at__gte=since, taken_at__lte=now)
        .annotate(bucket=trunc("taken_at", tzinfo=zone))
        .order_by()
        .values("bucket")
        .annotate(last=Max("taken_at"))
        .values_list("bucket", "last")
    )
    registers = dict(
        usable.filter(taken_at__in=last_taken.values()).values_list("taken_at", "register")
    )
    last_per_bucket = {
        bucket.astimezone(UTC): registers[last] for bucket, last in last_taken.items()
    }
    baseline = (
        usable.filter(taken_at__lt=since).order_by("-taken_at").values_list("register", flat=True)
    ).first()
    if baseline is None and last_per_bucket:
        baseline = (
            usable.filter(taken_at__gte=since)
            .order_by("taken_at")
            .values_list("register", flat=True)
            .first()
        )
    buckets = []
    previous = baseline
    for start in starts:
        register = last_per_bucket.get(start.astimezone(UTC))
        quantity = Decimal(0)
        if register is not None:
            if previous is not None:
                quantity = _step(meter, previous, register)
            previous = register
        buckets.append(Bucket(start=start, quantity=quantity))
    return Consumption(period=period, unit=meter.register_unit, zone=str(zone), buckets=buckets)


def consumption_chart_data(consumption: Consumption) -> dict:
    """What static/js/meter-chart.js draws: bucket starts in Unix seconds and the quantities
    as decimal strings (numbers for a chart, never money)."""
    return {
        "period": consumption.period,
        "zone": consumption.zone,
        "unit": consumption.unit,
        "x": [int(bucket.start.timestamp()) for bucket in consumption.buckets],
        "y": [f"{bucket.quantity:f}" for bucket in consumption.buckets],
    }


# Alarms ------------------------------------------------------------------------------------------


class AlarmState(StrEnum):
    OPEN = "open"  # not resolved, acknowledged or not
    UNACKNOWLEDGED = "unacknowledged"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    ALL = "all"


def _alarm_rows(alarms: QuerySet[Alarm]) -> QuerySet[Alarm]:
    return alarms.select_related("property", "meter__unit__property", "acknowledged_by")


def alarm_row_queryset() -> QuerySet[Alarm]:
    """What an alarm's row is fetched from (through the caller's scope)."""
    return _alarm_rows(Alarm.objects.all())


def alarms_for_inbox(
    *,
    scope: Scope,
    property: Property | None = None,
    kind: str = "",
    severity: str = "",
    state: str = "",
) -> QuerySet[Alarm]:
    """The alarms in the caller's scope, the open ones unless another state is asked for,
    gravest first, then newest."""
    alarms = _alarm_rows(Alarm.objects.for_scope(scope))
    state = state or AlarmState.OPEN
    if state == AlarmState.OPEN:
        alarms = alarms.filter(closed_at__isnull=True)
    elif state == AlarmState.UNACKNOWLEDGED:
        alarms = alarms.filter(closed_at__isnull=True, acknowledged_at__isnull=True)
    elif state == AlarmState.ACKNOWLEDGED:
        alarms = alarms.filter(closed_at__isnull=True, acknowledged_at__isnull=False)
    elif state == AlarmState.RESOLVED:
        alarms = alarms.filter(closed_at__isnull=False)
    if property is not None:
        alarms = alarms.filter(property=property)
    if kind:
        alarms = alarms.filter(kind=kind)
    if severity:
        alarms = alarms.filter(severity=severity)
    return alarms.order_by(_gravity(), "-opened_at", "-pk")


def _gravity() -> Case:
    order = [Alarm.Severity.CRITICAL, Alarm.Severity.WARNING, Alarm.Severity.INFO]
    return Case(
        *(When(severity=value, then=Value(rank)) for rank, value in enumerate(order)),
        default=Value(len(order)),
        output_field=IntegerField(),
    )
