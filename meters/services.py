from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Organisation, Unit
from accounts.services import Actor
from meters.models import Meter
from prepaid.audit.services import audit_record, snapshot, update_audited

METER_FIELDS = ("serial", "utility", "has_relay")


@transaction.atomic
def meter_register(
    *,
    organisation: Organisation,
    actor: Actor,
    serial: str,
    utility: str,
    has_relay: bool = False,
    unit: Unit | None = None,
    installed_at: datetime | None = None,
) -> Meter:
    """Add a meter to the organisation's stock, installing it in a unit when one is given."""
    meter = Meter(organisation=organisation, serial=serial, utility=utility, has_relay=has_relay)
    if unit is not None:
        _check_same_organisation(meter, unit)
        meter.unit = unit
        meter.installed_at = installed_at or timezone.now()
    meter.full_clean()
    meter.save()
    audit_record(
        organisation_id=organisation.pk,
        property_id=unit.property_id if unit else None,
        actor=actor,
        action="meter.register",
        instance=meter,
        after=snapshot(meter, (*METER_FIELDS, "unit", "installed_at")),
    )
    return meter


@transaction.atomic
def meter_update(*, meter: Meter, actor: Actor, **changes: Any) -> Meter:
    unknown = set(changes) - set(METER_FIELDS)
    if unknown:
        raise ValidationError({name: "This field cannot be changed." for name in sorted(unknown)})
    update_audited(
        instance=meter,
        changes=changes,
        actor=actor,
        action="meter.update",
        organisation_id=meter.organisation_id,
        property_id=meter.unit.property_id if meter.unit_id else None,
    )
    return meter


@transaction.atomic
def meter_install(
    *, meter: Meter, unit: Unit, actor: Actor, installed_at: datetime | None = None
) -> Meter:
    """Install a meter from stock in a unit."""
    meter = Meter.objects.select_for_update().get(pk=meter.pk)
    if meter.unit_id is not None:
        raise ValidationError({"unit": "The meter is already installed; remove it first."})
    _check_same_organisation(meter, unit)
    update_audited(
        instance=meter,
        changes={"unit": unit, "installed_at": installed_at or timezone.now()},
        actor=actor,
        action="meter.install",
        organisation_id=meter.organisation_id,
        property_id=unit.property_id,
    )
    return meter


@transaction.atomic
def meter_remove(
    *, meter: Meter, actor: Actor, reason: str, removed_at: datetime | None = None
) -> Meter:
    """Take a meter out of service. It keeps its unit and dates as history."""
    meter = Meter.objects.select_for_update(of=("self",)).select_related("unit").get(pk=meter.pk)
    if meter.unit_id is None or meter.removed_at is not None:
        raise ValidationError("Only a meter in service can be removed.")
    update_audited(
        instance=meter,
        changes={"removed_at": removed_at or timezone.now()},
        actor=actor,
        action="meter.remove",
        organisation_id=meter.organisation_id,
        property_id=meter.unit.property_id,
        reason=reason,
    )
    return meter


def _check_same_organisation(meter: Meter, unit: Unit) -> None:
    if unit.property.organisation_id != meter.organisation_id:
        raise ValidationError({"unit": "The unit belongs to another organisation."})
