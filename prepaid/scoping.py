"""Scoping: every query of organisation data goes through the caller's organisation and properties.

A `Scope` says what one staff user may see. Each model's queryset inherits `ScopedQuerySet` and
says, with two lookups, how its rows reach an organisation and a property; `for_scope` applies
both. Objects outside the scope are simply not found, so callers answer 404, never 403, and
"missing" and "not yours" look the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from django.db import models
from django.db.models import Q

if TYPE_CHECKING:
    from accounts.models import Organisation


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    MANAGER = "manager", "Manager"
    ACCOUNTANT = "accountant", "Accountant"


class Capability(StrEnum):
    # Organisation-wide settings: properties, tariffs, policies, refunds and staff.
    ADMINISTER = "administer"
    # Day-to-day operation: units, tenants, accounts, meters, relays, counter top-ups, alarms.
    OPERATE = "operate"
    # Reading data, money and reports.
    VIEW = "view"
    # Closing a property's month to postings: owners and accountants.
    CLOSE_PERIODS = "close_periods"


ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    Role.OWNER: frozenset(Capability),
    Role.MANAGER: frozenset({Capability.OPERATE, Capability.VIEW}),
    Role.ACCOUNTANT: frozenset({Capability.VIEW, Capability.CLOSE_PERIODS}),
}


@dataclass(frozen=True)
class Scope:
    organisation: Organisation
    role: str
    # None means every property of the organisation.
    property_ids: frozenset[int] | None

    @property
    def organisation_id(self) -> int:
        return self.organisation.pk

    @property
    def role_label(self) -> str:
        return Role(self.role).label

    def can(self, capability: Capability) -> bool:
        return capability in ROLE_CAPABILITIES[self.role]

    # For templates, which cannot pass an argument to `can`.
    @property
    def can_operate(self) -> bool:
        return self.can(Capability.OPERATE)

    @property
    def can_administer(self) -> bool:
        return self.can(Capability.ADMINISTER)


class ScopedQuerySet(models.QuerySet):
    """A queryset that knows how its rows belong to an organisation and a property."""

    organisation_lookup: str = "organisation"
    # None: the rows belong to the organisation as a whole and only unlimited staff see them.
    property_lookup: str | None = "property"

    def for_scope(self, scope: Scope):
        queryset = self.filter(**{self.organisation_lookup: scope.organisation_id})
        if scope.property_ids is None:
            return queryset
        return queryset.filter(self.property_filter(scope.property_ids))

    def property_filter(self, property_ids: Iterable[int]) -> Q:
        if self.property_lookup is None:
            return Q(pk__in=[])
        return Q(**{f"{self.property_lookup}__in": property_ids})
