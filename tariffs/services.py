from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Property
from accounts.services import Actor
from prepaid.audit.services import acting_user, audit_record, create_audited, only_fields
from tariffs.models import Tariff, TariffVersion
from tariffs.stored import pricing_version

VERSION_FIELDS = (
    "kind",
    "flat_price",
    "bands",
    "periods",
    "standing_charge_per_day",
    "tax_rate",
    "prices_include_tax",
)
# Clocks disagree by a little; a version "from now" submitted a moment late is still accepted.
PAST_TOLERANCE = timedelta(minutes=5)


@transaction.atomic
def tariff_create(
    *, property: Property, utility: str, name: str, actor: Actor, version: dict[str, Any]
) -> Tariff:
    """A property's tariff for a utility, with its first version (which may start in the past,
    before any consumption is charged)."""
    tariff = create_audited(
        Tariff(property=property, utility=utility, name=name),
        actor=actor,
        action="tariff.create",
        fields=("name", "utility"),
        organisation_id=property.organisation_id,
        property_id=property.pk,
    )
    _version_add(tariff=tariff, actor=actor, allow_past=True, **version)
    return tariff


@transaction.atomic
def tariff_version_add(*, tariff: Tariff, actor: Actor, **version: Any) -> TariffVersion:
    """New prices from a moment on. History is never rewritten: a version cannot start in the
    past, and so cannot change what was already charged."""
    return _version_add(tariff=tariff, actor=actor, allow_past=False, **version)


def _version_add(
    *, tariff: Tariff, actor: Actor, allow_past: bool, effective_from: datetime, **fields: Any
) -> TariffVersion:
    only_fields(fields, VERSION_FIELDS, "Unknown tariff field.")
    if not allow_past and effective_from < timezone.now() - PAST_TOLERANCE:
        raise ValidationError({"effective_from": "A new version cannot start in the past."})
    Tariff.objects.select_for_update().filter(pk=tariff.pk).get()
    if tariff.versions.filter(effective_from=effective_from).exists():
        raise ValidationError({"effective_from": "A version already starts at that moment."})
    pricing_version(effective_from=effective_from, **fields)
    version = TariffVersion.objects.create(
        tariff=tariff, effective_from=effective_from, created_by=acting_user(actor), **fields
    )
    audit_record(
        organisation_id=tariff.property.organisation_id,
        property_id=tariff.property_id,
        actor=actor,
        action="tariff.version_add",
        instance=tariff,
        after={"effective_from": effective_from.isoformat(), **_jsonable(fields)},
    )
    return version


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        key: str(value) if not isinstance(value, list | dict | bool) else value
        for key, value in fields.items()
    }
