"""What a tenant changes from the portal: each change goes through the owning service, so it is
validated and audited the same way as when staff make it."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from accounts.models import Tenant
from accounts.services import tenant_update
from notifications.models import ChannelPreference
from notifications.services import channel_preference_update
from prepaid.audit.services import audit_record


@transaction.atomic
def portal_language_set(*, user: AbstractBaseUser, language: str) -> list[Tenant]:
    """The language of the portal and of every message, at every landlord of this login."""
    tenants = list(Tenant.objects.select_for_update().filter(user=user))
    for tenant in tenants:
        if tenant.preferred_language != language:
            tenant_update(tenant=tenant, actor=user, preferred_language=language)
    return tenants


def portal_channels_set(
    *, tenant: Tenant, user: AbstractBaseUser, email: bool, sms: bool, portal: bool
) -> ChannelPreference:
    if tenant.user_id != user.pk:
        raise PermissionError("A login changes only its own tenancies' choices.")
    with transaction.atomic():
        return channel_preference_update(
            tenant=tenant, actor=user, email=email, sms=sms, portal=portal
        )


@transaction.atomic
def portal_password_change(*, user: AbstractBaseUser, password: str) -> AbstractBaseUser:
    """Set a password the caller has already validated (old password and the validators)."""
    user.set_password(password)
    user.save(update_fields=["password"])
    for tenant in Tenant.objects.filter(user=user):
        audit_record(
            actor=user,
            action="portal.password_change",
            instance=tenant,
            organisation_id=tenant.organisation_id,
        )
    return user
