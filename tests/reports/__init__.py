"""Reports made for the tests of the generic report pages and exports, independent of the real
reports in the catalogue: `SyntheticReport` makes its rows up as they are read (every column
kind, any number of rows, no queries), `FreezeReport` reads DailyFreeze rows."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import F
from django.utils.translation import gettext_lazy as _

from billing.models import DailyFreeze
from reports.base import Chart, Column, Filters, Kind, Report, Series

# Half past midnight UTC: half past eight in Shanghai.
FIRST_MOMENT = datetime(2026, 1, 5, 0, 30, tzinfo=UTC)


class SyntheticReport(Report):
    """`size` rows, each made when it is read: row i has i as its count and i + 0.25 as its
    amount, so the totals are known."""

    slug = "synthetic"
    title = "Synthetic rows"
    description = "Rows made up as they are read."

    def __init__(self, size: int = 120, *, name: str = "Row", chart: bool = True):
        self.size = size
        self.name = name
        self.with_chart = chart
        self.calls: list[tuple[int, int | None]] = []

    def columns(self, filters: Filters):
        return [
            Column("name", "名称", Kind.TEXT),
            Column("count", _("Property"), Kind.INTEGER),
            Column("amount", "金额", Kind.MONEY),
            Column("energy", "电量 (kWh)", Kind.QUANTITY),
            Column("share", "占比", Kind.PERCENT),
            Column("day", "日期", Kind.DATE),
            Column("at", "时间", Kind.DATETIME),
        ]

    def row(self, filters: Filters, index: int):
        return (
            f"{self.name} {index:06d}",
            index,
            Decimal(index) + Decimal("0.25"),
            Decimal("1.234567"),
            Decimal("0.125"),
            filters.start + timedelta(days=index % filters.days),
            FIRST_MOMENT + timedelta(minutes=index),
        )

    def rows(self, filters: Filters, *, offset: int = 0, limit: int | None = None) -> Iterator:
        self.calls.append((offset, limit))
        stop = self.size if limit is None else min(self.size, offset + limit)
        for index in range(offset, stop):
            yield self.row(filters, index)

    def count(self, filters: Filters) -> int:
        return self.size

    def totals(self, filters: Filters):
        counts = self.size * (self.size - 1) // 2
        return (None, counts, Decimal(counts) + Decimal("0.25") * self.size, None, None, None, None)

    def chart(self, filters: Filters):
        if not self.with_chart:
            return None
        return Chart(
            labels=["一月", "二月"], series=[Series("金额", [Decimal("1.50"), None])], unit="CNY"
        )


class FreezeReport(Report):
    """The daily freeze rows of the property's days, by day and unit."""

    slug = "freeze-rows"
    title = "Freeze rows"

    def columns(self, filters: Filters):
        return [
            Column("unit", "Unit", Kind.TEXT),
            Column("day", "Day", Kind.DATE),
            Column("opening", "Opening", Kind.MONEY),
            Column("topups", "Top-ups", Kind.MONEY),
            Column("closing", "Closing", Kind.MONEY),
            Column("electricity", "kWh", Kind.QUANTITY),
        ]

    def _queryset(self, filters: Filters):
        return DailyFreeze.objects.filter(
            property=filters.property, day__gte=filters.start, day__lte=filters.end
        )

    def rows(self, filters: Filters, *, offset: int = 0, limit: int | None = None):
        rows = (
            self._queryset(filters)
            .order_by("day", "account_id")
            .values_list(
                F("account__unit__name"),
                "day",
                "opening_balance",
                "topups",
                "closing_balance",
                "electricity",
            )
        )
        window = rows[offset : offset + limit] if limit is not None else rows[offset:]
        return window.iterator(chunk_size=2000)

    def count(self, filters: Filters) -> int:
        return self._queryset(filters).count()
