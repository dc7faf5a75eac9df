"""Who may use the portal: a signed-in login that stands for at least one tenant."""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from accounts.models import Tenant


def is_tenant_login(user) -> bool:
    return user.is_authenticated and Tenant.objects.filter(user=user).exists()


def tenant_required(view):
    """Signed-in tenants only. Anyone else is sent to the portal's sign-in, and a staff login,
    which has no tenancy, is refused rather than shown an empty portal."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("portal:sign-in"))
        if not is_tenant_login(request.user):
            raise PermissionDenied("This sign-in is not a tenant's.")
        return view(request, *args, **kwargs)

    return wrapped
