import hmac
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts.models import Tenant

CODE_LIFETIME_MINUTES = 10
CODE_LIFETIME = timedelta(minutes=CODE_LIFETIME_MINUTES)
CODE_MAX_ATTEMPTS = 5
CODE_DIGITS = 6


def _new_salt() -> str:
    return secrets.token_hex(16)


def _expiry():
    return timezone.now() + CODE_LIFETIME


class SignInCode(models.Model):
    """A one-time code sent to a tenant, to sign in or to set a new password.

    The code itself is never stored: it is derived from the row's uuid and salt with the
    SECRET_KEY, so a copy of the database does not hold working codes.
    """

    class Purpose(models.TextChoices):
        SIGN_IN = "sign_in", "Sign in"
        RESET = "reset", "Password reset"

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sign_in_codes"
    )
    purpose = models.CharField(max_length=10, choices=Purpose.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    # An email address or an E.164 phone number.
    recipient = models.CharField(max_length=254)
    language = models.CharField(max_length=10, choices=Tenant.Language.choices)
    salt = models.CharField(max_length=32, default=_new_salt, editable=False)
    expires_at = models.DateTimeField(default=_expiry)
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The throttle counts a login's recent codes.
        indexes = [models.Index(fields=["user", "created_at"], name="signincode_user_created")]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} code for {self.recipient}"

    @property
    def code(self) -> str:
        digest = salted_hmac(
            "portal.SignInCode", f"{self.uuid}:{self.salt}", algorithm="sha256"
        ).digest()
        return str(int.from_bytes(digest[:8], "big") % 10**CODE_DIGITS).zfill(CODE_DIGITS)

    def matches(self, code: str) -> bool:
        return hmac.compare_digest(self.code.encode(), code.strip().encode())

    def is_expired(self, now=None) -> bool:
        return (now or timezone.now()) >= self.expires_at

    def is_exhausted(self) -> bool:
        return self.attempts >= CODE_MAX_ATTEMPTS
