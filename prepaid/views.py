from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render

from accounts.selectors import scope_for_user
from portal.access import is_tenant_login
from prepaid.staff import staff_view


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
    raise Http404("placeholder")
