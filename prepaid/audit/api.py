from django_filters import rest_framework as filters
from rest_framework import mixins, serializers

from prepaid.api.pagination import CursorPagination
from prepaid.api.scoped import ScopedViewSet
from prepaid.audit.models import AuditLog


class AuditLogOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    actor = serializers.CharField(source="actor.get_username", read_only=True, allow_null=True)
    property = serializers.UUIDField(source="property.uuid", read_only=True, allow_null=True)

    class Meta:
        model = AuditLog
        fields = [
            "id", "created_at", "actor", "action", "object_type", "object_id", "object_repr",
            "property", "before", "after", "reason",
        ]  # fmt: skip


class AuditLogFilter(filters.FilterSet):
    action = filters.CharFilter()
    object_type = filters.CharFilter()
    object_id = filters.CharFilter()
    actor = filters.CharFilter(field_name="actor__username")
    property = filters.UUIDFilter(field_name="property__uuid")
    since = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditLog
        fields = ["action", "object_type", "object_id", "actor", "property", "since", "until"]


class AuditLogViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = AuditLog.objects.select_related("actor", "property")
    serializer_class = AuditLogOut
    filterset_class = AuditLogFilter
    pagination_class = CursorPagination
    # Cursor pagination fixes the order; free ordering would break its cursors.
    ordering_fields: list[str] = []
