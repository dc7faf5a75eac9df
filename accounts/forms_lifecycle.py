"""The forms of a tenancy's life: move-in, move-out and the meter replacement wizard.

Meter readings are one field per meter in service, named by `accounts.lifecycle.reading_key`,
so the services' errors land beside the reading they are about. Every form that moves money or
changes a tenancy carries a hidden idempotency key made when the form is first shown.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from django import forms
from django.utils import formats, timezone
from django.utils.translation import gettext_lazy as _

from accounts.lifecycle import reading_key
from accounts.models import Account, Tenant
from meters.models import Meter, MeterProfile
from prepaid.scoping import Scope

COUNTER_CHANNEL_CHOICES = [("cash", _("Cash")), ("bank", _("Bank transfer"))]
MODE_CHOICES = [
    (Account.Mode.PREPAID, _("Prepaid: the tenant tops up, supply is cut off without credit")),
    (Account.Mode.POSTPAID, _("Postpaid: the tenant is billed for what they used")),
]
LANGUAGE_CHOICES = [("en", "English"), ("zh-hans", "简体中文")]
UTILITY_LABELS = {
    Meter.Utility.ELECTRICITY: _("Electricity meter %(serial)s (kWh)"),
    Meter.Utility.WATER: _("Water meter %(serial)s (m³)"),
}


def register_text(value: Decimal) -> str:
    """A register as people write it: 1000.5, not 1000.500000 or 1.0005E+3."""
    return f"{value.normalize():f}"


def _amount_field(label, help_text="") -> forms.DecimalField:
    return forms.DecimalField(
        required=False,
        min_value=Decimal(0),
        max_digits=12,
        decimal_places=2,
        label=label,
        help_text=help_text,
    )


def register_field(*, label, help_text="", required=True) -> forms.DecimalField:
    return forms.DecimalField(
        required=required,
        min_value=Decimal(0),
        max_digits=20,
        decimal_places=6,
        label=label,
        help_text=help_text,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )


class _KeyedForm(forms.Form):
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, data=None, **kwargs):
        super().__init__(data, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", uuid.uuid4())


class _ReadingsForm(_KeyedForm):
    """One register field per meter, labelled with the meter and its last accepted reading."""

    def add_readings(self, meters: list[Meter], last: dict[int, tuple]) -> None:
        self.meters = meters
        for meter in meters:
            label = UTILITY_LABELS[meter.utility] % {"serial": meter.serial}
            help_text = ""
            if meter.pk in last:
                register, taken_at = last[meter.pk]
                help_text = _("Last reading %(register)s on %(moment)s.") % {
                    "register": register_text(register),
                    "moment": formats.date_format(
                        timezone.localtime(taken_at, meter.unit.property.zone),
                        "SHORT_DATETIME_FORMAT",
                    ),
                }
            self.fields[reading_key(meter)] = register_field(label=label, help_text=help_text)

    def reading_fields(self):
        return [self[reading_key(meter)] for meter in self.meters]

    def readings(self) -> dict[int, Decimal]:
        return {meter.pk: self.cleaned_data[reading_key(meter)] for meter in self.meters}


class MoveInForm(_ReadingsForm):
    tenant_choice = forms.ChoiceField(
        choices=[("new", _("A new tenant")), ("existing", _("An existing tenant"))],
        widget=forms.RadioSelect,
        initial="new",
        label=_("Who moves in"),
    )
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.none(),
        to_field_name="uuid",
        required=False,
        label=_("Existing tenant"),
        empty_label=_("Choose a tenant"),
    )
    name = forms.CharField(required=False, max_length=200, label=_("Name"))
    phone = forms.CharField(
        required=False,
        max_length=30,
        label=_("Phone"),
        help_text=_("For example +86 138 0013 8000."),
    )
    email = forms.EmailField(required=False, label=_("Email"))
    preferred_language = forms.ChoiceField(
        choices=LANGUAGE_CHOICES, initial="en", label=_("Language for messages")
    )
    mode = forms.ChoiceField(
        choices=MODE_CHOICES, initial=Account.Mode.PREPAID, label=_("Account type")
    )
    protected = forms.BooleanField(
        required=False,
        label=_("Protected household: never cut off automatically"),
        help_text=_("For medical or vulnerable households."),
    )
    deposit_amount = _amount_field(
        _("Deposit"), _("Held until move-out, then returned with the final settlement.")
    )
    deposit_channel = forms.ChoiceField(
        choices=COUNTER_CHANNEL_CHOICES, initial="cash", label=_("Deposit paid by")
    )
    topup_amount = _amount_field(_("First top-up"), _("Credit for the wallet, with a receipt."))
    topup_channel = forms.ChoiceField(
        choices=COUNTER_CHANNEL_CHOICES, initial="cash", label=_("Top-up paid by")
    )

    def __init__(self, data=None, *, scope: Scope, meters: list[Meter], last: dict, **kwargs):
        super().__init__(data, **kwargs)
        self.fields["tenant"].queryset = Tenant.objects.for_scope(scope).order_by("name")
        self.add_readings(meters, last)
        for meter in meters:
            self.fields[reading_key(meter)].help_text = " ".join(
                str(part)
                for part in (
                    _("The opening reading: consumption before it is not the tenant's."),
                    self.fields[reading_key(meter)].help_text,
                )
                if part
            )

    def clean(self):
        data = super().clean()
        if data.get("tenant_choice") == "existing":
            if not data.get("tenant"):
                self.add_error("tenant", _("Choose the tenant who moves in."))
        elif not (data.get("name") or "").strip():
            self.add_error("name", _("Give the new tenant's name."))
        return data

    def new_tenant(self) -> dict | None:
        if self.cleaned_data["tenant_choice"] == "existing":
            return None
        return {
            name: self.cleaned_data[name].strip()
            if isinstance(self.cleaned_data[name], str)
            else self.cleaned_data[name]
            for name in ("name", "phone", "email", "preferred_language")
        }

    def existing_tenant(self) -> Tenant | None:
        if self.cleaned_data["tenant_choice"] != "existing":
            return None
        return self.cleaned_data["tenant"]


class MoveOutForm(_ReadingsForm):
    # The moment the preview settled at; the confirmation settles at the same one.
    moved_out_at = forms.CharField(required=False, widget=forms.HiddenInput)
    refund_channel = forms.ChoiceField(
        choices=COUNTER_CHANNEL_CHOICES,
        initial="cash",
        label=_("Pay a refund by"),
        help_text=_("Used only when the tenant is owed money."),
    )
    reason = forms.CharField(
        required=False,
        max_length=300,
        widget=forms.Textarea(attrs={"rows": 2}),
        label=_("Note for the record"),
    )

    def __init__(self, data=None, *, meters: list[Meter], last: dict, **kwargs):
        super().__init__(data, **kwargs)
        self.add_readings(meters, last)
        for meter in meters:
            self.fields[reading_key(meter)].label = _("Final reading: %(meter)s") % {
                "meter": self.fields[reading_key(meter)].label
            }

    def clean_moved_out_at(self) -> datetime | None:
        value = self.cleaned_data["moved_out_at"]
        if not value:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise forms.ValidationError(_("Preview the settlement again.")) from None
        if timezone.is_naive(moment):
            raise forms.ValidationError(_("Preview the settlement again."))
        return moment


STEP_ONE = ("final_register",)
STEP_TWO = ("new_serial", "profile", "initial_register", "keep_connection")


class MeterReplaceForm(_KeyedForm):
    """The wizard's fields; `step` says how many of its steps must be valid so far."""

    final_register = register_field(
        label=_("Final reading of the old meter"),
        help_text=_("Consumption up to it is charged to whoever occupies the unit."),
    )
    new_serial = forms.CharField(max_length=64, label=_("Serial number of the new meter"))
    profile = forms.ModelChoiceField(
        queryset=MeterProfile.objects.none(),
        to_field_name="uuid",
        required=False,
        label=_("Meter model (profile)"),
        empty_label=_("The same as the old meter"),
    )
    initial_register = register_field(
        label=_("Opening reading of the new meter"),
        help_text=_("The new meter is charged from this reading on."),
    )
    keep_connection = forms.TypedChoiceField(
        choices=[
            ("yes", _("Yes: its gateway and unit id, or its MQTT channel, pass to the new meter")),
            ("no", _("No: the new meter is connected separately")),
        ],
        coerce=lambda value: value == "yes",
        widget=forms.RadioSelect,
        initial="yes",
        label=_("Read the new meter where the old one was read"),
    )

    def __init__(self, data=None, *, scope: Scope, meter: Meter, step: int = 3, **kwargs):
        super().__init__(data, **kwargs)
        self.fields["profile"].queryset = MeterProfile.objects.for_scope(scope).order_by("name")
        last = meter.readings.exclude(status="rejected").order_by("-taken_at").first()
        if last is not None:
            self.fields["final_register"].help_text = _(
                "Last reading %(register)s. Consumption up to the final reading is charged "
                "to whoever occupies the unit."
            ) % {"register": register_text(last.register)}
        if step < 2:
            for name in STEP_TWO:
                self.fields[name].required = False
