"""Estimated carbon emissions: each account's electricity by local month, times the property's
grid emission factor (`Property.carbon_kg_per_kwh`, kilograms of CO₂ per kWh).

The electricity is each account's share of what its unit's meters measured, from the daily
freeze (`DailyFreeze.electricity`, pro rata by time on move-in and move-out days), so a month is
the sum of its local days and ties to the daily freeze report. The emissions are exact Decimal
products rounded half to even to 0.01 kg; the totals row rounds the exact total, so it can
differ from the sum of the rounded rows by a few hundredths.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from django.db.models import DecimalField, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncMonth
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing.models import DailyFreeze
from reports.base import Chart, Column, Filters, Kind, Report, Series, Value

KG_PLACES = Decimal("0.01")
CHUNK = 2000
_ZERO = Decimal(0)


def emissions_kg(kwh: Decimal, factor: Decimal) -> Decimal:
    """Kilograms of CO₂ for `kwh` at `factor` kg per kWh, to 0.01 kg."""
    return (kwh * factor).quantize(KG_PLACES, rounding=ROUND_HALF_EVEN)


def _month_label(month: date) -> str:
    return f"{month:%Y-%m}"


def _months(start: date, end: date) -> list[date]:
    months, month = [], start.replace(day=1)
    while month <= end:
        months.append(month)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return months


def _electricity():
    return Coalesce(
        Sum("electricity"), _ZERO, output_field=DecimalField(max_digits=30, decimal_places=6)
    )


class CarbonReport(Report):
    slug = "carbon"
    title = gettext_lazy("Carbon emissions by account and month")
    description = gettext_lazy(
        "Estimated CO₂ from each account's electricity in each local month of the range: the "
        "electricity its unit's meters measured while it was open, from the daily freeze, times "
        "the property's grid emission factor. The totals are the property's."
    )

    def columns(self, filters: Filters) -> Sequence[Column]:
        return [
            Column("unit", _("Unit")),
            Column("tenant", _("Tenant")),
            Column("month", _("Month")),
            Column("electricity", _("Electricity (kWh)"), Kind.QUANTITY),
            Column("emissions", _("Emissions (kg CO₂)"), Kind.QUANTITY),
        ]

    def _days(self, filters: Filters) -> QuerySet:
        return DailyFreeze.objects.filter(
            property=filters.property, day__gte=filters.start, day__lte=filters.end
        )

    def _grouped(self, filters: Filters) -> QuerySet:
        return (
            self._days(filters)
            .annotate(month=TruncMonth("day"))
            .values("account__unit__name", "account_id", "account__tenant__name", "month")
            .annotate(electricity=_electricity())
            .order_by("account__unit__name", "account_id", "month")
        )

    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Value]]:
        factor = filters.property.carbon_kg_per_kwh
        grouped = self._grouped(filters)[offset : None if limit is None else offset + limit]
        for row in grouped.iterator(chunk_size=CHUNK):
            yield (
                row["account__unit__name"],
                row["account__tenant__name"],
                _month_label(row["month"]),
                row["electricity"],
                emissions_kg(row["electricity"], factor),
            )

    def count(self, filters: Filters) -> int:
        return self._grouped(filters).count()

    def totals(self, filters: Filters) -> Sequence[Value] | None:
        total = self._days(filters).aggregate(electricity=_electricity())["electricity"]
        factor = filters.property.carbon_kg_per_kwh
        return (_("Total"), None, None, total, emissions_kg(total, factor))

    def chart(self, filters: Filters) -> Chart | None:
        factor = filters.property.carbon_kg_per_kwh
        found = {
            row["month"]: row["electricity"]
            for row in self._days(filters)
            .annotate(month=TruncMonth("day"))
            .values("month")
            .annotate(electricity=_electricity())
            .order_by()
        }
        months = _months(filters.start, filters.end)
        return Chart(
            labels=[_month_label(month) for month in months],
            series=[
                Series(
                    gettext_lazy("Emissions (kg CO₂)"),
                    [emissions_kg(found.get(month, _ZERO), factor) for month in months],
                )
            ],
            unit="kg CO₂",
            style="bars",
        )


REPORTS: list[Report] = [CarbonReport()]
