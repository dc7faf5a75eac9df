"""State changes of organisations, properties, units, tenants, accounts and staff.

Each service runs in one transaction and writes its audit row in it. `actor` is the user acting,
or None when the system acts (seeding, schedules).
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import Account, Membership, Organisation, Property, Tenant, Unit
from billing.models import LedgerAccount
from billing.services import wallet_create
from prepaid.audit.services import (
    audit_record,
    create_audited,
    only_fields,
    snapshot,
    update_audited,
)
from prepaid.scoping import Role

Actor = AbstractBaseUser | None

PROPERTY_FIELDS = (
    "name",
    "code",
    "time_zone",
    "currency",
    "country",
    "address",
    "poll_interval_minutes",
    "offline_after_missed_polls",
    "carbon_kg_per_kwh",
)
UNIT_FIELDS = ("name", "kind", "floor")
TENANT_FIELDS = ("name", "phone", "email", "preferred_language")
ACCOUNT_FIELDS = ("tenant", "unit", "mode", "status", "opened_at", "closed_at", "protected")


@transaction.atomic
def organisation_create(*, name: str, slug: str, actor: Actor = None) -> Organisation:
    organisation = Organisation(name=name, slug=slug)
    # The organisation's id exists only once saved, so validate and save before auditing.
    organisation.full_clean()
    organisation.save()
    audit_record(
        organisation_id=organisation.pk,
        actor=actor,
        action="organisation.create",
        instance=organisation,
        after=snapshot(organisation, ("name", "slug")),
    )
    return organisation


@transaction.atomic
def property_create(*, organisation: Organisation, actor: Actor, **fields: Any) -> Property:
    only_fields(fields, PROPERTY_FIELDS)
    prop = Property(organisation=organisation, **fields)
    return create_audited(
        prop,
        actor=actor,
        action="property.create",
        fields=PROPERTY_FIELDS,
        organisation_id=organisation.pk,
    )


@transaction.atomic
def property_update(*, property: Property, actor: Actor, **changes: Any) -> Property:
    only_fields(changes, PROPERTY_FIELDS)
    currency_changes = "currency" in changes and changes["currency"] != property.currency
    if currency_changes and property.ledger_accounts.exists():
        raise ValidationError({"currency": "The currency cannot change once money is held."})
    update_audited(
        instance=property,
        changes=changes,
        actor=actor,
        action="property.update",
        organisation_id=property.organisation_id,
        property_id=property.pk,
    )
    return property


@transaction.atomic
def unit_create(*, property: Property, actor: Actor, **fields: Any) -> Unit:
    only_fields(fields, UNIT_FIELDS)
    unit = Unit(property=property, **fields)
    return create_audited(
        unit,
        actor=actor,
        action="unit.create",
        fields=UNIT_FIELDS,
        organisation_id=property.organisation_id,
        property_id=property.pk,
    )


@transaction.atomic
def unit_update(*, unit: Unit, actor: Actor, **changes: Any) -> Unit:
    only_fields(changes, UNIT_FIELDS)
    update_audited(
        instance=unit,
        changes=changes,
        actor=actor,
        action="unit.update",
        organisation_id=unit.property.organisation_id,
        property_id=unit.property_id,
    )
    return unit


@transaction.atomic
def tenant_create(*, organisation: Organisation, actor: Actor, **fields: Any) -> Tenant:
    only_fields(fields, (*TENANT_FIELDS, "user"))
    tenant = Tenant(organisation=organisation, **fields)
    return create_audited(
        tenant,
        actor=actor,
        action="tenant.create",
        fields=TENANT_FIELDS,
        organisation_id=organisation.pk,
    )


@transaction.atomic
def tenant_update(*, tenant: Tenant, actor: Actor, **changes: Any) -> Tenant:
    only_fields(changes, TENANT_FIELDS)
    update_audited(
        instance=tenant,
        changes=changes,
        actor=actor,
        action="tenant.update",
        organisation_id=tenant.organisation_id,
    )
    return tenant


@transaction.atomic
def account_open(
    *,
    tenant: Tenant,
    unit: Unit,
    actor: Actor,
    mode: str = Account.Mode.PREPAID,
    opened_at: datetime | None = None,
    protected: bool = False,
) -> Account:
    """Move-in: open an account with a new, empty wallet for a tenant in a vacant unit."""
    prop = unit.property
    if tenant.organisation_id != prop.organisation_id:
        raise ValidationError({"tenant": "The tenant belongs to another organisation."})
    # Serialise move-ins to the same unit; the partial unique index is the final guard.
    Unit.objects.select_for_update().filter(pk=unit.pk).get()
    if Account.objects.filter(unit=unit, status=Account.Status.OPEN).exists():
        raise ValidationError({"unit": "This unit already has an open account."})
    account = Account(
        tenant=tenant,
        unit=unit,
        mode=mode,
        opened_at=opened_at or timezone.now(),
        protected=protected,
        wallet=wallet_create(property=prop),
    )
    return create_audited(
        account,
        actor=actor,
        action="account.open",
        fields=ACCOUNT_FIELDS,
        organisation_id=prop.organisation_id,
        property_id=prop.pk,
    )


@transaction.atomic
def account_close(
    *, account: Account, actor: Actor, closed_at: datetime | None = None, reason: str = ""
) -> Account:
    """Move-out: close an open account whose wallet has been settled to zero."""
    # The wallet first, as every money movement locks it: a top-up racing the move-out either
    # commits before (and the balance is not zero) or sees the account closed.
    LedgerAccount.objects.select_for_update().filter(pk=account.wallet_id).get()
    account = (
        Account.objects.select_for_update(of=("self",), no_key=True)
        .select_related("wallet", "unit")
        .get(pk=account.pk)
    )
    if account.status != Account.Status.OPEN:
        raise ValidationError("This account is already closed.")
    if account.wallet.balance != 0:
        raise ValidationError("Settle the wallet to zero (refund or debt) before closing.")
    closed_at = closed_at or timezone.now()
    if closed_at < account.opened_at:
        raise ValidationError({"closed_at": "An account cannot close before it opened."})
    update_audited(
        instance=account,
        changes={"status": Account.Status.CLOSED, "closed_at": closed_at},
        actor=actor,
        action="account.close",
        organisation_id=account.unit.property.organisation_id,
        property_id=account.unit.property_id,
        reason=reason,
    )
    return account


@transaction.atomic
def account_set_protected(
    *, account: Account, protected: bool, actor: Actor, reason: str
) -> Account:
    """Mark a medical or vulnerable household as never to be cut off automatically, or undo it."""
    if not reason.strip():
        raise ValidationError({"reason": "Give a reason for changing the protected flag."})
    update_audited(
        instance=account,
        changes={"protected": protected},
        actor=actor,
        action="account.set_protected",
        organisation_id=account.unit.property.organisation_id,
        property_id=account.unit.property_id,
        reason=reason,
    )
    return account


@transaction.atomic
def membership_create(
    *,
    user,
    organisation: Organisation,
    role: str,
    actor: Actor,
    properties: Iterable[Property] = (),
) -> Membership:
    properties = list(properties)
    if any(prop.organisation_id != organisation.pk for prop in properties):
        raise ValidationError({"properties": "Every property must belong to the organisation."})
    if role not in Role.values:
        raise ValidationError({"role": f"Choose one of {', '.join(Role.values)}."})
    membership = Membership.objects.create(user=user, organisation=organisation, role=role)
    membership.properties.set(properties)
    audit_record(
        organisation_id=organisation.pk,
        actor=actor,
        action="membership.create",
        instance=membership,
        after={
            "user": user.get_username(),
            "role": role,
            "properties": [str(prop.uuid) for prop in properties],
        },
    )
    return membership


@transaction.atomic
def tenant_link_login(*, tenant: Tenant, user, actor: Actor) -> Tenant:
    """Give a tenant a portal login: one person may hold tenancies with several landlords."""
    update_audited(
        instance=tenant,
        changes={"user": user},
        actor=actor,
        action="tenant.link_login",
        organisation_id=tenant.organisation_id,
    )
    return tenant


# Staff: invitations, roles, assigned properties and removal ---------------------------------------


def _lock_organisation(organisation: Organisation) -> Organisation:
    """Serialise staff changes of one organisation, so two owners cannot each remove the other
    and leave nobody in charge. NO KEY: rows that merely reference the organisation (audit rows,
    ledger transactions) may still be written meanwhile."""
    return Organisation.objects.select_for_update(no_key=True).get(pk=organisation.pk)


def _property_uuids(properties: Iterable[Property]) -> list[str]:
    return sorted(str(prop.uuid) for prop in properties)


def _membership_properties(membership: Membership) -> list[Property]:
    return list(membership.properties.all())


def _check_properties(organisation: Organisation, role: str, properties: list[Property]) -> None:
    if any(prop.organisation_id != organisation.pk for prop in properties):
        raise ValidationError({"properties": "Every property must belong to the organisation."})
    if role == Role.OWNER and properties:
        raise ValidationError({"properties": "Owners see every property of the organisation."})


def _owner_count(organisation: Organisation) -> int:
    return Membership.objects.filter(organisation=organisation, role=Role.OWNER).count()


def _invite_send(*, user, base_url: str, language: str) -> None:
    """Email a link to set a password: Django's password-reset token, which works once (setting
    the password changes the hash it is made from) and expires after PASSWORD_RESET_TIMEOUT."""
    path = reverse(
        "password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    membership = Membership.objects.select_related("organisation").get(user=user)
    context = {
        "user": user,
        "organisation": membership.organisation,
        "link": base_url.rstrip("/") + path,
        "sign_in": base_url.rstrip("/") + reverse("login"),
        "days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400),
    }
    with translation.override(language):
        subject = render_to_string("registration/invite_subject.txt", context).strip()
        body = render_to_string("registration/invite_email.txt", context)
    send_mail(subject, body, None, [user.email])


@transaction.atomic
def staff_invite(
    *,
    organisation: Organisation,
    email: str,
    role: str,
    actor: Actor,
    base_url: str,
    language: str,
    name: str = "",
    properties: Iterable[Property] = (),
) -> Membership:
    """Make someone staff of the organisation and email them a link to set their password.

    Their username is their email address. Until they set a password they cannot sign in. A
    sign-in that belongs to nobody (a former member's, deactivated) is reused; one held by
    someone's staff membership or a tenant's portal login is refused.
    """
    _lock_organisation(organisation)
    email = email.strip().lower()
    properties = list(properties)
    _check_properties(organisation, role, properties)
    User = get_user_model()
    holders = list(
        User.objects.filter(Q(username__iexact=email) | Q(email__iexact=email))
        .select_related("membership")
        .order_by("pk")
    )
    for holder in holders:
        if hasattr(holder, "membership"):
            raise ValidationError(
                {"email": "This email address already belongs to a staff member."}
            )
        if holder.is_superuser or holder.tenancies.exists():
            raise ValidationError(
                {"email": "This email address is another sign-in's; invite another address."}
            )
    user = holders[0] if holders else User(username=email)
    user.email = email
    user.first_name = name.strip()[:150]
    user.is_active = True
    user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    membership = membership_create(
        user=user, organisation=organisation, role=role, actor=actor, properties=properties
    )
    audit_record(
        organisation_id=organisation.pk,
        actor=actor,
        action="membership.invite",
        instance=membership,
        object_repr=email,
        after={"email": email, "role": role, "properties": _property_uuids(properties)},
    )
    transaction.on_commit(lambda: _invite_send(user=user, base_url=base_url, language=language))
    return membership


@transaction.atomic
def staff_invite_resend(
    *, membership: Membership, actor: Actor, base_url: str, language: str
) -> Membership:
    """Send the invitation again to a member who has not set a password yet."""
    user = membership.user
    if user.has_usable_password():
        raise ValidationError("This member has set a password already and can sign in.")
    audit_record(
        organisation_id=membership.organisation_id,
        actor=actor,
        action="membership.invite_resend",
        instance=membership,
        object_repr=user.get_username(),
        after={"email": user.email},
    )
    transaction.on_commit(lambda: _invite_send(user=user, base_url=base_url, language=language))
    return membership


@transaction.atomic
def membership_set_role(*, membership: Membership, role: str, actor: Actor) -> Membership:
    """Change a member's role. The last owner stays an owner; becoming an owner lifts any limit to
    properties, as owners see the whole organisation."""
    _lock_organisation(membership.organisation)
    membership = Membership.objects.select_related("user").get(pk=membership.pk)
    if role not in Role.values:
        raise ValidationError({"role": f"Choose one of {', '.join(Role.values)}."})
    if role == membership.role:
        return membership
    if membership.role == Role.OWNER and _owner_count(membership.organisation) == 1:
        raise ValidationError(
            {"role": "This is the organisation's only owner; make someone else an owner first."}
        )
    properties = _membership_properties(membership)
    before = {"role": membership.role, "properties": _property_uuids(properties)}
    membership.role = role
    membership.save(update_fields=["role"])
    if role == Role.OWNER:
        membership.properties.clear()
    audit_record(
        organisation_id=membership.organisation_id,
        actor=actor,
        action="membership.set_role",
        instance=membership,
        object_repr=membership.user.get_username(),
        before=before,
        after={
            "role": role,
            "properties": [] if role == Role.OWNER else _property_uuids(properties),
        },
    )
    return membership


@transaction.atomic
def membership_set_properties(
    *, membership: Membership, properties: Iterable[Property], actor: Actor
) -> Membership:
    """Limit a manager or accountant to some properties; none means every property."""
    _lock_organisation(membership.organisation)
    membership = Membership.objects.select_related("user").get(pk=membership.pk)
    properties = list(properties)
    _check_properties(membership.organisation, membership.role, properties)
    before = _property_uuids(_membership_properties(membership))
    after = _property_uuids(properties)
    if before == after:
        return membership
    membership.properties.set(properties)
    audit_record(
        organisation_id=membership.organisation_id,
        actor=actor,
        action="membership.set_properties",
        instance=membership,
        object_repr=membership.user.get_username(),
        before={"properties": before},
        after={"properties": after},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Actor) -> None:
    """Take a member's access away. Nobody removes themselves, and the last owner stays.

    Their sign-in is deactivated unless it is also a tenant's portal login; it is kept, not
    deleted, because the audit log names it.
    """
    _lock_organisation(membership.organisation)
    membership = Membership.objects.select_related("user").get(pk=membership.pk)
    user = membership.user
    if actor is not None and user.pk == actor.pk:
        raise ValidationError("You cannot remove yourself; ask another owner.")
    if membership.role == Role.OWNER and _owner_count(membership.organisation) == 1:
        raise ValidationError("This is the organisation's only owner and cannot be removed.")
    before = {
        "user": user.get_username(),
        "role": membership.role,
        "properties": _property_uuids(_membership_properties(membership)),
    }
    audit_record(
        organisation_id=membership.organisation_id,
        actor=actor,
        action="membership.remove",
        instance=membership,
        object_repr=user.get_username(),
        before=before,
        after=None,
    )
    membership.delete()
    if user.is_active and not user.tenancies.exists():
        user.is_active = False
        user.save(update_fields=["is_active"])
