"""State changes of organisations, properties, units, tenants, accounts and staff.

Each service runs in one transaction and writes its audit row in it. `actor` is the user acting,
or None when the system acts (seeding, schedules).
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

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
