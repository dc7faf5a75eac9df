"""Debt balances: each debt being recovered at a property, what it was, what has been
recovered and what it still owes, aged from the day it was raised or moved in, as of the end
of the range (or the last frozen day before it, as the arrears report stands).

It ties to the debtors book: its outstanding total plus the former tenants' debts of the
arrears report (move-out transfers not moved into a new tenancy) is minus the book's balance
at the same midnight. The arrears report shows these same debts, one row each, among all
arrears; this report is their own account, with amount and recovery.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from decimal import Decimal
from itertools import islice

from django.db.models import QuerySet
from django.db.models.functions import TruncDate
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing.debts import debts_owed_at
from billing.models import Debt
from prepaid.money import quantize
from reports.arrears import as_of, bucket_of
from reports.base import Column, Filters, Kind, Report
from reports.base import Value as Cell

ZERO = Decimal(0)
CHUNK = 2000


def _source_labels() -> dict[str, str]:
    return {
        Debt.Source.SWITCH_ARREARS: _("Arrears at the switch to prepaid"),
        Debt.Source.MOVE_IN_TRANSFER: _("Moved from an earlier tenancy"),
        Debt.Source.ADJUSTMENT: _("Raised by staff"),
        Debt.Source.EMERGENCY_CREDIT: _("Emergency credit"),
    }


class DebtBalancesReport(Report):
    slug = "debts"
    title = gettext_lazy("Debt balances")
    description = gettext_lazy(
        "Each debt being recovered from top-ups or by instalments: its source, amount, what has "
        "been recovered and what is still owed, aged from the day it was raised, as of the end "
        "of the range (or the last frozen day before it)."
    )

    def columns(self, filters: Filters) -> Sequence[Column]:
        return [
            Column("tenant", _("Tenant")),
            Column("unit", _("Unit")),
            Column("source", _("Source")),
            Column("since", _("Raised"), Kind.DATE),
            Column("age", _("Age in days"), Kind.INTEGER),
            Column("bucket", _("Age")),
            Column("amount", _("Amount"), Kind.MONEY),
            Column("recovered", _("Recovered"), Kind.MONEY),
            Column("outstanding", _("Still owed"), Kind.MONEY),
            Column("as_of", _("As of"), Kind.DATE),
        ]

    def _debts(self, filters: Filters, day: date) -> QuerySet:
        end = filters.local_midnight(day + timedelta(days=1))
        return (
            debts_owed_at(property=filters.property, end=end)
            .annotate(since=TruncDate("created_at", tzinfo=filters.zone))
            .order_by("since", "pk")
        )

    def _all_rows(self, filters: Filters, *, offset: int) -> Iterator[Sequence[Cell]]:
        day = as_of(filters)
        currency = filters.currency
        sources = _source_labels()
        buckets = [_("0 to 30 days"), _("31 to 60 days"), _("61 to 90 days"), _("Over 90 days")]
        for tenant, unit, source, since, amount, recovered, owed in (
            self._debts(filters, day)[offset:]
            .values_list(
                "account__tenant__name",
                "account__unit__name",
                "source",
                "since",
                "amount",
                "recovered_then",
                "owed",
            )
            .iterator(chunk_size=CHUNK)
        ):
            age = (day - since).days
            yield (
                tenant,
                unit,
                sources.get(source, source),
                since,
                age,
                buckets[bucket_of(age)],
                quantize(amount, currency),
                quantize(recovered, currency),
                quantize(owed, currency),
                day,
            )

    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Cell]]:
        rows = self._all_rows(filters, offset=offset)
        return rows if limit is None else islice(rows, limit)

    def count(self, filters: Filters) -> int:
        return self._debts(filters, as_of(filters)).count()

    def totals(self, filters: Filters) -> Sequence[Cell] | None:
        sums = [ZERO, ZERO, ZERO]
        for row in self._all_rows(filters, offset=0):
            for index, amount in enumerate(row[6:9]):
                sums[index] += amount
        return (_("Total"), None, None, None, None, None, *sums, as_of(filters))


REPORTS: list[Report] = [DebtBalancesReport()]
