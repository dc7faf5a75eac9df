"""The staff dashboard's postpaid pages: a property's bills, one bill and its PDF, the tenancy's
bills fragment, switching a tenancy's mode, and the property's credit policy."""

from __future__ import annotations

import re
from datetime import date
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from accounts.models import Account, Property
from billing.credit_policy import POLICY_FIELDS, credit_policy, credit_policy_update
from billing.forms import ServiceErrorsMixin, _amount_field
from billing.invoice_pdf import (
    PDF_MIMETYPE,
    invoice_document,
    invoice_filename,
    invoice_language,
    invoice_pdf,
)
from billing.invoices import (
    account_invoices,
    earlier_open,
    invoice_display_number,
    open_amount,
    property_invoices,
)
from billing.models import Invoice
from billing.modes import account_mode_switch
from notifications.texts import LANGUAGES
from prepaid.scoping import Capability
from prepaid.staff import require, scoped_or_404, staff_view

PAGE_SIZE = 50
TENANCY_BILLS = 6
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _month(text: str) -> date | None:
    found = _MONTH.match(text or "")
    return date(int(found[1]), int(found[2]), 1) if found else None


def _tenancy(request: HttpRequest, account_id) -> Account:
    return scoped_or_404(
        Account.objects.select_related("tenant", "unit__property", "wallet"),
        request.scope,
        uuid=account_id,
    )


def _invoice(request: HttpRequest, invoice_id) -> Invoice:
    return scoped_or_404(
        Invoice.objects.select_related("property", "account__tenant", "account__unit"),
        request.scope,
        uuid=invoice_id,
    )


@staff_view
@require_GET
def property_bills(request: HttpRequest, property_id) -> HttpResponse:
    """A property's bills, newest month first, by status and month."""
    prop = scoped_or_404(Property, request.scope, uuid=property_id)
    status = request.GET.get("status", "")
    if status not in Invoice.Status.values:
        status = ""
    month = _month(request.GET.get("month", ""))
    bills = property_invoices(property=prop, status=status or None, month=month)
    page = Paginator(bills, PAGE_SIZE).get_page(request.GET.get("page"))
    shown_month = f"{month:%Y-%m}" if month else ""
    context = {
        "property": prop,
        "page": page,
        "status": status,
        "month": shown_month,
        "statuses": Invoice.Status.choices,
        # The filters, kept by the pager's links.
        "query": urlencode(
            {key: value for key, value in (("status", status), ("month", shown_month)) if value}
        ),
    }
    template = "billing/bills/list.html"
    return render(request, f"{template}#bills" if request.htmx else template, context)


@staff_view
@require_GET
def bill(request: HttpRequest, invoice_id) -> HttpResponse:
    found = _invoice(request, invoice_id)
    language = request.GET.get("language")
    if language not in LANGUAGES:
        language = invoice_language(invoice=found)
    context = {
        "invoice": found,
        "account": found.account,
        "property": found.property,
        "number": invoice_display_number(found),
        "document": invoice_document(invoice=found, language=language),
        "earlier_open": earlier_open(invoice=found),
        "allocations": found.allocations.select_related("transaction").order_by("pk"),
        "language": language,
    }
    return render(request, "billing/bills/bill.html", context)


@staff_view
@require_GET
def bill_pdf(request: HttpRequest, invoice_id) -> HttpResponse:
    found = _invoice(request, invoice_id)
    language = request.GET.get("language")
    if language not in LANGUAGES:
        language = invoice_language(invoice=found)
    response = HttpResponse(invoice_pdf(invoice=found, language=language), PDF_MIMETYPE)
    response["Content-Disposition"] = f'attachment; filename="{invoice_filename(invoice=found)}"'
    response["Content-Language"] = language
    return response


@staff_view
@require_GET
def tenancy_bills(request: HttpRequest, account_id) -> HttpResponse:
    """The tenancy page's bills card: its mode, what its open bills ask for, its latest bills."""
    account = _tenancy(request, account_id)
    context = {
        "account": account,
        "currency": account.unit.property.currency,
        "bills": list(account_invoices(account=account)[:TENANCY_BILLS]),
        "open_amount": open_amount(account=account),
        "can_administer": request.scope.can(Capability.ADMINISTER),
    }
    return render(request, "billing/bills/_tenancy_bills.html", context)


# Switching mode ----------------------------------------------------------------------------------


class ModeSwitchForm(ServiceErrorsMixin, forms.Form):
    mode = forms.ChoiceField(
        label=gettext_lazy("Switch to"),
        choices=[
            (Account.Mode.PREPAID, gettext_lazy("Prepaid")),
            (Account.Mode.POSTPAID, gettext_lazy("Postpaid")),
        ],
        widget=forms.HiddenInput,
    )


@staff_view
@require_http_methods(["GET", "POST"])
def mode_switch(request: HttpRequest, account_id) -> HttpResponse:
    """Switch a tenancy between prepaid and postpaid, after seeing what settles."""
    account = _tenancy(request, account_id)
    target = (
        Account.Mode.PREPAID if account.mode == Account.Mode.POSTPAID else Account.Mode.POSTPAID
    )
    form = ModeSwitchForm(initial={"mode": target})
    status = 200
    if request.method == "POST":
        require(request, Capability.ADMINISTER)
        form = ModeSwitchForm(request.POST)
        if form.is_valid():
            try:
                account_mode_switch(
                    account=account, mode=form.cleaned_data["mode"], actor=request.user
                )
            except ValidationError as error:
                form.add_service_error(error)
            else:
                messages.success(request, _("The account's mode is switched."))
                return redirect("accounts:account", account_id=account.uuid)
        status = 400
    context = {
        "account": account,
        "property": account.unit.property,
        "target": target,
        "form": form,
        "balance": account.wallet.balance,
        "open_amount": open_amount(account=account),
        "can_administer": request.scope.can(Capability.ADMINISTER),
    }
    return render(request, "billing/bills/mode_switch.html", context, status=status)


# The credit policy -------------------------------------------------------------------------------


class ReminderDaysField(forms.CharField):
    """Days from the due date separated by commas or spaces, such as "-3, 0, 7"."""

    def to_python(self, value) -> list[int]:
        days = []
        for part in re.split("[\\s,;\uff0c\u3001\uff1b]+", super().to_python(value)):
            if not part:
                continue
            try:
                days.append(int(part))
            except ValueError:
                raise ValidationError(
                    _("%(value)s is not a whole number of days.") % {"value": part}
                ) from None
        return days


class CreditPolicyForm(ServiceErrorsMixin, forms.Form):
    bill_due_days = forms.IntegerField(
        label=gettext_lazy("Bills are due after (days)"), min_value=0, max_value=90
    )
    reminder_days = ReminderDaysField(
        label=gettext_lazy("Reminders (days from the due date)"),
        help_text=gettext_lazy("For example -3, 0, 7: three days before, on the day, a week late."),
        required=False,
    )
    late_fee = _amount_field(
        gettext_lazy("Late fee"), gettext_lazy("Zero: no late fee."), min_value=0
    )
    late_fee_after_days = forms.IntegerField(
        label=gettext_lazy("Late fee after (days past due)"), min_value=0, max_value=365
    )
    overdue_cutoff_days = forms.IntegerField(
        label=gettext_lazy("Cut off after (days past due)"),
        help_text=gettext_lazy("Empty: a postpaid account is never cut off for an unpaid bill."),
        min_value=0,
        max_value=365,
        required=False,
    )
    recovery_percent = forms.DecimalField(
        label=gettext_lazy("Debt recovered from each top-up (%)"),
        max_digits=5,
        decimal_places=2,
        min_value=0,
        max_value=100,
    )
    recovery_daily_cap = _amount_field(
        gettext_lazy("At most recovered per day"),
        gettext_lazy("Empty: no daily cap."),
        required=False,
    )
    recovery_energy_minimum = _amount_field(
        gettext_lazy("Of each top-up, always to energy"), min_value=0
    )
    emergency_credit_amount = _amount_field(
        gettext_lazy("Emergency credit"), gettext_lazy("Zero: not offered."), min_value=0
    )
    emergency_credit_below = _amount_field(gettext_lazy("Offered below a balance of"))
    emergency_credit_self_service = forms.BooleanField(
        label=gettext_lazy("Tenants may take it themselves in the portal"), required=False
    )

    @staticmethod
    def initial_for(policy) -> dict:
        initial = {name: getattr(policy, name) for name in POLICY_FIELDS}
        initial["reminder_days"] = ", ".join(str(day) for day in policy.reminder_days or [])
        return initial


@staff_view
@require_http_methods(["GET", "POST"])
def credit_policy_edit(request: HttpRequest, property_id) -> HttpResponse:
    """A property's rules for postpaid bills, debt recovery and emergency credit."""
    prop = scoped_or_404(Property, request.scope, uuid=property_id)
    can_administer = request.scope.can(Capability.ADMINISTER)
    status = 200
    if request.method == "POST":
        require(request, Capability.ADMINISTER)
        form = CreditPolicyForm(request.POST)
        if form.is_valid():
            try:
                credit_policy_update(property=prop, actor=request.user, **form.cleaned_data)
            except ValidationError as error:
                form.add_service_error(error)
            else:
                messages.success(request, _("The credit policy is saved."))
                return redirect("billing:credit-policy", property_id=prop.uuid)
        status = 400
    else:
        form = CreditPolicyForm(initial=CreditPolicyForm.initial_for(credit_policy(property=prop)))
    if not can_administer:
        for field in form.fields.values():
            field.disabled = True
    context = {"property": prop, "form": form, "can_administer": can_administer}
    return render(request, "billing/bills/credit_policy.html", context, status=status)


urlpatterns = [
    path("properties/<uuid:property_id>/bills/", property_bills, name="property-bills"),
    path("bills/<uuid:invoice_id>/", bill, name="bill"),
    path("bills/<uuid:invoice_id>/pdf/", bill_pdf, name="bill-pdf"),
    path("tenancies/<uuid:account_id>/bills/", tenancy_bills, name="tenancy-bills"),
    path("tenancies/<uuid:account_id>/mode/", mode_switch, name="mode-switch"),
    path(
        "properties/<uuid:property_id>/credit-policy/",
        credit_policy_edit,
        name="credit-policy",
    ),
]
