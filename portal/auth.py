"""How a tenant proves who they are: a password with their email or phone, or a one-time code.

Both backends sit behind axes.backends.AxesStandaloneBackend in AUTHENTICATION_BACKENDS, so
callers pass `request=` and the identifier as `username=` to authenticate(), and axes counts
failures per identifier and address.
"""

import re
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db.models import F, Func, Value
from django.db.models.functions import Replace

from accounts.models import Tenant

# What people put between the digits of a phone number.
_PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")
_STORED_PUNCTUATION = (" ", "-", "(", ")", ".", "/")
# The shortest number we compare, so a few digits never match the end of someone's number.
MIN_PHONE_DIGITS = 7
# Country calling codes are one to three digits long.
MAX_COUNTRY_CODE_DIGITS = 3


@dataclass(frozen=True)
class PhoneNumber:
    digits: str
    # Written with its country code (+86… or 0086…), rather than as dialled at home.
    international: bool


def phone_parse(raw: str) -> PhoneNumber | None:
    """A phone number as digits: "+86 (138) 0013-8000" and "0086 138 0013 8000" are both
    international 8613800138000; "07700 900123" is national 7700900123 (the trunk 0 dropped)."""
    text = _PHONE_PUNCTUATION.sub("", raw.strip())
    international = False
    if text.startswith("+"):
        text, international = text[1:], True
    elif text.startswith("00"):
        text, international = text[2:], True
    if not text.isdigit() or len(text) < MIN_PHONE_DIGITS:
        return None
    if not international:
        text = text.removeprefix("0")
    return PhoneNumber(text, international)


def phones_match(a: PhoneNumber, b: PhoneNumber) -> bool:
    """The same line. A national number matches an international one that ends with it after a
    country code; the country code may also have been typed without its "+"."""
    if a.international == b.international:
        return a.digits == b.digits
    full, local = (a, b) if a.international else (b, a)
    prefix = len(full.digits) - len(local.digits)
    return 0 <= prefix <= MAX_COUNTRY_CODE_DIGITS and full.digits.endswith(local.digits)


def tenants_for_identifier(identifier: str) -> list[Tenant]:
    """The tenants with a portal login whose email (any case) or phone number is `identifier`.
    Several when one person is a tenant of several landlords."""
    identifier = identifier.strip()
    tenants = Tenant.objects.filter(user__isnull=False).select_related("user")
    if "@" in identifier:
        return list(tenants.filter(email__iexact=identifier).order_by("pk"))
    typed = phone_parse(identifier)
    if typed is None:
        return []
    # Narrow in the database by the last digits, which every spelling of the number shares,
    # then compare properly here.
    candidates = tenants.annotate(phone_digits=_without_punctuation("phone")).filter(
        phone_digits__endswith=typed.digits[-MIN_PHONE_DIGITS:]
    )
    return [
        tenant
        for tenant in candidates.order_by("pk")
        if (stored := phone_parse(tenant.phone)) is not None and phones_match(stored, typed)
    ]


def _without_punctuation(field: str) -> Func:
    expression = F(field)
    for character in _STORED_PUNCTUATION:
        expression = Replace(expression, Value(character), Value(""))
    return expression


class TenantPasswordBackend(ModelBackend):
    """A tenant's email or phone number and their login's password."""

    def authenticate(self, request, username=None, password=None):
        if not username or password is None:
            return None
        users = {tenant.user_id: tenant.user for tenant in tenants_for_identifier(username)}
        for user in users.values():
            if user.check_password(password) and self.user_can_authenticate(user):
                return user
        if not users:
            # Hash anyway, so an unknown identifier takes as long as a wrong password.
            get_user_model()().set_password(password)
        return None


class SignInCodeBackend(ModelBackend):
    """A one-time code (by its uuid and its digits) for signing in or for a password reset.

    `username` is only for axes, which counts failures by it."""

    def authenticate(self, request, username=None, code_uuid=None, code=None, purpose=None):
        from portal.signin import sign_in_code_redeem

        if code_uuid is None or not code:
            return None
        user = sign_in_code_redeem(code_uuid=code_uuid, code=code, purpose=purpose)
        if user is None or not self.user_can_authenticate(user):
            return None
        return user
