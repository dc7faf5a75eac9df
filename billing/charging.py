"""Turning meter readings into charges: set-based, idempotent, and exact.

A charge run takes meters with new readings in batches. For each batch it locks the meters'
charge cursors (skipping meters another worker holds), reads all their new readings in one
query, classifies each reading against the last accepted one (accepted, rejected as an anomaly
with a reason, or late), splits the accepted consumption between the tenant accounts that
occupied the unit (the rest is vacant consumption), prices it with the tariff engine, and posts
all the charges through `charges_post` in bulk. Readings, cursors, tier counters and charges all
change in one transaction, so a retry or a crash never charges a reading twice.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from accounts.models import Account, Property
from accounts.selectors import holiday_calendar
from billing.models import Charge, ChargeCursor, TierUsage
from billing.services import ChargeInput, charges_post
from meters.models import Meter, Reading, VacantConsumption
from meters.rejections import meter_rejections_count
from tariffs import pricing
from tariffs.models import Tariff
from tariffs.selectors import tariff_schedule

logger = logging.getLogger(__name__)

REGISTER_PLACES = Decimal("0.000001")
HOUR = Decimal(3600)


@dataclass
class ChargeRun:
    meters: int = 0
    accepted: int = 0
    rejected: int = 0
    late: int = 0
    charges: int = 0
    untariffed: int = 0

    def add(self, other: ChargeRun) -> None:
        self.untariffed += other.untariffed
        self.meters += other.meters
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.late += other.late
        self.charges += other.charges


@dataclass
class _Span:
    """Accepted consumption of one meter: points of (time, cumulative consumption)."""

    points: list[tuple[datetime, Decimal]] = field(default_factory=list)


def meters_with_new_readings(*, after: int, limit: int) -> list[int]:
    return list(
        Reading.objects.filter(status=Reading.Status.NEW, meter_id__gt=after)
        .order_by("meter_id")
        .values_list("meter_id", flat=True)
        .distinct()[:limit]
    )


def charge_new_readings(*, batch_size: int = 1000) -> ChargeRun:
    """Charge every new reading, a batch of meters per transaction, visiting each meter once.

    Meters another worker is charging are left to it; meters without a tariff keep their
    readings new until one exists.
    """
    total = ChargeRun()
    after = 0
    while batch := meters_with_new_readings(after=after, limit=batch_size):
        total.add(charge_meters(meter_ids=batch))
        after = batch[-1]
    return total


@transaction.atomic
def charge_meters(*, meter_ids: Sequence[int], skip_locked: bool = True) -> ChargeRun:
    """Charge the new readings of these meters; meters another worker is charging are skipped
    unless `skip_locked` is off, when this waits for them."""
    ChargeCursor.objects.bulk_create(
        [ChargeCursor(meter_id=meter_id) for meter_id in meter_ids], ignore_conflicts=True
    )
    cursors = {
        cursor.meter_id: cursor
        for cursor in ChargeCursor.objects.select_for_update(skip_locked=skip_locked)
        .filter(meter_id__in=meter_ids)
        .order_by("meter_id")
    }
    run = ChargeRun(meters=len(cursors))
    if not cursors:
        return run
    meters = Meter.objects.select_related("unit__property").in_bulk(list(cursors))
    pricer = _Pricer(meters.values())
    for meter_id, meter in list(meters.items()):
        if meter.unit_id and not pricer.has_tariff(meter):
            logger.warning("Meter %s has no tariff; its readings wait for one.", meter_id)
            run.untariffed += 1
            del meters[meter_id], cursors[meter_id]
    readings: dict[int, list[tuple]] = defaultdict(list)
    for row in (
        Reading.objects.filter(meter_id__in=list(meters), status=Reading.Status.NEW)
        .order_by("meter_id", "taken_at")
        .values_list("id", "meter_id", "taken_at", "register")
    ):
        readings[row[1]].append(row)

    verdicts: dict[str, list[int]] = defaultdict(list)
    rejections: list[tuple[int, str]] = []
    rejection_counts: Counter[tuple[int, str]] = Counter()
    spans: dict[int, _Span] = {}
    for meter_id, rows in readings.items():
        span, accepted, rejected, late = _classify(meters[meter_id], cursors[meter_id], rows)
        spans[meter_id] = span
        verdicts[Reading.Status.ACCEPTED] += accepted
        verdicts[Reading.Status.LATE] += late
        rejections += [(reading_id, category + detail) for reading_id, category, detail in rejected]
        rejection_counts.update((meter_id, category) for _, category, _ in rejected)
    run.accepted = len(verdicts[Reading.Status.ACCEPTED])
    run.late = len(verdicts[Reading.Status.LATE])
    run.rejected = len(rejections)

    charges: list[ChargeInput] = []
    vacant: list[VacantConsumption] = []
    for meter_id, span in spans.items():
        if len(span.points) < 2:
            continue
        meter = meters[meter_id]
        for account, points in _by_account(span.points, pricer.occupancy(meter.unit_id)):
            if account is None:
                vacant.append(
                    VacantConsumption(
                        meter_id=meter_id,
                        period_start=points[0][0],
                        period_end=points[-1][0],
                        quantity=points[-1][1] - points[0][1],
                    )
                )
            else:
                charges.append(pricer.price(meter, account, points))

    posted = charges_post(charges=charges)
    run.charges = len(posted)
    pricer.save_tier_usage()
    VacantConsumption.objects.bulk_create(vacant, ignore_conflicts=True)
    for status, ids in verdicts.items():
        Reading.objects.filter(id__in=ids).update(status=status)
    meter_rejections_count(counts=rejection_counts, now=timezone.now())
    if rejections:
        rows = [
            Reading(id=reading_id, status=Reading.Status.REJECTED, reason=reason)
            for reading_id, reason in rejections
        ]
        Reading.objects.bulk_update(rows, ["status", "reason"], batch_size=1000)
    ChargeCursor.objects.bulk_update(
        list(cursors.values()), ["taken_at", "register"], batch_size=1000
    )
    return run


def _classify(meter: Meter, cursor: ChargeCursor, rows: list[tuple]):
    """Walk a meter's new readings in time order against its last accepted reading."""
    span = _Span()
    accepted: list[int] = []
    rejected: list[tuple[int, str, str]] = []
    late: list[int] = []
    consumed = Decimal(0)
    if cursor.taken_at is not None:
        span.points.append((cursor.taken_at, consumed))
    limit = meter.plausible_per_hour
    for reading_id, _, taken_at, register in rows:
        if (
            meter.installed_at is None
            or taken_at < meter.installed_at
            or (meter.removed_at is not None and taken_at > meter.removed_at)
        ):
            rejected.append((reading_id, "taken while the meter was not installed", ""))
            continue
        if cursor.taken_at is None:
            # The first reading is the baseline consumption is measured from.
            cursor.taken_at, cursor.register = taken_at, register
            span.points.append((taken_at, consumed))
            accepted.append(reading_id)
            continue
        if taken_at <= cursor.taken_at:
            late.append(reading_id)
            continue
        delta = register - cursor.register
        if delta < 0:
            wrap = meter.register_rollover
            if wrap is None or cursor.register >= wrap:
                rejected.append(
                    (
                        reading_id,
                        "register went backwards",
                        f" from {cursor.register} to {register}",
                    )
                )
                continue
            delta = wrap - cursor.register + register
        hours = Decimal((taken_at - cursor.taken_at).total_seconds()) / HOUR
        if delta > limit * hours:
            rejected.append(
                (
                    reading_id,
                    "implausible jump",
                    f" of {delta} in {hours:.2f} h (limit {limit} per hour)",
                )
            )
            continue
        consumed += delta
        cursor.taken_at, cursor.register = taken_at, register
        span.points.append((taken_at, consumed))
        accepted.append(reading_id)
    return span, accepted, rejected, late


def _by_account(points, occupancy: list[tuple[datetime, datetime | None, Account]]):
    """Split a run of points at move-ins and move-outs, yielding (account or None, points)."""
    boundaries = sorted(
        {moment for opened, closed, _ in occupancy for moment in (opened, closed) if moment}
    )
    start, end = points[0][0], points[-1][0]
    # A reading taken exactly at a move-in or move-out is already the cut.
    taken = {point[0] for point in points}
    cuts = [moment for moment in boundaries if start < moment < end and moment not in taken]
    series = list(points)
    for moment in cuts:
        series.append((moment, _interpolate(points, moment)))
    series.sort(key=lambda point: point[0])
    pieces: list[tuple[Account | None, list]] = []
    for point_start, point_end in pairwise(series):
        account = _occupant(occupancy, point_start[0], point_end[0])
        if pieces and pieces[-1][0] is account:
            pieces[-1][1].append(point_end)
        else:
            pieces.append((account, [point_start, point_end]))
    return pieces


def _interpolate(points, moment: datetime) -> Decimal:
    times = [point[0] for point in points]
    index = bisect_right(times, moment)
    (t0, c0), (t1, c1) = points[index - 1], points[index]
    share = Decimal((moment - t0).total_seconds()) / Decimal((t1 - t0).total_seconds())
    return (c0 + (c1 - c0) * share).quantize(REGISTER_PLACES)


def _occupant(occupancy, start: datetime, end: datetime) -> Account | None:
    for opened, closed, account in occupancy:
        if opened <= start and (closed is None or end <= closed):
            return account
    return None


class _Pricer:
    """Tariffs, holiday calendars, occupancy and tier counters for one batch, each read once."""

    def __init__(self, meters: Iterable[Meter]):
        meters = list(meters)
        properties = {meter.unit.property_id: meter.unit.property for meter in meters if meter.unit}
        unit_ids = {meter.unit_id for meter in meters if meter.unit_id}
        self._occupancy: dict[int, list] = defaultdict(list)
        accounts = Account.objects.filter(unit_id__in=unit_ids).select_related(
            "wallet", "unit__property"
        )
        for account in accounts.order_by("opened_at"):
            self._occupancy[account.unit_id].append((account.opened_at, account.closed_at, account))
        calendars = {pk: holiday_calendar(property=prop) for pk, prop in properties.items()}
        self._schedules: dict[tuple[int, str], pricing.Schedule] = {}
        for tariff in Tariff.objects.filter(property_id__in=properties).prefetch_related(
            "versions"
        ):
            tariff.property = properties[tariff.property_id]
            self._schedules[(tariff.property_id, tariff.utility)] = tariff_schedule(
                tariff=tariff, calendar=calendars[tariff.property_id]
            )
        account_ids = [entry[2].pk for entries in self._occupancy.values() for entry in entries]
        self._usage = {
            (row.account_id, row.utility, row.month): row
            for row in TierUsage.objects.filter(account_id__in=account_ids)
        }
        self._touched: set[tuple[int, str, date]] = set()

    def has_tariff(self, meter: Meter) -> bool:
        return (meter.unit.property_id, meter.utility) in self._schedules

    def occupancy(self, unit_id: int | None) -> list:
        return self._occupancy.get(unit_id, [])

    def price(self, meter: Meter, account: Account, points) -> ChargeInput:
        prop: Property = meter.unit.property
        schedule = self._schedules[(prop.pk, meter.utility)]
        zone: ZoneInfo = schedule.tz
        start, end = points[0][0], points[-1][0]
        month = _month(start, zone)
        usage = self._usage.get((account.pk, meter.utility, month))
        charged = pricing.price_series(
            schedule,
            readings=[(moment, consumed) for moment, consumed in points],
            month_to_date=usage.quantity if usage else Decimal(0),
        )
        self._set_usage(account.pk, meter.utility, _month(end, zone), charged.month_to_date_after)
        return ChargeInput(
            account=account,
            kind=Charge.Kind.ENERGY,
            idempotency_key=f"energy:{meter.pk}:{start.isoformat()}",
            period_start=start,
            period_end=end,
            quantity=points[-1][1] - points[0][1],
            net=charged.net,
            tax=charged.tax,
            meter_id=meter.pk,
            lines=[_line_json(line, meter.register_unit) for line in charged.lines],
        )

    def _set_usage(self, account_id: int, utility: str, month: date, quantity: Decimal) -> None:
        key = (account_id, utility, month)
        row = self._usage.get(key)
        if row is None:
            row = self._usage[key] = TierUsage(account_id=account_id, utility=utility, month=month)
        row.quantity = quantity
        self._touched.add(key)

    def save_tier_usage(self) -> None:
        TierUsage.objects.bulk_create(
            [self._usage[key] for key in self._touched],
            update_conflicts=True,
            unique_fields=["account", "utility", "month"],
            update_fields=["quantity"],
        )


def _month(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date().replace(day=1)


def _line_json(line: pricing.ChargeLine, unit: str = "kWh") -> dict:
    return {
        "explanation": line.explain(unit),
        "start": line.start.isoformat(),
        "end": line.end.isoformat(),
        "period": line.period,
        "day_type": line.day_type,
        "band": line.band,
        "quantity": str(line.quantity),
        "unit_price": str(line.unit_price),
        "net": str(line.net),
        "tax": str(line.tax),
    }


@transaction.atomic
def standing_charges_post(*, property: Property, day: date) -> int:
    """Post each account's standing charges for one local day, pro-rated by occupancy.

    An account pays the standing charge of each utility whose meter served its unit that day.
    Idempotent per account, utility and day. Returns the number of charges newly recorded.
    """
    zone = property.zone
    day_start = pricing.local_midnight(day, zone)
    day_end = pricing.local_midnight(day + timedelta(days=1), zone)
    accounts = list(
        Account.objects.filter(unit__property=property, opened_at__lt=day_end)
        .exclude(closed_at__lte=day_start)
        .select_related("wallet", "unit__property")
    )
    utilities: dict[int, set[str]] = defaultdict(set)
    for unit_id, utility in (
        Meter.objects.filter(unit__property=property, installed_at__lt=day_end)
        .exclude(removed_at__lte=day_start)
        .values_list("unit_id", "utility")
    ):
        utilities[unit_id].add(utility)
    calendar = holiday_calendar(property=property)
    schedules = {
        tariff.utility: tariff_schedule(tariff=tariff, calendar=calendar)
        for tariff in Tariff.objects.filter(property=property).prefetch_related("versions")
    }
    charges = []
    for account in accounts:
        start = max(day_start, account.opened_at)
        end = min(day_end, account.closed_at or day_end)
        for utility in sorted(utilities[account.unit_id] & set(schedules)):
            charges.append(
                standing_charge_input(
                    account=account,
                    utility=utility,
                    day=day,
                    schedule=schedules[utility],
                    start=start,
                    end=end,
                )
            )
    return len(charges_post(charges=charges))


def standing_charge_input(
    *,
    account: Account,
    utility: str,
    day: date,
    schedule: pricing.Schedule,
    start: datetime,
    end: datetime,
) -> ChargeInput:
    """An account's standing charge for one utility over [start, end) within a local day. The
    key is per account, utility and day, so the daily freeze and a move-out never both post it."""
    lines = pricing.standing_charges(schedule, start=start, end=end)
    return ChargeInput(
        account=account,
        kind=Charge.Kind.STANDING,
        idempotency_key=f"standing:{account.pk}:{utility}:{day.isoformat()}",
        period_start=start,
        period_end=end,
        quantity=sum((line.quantity for line in lines), Decimal(0)),
        net=sum((line.net for line in lines), Decimal(0)),
        tax=sum((line.tax for line in lines), Decimal(0)),
        lines=[_line_json(line) for line in lines],
    )


def cursor_start(*, meter: Meter, taken_at: datetime, register: Decimal) -> None:
    """Measure a new meter's consumption from a known reading (its initial reading)."""
    ChargeCursor.objects.create(meter=meter, taken_at=taken_at, register=register)
