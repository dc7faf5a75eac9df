"""Reading the audit log for the staff dashboard: rows in the caller's scope, filtered, with
their before and after values paired field by field."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Model, Q, QuerySet

from accounts.models import Membership, Property
from prepaid.audit.models import AuditLog
from prepaid.scoping import Scope

# The actor filter's value for changes the system made itself (no user). No username can
# hold a tilde.
SYSTEM_ACTOR = "~system"


@dataclass(frozen=True)
class AuditFilters:
    actor: str = ""
    object_type: str = ""
    # A uuid matches the object's id; anything else its label.
    object: str = ""
    action: str = ""
    since: date | None = None
    # Inclusive: the whole of this local day.
    until: date | None = None
    property: Property | None = None


def audit_entries(*, scope: Scope, filters: AuditFilters, zone: ZoneInfo) -> QuerySet[AuditLog]:
    """The audit rows in scope matching the filters, newest first; days are `zone`'s."""
    rows = AuditLog.objects.for_scope(scope).select_related("actor", "property")
    if filters.actor == SYSTEM_ACTOR:
        rows = rows.filter(actor__isnull=True)
    elif filters.actor:
        rows = rows.filter(actor__username=filters.actor)
    if filters.object_type:
        rows = rows.filter(object_type=filters.object_type)
    if filters.object:
        rows = rows.filter(_object_match(filters.object.strip()))
    if filters.action:
        rows = rows.filter(action=filters.action)
    if filters.since is not None:
        rows = rows.filter(created_at__gte=_local_midnight(filters.since, zone))
    if filters.until is not None:
        rows = rows.filter(created_at__lt=_local_midnight(filters.until + timedelta(days=1), zone))
    if filters.property is not None:
        rows = rows.filter(property=filters.property)
    return rows.order_by("-created_at", "-id")


def _object_match(text: str) -> Q:
    try:
        return Q(object_id=str(UUID(text)))
    except ValueError:
        return Q(object_id=text) | Q(object_repr__icontains=text)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)


def audit_time_zone(*, properties: Iterable[Property], chosen: Property | None) -> ZoneInfo:
    """The zone the log's days and times are read in: the chosen property's, else the one all
    the caller's `properties` share, else UTC."""
    if chosen is not None:
        return ZoneInfo(chosen.time_zone)
    zones = {prop.time_zone for prop in properties}
    return ZoneInfo(zones.pop()) if len(zones) == 1 else ZoneInfo("UTC")


@dataclass(frozen=True)
class AuditChoices:
    properties: list[Property]
    # (username, shown name)
    actors: list[tuple[str, str]]
    # (object type, its model's name)
    object_types: list[tuple[str, str]]
    actions: list[str]


def audit_choices(*, scope: Scope) -> AuditChoices:
    """What the filters offer: the caller's properties, the organisation's staff, and the
    object types and actions that occur in the caller's scope."""
    in_scope = AuditLog.objects.for_scope(scope).order_by()
    members = (
        Membership.objects.filter(organisation_id=scope.organisation_id)
        .select_related("user")
        .order_by("user__username")
    )
    return AuditChoices(
        properties=list(Property.objects.for_scope(scope).order_by("name")),
        actors=[(member.user.get_username(), _staff_name(member.user)) for member in members],
        object_types=sorted(
            (
                (label, object_type_name(label))
                for label in in_scope.values_list("object_type", flat=True).distinct()
            ),
            key=lambda choice: choice[1].lower(),
        ),
        actions=sorted(in_scope.values_list("action", flat=True).distinct()),
    )


def _staff_name(user) -> str:
    full_name = user.get_full_name()
    username = user.get_username()
    return f"{full_name} ({username})" if full_name else username


def _model(label: str) -> type[Model] | None:
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None


def object_type_name(label: str) -> str:
    """A model label such as "billing.balancepolicy" as its model's name."""
    model = _model(label)
    return label if model is None else str(model._meta.verbose_name).capitalize()


def _field_label(model: type[Model] | None, name: str) -> str:
    if model is None:
        return name
    try:
        return str(model._meta.get_field(name).verbose_name).capitalize()
    except FieldDoesNotExist:
        return name


@dataclass(frozen=True)
class FieldChange:
    name: str
    # The model field's name for people, when the object's model has that field.
    label: str
    before: str | None
    after: str | None
    changed: bool


_MISSING = object()


def field_changes(entry: AuditLog) -> list[FieldChange]:
    """The entry's fields with their values before and after, in the order the change gave
    them; `changed` when the values differ (or only one side has the field)."""
    # Services record both as objects of field values (prepaid.audit.services).
    before, after = entry.before or {}, entry.after or {}
    names = list(before) + [name for name in after if name not in before]
    model = _model(entry.object_type)
    changes = []
    for name in names:
        old, new = before.get(name, _MISSING), after.get(name, _MISSING)
        changes.append(
            FieldChange(
                name=name,
                label=_field_label(model, name),
                before=None if old is _MISSING else _shown(old),
                after=None if new is _MISSING else _shown(new),
                changed=old != new,
            )
        )
    return changes


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class AuditRow:
    entry: AuditLog
    object_type_name: str
    changes: list[FieldChange]


def audit_rows(entries: Iterable[AuditLog]) -> list[AuditRow]:
    """The entries as the log shows them. No queries beyond reading `entries`."""
    return [
        AuditRow(entry, object_type_name(entry.object_type), field_changes(entry))
        for entry in entries
    ]
