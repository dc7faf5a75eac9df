"""The staff dashboard's debt pages: a tenancy's debts (a fragment of the tenancy page), a debt
with its history, raising a debt, splitting one into instalments, granting emergency credit and
moving in an earlier tenancy's debt."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Account
from billing import debts
from billing.forms_debts import DebtRaiseForm, InstalmentPlanForm, suggested_instalments
from billing.models import Debt, InstalmentPlan
from prepaid.scoping import Capability
from prepaid.staff import require, scoped_or_404, staff_view


def _tenancy(request: HttpRequest, account_id) -> Account:
    return scoped_or_404(
        Account.objects.select_related("tenant", "unit__property", "wallet"),
        request.scope,
        uuid=account_id,
    )


def _debt(request: HttpRequest, debt_id) -> Debt:
    return scoped_or_404(
        Debt.objects.select_related("account__tenant", "account__unit__property", "property"),
        request.scope,
        uuid=debt_id,
    )


def _fragment_context(request: HttpRequest, account: Account) -> dict:
    can_administer = request.scope.can(Capability.ADMINISTER)
    is_open = account.status == Account.Status.OPEN
    return {
        "account": account,
        "currency": account.unit.property.currency,
        "summary": debts.debt_summary(account=account),
        "offer": debts.emergency_credit_offer(account=account, by_tenant=False)
        if is_open
        else None,
        "earlier": debts.earlier_debts(account=account) if is_open and can_administer else [],
        "can_operate": request.scope.can(Capability.OPERATE),
        "can_administer": can_administer,
        "is_open": is_open,
    }


@staff_view
@require_GET
def tenancy_debts(request: HttpRequest, account_id) -> HttpResponse:
    """The tenancy page's debts section: what is owed, how it is recovered, and the actions."""
    account = _tenancy(request, account_id)
    return render(request, "billing/debts/tenancy_debts.html", _fragment_context(request, account))


def _back_to_tenancy(account: Account) -> HttpResponse:
    return redirect("accounts:account", account_id=account.uuid)


@staff_view
@require_POST
def emergency_grant(request: HttpRequest, account_id) -> HttpResponse:
    account = _tenancy(request, account_id)
    require(request, Capability.OPERATE)
    try:
        debts.emergency_credit_take(account=account, actor=request.user, by_tenant=False)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("Emergency credit is granted."))
    if request.htmx:
        context = _fragment_context(request, _tenancy(request, account_id))
        return render(request, "billing/debts/tenancy_debts.html", context)
    return _back_to_tenancy(account)


@staff_view
@require_POST
def debts_move_in(request: HttpRequest, account_id) -> HttpResponse:
    """Move what the tenant's earlier tenancy (posted as `from`) still owes into this one."""
    account = _tenancy(request, account_id)
    require(request, Capability.ADMINISTER)
    earlier = scoped_or_404(
        Account.objects.select_related("unit"), request.scope, uuid=request.POST.get("from")
    )
    try:
        moved = debts.debts_move_in(account=account, earlier=earlier, actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        if moved:
            messages.success(request, _("The earlier tenancy's debt is moved to this one."))
        else:
            messages.info(request, _("The earlier tenancy owes nothing more to move."))
    return _back_to_tenancy(account)


@staff_view
@require_http_methods(["GET", "POST"])
def debt_raise(request: HttpRequest, account_id) -> HttpResponse:
    account = _tenancy(request, account_id)
    require(request, Capability.ADMINISTER)
    currency = account.unit.property.currency
    status = 200
    if request.method == "POST":
        form = DebtRaiseForm(request.POST, currency=currency)
        if form.is_valid():
            data = form.cleaned_data
            try:
                debt = debts.debt_raise(
                    account=account,
                    amount=data["amount"],
                    reason=data["reason"],
                    counter=data["counter"],
                    actor=request.user,
                    idempotency_key=str(data["idempotency_key"]),
                )
            except ValidationError as error:
                form.add_service_error(error)
            else:
                messages.success(request, _("The debt is raised."))
                return redirect("billing:debt", debt_id=debt.uuid)
        status = 400
    else:
        form = DebtRaiseForm(currency=currency)
    context = {"account": account, "property": account.unit.property, "form": form}
    return render(request, "billing/debts/debt_raise.html", context, status=status)


@staff_view
@require_GET
def debt_detail(request: HttpRequest, debt_id) -> HttpResponse:
    """A debt and everything that recovered it."""
    debt = _debt(request, debt_id)
    context = {
        "debt": debt,
        "account": debt.account,
        "property": debt.property,
        "outstanding": debts.outstanding(debt),
        "plans": debt.plans.prefetch_related("instalments"),
        "history": debts.debt_history(debt=debt),
        "can_administer": request.scope.can(Capability.ADMINISTER),
        "is_open": debt.status == Debt.Status.OPEN and debt.account.status == Account.Status.OPEN,
        "has_active_plan": debt.plans.filter(status=InstalmentPlan.Status.ACTIVE).exists(),
    }
    return render(request, "billing/debts/debt_detail.html", context)


@staff_view
@require_http_methods(["GET", "POST"])
def plan_create(request: HttpRequest, debt_id) -> HttpResponse:
    debt = _debt(request, debt_id)
    require(request, Capability.ADMINISTER)
    prop = debt.property
    status = 200
    if request.method == "POST":
        form = InstalmentPlanForm(request.POST)
        if form.is_valid():
            try:
                debts.instalment_plan_create(
                    debt=debt, instalments=form.cleaned_data["instalments"], actor=request.user
                )
            except ValidationError as error:
                form.add_service_error(error)
            else:
                messages.success(request, _("The instalment plan is set up."))
                return redirect("billing:debt", debt_id=debt.uuid)
        status = 400
    else:
        suggestion = suggested_instalments(
            owed=debts.outstanding(debt),
            currency=prop.currency,
            start=debts.local_today(property=prop),
        )
        form = InstalmentPlanForm(initial={"instalments": suggestion})
    context = {
        "debt": debt,
        "account": debt.account,
        "property": prop,
        "outstanding": debts.outstanding(debt),
        "form": form,
    }
    return render(request, "billing/debts/plan_create.html", context, status=status)


@staff_view
@require_POST
def plan_cancel(request: HttpRequest, debt_id) -> HttpResponse:
    """Cancel the debt's active plan: it goes back to a percentage of each top-up."""
    debt = _debt(request, debt_id)
    require(request, Capability.ADMINISTER)
    plan = debt.plans.filter(status=InstalmentPlan.Status.ACTIVE).first()
    if plan is None:
        messages.info(request, _("This debt has no active plan."))
        return redirect("billing:debt", debt_id=debt.uuid)
    try:
        debts.instalment_plan_cancel(
            plan=plan, actor=request.user, reason=request.POST.get("reason", "")
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("The plan is cancelled."))
    return redirect("billing:debt", debt_id=debt.uuid)


urlpatterns = [
    path("tenancies/<uuid:account_id>/debts/", tenancy_debts, name="tenancy-debts"),
    path("tenancies/<uuid:account_id>/debts/raise/", debt_raise, name="debt-raise"),
    path(
        "tenancies/<uuid:account_id>/debts/emergency-credit/",
        emergency_grant,
        name="emergency-grant",
    ),
    path("tenancies/<uuid:account_id>/debts/move-in/", debts_move_in, name="debts-move-in"),
    path("debts/<uuid:debt_id>/", debt_detail, name="debt"),
    path("debts/<uuid:debt_id>/plan/", plan_create, name="plan-create"),
    path("debts/<uuid:debt_id>/plan/cancel/", plan_cancel, name="plan-cancel"),
]
