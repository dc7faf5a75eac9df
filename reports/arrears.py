"""Arrears aging: what tenants owe, by how long they have owed it, as of the end of the range.

Two kinds of debt, each aged as a whole from the day it arose:

- **Postpaid accounts** whose wallet closed the day in debit. The balance is the account's
  frozen closing balance (`DailyFreeze`) of the as-of day, and its age runs from the day the
  balance last went negative: the day after its last frozen day that closed at zero or above,
  or its first frozen day if it never did.
- **Former tenants' debts**: what a move-out moved from a wallet to the debtors book
  (`billing.settlement`, a debt-transfer transaction), aged from the move-out, less whatever
  reversed that transfer since; until the tenant's new tenancy at the property takes it over.
- **Debts being recovered** (`billing.models.Debt`: raised by staff, emergency credit, arrears
  at a switch to prepaid, or moved in from an earlier tenancy), each aged from the day it was
  raised or moved in, at what it still owed then (`billing.debts.debts_owed_at`).

Postings to the debtors book that belong to neither (none are made today; a write-off would)
show on one row of their own, each aged from its own date, so the report always adds up to the
book.

The as-of day is the range's end, or the property's last frozen day when the end is not frozen
yet. The total is the postpaid wallets' negative closing balances that day plus the debtors
book's balance at its closing midnight, to the cent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from decimal import Decimal
from itertools import islice

from django.db.models import (
    Case,
    DateField,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Account
from billing.debts import debts_owed_at, transfers_moved_by
from billing.models import DailyFreeze, FreezeCursor, LedgerAccount, LedgerTransaction, Posting
from prepaid.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS, quantize
from reports.base import Column, Filters, Kind, Report
from reports.base import Value as Cell

ZERO = Decimal(0)
CHUNK = 2000
Book = LedgerAccount.Kind
TxnKind = LedgerTransaction.Kind
# The buckets' upper ends in days of age; the last has none.
BUCKETS = (30, 60, 90)
# The debts' own transactions (billing.debts): their postings to debtors belong to a Debt row.
DEBT_KINDS = (
    TxnKind.DEBT_RAISED,
    TxnKind.EMERGENCY_CREDIT,
    TxnKind.DEBT_RECOVERY,
    TxnKind.INSTALMENT_BILLED,
)
AMOUNT = DecimalField(max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES)


def as_of(filters: Filters) -> date:
    """The day the report stands at: the range's end, or the last frozen day before it."""
    frozen = (
        FreezeCursor.objects.filter(property=filters.property)
        .values_list("frozen_through", flat=True)
        .first()
    )
    return min(filters.end, frozen) if frozen else filters.end


def bucket_of(age: int) -> int:
    """0 for 0 to 30 days, 1 for 31 to 60, 2 for 61 to 90, 3 for over 90."""
    return next((index for index, limit in enumerate(BUCKETS) if age <= limit), len(BUCKETS))


def _split(total: Decimal, age: int) -> list[Decimal]:
    buckets = [ZERO] * (len(BUCKETS) + 1)
    buckets[bucket_of(age)] = total
    return buckets


class ArrearsReport(Report):
    slug = "arrears"
    title = gettext_lazy("Arrears aging")
    description = gettext_lazy(
        "Postpaid accounts in debit, former tenants' debts and debts being recovered from "
        "top-ups, by how long each has been owed, as of the end of the range (or the last "
        "frozen day before it)."
    )

    def columns(self, filters: Filters) -> Sequence[Column]:
        return [
            Column("kind", _("Debt")),
            Column("tenant", _("Tenant")),
            Column("unit", _("Unit")),
            Column("since", _("Owed since"), Kind.DATE),
            Column("age", _("Age in days"), Kind.INTEGER),
            Column("total", _("Owed"), Kind.MONEY),
            Column("days_0_30", _("0 to 30 days"), Kind.MONEY),
            Column("days_31_60", _("31 to 60 days"), Kind.MONEY),
            Column("days_61_90", _("61 to 90 days"), Kind.MONEY),
            Column("days_over_90", _("Over 90 days"), Kind.MONEY),
            Column("as_of", _("As of"), Kind.DATE),
        ]

    # The sources, in the report's order ------------------------------------------------------

    def _postpaid(self, filters: Filters, day: date) -> QuerySet:
        frozen = DailyFreeze.objects.filter(
            account_id=OuterRef("account_id"), property=filters.property
        )
        last_in_credit = (
            frozen.filter(day__lte=day, closing_balance__gte=0).order_by("-day").values("day")[:1]
        )
        first = frozen.order_by("day").values("day")[:1]
        return (
            DailyFreeze.objects.filter(
                property=filters.property,
                day=day,
                closing_balance__lt=0,
                account__mode=Account.Mode.POSTPAID,
            )
            .annotate(
                last_in_credit=Subquery(last_in_credit, output_field=DateField()),
                first_day=Subquery(first, output_field=DateField()),
            )
            .order_by("account__unit__name", "account_id")
        )

    def _debts(self, filters: Filters, day: date) -> QuerySet:
        """The wallet side of each debt transfer: +debt into the wallet, -debt to debtors."""
        end = filters.local_midnight(day + timedelta(days=1))
        reversed_since = (
            Posting.objects.filter(
                transaction__reverses_id=OuterRef("transaction_id"),
                transaction__created_at__lt=end,
                ledger_account__kind=Book.DEBTORS,
            )
            .values("transaction__reverses_id")
            .annotate(total=Sum("amount"))
            .values("total")
        )
        return (
            Posting.objects.filter(
                transaction__property=filters.property,
                transaction__kind=TxnKind.DEBT_TRANSFER,
                transaction__created_at__lt=end,
                ledger_account__kind=Book.WALLET,
            )
            .annotate(
                repaid=Coalesce(Subquery(reversed_since, output_field=AMOUNT), Value(ZERO)),
                owed=ExpressionWrapper(F("amount") - F("repaid"), output_field=AMOUNT),
                since=TruncDate("transaction__effective_at", tzinfo=filters.zone),
            )
            .exclude(
                Exists(
                    transfers_moved_by(end=end).filter(transaction_id=OuterRef("transaction_id"))
                )
            )
            .filter(owed__gt=0)
            .order_by("since", "transaction_id")
        )

    def _recovering(self, filters: Filters, day: date) -> QuerySet:
        end = filters.local_midnight(day + timedelta(days=1))
        return (
            debts_owed_at(property=filters.property, end=end)
            .annotate(since=TruncDate("created_at", tzinfo=filters.zone))
            .order_by("since", "pk")
        )

    def _others(self, filters: Filters, day: date) -> list[Decimal] | None:
        """Debtors postings outside any debt transfer, summed into the buckets of their own
        dates; None when there are none."""
        end = filters.local_midnight(day + timedelta(days=1))
        postings = Posting.objects.filter(
            ledger_account__property=filters.property,
            ledger_account__kind=Book.DEBTORS,
            transaction__created_at__lt=end,
        ).exclude(
            Q(transaction__kind__in=[TxnKind.DEBT_TRANSFER, *DEBT_KINDS])
            | Q(transaction__reverses__kind__in=[TxnKind.DEBT_TRANSFER, *DEBT_KINDS])
        )
        # An age of at most N days: effective on or after the midnight opening day - N.
        starts = [filters.local_midnight(day - timedelta(days=limit)) for limit in BUCKETS]
        bounds = [(starts[0], None), *zip(starts[1:], starts[:-1], strict=True), (None, starts[-1])]
        sums = {}
        for index, (after, before) in enumerate(bounds):
            when = Q()
            if after is not None:
                when &= Q(transaction__effective_at__gte=after)
            if before is not None:
                when &= Q(transaction__effective_at__lt=before)
            sums[f"b{index}"] = Coalesce(
                Sum(Case(When(when, then=-F("amount")), default=Value(ZERO), output_field=AMOUNT)),
                Value(ZERO),
                output_field=AMOUNT,
            )
        found = postings.aggregate(count=Sum(Value(1)), **sums)
        if not found["count"]:
            return None
        return [found[f"b{index}"] for index in range(len(bounds))]

    # Rows --------------------------------------------------------------------------------------

    def _postpaid_rows(self, filters: Filters, day: date, skip: int) -> Iterator[Sequence[Cell]]:
        label, currency = _("Postpaid account"), filters.currency
        for tenant, unit, closing, last_in_credit, first_day in (
            self._postpaid(filters, day)[skip:]
            .values_list(
                "account__tenant__name",
                "account__unit__name",
                "closing_balance",
                "last_in_credit",
                "first_day",
            )
            .iterator(chunk_size=CHUNK)
        ):
            since = last_in_credit + timedelta(days=1) if last_in_credit else first_day
            age = (day - since).days
            owed = quantize(-closing, currency)
            yield (label, tenant, unit, since, age, owed, *_split(owed, age), day)

    def _debt_rows(self, filters: Filters, day: date, skip: int) -> Iterator[Sequence[Cell]]:
        label, currency = _("Former tenant's debt"), filters.currency
        for tenant, unit, owed, since in (
            self._debts(filters, day)[skip:]
            .values_list(
                "ledger_account__tenant_account__tenant__name",
                "ledger_account__tenant_account__unit__name",
                "owed",
                "since",
            )
            .iterator(chunk_size=CHUNK)
        ):
            age = (day - since).days
            owed = quantize(owed, currency)
            yield (label, tenant, unit, since, age, owed, *_split(owed, age), day)

    def _recovering_rows(self, filters: Filters, day: date, skip: int) -> Iterator[Sequence[Cell]]:
        label, currency = _("Debt being recovered"), filters.currency
        for tenant, unit, owed, since in (
            self._recovering(filters, day)[skip:]
            .values_list("account__tenant__name", "account__unit__name", "owed", "since")
            .iterator(chunk_size=CHUNK)
        ):
            age = (day - since).days
            owed = quantize(owed, currency)
            yield (label, tenant, unit, since, age, owed, *_split(owed, age), day)

    def _other_rows(self, others: list[Decimal] | None, day: date, currency: str):
        if others is not None:
            buckets = [quantize(amount, currency) for amount in others]
            yield (_("Other debtors postings"), "", "", None, None, sum(buckets), *buckets, day)

    def _all_rows(self, filters: Filters, *, offset: int) -> Iterator[Sequence[Cell]]:
        """The postpaid accounts, the former tenants' debts, the debts being recovered, then
        the other postings, from `offset` on: a source wholly before the offset is only
        counted."""
        day = as_of(filters)
        others = self._others(filters, day)
        sources = [
            (
                lambda: self._postpaid(filters, day).count(),
                lambda skip: self._postpaid_rows(filters, day, skip),
            ),
            (
                lambda: self._debts(filters, day).count(),
                lambda skip: self._debt_rows(filters, day, skip),
            ),
            (
                lambda: self._recovering(filters, day).count(),
                lambda skip: self._recovering_rows(filters, day, skip),
            ),
            (
                lambda: int(others is not None),
                lambda skip: islice(self._other_rows(others, day, filters.currency), skip, None),
            ),
        ]
        skip = offset
        for count, rows in sources:
            if skip:
                counted = count()
                if skip >= counted:
                    skip -= counted
                    continue
            yield from rows(skip)
            skip = 0

    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Cell]]:
        rows = self._all_rows(filters, offset=offset)
        return rows if limit is None else islice(rows, limit)

    def count(self, filters: Filters) -> int:
        day = as_of(filters)
        others = self._others(filters, day) is not None
        return (
            self._postpaid(filters, day).count()
            + self._debts(filters, day).count()
            + self._recovering(filters, day).count()
            + others
        )

    def totals(self, filters: Filters) -> Sequence[Cell] | None:
        sums = [ZERO] * (len(BUCKETS) + 2)
        day = as_of(filters)
        for row in self._all_rows(filters, offset=0):
            for index, amount in enumerate(row[5:10]):
                sums[index] += amount
        totals = [quantize(amount, filters.currency) for amount in sums]
        return (_("Total"), None, None, None, None, *totals, day)


REPORTS: list[Report] = [ArrearsReport()]
