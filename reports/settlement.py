"""Settlement reports: the reconciliation of providers' files against our payments, and the
payments taken per day and channel with the fees the providers' files report.

Payments by channel reads the ledger: every top-up, refund paid out and top-up reversal posts to
the channel's book (cash on hand, or the channel's clearing account), so its gross, refunds and
reversals are those books' movements for the day, to the cent. Fees are not in the ledger: they
come from the imported settlement lines matched to the property's payments (docs/reconciliation.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from decimal import Decimal

from django import forms
from django.db import connection
from django.db.models import Q, Sum
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing.models import LedgerAccount, LedgerTransaction
from payments.models import OPEN_EXEMPT, ReconciliationItem, SettlementLine, SettlementSource
from payments.reconciliation.matching import DETAILS
from prepaid.money import quantize
from reports.base import Chart, Column, Filters, FiltersForm, Kind, Report, Series, Value

Status = ReconciliationItem.Status


class ReconciliationFiltersForm(FiltersForm):
    status = forms.ChoiceField(label=gettext_lazy("Status"), required=False)
    source = forms.ChoiceField(label=gettext_lazy("File from"), required=False)

    def __init__(self, *args, scope, **kwargs):
        super().__init__(*args, scope=scope, **kwargs)
        self.fields["status"].choices = [
            ("", gettext_lazy("Any status")),
            ("open", gettext_lazy("Open: neither matched nor resolved")),
            *Status.choices,
        ]
        self.fields["source"].choices = [
            ("", gettext_lazy("Any source")),
            *SettlementSource.choices,
        ]
        if scope.property_ids is None:
            # Lines we have no payment for belong to no property: staff who see every property
            # may include them (in the property's currency).
            self.fields["unassigned"] = forms.BooleanField(
                label=gettext_lazy("Include lines that match none of our payments"),
                required=False,
            )


def _money(value: Decimal | None, currency: str) -> Decimal | None:
    return None if value is None else quantize(value, currency)


class ReconciliationReport(Report):
    slug = "reconciliation"
    title = gettext_lazy("Settlement reconciliation")
    description = gettext_lazy(
        "Each line of the imported settlement files beside our payment, refund or bank top-up, "
        "and each of ours the files lack, with its status and how it was resolved."
    )
    form_class = ReconciliationFiltersForm

    def columns(self, filters: Filters) -> Sequence[Column]:
        return [
            Column("occurred_at", _("When"), Kind.DATETIME),
            Column("source", _("File from"), Kind.TEXT),
            Column("status", _("Status"), Kind.TEXT),
            Column("detail", _("Why"), Kind.TEXT),
            Column("kind", _("Line"), Kind.TEXT),
            Column("provider_id", _("Provider's id"), Kind.TEXT),
            Column("reference", _("Our reference"), Kind.TEXT),
            Column("provider_amount", _("Provider's amount"), Kind.MONEY),
            Column("our_amount", _("Our amount"), Kind.MONEY),
            Column("fee", _("Fee charged"), Kind.MONEY),
            Column("expected_fee", _("Fee expected"), Kind.MONEY),
            Column("resolved_at", _("Resolved"), Kind.DATETIME),
            Column("resolved_by", _("Resolved by"), Kind.TEXT),
            Column("note", _("Resolution"), Kind.TEXT),
            Column("file", _("File"), Kind.TEXT),
        ]

    def _items(self, filters: Filters):
        prop = filters.property
        extra = filters.extra
        belongs = Q(property=prop)
        if extra.get("unassigned"):
            belongs |= Q(property__isnull=True, currency=prop.currency)
        items = ReconciliationItem.objects.filter(
            belongs,
            organisation_id=prop.organisation_id,
            occurred_at__gte=filters.start_at,
            occurred_at__lt=filters.end_at,
        )
        status = extra.get("status")
        if status == "open":
            items = items.filter(resolved_at__isnull=True).exclude(status__in=OPEN_EXEMPT)
        elif status:
            items = items.filter(status=status)
        if extra.get("source"):
            items = items.filter(settlement_import__source=extra["source"])
        return items

    _FIELDS = (
        "occurred_at", "settlement_import__source", "status", "detail", "line__kind",
        "line__refund_id", "line__transaction_id", "refund__provider_refund_id",
        "intent__transaction_id", "refund__reference", "intent__reference", "receipt__reference",
        "line__reference", "provider_amount", "our_amount", "fee", "expected_fee", "resolved_at",
        "resolved_by__username", "resolution_note", "settlement_import__file_name", "currency",
    )  # fmt: skip

    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Value]]:
        items = self._items(filters).order_by("occurred_at", "id").values_list(*self._FIELDS)
        items = items[offset : offset + limit] if limit is not None else items[offset:]
        sources = dict(SettlementSource.choices)
        statuses = dict(Status.choices)
        kinds = dict(SettlementLine.Kind.choices)
        for row in items.iterator(chunk_size=2000):
            (occurred_at, source, status, detail, kind, refund_id, transaction_id,
             our_refund_id, our_transaction_id, refund_reference, intent_reference,
             receipt_reference, line_reference, provider_amount, our_amount, fee, expected_fee,
             resolved_at, resolved_by, note, file_name, currency) = row  # fmt: skip
            yield (
                occurred_at,
                str(sources.get(source, source)),
                str(statuses.get(status, status)),
                str(DETAILS.get(detail, "")),
                str(kinds.get(kind, "")) if kind else "",
                refund_id or transaction_id or our_refund_id or our_transaction_id or "",
                refund_reference or intent_reference or receipt_reference or line_reference,
                _money(provider_amount, currency),
                _money(our_amount, currency),
                _money(fee, currency),
                _money(expected_fee, currency),
                resolved_at,
                resolved_by or "",
                note,
                file_name,
            )

    def count(self, filters: Filters) -> int:
        return self._items(filters).count()

    def totals(self, filters: Filters) -> Sequence[Value] | None:
        sums = self._items(filters).aggregate(
            provider=Sum("provider_amount"), ours=Sum("our_amount"), fee=Sum("fee")
        )
        currency = filters.currency
        return [
            None, None, None, None, None, None, None,
            _money(sums["provider"] or Decimal(0), currency),
            _money(sums["ours"] or Decimal(0), currency),
            _money(sums["fee"] or Decimal(0), currency),
            None, None, None, None, None,
        ]  # fmt: skip


# Payments by channel ------------------------------------------------------------------------------

Book = LedgerAccount.Kind
Txn = LedgerTransaction.Kind

# One row per posting to a channel's book that is a payment, a refund paid out or a top-up
# reversed, and one per settlement line with a fee matched to the property; grouped by the
# property's local day and the channel.
_MOVEMENTS_SQL = f"""
WITH movements AS (
    SELECT (t.effective_at AT TIME ZONE %(zone)s)::date AS day,
           CASE WHEN a.kind = '{Book.CASH}' THEN 'cash' ELSE a.channel END AS channel,
           CASE WHEN t.kind = '{Txn.TOPUP}' THEN 1 ELSE 0 END AS payments,
           CASE WHEN t.kind = '{Txn.TOPUP}' THEN -p.amount ELSE 0 END AS gross,
           CASE WHEN t.kind = '{Txn.REFUND_PAYOUT}' THEN p.amount ELSE 0 END AS refunds,
           CASE WHEN t.kind = '{Txn.REVERSAL}' THEN p.amount ELSE 0 END AS reversals,
           0 AS fees
    FROM billing_ledgertransaction t
    JOIN billing_posting p ON p.transaction_id = t.id
    JOIN billing_ledgeraccount a ON a.id = p.ledger_account_id
    LEFT JOIN billing_ledgertransaction o ON o.id = t.reverses_id
    WHERE t.property_id = %(property)s
      AND t.effective_at >= %(start)s AND t.effective_at < %(end)s
      AND a.property_id = %(property)s AND a.kind IN ('{Book.CASH}', '{Book.CLEARING}')
      AND (t.kind IN ('{Txn.TOPUP}', '{Txn.REFUND_PAYOUT}')
           OR (t.kind = '{Txn.REVERSAL}' AND o.kind = '{Txn.TOPUP}'))
    UNION ALL
    SELECT (l.occurred_at AT TIME ZONE %(zone)s)::date, l.source, 0, 0, 0, 0, l.fee
    FROM payments_reconciliationitem i
    JOIN payments_settlementline l ON l.id = i.line_id
    WHERE i.property_id = %(property)s AND l.fee <> 0
      AND l.occurred_at >= %(start)s AND l.occurred_at < %(end)s
), days AS (
    SELECT day, channel, SUM(payments) AS payments, SUM(gross) AS gross,
           SUM(refunds) AS refunds, SUM(reversals) AS reversals, SUM(fees) AS fees
    FROM movements GROUP BY day, channel
)
"""  # noqa: S608 - constant fragments only; every value is a bound parameter.


def channel_label(channel: str) -> str:
    labels = {
        "cash": _("Cash"),
        "bank": _("Bank transfer"),
        "stripe": _("Stripe"),
        "wechat": _("WeChat Pay"),
        "alipay": _("Alipay"),
        "sandbox": _("Sandbox"),
    }
    return labels.get(channel, channel)


class PaymentsByChannelReport(Report):
    slug = "payments-by-channel"
    title = gettext_lazy("Payments by channel and day")
    description = gettext_lazy(
        "Per day and payment channel: the payments taken, the refunds paid back and top-ups "
        "reversed through it, the fees the providers' settlement files report, and the net."
    )

    def columns(self, filters: Filters) -> Sequence[Column]:
        return [
            Column("day", _("Day"), Kind.DATE),
            Column("channel", _("Channel"), Kind.TEXT),
            Column("payments", _("Payments"), Kind.INTEGER),
            Column("gross", _("Gross"), Kind.MONEY),
            Column("refunds", _("Refunds"), Kind.MONEY),
            Column("reversals", _("Reversed"), Kind.MONEY),
            Column("fees", _("Fees"), Kind.MONEY),
            Column("net", _("Net"), Kind.MONEY),
        ]

    @staticmethod
    def _params(filters: Filters) -> dict:
        return {
            "zone": filters.property.time_zone,
            "property": filters.property.pk,
            "start": filters.start_at,
            "end": filters.end_at,
        }

    def _row(self, row, currency: str) -> tuple:
        day, channel, payments, gross, refunds, reversals, fees = row
        gross, refunds, reversals = (quantize(v, currency) for v in (gross, refunds, reversals))
        fees = quantize(fees, currency)
        return (day, channel_label(channel), int(payments), gross, refunds, reversals, fees,
                gross - refunds - reversals - fees)  # fmt: skip

    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Value]]:
        sql = (
            _MOVEMENTS_SQL  # noqa: S608 - constant fragments; values are bound parameters.
            + "SELECT day, channel, payments, gross, refunds, reversals, fees FROM days "
            "ORDER BY day, channel OFFSET %(offset)s LIMIT %(limit)s"
        )
        params = {**self._params(filters), "offset": offset, "limit": limit}
        currency = filters.currency
        with connection.chunked_cursor() as cursor:
            cursor.execute(sql, params)
            while batch := cursor.fetchmany(2000):
                for row in batch:
                    yield self._row(row, currency)

    def count(self, filters: Filters) -> int:
        with connection.cursor() as cursor:
            sql = _MOVEMENTS_SQL + "SELECT COUNT(*) FROM days"  # noqa: S608 - as above.
            cursor.execute(sql, self._params(filters))
            return cursor.fetchone()[0]

    def totals(self, filters: Filters) -> Sequence[Value] | None:
        sql = _MOVEMENTS_SQL + (
            "SELECT NULL, NULL, COALESCE(SUM(payments), 0), COALESCE(SUM(gross), 0), "
            "COALESCE(SUM(refunds), 0), COALESCE(SUM(reversals), 0), COALESCE(SUM(fees), 0) "
            "FROM days"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, self._params(filters))
            figures = cursor.fetchone()[2:]
        row = self._row(("", "", *figures), filters.currency)
        return [None, None, *row[2:]]

    def chart(self, filters: Filters) -> Chart | None:
        """Each channel's gross payments per day."""
        by_day = "SELECT day, channel, gross FROM days ORDER BY day, channel"
        sql = _MOVEMENTS_SQL + by_day
        by_channel: dict[str, dict] = {}
        with connection.cursor() as cursor:
            cursor.execute(sql, self._params(filters))
            for day, channel, gross in cursor.fetchall():
                by_channel.setdefault(channel, {})[day] = quantize(gross, filters.currency)
        if not by_channel:
            return None
        days = [filters.start + timedelta(days=n) for n in range(filters.days)]
        return Chart(
            labels=[day.isoformat() for day in days],
            series=[
                Series(channel_label(channel), [values.get(day, Decimal(0)) for day in days])
                for channel, values in sorted(by_channel.items())
            ],
            unit=filters.currency,
        )


REPORTS: list[Report] = [ReconciliationReport(), PaymentsByChannelReport()]
