"""The tenant portal's debts: the card on the home page, the debts page with each debt's plan
and what recovered it, and taking emergency credit."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from accounts.models import Account
from billing import debts
from portal import selectors
from portal.access import tenant_required


def _context(account: Account) -> dict:
    offer = (
        debts.emergency_credit_offer(account=account, by_tenant=True)
        if account.status == Account.Status.OPEN
        else None
    )
    return {
        "account": account,
        "currency": account.unit.property.currency,
        "summary": debts.debt_summary(account=account),
        "offer": offer,
    }


@tenant_required
@require_GET
def debts_card(request: HttpRequest, account_uuid) -> HttpResponse:
    """The home page's card: what is owed, the plan's progress and the emergency credit offer.
    Empty when there is none of these to show."""
    account = selectors.portal_account(user=request.user, account_uuid=account_uuid)
    context = _context(account)
    offer = context["offer"]
    if not context["summary"].open and not (offer and (offer.available or offer.taken)):
        return HttpResponse("")
    return render(request, "portal/debts/card.html", context)


@tenant_required
@require_GET
def debts_page(request: HttpRequest, account_uuid) -> HttpResponse:
    account = selectors.portal_account(user=request.user, account_uuid=account_uuid)
    context = _context(account)
    context["recoveries"] = debts.account_recoveries(account=account)[:50]
    return render(request, "portal/debts/debts.html", context)


@tenant_required
@require_http_methods(["GET", "POST"])
def emergency_credit(request: HttpRequest, account_uuid) -> HttpResponse:
    """Emergency credit, confirmed first: it is an advance, repaid from the next top-up."""
    account = selectors.portal_account(user=request.user, account_uuid=account_uuid)
    if account.status != Account.Status.OPEN:
        raise Http404
    offer = debts.emergency_credit_offer(account=account, by_tenant=True)
    if request.method == "POST":
        try:
            debts.emergency_credit_take(account=account, actor=request.user, by_tenant=True)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
            return redirect("portal:emergency-credit", account_uuid=account.uuid)
        messages.success(request, _("Emergency credit is on your balance."))
        return redirect("portal:home", account_uuid=account.uuid)
    context = {"account": account, "currency": account.unit.property.currency, "offer": offer}
    return render(request, "portal/debts/emergency_credit.html", context)


urlpatterns = [
    path("accounts/<uuid:account_uuid>/debts/card/", debts_card, name="debts-card"),
    path("accounts/<uuid:account_uuid>/debts/", debts_page, name="debts"),
    path(
        "accounts/<uuid:account_uuid>/emergency-credit/",
        emergency_credit,
        name="emergency-credit",
    ),
]
