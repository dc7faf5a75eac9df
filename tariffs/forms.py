"""The tariff editor's forms: a version's prices, with any number of bands and of time-of-use
periods per day type, validated field by field before the service and the pricing engine see
them.

Rows are added and removed by the server: a button posts the form with an `action` ("add-band",
"remove-weekday-2", ...) and the editor comes back with the rows rearranged and nothing saved.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from meters.models import Meter
from tariffs.models import TariffVersion
from tariffs.selectors import plain_decimal

KIND_CHOICES = [
    (TariffVersion.Kind.FLAT, _("Flat: one price for every unit")),
    (TariffVersion.Kind.TIERED, _("Tiered: a price per band of monthly consumption")),
    (TariffVersion.Kind.TOU, _("Time of use: a price per period of the day")),
    (TariffVersion.Kind.TOU_TIERED, _("Time of use with tier surcharges on top")),
]
KINDS_WITH_BANDS = {TariffVersion.Kind.TIERED, TariffVersion.Kind.TOU_TIERED}
KINDS_WITH_PERIODS = {TariffVersion.Kind.TOU, TariffVersion.Kind.TOU_TIERED}
DAY_TYPES = [
    ("weekday", _("Weekdays")),
    ("weekend", _("Weekends")),
    ("holiday", _("Public holidays")),
]
UTILITY_CHOICES = [
    (Meter.Utility.ELECTRICITY, _("Electricity")),
    (Meter.Utility.WATER, _("Water")),
]
TAX_INCLUSIVE, TAX_EXCLUSIVE = "inclusive", "exclusive"
# Enough for any real tariff; a form cannot grow without bound.
MAX_ROWS = 24

_NOT_NEGATIVE = {"min_value": _("A price cannot be negative.")}


def _price_field(**kwargs: Any) -> forms.DecimalField:
    return forms.DecimalField(
        max_digits=12,
        decimal_places=6,
        min_value=0,
        error_messages=_NOT_NEGATIVE,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
        **kwargs,
    )


def _clock(value: time) -> str:
    return value.isoformat(timespec="seconds" if value.second else "minutes")


class VersionForm(forms.Form):
    effective_from = forms.DateTimeField(
        label=_("Effective from"),
        help_text=_("Local time of the property."),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    kind = forms.ChoiceField(label=_("Kind of tariff"), choices=KIND_CHOICES)
    flat_price = _price_field(label=_("Price per unit"), required=False)
    standing_charge_per_day = _price_field(label=_("Standing charge per day"), initial=0)
    tax_percent = forms.DecimalField(
        label=_("Tax rate (%)"),
        max_digits=6,
        decimal_places=2,
        min_value=0,
        max_value=100,
        initial=0,
        error_messages={"min_value": _("A tax rate cannot be negative.")},
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )
    tax_mode = forms.ChoiceField(
        label=_("Tax"),
        choices=[
            (TAX_EXCLUSIVE, _("Tax is added on top of these prices")),
            (TAX_INCLUSIVE, _("These prices include tax")),
        ],
        initial=TAX_EXCLUSIVE,
        widget=forms.RadioSelect,
    )

    def __init__(
        self,
        *args: Any,
        require_start: bool = True,
        earliest: datetime | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.fields["effective_from"].required = require_start
        self._earliest = earliest

    def clean_effective_from(self) -> datetime | None:
        value = self.cleaned_data["effective_from"]
        if value is None:
            return value
        if self._earliest is not None and value < self._earliest:
            raise ValidationError(
                _("A new version cannot start in the past: what was charged stays charged.")
            )
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if (
            data.get("kind") == TariffVersion.Kind.FLAT
            and data.get("flat_price") is None
            and "flat_price" not in self.errors
        ):
            self.add_error("flat_price", _("A flat tariff needs a price per unit."))
        return data


class BandForm(forms.Form):
    limit = forms.DecimalField(
        label=_("Up to (monthly total)"),
        required=False,
        max_digits=14,
        decimal_places=6,
        min_value=0,
        error_messages={"min_value": _("A limit cannot be negative.")},
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )
    price = _price_field(label=_("Price"))


class BaseBandFormSet(forms.BaseFormSet):
    def clean(self) -> None:
        if any(self.errors):
            return
        if not self.forms:
            raise ValidationError(_("Add at least one band."))
        previous = Decimal(0)
        last = len(self.forms) - 1
        for index, form in enumerate(self.forms):
            limit = form.cleaned_data.get("limit")
            if index == last:
                if limit is not None:
                    form.add_error(
                        "limit", _("The last band has no upper limit: leave this empty.")
                    )
                continue
            if limit is None:
                form.add_error(
                    "limit", _("Only the last band is open-ended: give this band an upper limit.")
                )
                continue
            if limit <= previous:
                form.add_error(
                    "limit",
                    _("Each limit must be above the one before it (%(previous)s).")
                    % {"previous": plain_decimal(previous)},
                )
            previous = limit


class PeriodForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=30)
    start = forms.TimeField(label=_("From"), widget=forms.TimeInput(attrs={"type": "time"}))
    end = forms.TimeField(label=_("Until"), widget=forms.TimeInput(attrs={"type": "time"}))
    price = _price_field(label=_("Price"))

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if name == "standing":
            raise ValidationError(_("This name is kept for standing charges; choose another."))
        return name


class BasePeriodFormSet(forms.BaseFormSet):
    """One day type's periods: together they cover the whole day, each moment exactly once.
    A period may run past midnight (22:00 until 06:00); from and until equal is all day."""

    def clean(self) -> None:
        if any(self.errors):
            return
        if not self.forms:
            raise ValidationError(_("Add at least one period covering the whole day."))
        spans = []
        for index, form in enumerate(self.forms):
            start = _offset(form.cleaned_data["start"])
            end = _offset(form.cleaned_data["end"])
            day = timedelta(days=1)
            if start == end:
                pieces = [(timedelta(0), day)]
            elif start < end:
                pieces = [(start, end)]
            else:
                pieces = [(start, day), (timedelta(0), end)]
            spans += [(a, b, index) for a, b in pieces if a < b]
        spans.sort()
        covered_until, covered_by = timedelta(0), None
        gaps = []
        for start, end, index in spans:
            if start > covered_until:
                gaps.append((covered_until, start))
            elif start < covered_until and covered_by is not None:
                self.forms[index].add_error(
                    "start",
                    _("This period overlaps “%(other)s” during %(start)s-%(end)s.")
                    % {
                        "other": self.forms[covered_by].cleaned_data["name"],
                        "start": _clock_offset(start),
                        "end": _clock_offset(min(end, covered_until)),
                    },
                )
            if end > covered_until:
                covered_until, covered_by = end, index
        if covered_until < timedelta(days=1):
            gaps.append((covered_until, timedelta(days=1)))
        if gaps:
            raise ValidationError(
                [
                    _("Nothing covers %(start)s-%(end)s.")
                    % {"start": _clock_offset(start), "end": _clock_offset(end)}
                    for start, end in gaps
                ]
            )


def _offset(value: time) -> timedelta:
    return timedelta(hours=value.hour, minutes=value.minute, seconds=value.second)


def _clock_offset(offset: timedelta) -> str:
    seconds = int(offset.total_seconds())
    text = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"
    return f"{text}:{seconds % 60:02d}" if seconds % 60 else text


BandFormSet = forms.formset_factory(
    BandForm, formset=BaseBandFormSet, extra=0, max_num=MAX_ROWS, validate_max=True
)
PeriodFormSet = forms.formset_factory(
    PeriodForm, formset=BasePeriodFormSet, extra=0, max_num=MAX_ROWS, validate_max=True
)

_BAND_FIELDS = ("limit", "price")
_PERIOD_FIELDS = ("name", "start", "end", "price")
_VERSION_FIELDS = (
    "effective_from",
    "kind",
    "flat_price",
    "standing_charge_per_day",
    "tax_percent",
    "tax_mode",
)


def _rows(data: Mapping[str, Any], prefix: str, fields: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a formset as submitted, without validating them."""
    try:
        total = int(data.get(f"{prefix}-TOTAL_FORMS", 0))
    except (TypeError, ValueError):
        total = 0
    return [
        {name: data.get(f"{prefix}-{index}-{name}", "") for name in fields}
        for index in range(max(0, min(total, MAX_ROWS)))
    ]


class VersionEditor:
    """A version's form with its band rows and its period rows for each day type.

    Only the parts the kind uses are shown, submitted and validated: bands for tiered kinds,
    periods for time-of-use kinds, the flat price for flat tariffs.
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        initial: dict[str, Any] | None = None,
        require_start: bool = True,
        earliest: datetime | None = None,
    ):
        initial = initial or {}
        self.form = VersionForm(
            data,
            initial={name: value for name, value in initial.items() if name in _VERSION_FIELDS},
            require_start=require_start,
            earliest=earliest,
        )
        source = data if data is not None else initial
        self.kind = source.get("kind") or TariffVersion.Kind.FLAT
        if self.kind not in dict(KIND_CHOICES):
            self.kind = TariffVersion.Kind.FLAT
        self.bands = BandFormSet(data, prefix="band", initial=initial.get("bands") or None)
        self.periods = [
            (day_type, label, PeriodFormSet(data, prefix=day_type, initial=initial.get(day_type)))
            for day_type, label in DAY_TYPES
        ]

    @property
    def shows_bands(self) -> bool:
        return self.kind in KINDS_WITH_BANDS

    @property
    def shows_periods(self) -> bool:
        return self.kind in KINDS_WITH_PERIODS

    @property
    def shows_flat_price(self) -> bool:
        return self.kind == TariffVersion.Kind.FLAT

    @property
    def is_bound(self) -> bool:
        return self.form.is_bound

    @staticmethod
    def action(data: Mapping[str, Any]) -> str:
        """What a POST asks for: "save" (or "preview"), or a rearrangement of the rows. A save
        of a kind other than the one whose fields were shown only shows that kind's fields."""
        action = data.get("action") or "save"
        if action in ("save", "preview") and data.get("shown_kind") != data.get("kind"):
            return "refresh"
        return action

    def error_list(self) -> list[str]:
        """Every problem of a bound editor, each with the label of its field, for a summary."""
        problems: list[str] = []
        for part in self._parts():
            forms_ = part.forms if isinstance(part, forms.BaseFormSet) else [part]
            if isinstance(part, forms.BaseFormSet):
                problems += [str(message) for message in part.non_form_errors()]
            for form in forms_:
                for field, messages in form.errors.items():
                    label = form.fields[field].label if field in form.fields else None
                    for message in messages:
                        problems.append(f"{label}: {message}" if label else str(message))
        return problems

    def _parts(self) -> list:
        parts: list = [self.form]
        if self.shows_bands:
            parts.append(self.bands)
        if self.shows_periods:
            parts += [formset for _day_type, _label, formset in self.periods]
        return parts

    def is_valid(self) -> bool:
        return all([part.is_valid() for part in self._parts()])

    @property
    def effective_from(self) -> datetime | None:
        return self.form.cleaned_data.get("effective_from")

    def version_fields(self) -> dict[str, Any]:
        """The service's version fields (without `effective_from`), from valid data."""
        data = self.form.cleaned_data
        fields: dict[str, Any] = {
            "kind": data["kind"],
            "flat_price": data["flat_price"] if self.shows_flat_price else None,
            "bands": [],
            "periods": {},
            "standing_charge_per_day": data["standing_charge_per_day"],
            "tax_rate": data["tax_percent"] / 100,
            "prices_include_tax": data["tax_mode"] == TAX_INCLUSIVE,
        }
        if self.shows_bands:
            fields["bands"] = [
                {
                    "limit": None
                    if form.cleaned_data["limit"] is None
                    else format(form.cleaned_data["limit"], "f"),
                    "price": format(form.cleaned_data["price"], "f"),
                }
                for form in self.bands.forms
            ]
        if self.shows_periods:
            fields["periods"] = {
                day_type: [
                    {
                        "name": form.cleaned_data["name"],
                        "start": _clock(form.cleaned_data["start"]),
                        "end": _clock(form.cleaned_data["end"]),
                        "price": format(form.cleaned_data["price"], "f"),
                    }
                    for form in formset.forms
                ]
                for day_type, _label, formset in self.periods
            }
        return fields

    def add_service_error(self, error: ValidationError) -> None:
        """Show what the service refused: beside the start time, or above the form."""
        if hasattr(error, "error_dict"):
            for field, messages in error.message_dict.items():
                target = field if field in self.form.fields else None
                for message in messages:
                    self.form.add_error(target, message)
        else:
            for message in error.messages:
                self.form.add_error(None, message)

    # Rearranging rows ----------------------------------------------------------------------

    @classmethod
    def rearranged(cls, data: Mapping[str, Any], action: str, **kwargs: Any) -> "VersionEditor":
        """The submitted editor, unbound, with rows added, removed or copied as `action` says."""
        initial: dict[str, Any] = {name: data.get(name, "") for name in _VERSION_FIELDS}
        bands = _rows(data, "band", _BAND_FIELDS)
        periods = {
            day_type: _rows(data, day_type, _PERIOD_FIELDS) for day_type, _label in DAY_TYPES
        }
        if action == "add-band":
            bands.append(dict.fromkeys(_BAND_FIELDS, ""))
        elif action.startswith("remove-band-"):
            _remove(bands, action.removeprefix("remove-band-"))
        elif action == "copy-weekday":
            for day_type in ("weekend", "holiday"):
                periods[day_type] = [dict(row) for row in periods["weekday"]]
        for day_type, _label in DAY_TYPES:
            if action == f"add-{day_type}":
                periods[day_type].append(dict.fromkeys(_PERIOD_FIELDS, ""))
            elif action.startswith(f"remove-{day_type}-"):
                _remove(periods[day_type], action.removeprefix(f"remove-{day_type}-"))
        bands = bands[:MAX_ROWS]
        editor_initial = {**initial, "bands": bands or _starter_bands()}
        for day_type, rows in periods.items():
            editor_initial[day_type] = rows[:MAX_ROWS] or _starter_periods()
        return cls(initial=editor_initial, **kwargs)

    @classmethod
    def starting_from(cls, version: TariffVersion | None, **kwargs: Any) -> "VersionEditor":
        """An empty editor, or one holding `version`'s prices to change from."""
        if version is None:
            initial: dict[str, Any] = {
                "kind": TariffVersion.Kind.FLAT,
                "standing_charge_per_day": "0",
                "tax_percent": "0",
                "tax_mode": TAX_EXCLUSIVE,
                "bands": _starter_bands(),
                **{day_type: _starter_periods() for day_type, _label in DAY_TYPES},
            }
            return cls(initial=initial, **kwargs)
        initial = {
            "kind": version.kind,
            "flat_price": plain_decimal(version.flat_price),
            "standing_charge_per_day": plain_decimal(version.standing_charge_per_day),
            "tax_percent": plain_decimal(version.tax_rate * 100),
            "tax_mode": TAX_INCLUSIVE if version.prices_include_tax else TAX_EXCLUSIVE,
            "bands": [
                {"limit": "" if band["limit"] is None else band["limit"], "price": band["price"]}
                for band in version.bands
            ]
            or _starter_bands(),
        }
        for day_type, _label in DAY_TYPES:
            initial[day_type] = [
                {name: period.get(name, "") for name in _PERIOD_FIELDS}
                for period in version.periods.get(day_type, [])
            ] or _starter_periods()
        return cls(initial=initial, **kwargs)


def _remove(rows: list, index: str) -> None:
    if index.isdigit() and int(index) < len(rows):
        del rows[int(index)]


def _starter_bands() -> list[dict[str, str]]:
    return [{"limit": "", "price": ""}]


def _starter_periods() -> list[dict[str, str]]:
    return [{"name": "", "start": "00:00", "end": "00:00", "price": ""}]


class TariffForm(forms.Form):
    """A new tariff's name and utility; its first version comes from a `VersionEditor`."""

    name = forms.CharField(label=_("Name"), max_length=100)
    utility = forms.ChoiceField(label=_("Utility"), choices=UTILITY_CHOICES)

    def __init__(self, *args: Any, free_utilities: Iterable[str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        free = set(free_utilities)
        self.fields["utility"].choices = [
            (value, label) for value, label in UTILITY_CHOICES if value in free
        ]


class WhatIfForm(forms.Form):
    """Which month, and which of the tariff's versions, to compare with what was charged."""

    month = forms.ChoiceField(label=_("Month"))
    version = forms.ChoiceField(label=_("Version"), required=False)

    def __init__(self, *args: Any, months: list, versions: list | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["month"].choices = months
        if versions is None:
            del self.fields["version"]
        else:
            self.fields["version"].choices = versions
