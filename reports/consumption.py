"""What the meters measured: consumption by unit and local month, consumption while units stood
vacant, and the readings charging refused or that wrapped round.

Consumption comes from the daily freeze's meter rows (`MeterFreeze`), not from charges. A frozen
day runs exactly from one local midnight to the next, so a month is the sum of its days and
ties to the frozen registers; it holds everything the unit's meters measured, occupied or not
(charges only cover occupied time, and a charge spans whatever interval two readings made, which
straddles midnights and month ends). A unit's row adds up all its meters of a utility, so a
meter replaced during the month loses nothing. The tenants' share of it is in the daily freeze
report (`DailyFreeze.electricity` and `.water`); the rest is vacant consumption.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from decimal import Decimal

from django.db.models import Count, DecimalField, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, TruncMonth
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing.models import MeterFreeze
from meters.models import Meter, Reading, VacantConsumption
from reports.base import Chart, Column, Filters, Kind, Report, Series, Value

ZERO = Decimal(0)
ELECTRICITY, WATER = Meter.Utility.ELECTRICITY, Meter.Utility.WATER
CHUNK = 2000


def _window(queryset: QuerySet, offset: int, limit: int | None) -> QuerySet:
    return queryset[offset : None if limit is None else offset + limit]


def _months(start: date, end: date) -> list[date]:
    months, month = [], start.replace(day=1)
    while month <= end:
        months.append(month)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return months


def month_label(month: date) -> str:
    return f"{month:%Y-%m}"


def _sum(field: str, utility: str):
    return Coalesce(
        Sum(field, filter=Q(meter__utility=utility)),
        ZERO,
        output_field=DecimalField(max_digits=30, decimal_places=6),
    )


class ConsumptionReport(Report):
    slug = "consumption"
    title = gettext_lazy("Consumption by unit and month")
    description = gettext_lazy(
        "What each unit's meters measured in each local month of the range, occupied or vacant, "
        "from the registers frozen at every local midnight."
    )

    def columns(self, filters: Filters) -> Sequence[Column]:
        return [
            Column("unit", _("Unit")),
            Column("month", _("Month")),
            Column("electricity", _("Electricity (kWh)"), Kind.QUANTITY),
            Column("water", _("Water (m³)"), Kind.QUANTITY),
            Column("estimated_days", _("Estimated meter-days"), Kind.INTEGER),
        ]

    def _days(self, filters: Filters) -> QuerySet:
        return MeterFreeze.objects.filter(
            property=filters.property, day__gte=filters.start, day__lte=filters.end
        )

    def _grouped(self, filters: Filters) -> QuerySet:
        return (
            self._days(filters)
            .annotate(month=TruncMonth("day"))
            .values("meter__unit__name", "meter__unit_id", "month")
            .annotate(
                electricity=_sum("consumption", ELECTRICITY),
                water=_sum("consumption", WATER),
                estimated_days=Count("pk", filter=Q(estimated=True)),
            )
            .order_by("meter__unit__name", "meter__unit_id", "month")
        )

    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Value]]:
        grouped = _window(self._grouped(filters), offset, limit)
        for row in grouped.iterator(chunk_size=CHUNK):
            yield (
                row["meter__unit__name"],
                month_label(row["month"]),
                row["electricity"],
                row["water"],
                row["estimated_days"],
            )

    def count(self, filters: Filters) -> int:
        return self._grouped(filters).count()

    def totals(self, filters: Filters) -> Sequence[Value] | None:
        totals = self._days(filters).aggregate(
            electricity=_sum("consumption", ELECTRICITY),
            water=_sum("consumption", WATER),
            estimated_days=Count("pk", filter=Q(estimated=True)),
        )
        return (
            _("Total"),
            None,
            totals["electricity"],
            totals["water"],
            totals["estimated_days"],
        )

    def chart(self, filters: Filters) -> Chart | None:
        found = {
            (row["month"], row["meter__utility"]): row["total"]
            for row in self._days(filters)
            .annotate(month=TruncMonth("day"))
            .values("month", "meter__utility")
            .annotate(total=Sum("consumption"))
            .order_by()
        }
        months = _months(filters.start, filters.end)
        return Chart(
            labels=[month_label(month) for month in months],
            series=[
                Series(label, [found.get((month, utility), ZERO) for month in months])
                for utility, label in (
                    (ELECTRICITY, gettext_lazy("Electricity (kWh)")),
                    (WATER, gettext_lazy("Water (m³)")),
                )
            ],
            style="bars",
        )


class VacantConsumptionReport(Report):
    slug = "vacant-consumption"
    title = gettext_lazy("Vacant-unit consumption")
    description = gettext_lazy(
        "What meters measured while no tenant occupied their unit: nobody was charged for it. "
        "A span belongs to the day it ended."
    )

    def columns(self, filters: Filters) -> Sequence[Column]:
        return [
            Column("unit", _("Unit")),
            Column("meter", _("Meter")),
            Column("period_start", _("From"), Kind.DATETIME),
            Column("period_end", _("To"), Kind.DATETIME),
            Column("electricity", _("Electricity (kWh)"), Kind.QUANTITY),
            Column("water", _("Water (m³)"), Kind.QUANTITY),
        ]

    def _spans(self, filters: Filters) -> QuerySet:
        return VacantConsumption.objects.filter(
            meter__unit__property=filters.property,
            period_end__gt=filters.start_at,
            period_end__lte=filters.end_at,
        )

    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Value]]:
        spans = self._spans(filters).order_by("period_end", "meter__serial", "pk")
        fields = (
            "meter__unit__name",
            "meter__serial",
            "meter__utility",
            "period_start",
            "period_end",
            "quantity",
        )
        for unit, serial, utility, start, end, quantity in _window(
            spans.values_list(*fields), offset, limit
        ).iterator(chunk_size=CHUNK):
            electric = utility == ELECTRICITY
            yield (
                unit,
                serial,
                start,
                end,
                quantity if electric else None,
                None if electric else quantity,
            )

    def count(self, filters: Filters) -> int:
        return self._spans(filters).count()

    def totals(self, filters: Filters) -> Sequence[Value] | None:
        totals = self._spans(filters).aggregate(
            electricity=_sum("quantity", ELECTRICITY), water=_sum("quantity", WATER)
        )
        return (_("Total"), None, None, None, totals["electricity"], totals["water"])


# What charging writes at the start of a rejected reading's reason (billing.charging._classify),
# and what it is called in the report.
REJECTION_KINDS = {
    "implausible jump": gettext_lazy("Implausible jump"),
    "register went backwards": gettext_lazy("Register went backwards"),
    "taken while the meter was not installed": gettext_lazy("Taken while not installed"),
}


def anomaly_kind(status: str, reason: str) -> str:
    """What went wrong, in the reader's language: a rollover, or why charging rejected it."""
    if status != Reading.Status.REJECTED:
        return _("Register rolled over")
    for prefix, label in REJECTION_KINDS.items():
        if reason.startswith(prefix):
            return str(label)
    return _("Rejected")


class AnomaliesReport(Report):
    slug = "anomalies"
    title = gettext_lazy("Reading anomalies")
    description = gettext_lazy(
        "Readings charging rejected (implausible jumps, registers going backwards, readings "
        "taken while a meter was not installed) and accepted readings where a register wrapped "
        "round past its rollover value."
    )

    def columns(self, filters: Filters) -> Sequence[Column]:
        return [
            Column("taken_at", _("Taken"), Kind.DATETIME),
            Column("meter", _("Meter")),
            Column("unit", _("Unit")),
            Column("register", _("Register"), Kind.QUANTITY),
            Column("previous", _("Previous accepted register"), Kind.QUANTITY),
            Column("kind", _("Anomaly")),
            Column("reason", _("Details")),
        ]

    def _readings(self, filters: Filters) -> QuerySet:
        previous = (
            Reading.objects.filter(
                meter_id=OuterRef("meter_id"),
                status=Reading.Status.ACCEPTED,
                taken_at__lt=OuterRef("taken_at"),
            )
            .order_by("-taken_at")
            .values("register")[:1]
        )
        in_range = Reading.objects.filter(
            meter__unit__property=filters.property,
            taken_at__gte=filters.start_at,
            taken_at__lt=filters.end_at,
        )
        # Only a meter with a rollover value can have an accepted reading below the last one.
        rolled = in_range.filter(
            status=Reading.Status.ACCEPTED, meter__register_rollover__isnull=False
        ).annotate(previous=Subquery(previous))
        return (
            in_range.filter(status=Reading.Status.REJECTED)
            .annotate(previous=Subquery(previous))
            .union(rolled.filter(register__lt=F("previous")), all=True)
        )

    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Value]]:
        fields = (
            "taken_at",
            "meter__serial",
            "meter__unit__name",
            "register",
            "previous",
            "status",
            "reason",
            "meter__register_rollover",
            "pk",
        )
        readings = self._readings(filters).values_list(*fields).order_by("taken_at", "pk")
        for taken_at, serial, unit, register, previous, status, reason, wrap, _pk in _window(
            readings, offset, limit
        ).iterator(chunk_size=CHUNK):
            if status != Reading.Status.REJECTED:
                reason = _("Wrapped round at %(rollover)s.") % {"rollover": f"{wrap.normalize():f}"}
            yield (
                taken_at,
                serial,
                unit,
                register,
                previous,
                anomaly_kind(status, reason),
                reason,
            )

    def count(self, filters: Filters) -> int:
        return self._readings(filters).count()


REPORTS: list[Report] = [ConsumptionReport(), VacantConsumptionReport(), AnomaliesReport()]
