from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from accounts.selectors import property_summaries, scope_for_user
from portal.access import is_tenant_login


@login_required
def home(request):
    scope = scope_for_user(user=request.user)
    if scope is None and is_tenant_login(request.user):
        # A tenant who signed in at the staff page belongs in the portal.
        return redirect("portal:index")
    context = {"scope": scope}
    if scope is not None:
        context["properties"] = property_summaries(scope=scope)
    return render(request, "home.html", context)
