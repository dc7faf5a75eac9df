"""Session rules for every request: idle sessions end, and staff who owe a second factor can
reach nothing but the pages that let them give one."""

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, logout
from django.contrib.auth.signals import user_logged_in
from django.db.models import Exists, OuterRef
from django.dispatch import receiver
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Membership

LAST_ACTIVITY_SESSION_KEY = "last_activity"
# Recording every request would write the session row on every request; to the minute is enough
# for a timeout counted in minutes.
ACTIVITY_RESOLUTION_SECONDS = 60


def _redirect(request, url: str) -> HttpResponse:
    if request.htmx:
        # htmx would otherwise swap the sign-in page into whatever fragment asked.
        response = HttpResponse()
        response["HX-Redirect"] = url
        return response
    return redirect(url)


def _with_next(request, url_name: str) -> str:
    url = reverse(url_name)
    if request.method == "GET" and not request.htmx:
        url += "?" + urlencode({"next": request.get_full_path()})
    return url


@receiver(user_logged_in)
def _start_idle_clock(sender, request, user, **kwargs):
    # Started with the sign-in, which saves the session anyway, so the first page after it
    # does not write the session again. Connected here: it matters only where the middleware runs.
    if request is not None and hasattr(request, "session"):
        request.session[LAST_ACTIVITY_SESSION_KEY] = int(time.time())


class IdleSessionMiddleware:
    """Sign out anyone, staff or tenant, after SESSION_IDLE_MINUTES without a request.

    A middleware rather than SESSION_COOKIE_AGE with SESSION_SAVE_EVERY_REQUEST: that pair
    rewrites the session on every request, ends the session silently (no message, and htmx
    swaps a sign-in page into a fragment), and leaves the expiry to whatever the session engine
    does. Here the rule is checked on the server for every request, whatever the engine.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = int(time.time())
            last = request.session.get(LAST_ACTIVITY_SESSION_KEY)
            if last is not None and now - last > settings.SESSION_IDLE_MINUTES * 60:
                return self._sign_out(request)
            if last is None or now - last >= ACTIVITY_RESOLUTION_SECONDS:
                request.session[LAST_ACTIVITY_SESSION_KEY] = now
        return self.get_response(request)

    def _sign_out(self, request):
        in_portal = request.path_info.startswith(reverse("portal:index"))
        logout(request)
        if request.path_info.startswith("/api/"):
            # The API answers for itself: now signed out, the request gets its 401 or 403.
            return self.get_response(request)
        messages.info(
            request,
            _("You were signed out after %(minutes)d minutes without activity.")
            % {"minutes": settings.SESSION_IDLE_MINUTES},
        )
        return _redirect(request, _with_next(request, "portal:sign-in" if in_portal else "login"))


def _exempt_prefixes() -> tuple[str, ...]:
    return (
        reverse("login"),  # and the code step under it, /login/verify/
        reverse("logout"),
        reverse("two-factor"),
        reverse("password_reset"),
        reverse("portal:index"),
        "/payments/",
        "/i18n/",
        settings.STATIC_URL if settings.STATIC_URL.startswith("/") else "/" + settings.STATIC_URL,
    )


class TwoFactorMiddleware:
    """Staff who have a device, or whose organisation requires one, must have given a code this
    session. Until then pages send them to the code step (or to enrol), and session API calls
    answer 403. Requests with an API token are machine access and pass untouched: DRF
    authenticates them later, so at this point their user is anonymous anyway.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if (
            not user.is_authenticated
            or request.path_info.startswith(_exempt_prefixes())
            or request.headers.get("Authorization", "").startswith("Token ")
            or user.is_verified()
        ):
            return self.get_response(request)
        owes = self._owes(user)
        if owes is None:
            return self.get_response(request)
        if request.path_info.startswith("/api/"):
            return JsonResponse(
                {"detail": _("Two-factor sign-in is required: sign in again with your code.")},
                status=403,
            )
        return _redirect(request, _with_next(request, owes))

    @staticmethod
    def _owes(user) -> str | None:
        """Where the user must go first: the code step, enrolment, or nowhere. One query."""
        has_device, required = (
            get_user_model()
            .objects.filter(pk=user.pk)
            .values_list(
                Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)),
                Exists(
                    Membership.objects.filter(
                        user=OuterRef("pk"), organisation__require_two_factor=True
                    )
                ),
            )
            .get()
        )
        if has_device:
            return "login-verify"
        if required:
            return "two-factor"
        return None
