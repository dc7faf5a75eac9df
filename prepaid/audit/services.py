from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction

from prepaid.audit.models import AuditLog
from prepaid.inserts import insert

_encoder = DjangoJSONEncoder()


class AuditOutsideTransaction(RuntimeError):
    """An audit row must commit or roll back together with the change it records."""


def snapshot(instance: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """JSON-ready values of the named fields; related objects appear by their public uuid."""
    values: dict[str, Any] = {}
    for name in fields:
        value = getattr(instance, name)
        if isinstance(value, models.Model):
            value = getattr(value, "uuid", value.pk)
        # Round-trip through the encoder so Decimals, datetimes and UUIDs become strings now,
        # exactly as they will be stored.
        values[name] = _encoder.default(value) if _needs_encoding(value) else value
    return values


def acting_user(actor):
    """The user to record as acting: None for the system or an anonymous caller."""
    return actor if actor is not None and actor.is_authenticated else None


def only_fields(
    values: dict[str, Any], allowed: Iterable[str], message: str = "This field cannot be changed."
) -> dict[str, Any]:
    """Refuse, field by field, anything a service does not let its caller set."""
    unknown = set(values) - set(allowed)
    if unknown:
        raise ValidationError({name: message for name in sorted(unknown)})
    return values


def _needs_encoding(value: Any) -> bool:
    return value is not None and not isinstance(value, str | int | float | bool | list | dict)


def audit_record(
    *,
    organisation_id: int,
    action: str,
    instance: models.Model,
    actor=None,
    property_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
    object_repr: str | None = None,
) -> AuditLog:
    if not transaction.get_connection().in_atomic_block:
        raise AuditOutsideTransaction(
            f"Audit of {action} must run inside the change's transaction."
        )
    entry = AuditLog(
        organisation_id=organisation_id,
        property_id=property_id,
        actor=acting_user(actor),
        action=action,
        object_type=instance._meta.label_lower,
        object_id=str(getattr(instance, "uuid", instance.pk)),
        # Given when the caller already has it, to spare the queries str() would make.
        object_repr=(str(instance) if object_repr is None else object_repr)[:200],
        before=before,
        after=after,
        reason=reason,
    )
    insert(entry)
    return entry


def create_audited(
    instance: models.Model,
    *,
    actor,
    action: str,
    fields: Iterable[str],
    organisation_id: int,
    property_id: int | None = None,
):
    """Validate and save a new object, and audit it with the named fields. Call it inside the
    service's transaction."""
    instance.full_clean()
    instance.save()
    audit_record(
        organisation_id=organisation_id,
        property_id=property_id,
        actor=actor,
        action=action,
        instance=instance,
        after=snapshot(instance, fields),
    )
    return instance


def update_audited(
    *,
    instance: models.Model,
    changes: dict[str, Any],
    actor,
    action: str,
    organisation_id: int,
    property_id: int | None = None,
    reason: str = "",
) -> AuditLog | None:
    """Apply field changes, validate, save only what changed, and audit old and new values.

    Call it inside the service's transaction. It writes nothing when no value changes.
    """
    changed = [name for name, value in changes.items() if getattr(instance, name) != value]
    if not changed:
        return None
    before = snapshot(instance, changed)
    for name in changed:
        setattr(instance, name, changes[name])
    instance.full_clean()
    update_fields = [*changed, "updated_at"] if hasattr(instance, "updated_at") else changed
    instance.save(update_fields=update_fields)
    return audit_record(
        organisation_id=organisation_id,
        property_id=property_id,
        actor=actor,
        action=action,
        instance=instance,
        before=before,
        after=snapshot(instance, changed),
        reason=reason,
    )
