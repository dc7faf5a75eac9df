"""Signing tenants in with one-time codes, and resetting their passwords.

A code is asked for by an identifier (email or phone). Whether or not the identifier belongs to
anyone, the caller gets a code uuid to type the code against and the same throttling, so the
answer never tells a stranger who has an account: for an unknown identifier the uuid is a decoy
kept in the cache, which fails exactly as a real code would.
"""

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import Tenant
from notifications.delivery import DeliveryError, deliver
from notifications.sms import phone_number
from portal.auth import phone_parse, tenants_for_identifier
from portal.models import CODE_LIFETIME, CODE_LIFETIME_MINUTES, CODE_MAX_ATTEMPTS, SignInCode
from portal.tasks import send_sign_in_code
from prepaid.audit.services import audit_record

logger = logging.getLogger(__name__)

User = get_user_model()

# At most this many codes per login (and per identifier) in each window.
CODES_PER_MINUTE = 1
CODES_PER_HOUR = 5
_DECOY_PREFIX = "portal:signin:decoy:"
_THROTTLE_PREFIX = "portal:signin:requests:"


@dataclass(frozen=True)
class _Decoy:
    purpose: str
    expires_at: datetime
    attempts: int = 0


def identifier_normalise(identifier: str) -> str:
    """One spelling per identifier, so axes and the throttle count "Ada@X" and "ada@x" (or
    "+86 138…" and "0086138…") as one."""
    identifier = identifier.strip()
    if "@" in identifier:
        return identifier.lower()
    phone = phone_parse(identifier)
    if phone is not None:
        return ("+" if phone.international else "") + phone.digits
    return identifier


def code_axes_username(code_uuid: uuid.UUID) -> str:
    """What axes counts code failures by: the code, as an identifier of its own."""
    return f"code:{code_uuid}"


def sign_in_code_issue(*, identifier: str, purpose: str, channel: str | None = None) -> uuid.UUID:
    """Make a code for the login `identifier` stands for and send it after commit; return the
    uuid to check it against. `channel` is the asker's choice, when the tenant has both.

    Raises ValidationError when codes are asked for too often."""
    key = identifier_normalise(identifier)
    _identifier_throttle(key)
    users = {tenant.user_id: tenant for tenant in tenants_for_identifier(key)}
    if len(users) > 1:
        # Neither is guessed at; staff should give each login its own address.
        logger.warning("Sign-in code refused: %d portal logins share one identifier.", len(users))
    if len(users) != 1:
        return _decoy_issue(purpose=purpose)
    tenant = next(iter(users.values()))
    if not tenant.user.is_active:
        return _decoy_issue(purpose=purpose)
    with transaction.atomic():
        # The login's row serialises its requests, so two at once cannot both pass the throttle.
        user = User.objects.select_for_update().get(pk=tenant.user_id)
        _login_throttle(user)
        chosen, recipient = _channel_for(tenant, channel)
        code = SignInCode.objects.create(
            user=user,
            purpose=purpose,
            channel=chosen,
            recipient=recipient,
            language=tenant.preferred_language,
        )
        transaction.on_commit(lambda: send_sign_in_code.delay(code.pk))
    return code.uuid


def _channel_for(tenant: Tenant, wanted: str | None) -> tuple[str, str]:
    available = {}
    if tenant.email:
        available[SignInCode.Channel.EMAIL] = tenant.email
    if tenant.phone:
        available[SignInCode.Channel.SMS] = phone_number(tenant.phone)
    if wanted in available:
        return wanted, available[wanted]
    # Email first: it is free to send and carries the longer text.
    channel = next(iter(available))
    return channel, available[channel]


def _identifier_throttle(key: str) -> None:
    """The same limits by identifier, for identifiers that are nobody's too: otherwise being
    throttled would tell that one is somebody's."""
    cache_key = _THROTTLE_PREFIX + hashlib.sha256(key.encode()).hexdigest()
    now = timezone.now()
    # Times rather than counters with expiry, so the windows follow the clock the database uses.
    times = [
        moment
        for moment in map(datetime.fromisoformat, cache.get(cache_key, []))
        if moment > now - timedelta(hours=1)
    ]
    _throttle_check(
        last_minute=sum(moment > now - timedelta(minutes=1) for moment in times),
        last_hour=len(times),
    )
    cache.set(cache_key, [moment.isoformat() for moment in [*times, now]], timeout=3600)


def _login_throttle(user) -> None:
    now = timezone.now()
    recent = SignInCode.objects.filter(user=user)
    _throttle_check(
        last_minute=recent.filter(created_at__gt=now - timedelta(minutes=1)).count(),
        last_hour=recent.filter(created_at__gt=now - timedelta(hours=1)).count(),
    )


def _throttle_check(*, last_minute: int, last_hour: int) -> None:
    if last_minute >= CODES_PER_MINUTE:
        raise ValidationError(_too_soon(), code="throttled")
    if last_hour >= CODES_PER_HOUR:
        raise ValidationError(_too_many(), code="throttled")


def _too_soon() -> str:
    return _("A code was sent less than a minute ago. Wait a minute before asking again.")


def _too_many() -> str:
    return _("Too many codes were asked for in the last hour. Try again in an hour.")


def _decoy_issue(*, purpose: str) -> uuid.UUID:
    decoy_uuid = uuid.uuid4()
    decoy = _Decoy(purpose=purpose, expires_at=timezone.now() + CODE_LIFETIME)
    _decoy_save(decoy_uuid, decoy)
    return decoy_uuid


def _decoy_save(decoy_uuid: uuid.UUID, decoy: _Decoy) -> None:
    # Kept a little past its expiry; after that an unknown uuid reads as expired anyway.
    timeout = int(CODE_LIFETIME.total_seconds()) + 60
    cache.set(
        f"{_DECOY_PREFIX}{decoy_uuid}",
        {
            "purpose": decoy.purpose,
            "expires_at": decoy.expires_at.isoformat(),
            "attempts": decoy.attempts,
        },
        timeout=timeout,
    )


def _decoy_get(decoy_uuid: uuid.UUID, purpose: str) -> _Decoy | None:
    stored = cache.get(f"{_DECOY_PREFIX}{decoy_uuid}")
    if stored is None or stored["purpose"] != purpose:
        return None
    return _Decoy(
        purpose=stored["purpose"],
        expires_at=datetime.fromisoformat(stored["expires_at"]),
        attempts=stored["attempts"],
    )


def sign_in_code_redeem(*, code_uuid: uuid.UUID, code: str, purpose: str | None) -> User | None:
    """The code's login if `code` is right and the code is still good, using it up; None
    otherwise, counting a wrong guess. Called by portal.auth.SignInCodeBackend, under axes."""
    purpose = purpose or SignInCode.Purpose.SIGN_IN
    now = timezone.now()
    with transaction.atomic():
        row = (
            SignInCode.objects.select_for_update()
            .select_related("user")
            .filter(uuid=code_uuid, purpose=purpose)
            .first()
        )
        if row is None:
            _decoy_guess(code_uuid, purpose, now)
            return None
        if row.used_at is not None or row.is_expired(now) or row.is_exhausted():
            return None
        if not row.matches(code):
            SignInCode.objects.filter(pk=row.pk).update(attempts=F("attempts") + 1)
            return None
        row.used_at = now
        row.save(update_fields=["used_at"])
    return row.user


def _decoy_guess(code_uuid: uuid.UUID, purpose: str, now: datetime) -> None:
    decoy = _decoy_get(code_uuid, purpose)
    if decoy is None or now >= decoy.expires_at or decoy.attempts >= CODE_MAX_ATTEMPTS:
        return
    _decoy_save(
        code_uuid, _Decoy(purpose=purpose, expires_at=decoy.expires_at, attempts=decoy.attempts + 1)
    )


def sign_in_code_refusal(*, code_uuid: uuid.UUID, purpose: str) -> str:
    """Why a code was just refused, in words for the person who typed it."""
    now = timezone.now()
    row = SignInCode.objects.filter(uuid=code_uuid, purpose=purpose).first()
    if row is not None:
        used, expired, exhausted = row.used_at is not None, row.is_expired(now), row.is_exhausted()
    else:
        decoy = _decoy_get(code_uuid, purpose)
        if decoy is None:
            return _expired_message()
        used, expired, exhausted = (
            False,
            now >= decoy.expires_at,
            decoy.attempts >= CODE_MAX_ATTEMPTS,
        )
    if used:
        return _("This code has already been used. Ask for a new one.")
    if expired:
        return _expired_message()
    if exhausted:
        return _("That code was typed wrongly too many times. Ask for a new one.")
    return _("That code is not right. Check it and try again.")


def _expired_message() -> str:
    return _("This code has expired. Ask for a new one.")


def sign_in_code_holder(*, code_uuid: uuid.UUID, purpose: str) -> User | None:
    """The login a code was made for, to check a new password against; None for a decoy."""
    row = SignInCode.objects.select_related("user").filter(uuid=code_uuid, purpose=purpose).first()
    return row.user if row is not None else None


def sign_in_code_send(*, code_id: int) -> str:
    """Deliver one code, unless it was sent, used or has expired: "sent" or "skipped". Raises
    DeliveryError, with the error recorded on the code, when the channel did not take it."""
    failure: DeliveryError | None = None
    with transaction.atomic():
        # Locked while it is delivered, so two workers never send the same code twice.
        row = SignInCode.objects.select_for_update().filter(pk=code_id).first()
        if row is None or row.sent_at or row.used_at or row.is_expired():
            return "skipped"
        subject, body = _message(row)
        try:
            deliver(channel=row.channel, recipient=row.recipient, subject=subject, body=body)
        except DeliveryError as error:
            failure = error
            row.last_error = str(error)[:500]
            row.save(update_fields=["last_error"])
        else:
            row.sent_at = timezone.now()
            row.last_error = ""
            row.save(update_fields=["sent_at", "last_error"])
    if failure is not None:
        raise failure
    return "sent"


def _message(row: SignInCode) -> tuple[str, str]:
    minutes = CODE_LIFETIME_MINUTES
    with translation.override(row.language):
        if row.purpose == SignInCode.Purpose.RESET:
            subject = _("Your prepaid password reset code")
            purpose = _("to set a new password")
        else:
            subject = _("Your prepaid sign-in code")
            purpose = _("to sign in")
        if row.channel == SignInCode.Channel.SMS:
            body = _(
                "prepaid: %(code)s is your code %(purpose)s. It expires in %(minutes)s minutes. "
                "Never share it."
            ) % {"code": row.code, "purpose": purpose, "minutes": minutes}
        else:
            body = _(
                "Your code %(purpose)s is %(code)s\n\n"
                "It works once and expires in %(minutes)s minutes. Nobody from prepaid or your "
                "landlord will ever ask you for it.\n\n"
                "If you did not ask for this code, ignore this message: without the code nobody "
                "can get in."
            ) % {"code": row.code, "purpose": purpose, "minutes": minutes}
    return subject, body


def password_reset_confirm(*, request, code_uuid: uuid.UUID, code: str, new_password: str):
    """Check a reset code (under axes, through authenticate) and give its login the new password
    in one transaction, audited for every landlord the login is a tenant of. Returns the login,
    or None when the code is refused. Raises ValidationError for a password the validators
    refuse, before the code is tried, so a weak password does not use it up.

    Changing the password changes the session hash, so every other session of the login ends."""
    validate_password(
        new_password,
        user=sign_in_code_holder(code_uuid=code_uuid, purpose=SignInCode.Purpose.RESET),
    )
    with transaction.atomic():
        user = authenticate(
            request,
            username=code_axes_username(code_uuid),
            code_uuid=code_uuid,
            code=code,
            purpose=SignInCode.Purpose.RESET,
        )
        if user is None:
            return None
        user.set_password(new_password)
        user.save(update_fields=["password"])
        for tenant in Tenant.objects.filter(user=user):
            audit_record(
                organisation_id=tenant.organisation_id,
                action="tenant.password_reset",
                instance=tenant,
                actor=user,
                object_repr=tenant.name,
                reason="One-time code sent to the tenant",
            )
    return user
