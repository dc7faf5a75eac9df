"""What every report is: columns, filters, rows streamed from the database, and totals.

A report is a `Report` subclass registered in `reports.registry`. The same definition feeds the
page (one page of rows at a time, with htmx), the CSV and XLSX exports (every row, streamed: a
report never holds its rows in memory) and the background export jobs. A report reads through
the caller's scope and one property at a time, so each shows one time zone and one currency.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from django import forms
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from accounts.models import Property
from prepaid.scoping import Capability, Scope

# The longest date range a report takes: a year, and a day for leap years.
MAX_DAYS = 366
Value = str | int | Decimal | date | datetime | None


class Kind(StrEnum):
    """How a column's values are shown and exported."""

    TEXT = "text"
    INTEGER = "integer"
    # An amount in the property's currency: a Decimal quantized to the currency.
    MONEY = "money"
    # A measured quantity (kWh, m³): a Decimal.
    QUANTITY = "quantity"
    PERCENT = "percent"
    DATE = "date"
    # Aware; shown and exported in the property's time zone.
    DATETIME = "datetime"


@dataclass(frozen=True)
class Column:
    key: str
    label: str | Promise
    kind: Kind = Kind.TEXT


@dataclass(frozen=True)
class Filters:
    """What the caller asked for, checked: one property in scope and local dates, inclusive."""

    property: Property
    start: date
    end: date
    # Report-specific choices (e.g. a channel), already cleaned by the report's form.
    extra: dict[str, Any]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.property.time_zone)

    @property
    def currency(self) -> str:
        return self.property.currency

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def local_midnight(self, day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=self.zone)

    @property
    def start_at(self) -> datetime:
        """The first instant of the range: the property's local midnight starting `start`."""
        return self.local_midnight(self.start)

    @property
    def end_at(self) -> datetime:
        """The instant after the range: the local midnight after `end`."""
        return self.local_midnight(self.end + timedelta(days=1))


class FiltersForm(forms.Form):
    """Property and dates, shared by every report; a report adds its own fields by subclassing."""

    property = forms.ModelChoiceField(queryset=Property.objects.none(), label=_("Property"))
    start = forms.DateField(label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("To"), widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, scope: Scope, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["property"]
        field.queryset = Property.objects.for_scope(scope).order_by("name")
        field.to_field_name = "uuid"

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end:
            if end < start:
                self.add_error("end", _("The end date is before the start date."))
            elif (end - start).days + 1 > MAX_DAYS:
                self.add_error(
                    "end",
                    _("Choose at most %(days)d days; export longer periods in parts.")
                    % {"days": MAX_DAYS},
                )
        return cleaned

    def filters(self) -> Filters:
        data = dict(self.cleaned_data)
        return Filters(
            property=data.pop("property"),
            start=data.pop("start"),
            end=data.pop("end"),
            extra=data,
        )


class Report(ABC):
    """One report. Subclasses set the class attributes and implement `columns`, `rows` and
    `count`."""

    slug: ClassVar[str]
    title: ClassVar[str | Promise]
    description: ClassVar[str | Promise] = ""
    form_class: ClassVar[type[FiltersForm]] = FiltersForm
    # Who may open it; every report only reads.
    capability: ClassVar[Capability] = Capability.VIEW

    @abstractmethod
    def columns(self, filters: Filters) -> Sequence[Column]:
        """The columns, which may depend on the filters (e.g. one per channel that occurs)."""

    @abstractmethod
    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Value]]:
        """The rows in the report's order, one tuple per row in `columns` order, streamed from
        the database (a server-side cursor or `.iterator()`), from `offset`, at most `limit`."""

    @abstractmethod
    def count(self, filters: Filters) -> int:
        """How many rows `rows` yields, without reading them."""

    def totals(self, filters: Filters) -> Sequence[Value] | None:
        """A totals row in `columns` order (None where a column has no total), or None."""
        return None

    def chart(self, filters: Filters) -> Chart | None:
        """A chart shown above the table, or None."""
        return None


@dataclass(frozen=True)
class Series:
    label: str | Promise
    values: Sequence[Decimal | None]


@dataclass(frozen=True)
class Chart:
    """Series over shared labels (days, months or units), drawn as bars or lines on the page."""

    labels: Sequence[str]
    series: Sequence[Series]
    unit: str = ""
    style: str = "bars"
