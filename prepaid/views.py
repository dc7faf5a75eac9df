from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from accounts.selectors import accounts_of_tenant_user, property_summaries, scope_for_user


@login_required
def home(request):
    scope = scope_for_user(user=request.user)
    context = {"scope": scope}
    if scope is not None:
        context["properties"] = property_summaries(scope=scope)
    else:
        context["tenant_accounts"] = accounts_of_tenant_user(user=request.user)
    return render(request, "home.html", context)
