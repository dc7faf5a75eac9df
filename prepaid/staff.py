"""The staff dashboard's access rules, shared by every staff page and partial.

- `staff_view` admits signed-in staff of an organisation and puts their `Scope` on the request.
  Anyone else is sent to sign in, or refused when signed in as a tenant.
- Objects are fetched with `scoped_or_404`, through the model's `for_scope`, so another
  organisation's or an unassigned property's object is a 404, exactly like a missing one.
- A capability is checked with `require` only after the object is found, so a role without the
  permission gets 403 on objects it can see and 404 on the rest.

The access matrix (tests/prepaid/test_staff_matrix.py) walks the URL configuration and fails for
any dashboard URL whose view is not wrapped by `staff_view`.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest

from accounts.selectors import scope_for_user
from prepaid.scoping import Capability, Scope


def staff_view(view: Callable | None = None, *, read: Capability = Capability.VIEW) -> Callable:
    """Staff of an organisation only, with at least the `read` capability to open the page."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            scope = scope_for_user(user=request.user)
            if scope is None:
                raise PermissionDenied("This sign-in is not a staff member's.")
            request.scope = scope
            require(request, read)
            return view(request, *args, **kwargs)

        wrapped.staff_read_capability = read
        return wrapped

    return decorate(view) if view is not None else decorate


def require(request: HttpRequest, capability: Capability) -> None:
    """Refuse with 403 unless the caller's role has the capability."""
    if not request.scope.can(capability):
        raise PermissionDenied(f"Your role cannot do this ({capability} is needed).")


def scoped_or_404(queryset: QuerySet | type[Model], scope: Scope, **lookup: Any) -> Any:
    """The one object matching the lookup inside the caller's scope, or a 404."""
    if not isinstance(queryset, QuerySet):
        queryset = queryset._default_manager.all()
    try:
        return queryset.for_scope(scope).get(**lookup)
    except (queryset.model.DoesNotExist, ValueError) as error:
        raise Http404(f"No {queryset.model._meta.verbose_name} matches.") from error
