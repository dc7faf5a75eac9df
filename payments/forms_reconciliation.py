"""Forms of the reconciliation pages: the upload, the commit, the resolution of an item, the
filter of an import's items, and each source's settings."""

from __future__ import annotations

import zoneinfo
from decimal import Decimal
from functools import cache

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils.translation import gettext_lazy as _

from payments.models import ReconciliationItem, SettlementProfile, SettlementSource
from payments.reconciliation.bank import DATE_FORMATS
from payments.reconciliation.lines import MAX_BYTES
from prepaid.money import CurrencyError, validate_currency

ENCODINGS = SettlementProfile.Encoding.choices


class UploadForm(forms.Form):
    source = forms.ChoiceField(label=_("The file is"), choices=SettlementSource.choices)
    file = forms.FileField(
        label=_("Settlement file (CSV)"),
        help_text=_("At most 5 MB. Import long periods a month at a time."),
    )
    encoding = forms.ChoiceField(
        label=_("Encoding"),
        choices=ENCODINGS,
        initial="auto",
        help_text=_("Chinese bill files are often GBK; detection tries UTF-8, then GBK."),
    )
    start = forms.DateField(
        label=_("Covers from"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_(
            "Optional. Our payments in the period the file covers should all be in it. Left "
            "blank, the period is what the file states, or the days of its first and last lines."
        ),
    )
    end = forms.DateField(
        label=_("Covers to"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_BYTES:
            raise forms.ValidationError(
                _("The file is larger than 5 MB: import it in parts, a month at a time.")
            )
        return upload

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and end < start:
            self.add_error("end", _("The end date is before the start date."))
        return data


class CommitForm(forms.Form):
    digest = forms.CharField(widget=forms.HiddenInput, max_length=64)


class ResolveForm(forms.Form):
    note = forms.CharField(
        label=_("How it was resolved"),
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("For example: refunded to the tenant by bank transfer on 3 September."),
    )


class ItemFilterForm(forms.Form):
    status = forms.ChoiceField(label=_("Status"), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [
            ("", _("Every line")),
            ("open", _("Open: neither matched nor resolved")),
            *ReconciliationItem.Status.choices,
        ]

    def chosen_status(self) -> str:
        return self.cleaned_data.get("status", "") if self.is_valid() else ""


def _fee_percent_field() -> forms.DecimalField:
    return forms.DecimalField(
        label=_("Expected fee, percent of each payment"),
        required=False,
        max_digits=7,
        decimal_places=4,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
        help_text=_("Blank: the fee charged is shown but not checked."),
    )


def _fee_fixed_field() -> forms.DecimalField:
    return forms.DecimalField(
        label=_("Expected fee, fixed amount per payment"),
        required=False,
        max_digits=18,
        decimal_places=4,
        validators=[MinValueValidator(Decimal(0))],
    )


class FeeForm(forms.Form):
    """A payment provider's expected fee."""

    fee_percent = _fee_percent_field()
    fee_fixed = _fee_fixed_field()


@cache
def _zones() -> list[tuple[str, str]]:
    return [(zone, zone) for zone in sorted(zoneinfo.available_timezones())]


def _column(label, *, required: bool = False, help_text=None) -> forms.CharField:
    return forms.CharField(label=label, max_length=100, required=required, help_text=help_text)


class BankMappingForm(forms.Form):
    """Which column of the bank's statement holds what, and how the bank writes values."""

    DELIMITERS = [(",", _("Comma")), (";", _("Semicolon")), ("\t", _("Tab")), ("|", _("Bar"))]
    SEPARATORS = [(".", _("Point: 1,234.56")), (",", _("Comma: 1.234,56"))]

    date_column = _column(_("Date column"), required=True)
    date_format = forms.ChoiceField(
        label=_("Dates are written like"),
        choices=[(pattern, example) for pattern, example in DATE_FORMATS.items()],
    )
    amount_column = _column(
        _("Amount column"),
        required=True,
        help_text=_("Money in positive and money out negative; or, with two columns, money in."),
    )
    debit_column = _column(
        _("Money out column"), help_text=_("Only when the statement puts money out apart.")
    )
    reference_column = _column(
        _("Reference column"),
        required=True,
        help_text=_("Matched with the bank reference typed at the counter."),
    )
    description_column = _column(_("Description column"))
    id_column = _column(
        _("Transaction id column"),
        help_text=_("When the bank gives each line an id; else lines are told apart by content."),
    )
    balance_column = _column(_("Balance column"))
    currency = forms.CharField(label=_("Currency of the account"), max_length=3)
    time_zone = forms.ChoiceField(label=_("Time zone of the dates"))
    encoding = forms.ChoiceField(label=_("Encoding"), choices=ENCODINGS)
    delimiter = forms.ChoiceField(label=_("Values are separated by"), choices=DELIMITERS)
    decimal_separator = forms.ChoiceField(label=_("Decimal separator"), choices=SEPARATORS)
    skip_rows = forms.IntegerField(
        label=_("Lines above the header row"), min_value=0, max_value=50, initial=0
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = _zones()

    def clean_currency(self) -> str:
        code = self.cleaned_data["currency"].strip().upper()
        try:
            return validate_currency(code)
        except CurrencyError:
            raise forms.ValidationError(_("Give an ISO 4217 code such as CNY or EUR.")) from None

    def clean(self):
        data = super().clean()
        names = [data.get(name, "").strip().lower() for name in self.COLUMN_FIELDS]
        named = [name for name in names if name]
        if len(named) != len(set(named)):
            raise forms.ValidationError(_("Each column can be given for one thing only."))
        return data

    COLUMN_FIELDS = (
        "date_column", "amount_column", "debit_column", "reference_column",
        "description_column", "id_column", "balance_column",
    )  # fmt: skip
