"""TOTP two-factor sign-in for staff: enrolling a device, confirming it, removing it, checking
codes, and an organisation's rule that its staff must use it.

Each service runs in one transaction and writes its audit row in it. Codes are checked with
django-otp's TOTPDevice, whose throttling doubles the wait after each wrong code; on top of it,
SIGN_IN_FAILURE_LIMIT wrong codes in a row pause the device for SIGN_IN_LOCKOUT_MINUTES, the
same rule as for passwords.
"""

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Membership, Organisation
from prepaid.audit.services import audit_record, update_audited

DEVICE_NAME = "Authenticator app"


class TwoFactorPaused(Exception):
    """Too many wrong codes: no code is checked until `until`."""

    def __init__(self, until: datetime):
        super().__init__(f"Two-factor codes are paused until {until.isoformat()}.")
        self.until = until


def two_factor_device(*, user: AbstractBaseUser) -> TOTPDevice | None:
    """The user's confirmed device, if they have one."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def two_factor_pending_device(*, user: AbstractBaseUser) -> TOTPDevice | None:
    """The device the user is enrolling: created, but not yet confirmed with a code."""
    return TOTPDevice.objects.filter(user=user, confirmed=False).first()


def two_factor_paused_until(*, device: TOTPDevice) -> datetime | None:
    """When codes may be tried again, or None if they may be tried now."""
    if device.throttling_failure_timestamp is not None and (
        device.throttling_failure_count >= settings.AXES_FAILURE_LIMIT
    ):
        until = device.throttling_failure_timestamp + settings.AXES_COOLOFF_TIME
        if until > timezone.now():
            return until
    allowed, details = device.verify_is_allowed()
    if not allowed:
        return details["locked_until"]
    return None


def _audit(*, user: AbstractBaseUser, device: TOTPDevice, action: str, **values) -> None:
    membership = Membership.objects.filter(user=user).only("organisation_id").first()
    # The audit log is kept per organisation; a superuser outside any has none to write to.
    if membership is not None:
        audit_record(
            organisation_id=membership.organisation_id,
            actor=user,
            action=action,
            instance=device,
            object_repr=f"{DEVICE_NAME} of {user.get_username()}",
            **values,
        )


def _check(*, device: TOTPDevice, token: str) -> bool:
    paused_until = two_factor_paused_until(device=device)
    if paused_until is not None:
        raise TwoFactorPaused(paused_until)
    token = token.strip().replace(" ", "")
    if not (len(token) == device.digits and token.isdigit()):
        # Counted like any wrong code, so malformed guesses are throttled too.
        device.throttle_increment()
        return False
    return device.verify_token(token)


@transaction.atomic
def two_factor_enrol(*, user: AbstractBaseUser) -> TOTPDevice:
    """Start enrolling: a new secret on an unconfirmed device, replacing any earlier attempt."""
    if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        raise ValidationError("Two-factor sign-in is already set up.")
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    _audit(user=user, device=device, action="two_factor.enrol")
    return device


@transaction.atomic
def two_factor_confirm(*, user: AbstractBaseUser, token: str) -> TOTPDevice | None:
    """Confirm the device being enrolled with a code from it; None if the code is wrong.

    Raises TwoFactorPaused after too many wrong codes.
    """
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).first()
    if device is None:
        raise ValidationError("Start setting up two-factor sign-in first.")
    if not _check(device=device, token=token):
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    _audit(user=user, device=device, action="two_factor.confirm", after={"confirmed": True})
    return device


@transaction.atomic
def two_factor_verify(*, user: AbstractBaseUser, token: str) -> TOTPDevice | None:
    """Check a code against the user's confirmed device; the device if it is right.

    Every attempt is audited, so repeated wrong codes show in the log. The device row is locked
    so that parallel guesses are counted one after another. Raises TwoFactorPaused after too
    many wrong codes.
    """
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
    if device is None:
        return None
    verified = _check(device=device, token=token)
    _audit(user=user, device=device, action="two_factor.verify", after={"verified": verified})
    return device if verified else None


@transaction.atomic
def two_factor_remove(*, user: AbstractBaseUser, token: str) -> bool:
    """Remove the user's device, given a current code from it; False if the code is wrong.

    Raises TwoFactorPaused after too many wrong codes.
    """
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
    if device is None:
        raise ValidationError("Two-factor sign-in is not set up.")
    if not _check(device=device, token=token):
        return False
    _audit(user=user, device=device, action="two_factor.remove", before={"confirmed": True})
    TOTPDevice.objects.filter(user=user).delete()
    return True


@transaction.atomic
def organisation_two_factor_require(
    *, organisation: Organisation, actor: AbstractBaseUser, required: bool
) -> Organisation:
    """Make two-factor sign-in required, or optional, for the organisation's staff."""
    update_audited(
        instance=organisation,
        changes={"require_two_factor": required},
        actor=actor,
        action="organisation.two_factor_require",
        organisation_id=organisation.pk,
    )
    return organisation
