from dataclasses import replace

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render

from accounts import selectors
from accounts.selectors import scope_for_user
from billing.selectors import month_forecasts
from portal.access import is_tenant_login
from prepaid.staff import staff_view

# The overview's figures refresh this often (seconds).
OVERVIEW_POLL_SECONDS = 30


@login_required
def home(request):
    """Where a sign-in lands: staff on the overview, tenants in the portal."""
    if scope_for_user(user=request.user) is not None:
        return redirect("overview")
    if is_tenant_login(request.user):
        return redirect("portal:index")
    return render(request, "home.html")


@staff_view
def overview(request):
    """What is wrong right now, across the caller's properties or one of them (?property=)."""
    properties = selectors.scope_properties(scope=request.scope)
    chosen = None
    scope = request.scope
    wanted = request.GET.get("property")
    if wanted:
        chosen = next((prop for prop in properties if str(prop.uuid) == wanted), None)
        if chosen is None:
            raise Http404("No property matches.")
        scope = replace(scope, property_ids=frozenset({chosen.pk}))
    shown = [chosen] if chosen else properties
    context = {
        "properties": properties,
        "property": chosen,
        # Zero is written in this currency when nothing was held or earned.
        "currency": shown[0].currency if shown else None,
        "figures": selectors.overview(scope=scope, properties=shown),
        "poll_seconds": OVERVIEW_POLL_SECONDS,
    }
    if request.htmx:
        return render(request, "dashboard/overview.html#figures", context)
    # The month's forecast changes slowly: it is read with the page, not with every refresh.
    context["forecasts"] = month_forecasts(scope=scope, properties=shown)
    return render(request, "dashboard/overview.html", context)
