"""Signing in to the portal: with a password, with a one-time code, and resetting a password.

No answer tells whether an identifier belongs to anyone: wrong passwords and unknown identifiers
read the same, and asking for a code always leads to a page to type it on (portal.signin).
Failed attempts go through authenticate(), where axes counts them and locks out.
"""

from urllib.parse import urlencode

from axes.utils import reset as axes_reset
from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from portal.access import is_tenant_login
from portal.auth_forms import CodeRequestForm, CodeVerifyForm, ResetConfirmForm, SignInForm
from portal.models import CODE_LIFETIME_MINUTES, SignInCode
from portal.signin import (
    code_axes_username,
    password_reset_confirm,
    sign_in_code_issue,
    sign_in_code_refusal,
)

GET_OR_POST = require_http_methods(["GET", "POST"])


def _next_url(request) -> str:
    """Where to go once signed in: the asked-for page if it is on this site, else the portal."""
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return wanted
    return reverse("portal:index")


def _with_next(url: str, request) -> str:
    wanted = request.POST.get("next") or request.GET.get("next")
    return f"{url}?{urlencode({'next': wanted})}" if wanted else url


def _context(request, form, **extra) -> dict:
    return {"form": form, "next": request.POST.get("next") or request.GET.get("next", ""), **extra}


@sensitive_post_parameters("password")
@never_cache
@GET_OR_POST
def sign_in(request):
    if request.method == "GET" and is_tenant_login(request.user):
        return redirect(_next_url(request))
    form = SignInForm(request, data=request.POST if request.method == "POST" else None)
    if form.is_valid():
        login(request, form.user)
        # Axes forgets the failures of the login's username on success; these were counted
        # under the identifier typed, so forget those too.
        axes_reset(ip=request.axes_ip_address, username=form.axes_username)
        return redirect(_next_url(request))
    return render(request, "portal/sign_in.html", _context(request, form))


def _request_code(request, *, purpose: str, template: str, verify_view: str):
    form = CodeRequestForm(data=request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            code_uuid = sign_in_code_issue(
                identifier=form.cleaned_data["identifier"],
                purpose=purpose,
                channel=form.cleaned_data["channel"] or None,
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.info(
                request,
                _(
                    "If that email or phone number is yours, we have sent a code to it. It "
                    "expires in %(minutes)s minutes."
                )
                % {"minutes": CODE_LIFETIME_MINUTES},
            )
            url = reverse(verify_view, kwargs={"code_uuid": code_uuid})
            return redirect(_with_next(url, request))
    return render(request, template, _context(request, form))


@never_cache
@GET_OR_POST
def code_request(request):
    return _request_code(
        request,
        purpose=SignInCode.Purpose.SIGN_IN,
        template="portal/code_request.html",
        verify_view="portal:code-verify",
    )


@sensitive_post_parameters("code")
@never_cache
@GET_OR_POST
def code_verify(request, code_uuid):
    form = CodeVerifyForm(data=request.POST if request.method == "POST" else None)
    if form.is_valid():
        user = authenticate(
            request,
            username=code_axes_username(code_uuid),
            code_uuid=code_uuid,
            code=form.cleaned_data["code"],
            purpose=SignInCode.Purpose.SIGN_IN,
        )
        if user is not None and is_tenant_login(user):
            login(request, user)
            return redirect(_next_url(request))
        form.add_error(
            "code",
            sign_in_code_refusal(code_uuid=code_uuid, purpose=SignInCode.Purpose.SIGN_IN),
        )
    return render(request, "portal/code_verify.html", _context(request, form))


@never_cache
@GET_OR_POST
def reset_request(request):
    return _request_code(
        request,
        purpose=SignInCode.Purpose.RESET,
        template="portal/reset_request.html",
        verify_view="portal:reset-confirm",
    )


@sensitive_post_parameters("code", "new_password1", "new_password2")
@never_cache
@GET_OR_POST
def reset_confirm(request, code_uuid):
    form = ResetConfirmForm(data=request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            user = password_reset_confirm(
                request=request,
                code_uuid=code_uuid,
                code=form.cleaned_data["code"],
                new_password=form.cleaned_data["new_password1"],
            )
        except ValidationError as error:
            form.add_error("new_password1", error)
        else:
            if user is not None:
                login(request, user)
                messages.success(request, _("Your new password is set, and you are signed in."))
                return redirect("portal:index")
            form.add_error(
                "code",
                sign_in_code_refusal(code_uuid=code_uuid, purpose=SignInCode.Purpose.RESET),
            )
    return render(request, "portal/reset_confirm.html", _context(request, form))


@require_POST
def sign_out(request):
    logout(request)
    messages.info(request, _("You are signed out."))
    return redirect("portal:sign-in")
