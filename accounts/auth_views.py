"""Staff sign-in: password, then a TOTP code for staff with a device; enrolling and removing the
device; an owner's rule that the organisation's staff must use one; password reset by email."""

import time
from base64 import b32encode
from contextlib import suppress

import django_otp
import segno
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordResetForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts import two_factor
from accounts.models import Membership
from prepaid.scoping import Role

# The user who gave the right password and still owes a code, kept in the signed-out session.
PENDING_SESSION_KEY = "sign_in_pending"
# Long enough to open an authenticator app, short enough that a forgotten tab goes stale.
PENDING_SECONDS = 300


class SignInView(auth_views.LoginView):
    """The password step. Staff with a confirmed device are not signed in yet: they owe a code."""

    def form_valid(self, form):
        user = form.get_user()
        if two_factor.two_factor_device(user=user) is None:
            return super().form_valid(form)
        self.request.session[PENDING_SESSION_KEY] = {
            "user": user.pk,
            "backend": user.backend,
            "next": self.get_success_url(),
            "at": int(time.time()),
        }
        return redirect("login-verify")


def _pending_user(request):
    pending = request.session.get(PENDING_SESSION_KEY)
    if not pending or time.time() - pending["at"] > PENDING_SECONDS:
        return None, None
    user = get_user_model().objects.filter(pk=pending["user"], is_active=True).first()
    return user, pending


def _code(request) -> str:
    return request.POST.get("code", "")


def _safe_next(request) -> str:
    next_url = request.GET.get("next", "")
    if url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return next_url
    return reverse("home")


def _paused_message(until) -> str:
    local = formats.time_format(timezone.localtime(until), "H:i")
    return _("Too many wrong codes. Try again after %(time)s.") % {"time": local}


@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
def sign_in_verify(request):
    """The code step: after the password, or for a session signed in some other way (the admin's
    own sign-in) whose user has a device."""
    if request.user.is_authenticated:
        user, pending = request.user, None
        if request.user.is_verified() or two_factor.two_factor_device(user=user) is None:
            return redirect(_safe_next(request))
    else:
        user, pending = _pending_user(request)
        if user is None:
            request.session.pop(PENDING_SESSION_KEY, None)
            messages.info(request, _("Sign in again, please."))
            return redirect("login")
    error, status = "", 200
    if request.method == "POST":
        try:
            device = two_factor.two_factor_verify(user=user, token=_code(request))
        except two_factor.TwoFactorPaused as paused:
            error, status = _paused_message(paused.until), 429
        else:
            if device is not None:
                if pending is None:
                    # Verifying raises what the session may do, so it gets a new key.
                    request.session.cycle_key()
                    next_url = _safe_next(request)
                else:
                    del request.session[PENDING_SESSION_KEY]
                    auth_login(request, user, backend=pending["backend"])
                    next_url = pending["next"]
                django_otp.login(request, device)
                return redirect(next_url)
            error, status = _("That code is not right. Check the time on your phone, too."), 200
    return render(request, "registration/verify.html", {"error": error}, status=status)


def _membership(request) -> Membership:
    membership = Membership.objects.select_related("organisation").filter(user=request.user)
    membership = membership.first()
    if membership is None:
        # Two-factor sign-in is for an organisation's staff; tenants have the portal.
        raise PermissionDenied
    return membership


def _qr_svg(device) -> str:
    return segno.make(device.config_url).svg_inline(scale=5)


def _secret(device) -> str:
    key = b32encode(device.bin_key).decode()
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def two_factor_settings(request):
    """Set up two-factor sign-in (POST starts enrolling), or see that it is on."""
    membership = _membership(request)
    if request.method == "POST":
        # Already set up, perhaps from another tab: the page then says so.
        with suppress(ValidationError):
            two_factor.two_factor_enrol(user=request.user)
        return redirect("two-factor")
    return _two_factor_page(request, membership)


def _two_factor_page(request, membership, *, error: str = "", status: int = 200):
    device = two_factor.two_factor_device(user=request.user)
    pending = None if device else two_factor.two_factor_pending_device(user=request.user)
    context = {
        "device": device,
        "pending": pending,
        "qr_svg": _qr_svg(pending) if pending else "",
        "secret": _secret(pending) if pending else "",
        "required": membership.organisation.require_two_factor,
        "error": error,
    }
    return render(request, "accounts/two_factor.html", context, status=status)


@never_cache
@login_required
@sensitive_post_parameters("code")
@require_POST
def two_factor_confirm(request):
    membership = _membership(request)
    try:
        device = two_factor.two_factor_confirm(user=request.user, token=_code(request))
    except two_factor.TwoFactorPaused as paused:
        error = _paused_message(paused.until)
        return _two_factor_page(request, membership, error=error, status=429)
    except ValidationError:
        return redirect("two-factor")
    if device is None:
        error = _("That code is not right. Type the six digits your app shows now.")
        return _two_factor_page(request, membership, error=error)
    # The code just typed proves the device, so this session counts as verified with it.
    django_otp.login(request, device)
    messages.success(request, _("Two-factor sign-in is on."))
    return redirect("two-factor")


@never_cache
@login_required
@sensitive_post_parameters("code")
@require_POST
def two_factor_remove(request):
    membership = _membership(request)
    try:
        removed = two_factor.two_factor_remove(user=request.user, token=_code(request))
    except two_factor.TwoFactorPaused as paused:
        error = _paused_message(paused.until)
        return _two_factor_page(request, membership, error=error, status=429)
    except ValidationError:
        return redirect("two-factor")
    if not removed:
        error = _("That code is not right, so two-factor sign-in is still on.")
        return _two_factor_page(request, membership, error=error)
    messages.success(request, _("Two-factor sign-in is off."))
    return redirect("two-factor")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def organisation_security(request):
    """Owners decide whether their organisation's staff must use two-factor sign-in."""
    membership = _membership(request)
    if membership.role != Role.OWNER:
        raise PermissionDenied
    organisation = membership.organisation
    if request.method == "POST":
        required = request.POST.get("require_two_factor") == "on"
        two_factor.organisation_two_factor_require(
            organisation=organisation, actor=request.user, required=required
        )
        messages.success(request, _("Saved."))
        return redirect("organisation-security")
    return render(request, "accounts/organisation_security.html", {"organisation": organisation})


class StaffPasswordResetForm(PasswordResetForm):
    """Only staff reset their password here; tenants have the portal's own reset by code."""

    def get_users(self, email):
        return (user for user in super().get_users(email) if hasattr(user, "membership"))


class PasswordResetView(auth_views.PasswordResetView):
    form_class = StaffPasswordResetForm
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
