"""Admin for superusers to inspect data. Changes made here bypass the services' audit, so the
money-bearing and lifecycle models are read-only; day-to-day work happens in the dashboard."""

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from accounts.models import (
    Account,
    Membership,
    Organisation,
    Property,
    PropertyHoliday,
    Tenant,
    Unit,
)
from billing import services as billing
from prepaid.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS, Money


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Organisation)
class OrganisationAdmin(ReadOnlyAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]


@admin.register(Property)
class PropertyAdmin(ReadOnlyAdmin):
    list_display = ["name", "code", "organisation", "time_zone", "currency", "country"]
    list_filter = ["organisation", "currency", "country"]
    search_fields = ["name", "code"]


@admin.register(Unit)
class UnitAdmin(ReadOnlyAdmin):
    list_display = ["name", "property", "kind", "floor"]
    list_filter = ["property", "kind"]
    search_fields = ["name"]
    list_select_related = ["property"]


@admin.register(Tenant)
class TenantAdmin(ReadOnlyAdmin):
    list_display = ["name", "organisation", "phone", "email", "preferred_language"]
    list_filter = ["organisation", "preferred_language"]
    search_fields = ["name", "phone", "email"]


class CounterTopupForm(forms.Form):
    # Limits and the currency's minor unit are checked by the service, as for the API.
    amount = forms.DecimalField(max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES)
    channel = forms.ChoiceField(choices=[("cash", "Cash"), ("bank", "Bank transfer")])
    reference = forms.CharField(max_length=100, required=False)
    # Made when the form is rendered, so submitting the same form twice records one top-up.
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "unit", "mode", "status", "protected", "opened_at", "closed_at"]
    list_filter = ["status", "mode", "protected", "unit__property"]
    search_fields = ["tenant__name", "unit__name"]
    list_select_related = ["tenant", "unit__property"]
    # Adds a "Top up" link for superusers.
    change_form_template = "admin/accounts/account/change_form.html"

    def get_urls(self):
        topup = path(
            "<path:object_id>/topup/",
            self.admin_site.admin_view(self.topup_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_topup",
        )
        # Before the defaults, whose "<path:object_id>/" would catch it.
        return [topup, *super().get_urls()]

    def topup_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A counter top-up recorded by a superuser, through the same service as the API."""
        if not request.user.is_superuser:
            raise PermissionDenied
        account = self.get_object(request, unquote(object_id))
        if account is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if request.method == "POST":
            form = CounterTopupForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    result = billing.topup_record(
                        account=account,
                        amount=data["amount"],
                        channel=data["channel"],
                        reference=data["reference"],
                        actor=request.user,
                        idempotency_key=(
                            f"topup:{account.unit.property.organisation_id}:admin:"
                            f"{data['idempotency_key']}"
                        ),
                    )
                except billing.IdempotencyConflict:
                    form.add_error(
                        None,
                        "This form was already submitted with other values. "
                        "Open a new top-up form to record another top-up.",
                    )
                except billing.LedgerError as error:
                    self._add_ledger_errors(form, error)
                else:
                    receipt = result.receipt
                    if result.created:
                        messages.success(
                            request,
                            f"Receipt {receipt.display_number()}: "
                            f"{Money(receipt.amount, receipt.currency)} credited to {account}.",
                        )
                    else:
                        messages.info(
                            request,
                            f"This top-up was already recorded as receipt "
                            f"{receipt.display_number()}; nothing was credited twice.",
                        )
                    return redirect(
                        f"admin:{self.opts.app_label}_{self.opts.model_name}_change", account.pk
                    )
        else:
            form = CounterTopupForm(initial={"idempotency_key": uuid.uuid4(), "channel": "cash"})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Top up {account}",
            "original": account,
            "form": form,
            "balance": Money(account.wallet.balance, account.wallet.currency),
        }
        return TemplateResponse(request, "admin/accounts/account/topup.html", context)

    @staticmethod
    def _add_ledger_errors(form: forms.Form, error: billing.LedgerError) -> None:
        visible = {name for name, field in form.fields.items() if not field.widget.is_hidden}
        if not hasattr(error, "error_dict"):
            form.add_error(None, error.messages)
            return
        for name, errors in error.message_dict.items():
            form.add_error(name if name in visible and name != NON_FIELD_ERRORS else None, errors)


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["user", "organisation", "role"]
    list_filter = ["organisation", "role"]
    filter_horizontal = ["properties"]


@admin.register(PropertyHoliday)
class PropertyHolidayAdmin(ReadOnlyAdmin):
    list_display = ["property", "date", "name"]
    list_filter = ["property"]
