"""The staff dashboard's money pages: the counter top-up and its receipt, a property's
balance policy with a preview of its protected periods, and its months, closed or open."""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from accounts.models import Account, Property
from billing.control import balance_policy_update
from billing.forms import BalancePolicyForm, CounterTopupForm, ServiceErrorsMixin
from billing.models import Receipt
from billing.periods import PeriodError, closed_until, period_close, property_periods
from billing.receipts import (
    PDF_MIMETYPE,
    receipt_document,
    receipt_filename,
    receipt_language,
    receipt_pdf,
)
from billing.selectors import (
    Supply,
    balance_policy,
    protected_periods,
    protected_windows,
    supply_state,
)
from billing.services import IdempotencyConflict, LedgerError, topup_record
from notifications.texts import LANGUAGES
from prepaid.scoping import Capability
from prepaid.staff import require, scoped_or_404, staff_view

# While a relay command is on its way, the supply state asks this often (seconds).
SUPPLY_POLL_SECONDS = 5
RECEIPT_LANGUAGE_NAMES = {"en": "English", "zh-hans": "简体中文"}


def _tenancy(request: HttpRequest, account_id) -> Account:
    return scoped_or_404(
        Account.objects.select_related("tenant", "unit__property", "wallet"),
        request.scope,
        uuid=account_id,
    )


@staff_view
@require_http_methods(["GET", "POST"])
def counter_topup(request: HttpRequest, account_id) -> HttpResponse:
    """Cash or a bank transfer taken at the counter, then its receipt."""
    account = _tenancy(request, account_id)
    form = None
    status = 200
    if request.method == "POST":
        require(request, Capability.OPERATE)
        form = CounterTopupForm(request.POST, account=account)
        if form.is_valid():
            response = _topup(request, account, form)
            if response is not None:
                return response
        status = 400
    elif request.scope.can(Capability.OPERATE) and account.status == Account.Status.OPEN:
        form = CounterTopupForm(account=account)
    context = {
        "account": account,
        "property": account.unit.property,
        "supply": supply_state(account=account),
        "form": form,
        "can_operate": request.scope.can(Capability.OPERATE),
    }
    return render(request, "billing/topup.html", context, status=status)


def _topup(request: HttpRequest, account: Account, form: CounterTopupForm) -> HttpResponse | None:
    """Record the top-up and send the clerk to its receipt; None when the service refused."""
    data = form.cleaned_data
    try:
        result = topup_record(
            account=account,
            amount=data["amount"],
            channel=data["channel"],
            reference=data["reference"],
            actor=request.user,
            idempotency_key=form.ledger_key(organisation_id=request.scope.organisation_id),
        )
    except IdempotencyConflict:
        form.add_error(
            "idempotency_key",
            _("This form was already used for another top-up. Reload the page first."),
        )
        return None
    except LedgerError as error:
        form.add_service_error(error)
        return None
    if result.created:
        messages.success(request, _("The top-up is recorded."))
    else:
        messages.info(request, _("This top-up was recorded before; here is its receipt."))
    return redirect("billing:receipt", receipt_id=result.receipt.uuid)


def _receipt(request: HttpRequest, receipt_id) -> tuple[Receipt, str]:
    found = scoped_or_404(
        Receipt.objects.select_related("property", "account__tenant", "account__unit__property"),
        request.scope,
        uuid=receipt_id,
    )
    language = request.GET.get("language")
    if language not in LANGUAGES:
        language = receipt_language(receipt=found)
    return found, language


@staff_view
@require_GET
def receipt(request: HttpRequest, receipt_id) -> HttpResponse:
    """A receipt to print at the counter, and the supply of its tenancy coming back."""
    found, language = _receipt(request, receipt_id)
    supply = supply_state(account=found.account)
    context = {
        "receipt": found,
        "account": found.account,
        "supply": supply,
        "poll_seconds": SUPPLY_POLL_SECONDS
        if supply.supply in (Supply.RESTORING, Supply.CUTTING)
        else None,
    }
    if request.htmx:
        return render(request, "billing/receipt.html#supply", context)
    context.update(
        document=receipt_document(receipt=found, language=language),
        language=language,
        languages=[(code, RECEIPT_LANGUAGE_NAMES.get(code, code)) for code in LANGUAGES],
        can_operate=request.scope.can(Capability.OPERATE),
    )
    return render(request, "billing/receipt.html", context)


@staff_view
@require_GET
def receipt_download(request: HttpRequest, receipt_id) -> HttpResponse:
    found, language = _receipt(request, receipt_id)
    response = HttpResponse(receipt_pdf(receipt=found, language=language), PDF_MIMETYPE)
    response["Content-Disposition"] = f'attachment; filename="{receipt_filename(receipt=found)}"'
    response["Content-Language"] = language
    return response


# The balance policy ------------------------------------------------------------------------------


def _policy_context(prop: Property, form: BalancePolicyForm, periods) -> dict:
    return {
        "property": prop,
        "form": form,
        "windows": protected_windows(property=prop, periods=periods)
        if periods is not None
        else None,
    }


def _saved_policy_form(prop: Property, policy) -> BalancePolicyForm:
    return BalancePolicyForm(initial=BalancePolicyForm.initial_for(policy), currency=prop.currency)


@staff_view
@require_http_methods(["GET", "POST"])
def policy_edit(request: HttpRequest, property_id) -> HttpResponse:
    """When a property's tenants are warned, cut off and restored, and when they never are."""
    prop = scoped_or_404(Property, request.scope, uuid=property_id)
    policy = balance_policy(property=prop)
    can_administer = request.scope.can(Capability.ADMINISTER)
    status = 200
    if request.method == "POST":
        require(request, Capability.ADMINISTER)
        form = BalancePolicyForm(request.POST, currency=prop.currency)
        if form.is_valid():
            try:
                balance_policy_update(property=prop, actor=request.user, **form.cleaned_data)
            except ValidationError as error:
                form.add_service_error(error)
            else:
                messages.success(request, _("The policy is saved."))
                return redirect("billing:policy", property_id=prop.uuid)
        status = 400
    else:
        form = _saved_policy_form(prop, policy)
    if not can_administer:
        for field in form.fields.values():
            field.disabled = True
    # The preview follows the form as posted, or shows the saved policy.
    periods = form.protected_periods() if form.is_bound else None
    context = _policy_context(prop, form, periods or protected_periods(policy))
    context.update(policy=policy, can_administer=can_administer)
    return render(request, "billing/policy.html", context, status=status)


@staff_view
@require_GET
def policy_preview(request: HttpRequest, property_id) -> HttpResponse:
    """The next protected periods under the policy as the form stands; nothing is saved."""
    prop = scoped_or_404(Property, request.scope, uuid=property_id)
    if any(name in request.GET for name in BalancePolicyForm.base_fields):
        form = BalancePolicyForm(request.GET, currency=prop.currency)
        # Only the protection fields need to be valid for the preview.
        form.full_clean()
        periods = form.protected_periods()
    else:
        policy = balance_policy(property=prop)
        form = _saved_policy_form(prop, policy)
        periods = protected_periods(policy)
    return render(request, "billing/policy.html#preview", _policy_context(prop, form, periods))


# Period close ------------------------------------------------------------------------------------


class PeriodCloseForm(ServiceErrorsMixin, forms.Form):
    month = forms.DateField(widget=forms.HiddenInput)
    note = forms.CharField(
        label=gettext_lazy("Note"),
        help_text=gettext_lazy("Optional: why the month is closed now, for the audit log."),
        max_length=300,
        required=False,
    )


@staff_view
@require_http_methods(["GET", "POST"])
def periods(request: HttpRequest, property_id) -> HttpResponse:
    """A property's months: which are closed, by whom and when, and closing the next one."""
    prop = scoped_or_404(Property, request.scope, uuid=property_id)
    form = None
    notice = ""
    status = 200
    if request.method == "POST":
        require(request, Capability.CLOSE_PERIODS)
        form = PeriodCloseForm(request.POST)
        if form.is_valid():
            try:
                result = period_close(
                    property=prop,
                    month=form.cleaned_data["month"],
                    actor=request.user,
                    note=form.cleaned_data["note"],
                )
            except PeriodError as error:
                form.add_service_error(error)
            else:
                label = f"{result.closed.month:%Y-%m}"
                notice = (
                    _("%(month)s is closed: nothing more can be posted dated in it.")
                    if result.created
                    else _("%(month)s was already closed.")
                ) % {"month": label}
                if not request.htmx:
                    messages.success(request, notice)
                    return redirect("billing:periods", property_id=prop.uuid)
                form = None
        if form is not None:
            status = 400
    months = property_periods(property=prop)
    closable = next((row for row in months if row.closable), None)
    close_form = None
    if closable is not None and request.scope.can(Capability.CLOSE_PERIODS):
        posted_here = form is not None and form.cleaned_data.get("month") == closable.month
        close_form = form if posted_here else PeriodCloseForm(initial={"month": closable.month})
    context = {
        "property": prop,
        "months": months,
        "open_from": closed_until(property=prop),
        "close_form": close_form,
        # Errors of a POST for another month than the closable one are shown above the table.
        "form": form if form is not None and form is not close_form else None,
        "notice": notice,
        "can_close": request.scope.can(Capability.CLOSE_PERIODS),
    }
    template = "billing/periods.html#periods" if request.htmx else "billing/periods.html"
    return render(request, template, context, status=status)
