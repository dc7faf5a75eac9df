"""The staff dashboard's debt forms: raising a debt and splitting one into instalments.

They check the shape of what was typed; the services check the rules, under their locks."""

import uuid
from calendar import monthrange
from datetime import date
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from billing.forms import ServiceErrorsMixin, _amount_field
from prepaid.money import minor_unit


class DebtRaiseForm(ServiceErrorsMixin, forms.Form):
    COUNTERS = [
        ("opening_balances", _("Arrears brought from a previous system")),
        ("fees", _("A fee or charge")),
    ]

    amount = _amount_field(_("Amount"))
    counter = forms.ChoiceField(
        label=_("What it is"), choices=COUNTERS, initial="fees", widget=forms.RadioSelect
    )
    reason = forms.CharField(
        label=_("Reason"),
        help_text=_("Shown to the tenant and kept in the audit log."),
        max_length=300,
    )
    # Minted when the form is shown, so the same form submitted twice raises one debt.
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args, currency: str, **kwargs):
        kwargs.setdefault("initial", {}).setdefault("idempotency_key", uuid.uuid4())
        super().__init__(*args, **kwargs)
        step = str(minor_unit(currency))
        self.fields["amount"].widget.attrs.update(step=step, min=step)


class InstalmentsField(forms.CharField):
    """One instalment a line: its due date and amount, such as "2027-01-31 100.00"."""

    widget = forms.Textarea(attrs={"rows": 6})

    def to_python(self, value) -> list[tuple[date, Decimal]]:
        lines = [line.split() for line in (value or "").splitlines() if line.strip()]
        instalments = []
        for number, parts in enumerate(lines, start=1):
            try:
                day, amount = parts
                instalments.append((date.fromisoformat(day), Decimal(amount)))
            except (ValueError, InvalidOperation):
                raise ValidationError(
                    _('Line %(number)d: give a date and an amount, such as "2027-01-31 100.00".')
                    % {"number": number}
                ) from None
        return instalments


def suggested_instalments(*, owed: Decimal, currency: str, start: date, count: int = 3) -> str:
    """Equal monthly instalments from `start`, the remainder on the last, as the form types
    them."""
    part = (owed / count).quantize(minor_unit(currency), rounding=ROUND_DOWN)
    lines = []
    for number in range(count):
        amount = owed - part * (count - 1) if number == count - 1 else part
        if amount > 0:
            lines.append(f"{_months_after(start, number).isoformat()} {amount}")
    return "\n".join(lines)


def _months_after(day: date, months: int) -> date:
    """The same day `months` later, or that month's last day when it is shorter."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, monthrange(year, month)[1]))


class InstalmentPlanForm(ServiceErrorsMixin, forms.Form):
    instalments = InstalmentsField(
        label=_("Instalments"),
        help_text=_(
            "One a line: the date it falls due and its amount. They must add up to what the "
            "debt still owes, with each date after the one before."
        ),
    )
