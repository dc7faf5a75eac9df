"""Issued postpaid bills: per property and month, what each asked for, what payments met
(the sum of its allocations, `InvoiceAllocation`, so the report ties to them to the cent),
what is still open, and its status. A bill moved to a debt at a switch to prepaid or a move-out
shows nothing open: what it asked for is on the debtors book now.

The range selects bills by their month: every bill of a month with a day in the range.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal

from django.db.models import Case, DecimalField, F, OuterRef, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing.models import Invoice, InvoiceAllocation
from prepaid.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS
from reports.base import Column, Filters, Kind, Report
from reports.base import Value as Cell

ZERO = Decimal(0)
CHUNK = 2000
AMOUNT = DecimalField(max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES)
STATUS_LABELS = {
    Invoice.Status.OPEN: gettext_lazy("Open"),
    Invoice.Status.PAID: gettext_lazy("Paid"),
    Invoice.Status.TRANSFERRED: gettext_lazy("Moved to a debt"),
}
KIND_LABELS = {
    Invoice.Kind.MONTHLY: gettext_lazy("Monthly"),
    Invoice.Kind.FINAL: gettext_lazy("Final"),
}


class InvoicesReport(Report):
    slug = "invoices"
    title = gettext_lazy("Postpaid bills")
    description = gettext_lazy(
        "Every bill issued for the months in the range: what it asked for, what payments met, "
        "what is still open and its status."
    )

    def columns(self, filters: Filters) -> Sequence[Column]:
        return [
            Column("number", _("Bill")),
            Column("month", _("Month"), Kind.DATE),
            Column("kind", _("Kind")),
            Column("tenant", _("Tenant")),
            Column("unit", _("Unit")),
            Column("issued_at", _("Issued"), Kind.DATETIME),
            Column("due_on", _("Due by"), Kind.DATE),
            Column("status", _("Status")),
            Column("amount", _("Amount"), Kind.MONEY),
            Column("paid", _("Paid"), Kind.MONEY),
            Column("open", _("Open"), Kind.MONEY),
        ]

    def _bills(self, filters: Filters) -> QuerySet:
        allocated = (
            InvoiceAllocation.objects.filter(invoice_id=OuterRef("pk"))
            .values("invoice_id")
            .annotate(total=Sum("amount"))
            .values("total")
        )
        return (
            Invoice.objects.filter(
                property=filters.property,
                month__gte=filters.start.replace(day=1),
                month__lte=filters.end,
            )
            .annotate(
                allocated=Coalesce(Subquery(allocated, output_field=AMOUNT), Value(ZERO)),
                open=Case(
                    When(status=Invoice.Status.OPEN, then=F("amount") - F("allocated")),
                    default=Value(ZERO),
                    output_field=AMOUNT,
                ),
            )
            .order_by("month", "number")
        )

    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Cell]]:
        bills = self._bills(filters)[offset : None if limit is None else offset + limit]
        code = filters.property.code
        for row in bills.values_list(
            "number",
            "month",
            "kind",
            "account__tenant__name",
            "account__unit__name",
            "issued_at",
            "due_on",
            "status",
            "amount",
            "allocated",
            "open",
        ).iterator(chunk_size=CHUNK):
            number, month, kind, tenant, unit, issued, due, status, *money = row
            yield (
                f"{code}-INV-{number:06d}",
                month,
                str(KIND_LABELS[kind]),
                tenant,
                unit,
                issued,
                due,
                str(STATUS_LABELS[status]),
                *money,
            )

    def count(self, filters: Filters) -> int:
        return self._bills(filters).count()

    def totals(self, filters: Filters) -> Sequence[Cell] | None:
        sums = [ZERO, ZERO, ZERO]
        for row in self.rows(filters):
            for index, amount in enumerate(row[8:]):
                sums[index] += amount
        return (_("Total"), *([None] * 7), *sums)


REPORTS: list[Report] = [InvoicesReport()]
