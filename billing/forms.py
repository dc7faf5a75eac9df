"""The staff dashboard's money forms: a counter top-up and a property's balance policy.

Both check what they can up front, with the services' own rules, so staff see field errors in
their language; the services check again, under their locks, when the change is made.
"""

import re
import uuid
from decimal import Decimal, InvalidOperation

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from accounts.models import Account
from billing.models import BalancePolicy
from billing.protection import ProtectedPeriods
from billing.selectors import topup_limits
from billing.services import topup_amount_check, topup_limits_check
from prepaid.money import AMOUNT_DECIMAL_PLACES, is_whole_minor_units, minor_unit

AMOUNT_DIGITS = 14
MAX_WARNING_LEVELS = 10
MAX_GRACE_MINUTES = 24 * 60
PROTECTION_FIELDS = ("protected_from", "protected_to", "protect_weekends", "protect_holidays")


def _amount_field(label, help_text="", **kwargs) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        help_text=help_text,
        max_digits=AMOUNT_DIGITS,
        decimal_places=AMOUNT_DECIMAL_PLACES,
        error_messages={
            "required": _("Enter an amount."),
            "invalid": _("Give the amount as a number, such as 50 or 50.00."),
        },
        widget=forms.NumberInput(attrs={"inputmode": "decimal"}),
        **kwargs,
    )


def _step(currency: str) -> str:
    return str(minor_unit(currency))


def _plain(amount) -> str:
    """An amount without trailing zeros or an exponent: "50", "-5.5"."""
    return f"{Decimal(amount).normalize():f}"


class ServiceErrorsMixin:
    """Puts a service's ValidationError beside the fields it names, the rest above the form."""

    def add_service_error(self, error: ValidationError) -> None:
        if not hasattr(error, "error_dict"):
            self.add_error(None, error)
            return
        for name, messages in error.message_dict.items():
            self.add_error(name if name in self.fields else None, messages)


class CounterTopupForm(ServiceErrorsMixin, forms.Form):
    # The counter's channels, billing.services.COUNTER_CHANNELS, as staff read them.
    CHANNELS = [("cash", _("Cash")), ("bank", _("Bank transfer"))]

    amount = _amount_field(_("Amount"))
    channel = forms.ChoiceField(
        label=_("Paid by"), choices=CHANNELS, initial="cash", widget=forms.RadioSelect
    )
    reference = forms.CharField(
        label=_("Bank reference"),
        help_text=_("Optional: the transfer's reference, as the bank statement shows it."),
        max_length=100,
        required=False,
    )
    # Minted when the form is shown, so the same form submitted twice credits once.
    idempotency_key = forms.UUIDField(
        widget=forms.HiddenInput,
        error_messages={
            "required": _("This form has expired. Reload the page and enter the top-up again."),
            "invalid": _("This form has expired. Reload the page and enter the top-up again."),
        },
    )

    def __init__(self, *args, account: Account, **kwargs):
        kwargs.setdefault("initial", {}).setdefault("idempotency_key", uuid.uuid4())
        super().__init__(*args, **kwargs)
        self.account = account
        self.currency = account.unit.property.currency
        # Shown beside the amount, and checked in clean().
        self.limits = topup_limits(property=account.unit.property)
        step = _step(self.currency)
        self.fields["amount"].widget.attrs.update(
            step=step, min=step, **{"aria-describedby": "amount-help"}
        )

    def clean_reference(self) -> str:
        return self.cleaned_data["reference"].strip()

    def clean(self):
        data = super().clean()
        amount = data.get("amount")
        if data.get("channel") == "cash":
            # A reference is the bank's; a cash receipt carries none.
            data["reference"] = ""
        if amount is None:
            return data
        try:
            topup_amount_check(amount=amount, currency=self.currency)
            topup_limits_check(
                status=self.account.status,
                limits=self.limits,
                balance=self.account.wallet.balance,
                amount=amount,
                currency=self.currency,
            )
        except ValidationError as error:
            self.add_service_error(error)
        return data

    def ledger_key(self, *, organisation_id: int) -> str:
        """The ledger's idempotency key for this form, apart from the API's keys."""
        return f"counter-topup:{organisation_id}:{self.cleaned_data['idempotency_key']}"


class WarningLevelsField(forms.CharField):
    """Amounts separated by commas or spaces, such as "50, 20, 10"."""

    def to_python(self, value) -> list[Decimal]:
        text = super().to_python(value)
        levels = []
        # Commas and semicolons, Western or Chinese, and spaces separate them.
        for part in re.split("[\\s,;\uff0c\u3001\uff1b]+", text):
            if not part:
                continue
            try:
                level = Decimal(part)
            except InvalidOperation:
                raise ValidationError(
                    _("%(value)s is not an amount.") % {"value": part}, code="invalid"
                ) from None
            if not level.is_finite():
                raise ValidationError(
                    _("%(value)s is not an amount.") % {"value": part}, code="invalid"
                )
            levels.append(level)
        return levels


class BalancePolicyForm(ServiceErrorsMixin, forms.Form):
    warning_levels = WarningLevelsField(
        label=_("Warning levels"),
        help_text=_(
            "Balances at which tenants are warned as their credit falls, separated by commas, "
            "such as 50, 20, 10. Leave empty for no warnings."
        ),
        required=False,
    )
    warning_days = forms.IntegerField(
        label=_("Warn when this many days of credit are left"),
        help_text=_("From 1 to 60 days. Leave empty for no such warning."),
        min_value=1,
        max_value=60,
        required=False,
    )
    cutoff_threshold = _amount_field(
        _("Cut-off threshold"),
        _("Supply is cut at or below this balance. Below zero is emergency credit."),
    )
    restore_threshold = _amount_field(
        _("Restore threshold"),
        _("Supply comes back once the balance is above this. At least the cut-off threshold."),
    )
    grace_minutes = forms.IntegerField(
        label=_("Grace period (minutes)"),
        help_text=_("How long credit may stay run out before the cut-off. At most a day."),
        min_value=0,
        max_value=MAX_GRACE_MINUTES,
    )
    protected_from = forms.TimeField(
        label=_("Protected hours start"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    protected_to = forms.TimeField(
        label=_("Protected hours end"),
        help_text=_(
            "Every day between these times nobody is cut off (18:00 to 08:00 spans the night). "
            "Leave both empty for no daily protected hours."
        ),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    protect_weekends = forms.BooleanField(label=_("Nobody is cut off at weekends"), required=False)
    protect_holidays = forms.BooleanField(
        label=_("Nobody is cut off on public holidays and the property's days off"),
        required=False,
    )

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency
        for name in ("cutoff_threshold", "restore_threshold"):
            self.fields[name].widget.attrs["step"] = _step(currency)

    @classmethod
    def initial_for(cls, policy: BalancePolicy) -> dict:
        return {
            "warning_levels": ", ".join(_plain(level) for level in policy.warning_levels),
            "warning_days": policy.warning_days,
            "cutoff_threshold": _plain(policy.cutoff_threshold),
            "restore_threshold": _plain(policy.restore_threshold),
            "grace_minutes": policy.grace_minutes,
            "protected_from": policy.protected_from,
            "protected_to": policy.protected_to,
            "protect_weekends": policy.protect_weekends,
            "protect_holidays": policy.protect_holidays,
        }

    def _whole_minor_units(self, amount: Decimal) -> bool:
        return is_whole_minor_units(amount, self.currency)

    def clean_warning_levels(self) -> list[str]:
        levels = self.cleaned_data["warning_levels"]
        if len(levels) > MAX_WARNING_LEVELS:
            raise ValidationError(
                _("Give at most %(count)s warning levels.") % {"count": MAX_WARNING_LEVELS}
            )
        for level in levels:
            if level <= 0:
                raise ValidationError(_("Warning levels are above zero."))
            if not self._whole_minor_units(level):
                raise ValidationError(
                    _("Give %(value)s in whole %(currency)s minor units.")
                    % {"value": level, "currency": self.currency}
                )
        return [str(level) for level in levels]

    def _clean_threshold(self, name: str) -> Decimal:
        amount = self.cleaned_data[name]
        if not self._whole_minor_units(amount):
            raise ValidationError(
                _("Give %(value)s in whole %(currency)s minor units.")
                % {"value": amount, "currency": self.currency}
            )
        return amount

    def clean_cutoff_threshold(self) -> Decimal:
        return self._clean_threshold("cutoff_threshold")

    def clean_restore_threshold(self) -> Decimal:
        return self._clean_threshold("restore_threshold")

    def clean(self):
        data = super().clean()
        cutoff, restore = data.get("cutoff_threshold"), data.get("restore_threshold")
        if cutoff is not None and restore is not None and restore < cutoff:
            self.add_error(
                "restore_threshold",
                _("The restore threshold cannot be below the cut-off threshold."),
            )
        start, end = data.get("protected_from"), data.get("protected_to")
        invalid = self.has_error("protected_from") or self.has_error("protected_to")
        if (start is None) != (end is None) and not invalid:
            self.add_error(
                "protected_to" if end is None else "protected_from",
                _("Give both the start and the end of the protected hours, or neither."),
            )
        return data

    def protected_periods(self) -> ProtectedPeriods | None:
        """The protected periods the cleaned form describes, saved or not; None while the
        fields that describe them have errors."""
        if any(self.has_error(name) for name in PROTECTION_FIELDS):
            return None
        data = self.cleaned_data
        return ProtectedPeriods(
            daily_start=data["protected_from"],
            daily_end=data["protected_to"],
            weekends=data["protect_weekends"],
            holidays=data["protect_holidays"],
        )
