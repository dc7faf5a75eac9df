from decimal import Decimal

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from accounts.models import Tenant
from notifications.selectors import channel_preference


class AmountForm(forms.Form):
    amount = forms.DecimalField(
        label=_("Amount"),
        min_value=Decimal("0.01"),
        max_digits=12,
        decimal_places=2,
        error_messages={
            "required": _("Choose or enter an amount."),
            "invalid": _("Give the amount as a number, such as 50 or 50.00."),
            "min_value": _("The amount must be more than zero."),
            "max_decimal_places": _("Give the amount to the cent."),
        },
        widget=forms.NumberInput(attrs={"inputmode": "decimal", "step": "0.01", "min": "0.01"}),
    )


class LanguageForm(forms.Form):
    language = forms.ChoiceField(label=_("Language"), choices=settings.LANGUAGES)


class ChannelsForm(forms.Form):
    email = forms.BooleanField(label=_("Email"), required=False)
    sms = forms.BooleanField(label=_("Text message (SMS)"), required=False)
    portal = forms.BooleanField(label=_("Messages here in the portal"), required=False)

    def __init__(self, *args, tenant: Tenant, **kwargs):
        preference = channel_preference(tenant=tenant)
        kwargs.setdefault(
            "initial",
            {"email": preference.email, "sms": preference.sms, "portal": preference.portal},
        )
        super().__init__(*args, **kwargs)
        self.tenant = tenant
        if not tenant.email:
            self.fields["email"].disabled = True
            self.fields["email"].help_text = _("Your landlord has no email address for you.")
        if not tenant.phone:
            self.fields["sms"].disabled = True
            self.fields["sms"].help_text = _("Your landlord has no phone number for you.")


def _money_field(label, help_text=""):
    return forms.DecimalField(
        label=label,
        help_text=help_text,
        min_value=Decimal(0),
        max_digits=12,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"inputmode": "decimal", "step": "0.01", "min": "0"}),
    )


class AutoTopupForm(forms.Form):
    threshold = _money_field(_("When my balance falls below"))
    amount = _money_field(_("Amount each time"))
    monthly_cap = _money_field(
        _("But at most, each month"), _("Auto top-up stops for the month at this total.")
    )
