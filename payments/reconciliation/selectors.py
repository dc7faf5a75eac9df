"""Reading imports and their items for the pages, within the caller's scope."""

from __future__ import annotations

from collections import Counter

from django.db.models import Count, Q, QuerySet

from payments.models import (
    OPEN_EXEMPT,
    ReconciliationItem,
    SettlementImport,
    SettlementProfile,
    SettlementSource,
)
from prepaid.scoping import Scope

Status = ReconciliationItem.Status


def _items_in_scope(scope: Scope, prefix: str = "") -> Q:
    if scope.property_ids is None:
        return Q()
    return Q(**{f"{prefix}property_id__in": scope.property_ids})


def imports_for_scope(*, scope: Scope) -> QuerySet[SettlementImport]:
    """The imports the caller may see, newest first, each with the number of its items still
    open (neither matched nor resolved) among those the caller may see."""
    open_items = (
        _items_in_scope(scope, "items__")
        & Q(items__resolved_at__isnull=True)
        & ~Q(items__status__in=OPEN_EXEMPT)
    )
    return (
        SettlementImport.objects.for_scope(scope)
        .select_related("created_by")
        .annotate(open_items=Count("items", filter=open_items))
        .order_by("-created_at", "-id")
    )


def import_items(
    *, scope: Scope, settlement_import: SettlementImport, status: str = ""
) -> QuerySet[ReconciliationItem]:
    items = (
        ReconciliationItem.objects.for_scope(scope)
        .filter(settlement_import=settlement_import)
        .select_related("line", "property", "intent", "refund", "receipt__property", "resolved_by")
        .order_by("occurred_at", "id")
    )
    if status == "open":
        items = items.filter(resolved_at__isnull=True).exclude(status__in=OPEN_EXEMPT)
    elif status:
        items = items.filter(status=status)
    return items


def import_status_counts(*, scope: Scope, settlement_import: SettlementImport) -> Counter:
    rows = (
        ReconciliationItem.objects.for_scope(scope)
        .filter(settlement_import=settlement_import)
        .values("status")
        .annotate(count=Count("id"))
        .order_by()
    )
    counts = Counter({row["status"]: row["count"] for row in rows})
    counts["open"] = (
        ReconciliationItem.objects.for_scope(scope)
        .filter(settlement_import=settlement_import, resolved_at__isnull=True)
        .exclude(status__in=OPEN_EXEMPT)
        .count()
    )
    return counts


def profiles_for_scope(*, scope: Scope) -> dict[str, SettlementProfile]:
    return {
        profile.source: profile
        for profile in SettlementProfile.objects.for_scope(scope).filter(
            source__in=SettlementSource.values
        )
    }
