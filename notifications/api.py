"""Notifications over the API: the log of what tenants were told (read-only), and the channels
each tenant is told on."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers
from rest_framework.response import Response

from accounts.models import Tenant
from notifications import services
from notifications.events import Event
from notifications.models import Channel, ChannelPreference, Notification
from notifications.selectors import channel_preference, routes
from prepaid.api.pagination import CursorPagination
from prepaid.api.scoped import ScopedViewSet


class NotificationOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    account = serializers.UUIDField(source="account.uuid", read_only=True)
    tenant = serializers.UUIDField(source="tenant.uuid", read_only=True)

    class Meta:
        model = Notification
        fields = [
            "id", "account", "tenant", "event", "channel", "recipient", "language", "template",
            "subject", "body", "context", "status", "attempts", "last_error", "next_attempt_at",
            "sent_at", "read_at", "provider_message_id", "created_at",
        ]  # fmt: skip


class NotificationFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Notification.Status.choices)
    channel = filters.ChoiceFilter(choices=Channel.choices)
    event = filters.ChoiceFilter(choices=Event.choices)
    account = filters.UUIDFilter(field_name="account__uuid")
    tenant = filters.UUIDFilter(field_name="tenant__uuid")
    property = filters.UUIDFilter(field_name="account__unit__property__uuid")
    since = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Notification
        fields = ["status", "channel", "event", "account", "tenant", "property", "since", "until"]


class NotificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Every message sent to tenants, by email, SMS or the portal: its text, and how delivery
    went (queued with its next attempt, sent, or failed with the last error)."""

    queryset = Notification.objects.select_related("account", "tenant")
    serializer_class = NotificationOut
    filterset_class = NotificationFilter
    pagination_class = CursorPagination
    # Cursor pagination fixes the order; free ordering would break its cursors.
    ordering_fields: list[str] = []


class ChannelPreferenceOut(serializers.ModelSerializer):
    tenant = serializers.UUIDField(source="tenant.uuid", read_only=True)
    active_channels = serializers.SerializerMethodField(
        help_text="The channels the tenant is told on now: chosen, and reachable (an email "
        "address for email, a phone number for SMS)."
    )

    class Meta:
        model = ChannelPreference
        fields = ["tenant", "email", "sms", "portal", "active_channels", "updated_at"]
        extra_kwargs = {"updated_at": {"allow_null": True}}

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(Channel.choices)))
    def get_active_channels(self, preference: ChannelPreference) -> list[str]:
        return [route.channel for route in routes(tenant=preference.tenant, preference=preference)]


class ChannelPreferenceIn(serializers.Serializer):
    email = serializers.BooleanField()
    sms = serializers.BooleanField()
    portal = serializers.BooleanField()


class ChannelPreferenceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """The channels each tenant is told on, addressed by the tenant's id. A tenant who never
    chose has every channel on; a channel is used only where the tenant can be reached."""

    queryset = Tenant.objects.select_related("notification_channels")
    serializer_class = ChannelPreferenceOut
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        preferences = [channel_preference(tenant=tenant) for tenant in page]
        return self.get_paginated_response(ChannelPreferenceOut(preferences, many=True).data)

    def retrieve(self, request, id):
        preference = channel_preference(tenant=self.get_object())
        return Response(ChannelPreferenceOut(preference).data)

    @extend_schema(request=ChannelPreferenceIn, responses=ChannelPreferenceOut)
    def partial_update(self, request, id):
        preference = services.channel_preference_update(
            tenant=self.get_object(),
            actor=request.user,
            **self.validated(ChannelPreferenceIn, partial=True),
        )
        return Response(ChannelPreferenceOut(preference).data)
