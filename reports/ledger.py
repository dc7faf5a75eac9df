"""The ledger's reports: the trial balance and the credit liability as of a local day, and revenue
by month.

The trial balance and the credit liability read the postings booked by the end of the day (the
property's next local midnight), in book time as the daily freeze has it (`reports.selectors`):
the trial balance's change between two days is exactly what the frozen days between them moved,
and its wallets line is the credit liability's total. Revenue dates the revenue and tax books'
postings by their effective time, a charge by the end of the interval it charges.

Signs: a posting is positive when it credits its account (`billing.models`), so a balance above
zero is shown as a credit and one below zero as a debit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice

from django import forms
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from billing.models import LedgerAccount
from payments.models import Provider
from reports import selectors
from reports.base import Chart, Column, Filters, FiltersForm, Kind, Report, Series, Value

Book = LedgerAccount.Kind


class AsOfForm(FiltersForm):
    """A property and one local day: the report stands as at the end of it."""

    start = None
    end = forms.DateField(
        label=gettext_lazy("As of the end of"),
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def clean(self):
        cleaned = forms.Form.clean(self)
        if cleaned.get("end"):
            cleaned["start"] = cleaned["end"]
        return cleaned


def _window(rows: Sequence, offset: int, limit: int | None) -> Iterator:
    return islice(rows, offset, None if limit is None else offset + limit)


# Trial balance ------------------------------------------------------------------------------------

SECTIONS = {
    "asset": gettext_lazy("Assets"),
    "liability": gettext_lazy("Liabilities"),
    "revenue": gettext_lazy("Revenue"),
    "other": gettext_lazy("Other"),
}
# The books in the order the trial balance lists them, with their section.
BOOKS: tuple[tuple[str, str, Promise], ...] = (
    (Book.CASH, "asset", gettext_lazy("Cash on hand")),
    (Book.CLEARING, "asset", gettext_lazy("Payment clearing")),
    (Book.DEBTORS, "asset", gettext_lazy("Debtors (former tenants' arrears)")),
    (Book.WALLET, "liability", gettext_lazy("Tenant wallets")),
    (Book.DEPOSITS_HELD, "liability", gettext_lazy("Deposits held")),
    (Book.REFUNDS_PAYABLE, "liability", gettext_lazy("Refunds payable")),
    (Book.TAX_PAYABLE, "liability", gettext_lazy("Tax payable")),
    (Book.ENERGY_REVENUE, "revenue", gettext_lazy("Energy revenue")),
    (Book.STANDING_REVENUE, "revenue", gettext_lazy("Standing-charge revenue")),
    (Book.WRITE_OFFS, "other", gettext_lazy("Write-offs")),
    (Book.ROUNDING, "other", gettext_lazy("Rounding")),
    (Book.OPENING_BALANCES, "other", gettext_lazy("Opening balances")),
)


def clearing_label(channel: str) -> str:
    if channel == "bank":
        return _("Payment clearing: bank transfer")
    name = Provider(channel).label if channel in Provider.values else channel
    return _("Payment clearing: %(provider)s") % {"provider": name}


@dataclass(frozen=True)
class Line:
    section: str
    kind: str
    channel: str
    label: str
    # The wallets line's number of wallets; None for a book.
    accounts: int | None
    balance: Decimal

    def sides(self, zero: Decimal) -> tuple[Decimal, Decimal]:
        """(debit, credit): a negative balance is a debit, a positive one a credit."""
        if self.balance < 0:
            return -self.balance, zero
        return zero, self.balance


def trial_balance(*, filters: Filters) -> list[Line]:
    """Every book of the property (a line per clearing channel) and its wallets on one line, as
    booked by the end of the range's last day."""
    zero = selectors.zero(filters.currency)
    found = {
        (row.kind, row.channel): row
        for row in selectors.ledger_balances(property=filters.property, end=filters.end_at)
    }
    lines = []
    known = set()
    for kind, section, label in BOOKS:
        known.add(kind)
        if kind == Book.CLEARING:
            for (_kind, channel), row in sorted(found.items()):
                if _kind == Book.CLEARING:
                    lines.append(
                        Line(section, kind, channel, clearing_label(channel), None, row.balance)
                    )
            continue
        row = found.get((kind, ""))
        if kind == Book.WALLET:
            count = row.accounts if row else 0
            lines.append(Line(section, kind, "", str(label), count, row.balance if row else zero))
        else:
            lines.append(Line(section, kind, "", str(label), None, row.balance if row else zero))
    for (kind, channel), row in sorted(found.items()):
        if kind not in known:
            label = Book(kind).label if kind in Book.values else kind
            lines.append(Line("other", kind, channel, label, None, row.balance))
    return lines


class TrialBalanceReport(Report):
    slug = "trial-balance"
    title = gettext_lazy("Trial balance")
    description = gettext_lazy(
        "Every book of the property and its tenants' wallets, as booked by the end of the day: "
        "balances in credit on the right, in debit on the left. The two totals are equal. The "
        "wallets are one line; the credit liability report lists them one by one."
    )
    form_class = AsOfForm

    def columns(self, filters: Filters) -> Sequence[Column]:
        return [
            Column("section", _("Section")),
            Column("account", _("Account")),
            Column("accounts", _("Wallets"), Kind.INTEGER),
            Column("debit", pgettext_lazy("ledger column", "Debit"), Kind.MONEY),
            Column("credit", pgettext_lazy("ledger column", "Credit"), Kind.MONEY),
        ]

    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Value]]:
        zero = selectors.zero(filters.currency)
        for line in _window(trial_balance(filters=filters), offset, limit):
            yield (str(SECTIONS[line.section]), line.label, line.accounts, *line.sides(zero))

    def count(self, filters: Filters) -> int:
        return len(trial_balance(filters=filters))

    def totals(self, filters: Filters) -> Sequence[Value] | None:
        zero = selectors.zero(filters.currency)
        debit = credit = zero
        for line in trial_balance(filters=filters):
            left, right = line.sides(zero)
            debit += left
            credit += right
        return (_("Total"), None, None, debit, credit)


# Credit liability ---------------------------------------------------------------------------------


class CreditLiabilityReport(Report):
    slug = "credit-liability"
    title = gettext_lazy("Credit liability")
    description = gettext_lazy(
        "The prepaid credit each tenancy held at the end of the day, with the deposit and the "
        "refunds the property holds for it. The credit total is the trial balance's tenant "
        "wallets line; for today it is the sum of the wallets' balances. A balance below zero is "
        "owed by the tenant. Tenancies that ended are listed while money is still held for them."
    )
    form_class = AsOfForm

    def columns(self, filters: Filters) -> Sequence[Column]:
        return [
            Column("unit", _("Unit")),
            Column("tenant", _("Tenant")),
            Column("status", _("Status")),
            Column("credit", _("Credit held"), Kind.MONEY),
            Column("deposit", _("Deposit held"), Kind.MONEY),
            Column("refunds", _("Refunds payable"), Kind.MONEY),
        ]

    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Value]]:
        statuses = {0: _("Open"), 1: _("Moved out")}
        for unit, tenant, moved_out, credit, deposit, refunds in selectors.credit_rows(
            filters=filters, offset=offset, limit=limit
        ):
            yield (unit, tenant, statuses[int(moved_out)], credit, deposit, refunds)

    def count(self, filters: Filters) -> int:
        return selectors.credit_count(filters=filters)

    def totals(self, filters: Filters) -> Sequence[Value] | None:
        return (_("Total"), None, None, *selectors.credit_totals(filters=filters))


# Revenue ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevenueMonth:
    label: str
    energy: Decimal
    standing: Decimal
    tax: Decimal

    @property
    def net(self) -> Decimal:
        return self.energy + self.standing

    @property
    def total(self) -> Decimal:
        return self.net + self.tax


def revenue_months(*, filters: Filters) -> list[RevenueMonth]:
    zero = selectors.zero(filters.currency)
    found = selectors.revenue_by_month(filters=filters)
    return [
        RevenueMonth(
            label=f"{month:%Y-%m}",
            energy=found.get((index, Book.ENERGY_REVENUE), zero),
            standing=found.get((index, Book.STANDING_REVENUE), zero),
            tax=found.get((index, Book.TAX_PAYABLE), zero),
        )
        for index, month in enumerate(selectors.months(filters.start, filters.end))
    ]


class RevenueReport(Report):
    slug = "revenue"
    title = gettext_lazy("Revenue by month")
    description = gettext_lazy(
        "What the revenue books earned in each local month of the range, energy and standing "
        "charges apart and tax separately, reversals netted. A charge belongs to the month of "
        "the end of the interval it charges. The first and last months count only the days in "
        "the range."
    )

    def columns(self, filters: Filters) -> Sequence[Column]:
        return [
            Column("month", _("Month")),
            Column("energy", _("Energy revenue"), Kind.MONEY),
            Column("standing", _("Standing-charge revenue"), Kind.MONEY),
            Column("revenue", _("Revenue, net of tax"), Kind.MONEY),
            Column("tax", _("Tax"), Kind.MONEY),
            Column("total", _("Total with tax"), Kind.MONEY),
        ]

    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Value]]:
        for month in _window(revenue_months(filters=filters), offset, limit):
            yield (month.label, month.energy, month.standing, month.net, month.tax, month.total)

    def count(self, filters: Filters) -> int:
        return len(selectors.months(filters.start, filters.end))

    def totals(self, filters: Filters) -> Sequence[Value] | None:
        found = revenue_months(filters=filters)
        zero = selectors.zero(filters.currency)
        energy = sum((month.energy for month in found), zero)
        standing = sum((month.standing for month in found), zero)
        tax = sum((month.tax for month in found), zero)
        return (_("Total"), energy, standing, energy + standing, tax, energy + standing + tax)

    def chart(self, filters: Filters) -> Chart | None:
        found = revenue_months(filters=filters)
        return Chart(
            labels=[month.label for month in found],
            series=[
                Series(gettext_lazy("Energy revenue"), [month.energy for month in found]),
                Series(gettext_lazy("Standing-charge revenue"), [m.standing for m in found]),
                Series(gettext_lazy("Tax"), [month.tax for month in found]),
            ],
            unit=filters.currency,
            style="bars",
        )


REPORTS: list[Report] = [TrialBalanceReport(), CreditLiabilityReport(), RevenueReport()]
