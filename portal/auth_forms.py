"""The sign-in forms. They parse and check what was typed; signing in and sending codes are
done by the views, through authenticate() and portal.signin."""

from django import forms
from django.contrib.auth import authenticate
from django.core.validators import RegexValidator
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from portal.access import is_tenant_login
from portal.models import CODE_DIGITS, SignInCode
from portal.signin import identifier_normalise


class IdentifierField(forms.CharField):
    def __init__(self, **kwargs):
        super().__init__(
            label=_("Email or phone number"),
            max_length=254,
            widget=forms.TextInput(attrs={"autocomplete": "username", "autocapitalize": "none"}),
            **kwargs,
        )


def _code_field() -> forms.CharField:
    return forms.CharField(
        label=_("Code"),
        max_length=20,
        # People paste codes with spaces, or type them in groups.
        validators=[
            RegexValidator(
                rf"^\s*(\d\s*){{{CODE_DIGITS}}}$",
                _("The code is %(digits)s digits.") % {"digits": CODE_DIGITS},
            )
        ],
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "pattern": r"[0-9 ]*",
            }
        ),
    )


def _digits(value: str) -> str:
    return "".join(value.split())


class SignInForm(forms.Form):
    identifier = IdentifierField()
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, request, *args, **kwargs):
        self.request = request
        self.user = None
        # What axes counts this sign-in's failures by.
        self.axes_username = ""
        # A staff login typed its own password correctly: say where it belongs.
        self.staff_login = False
        super().__init__(*args, **kwargs)

    def clean(self):
        identifier = self.cleaned_data.get("identifier")
        password = self.cleaned_data.get("password")
        if not identifier or password is None:
            return self.cleaned_data
        self.axes_username = identifier_normalise(identifier)
        user = authenticate(self.request, username=self.axes_username, password=password)
        if user is None:
            raise forms.ValidationError(
                _(
                    "That email or phone number and password do not match. Check them, or "
                    "sign in with a code instead."
                ),
                code="invalid_login",
            )
        if not is_tenant_login(user):
            self.staff_login = True
            raise forms.ValidationError(
                _("This is a staff login, not a tenant's. Staff sign in at %(url)s.")
                % {"url": reverse("login")},
                code="staff_login",
            )
        self.user = user
        return self.cleaned_data


class CodeRequestForm(forms.Form):
    identifier = IdentifierField()
    channel = forms.ChoiceField(
        label=_("Send the code by"),
        choices=[
            (SignInCode.Channel.EMAIL, _("Email")),
            (SignInCode.Channel.SMS, _("Text message (SMS)")),
        ],
        initial=SignInCode.Channel.EMAIL,
        required=False,
        widget=forms.RadioSelect,
        help_text=_("If we only have one of them, the code goes there."),
    )


class CodeVerifyForm(forms.Form):
    code = _code_field()

    def clean_code(self) -> str:
        return _digits(self.cleaned_data["code"])


class ResetConfirmForm(forms.Form):
    code = _code_field()
    new_password1 = forms.CharField(
        label=_("New password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    new_password2 = forms.CharField(
        label=_("New password again"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_code(self) -> str:
        return _digits(self.cleaned_data["code"])

    def clean_new_password2(self) -> str:
        first = self.cleaned_data.get("new_password1")
        second = self.cleaned_data["new_password2"]
        if first and first != second:
            raise forms.ValidationError(_("The two passwords differ."), code="password_mismatch")
        return second
