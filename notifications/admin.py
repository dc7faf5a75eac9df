from django.contrib import admin, messages

from accounts.admin import ReadOnlyAdmin
from notifications import services
from notifications.models import ChannelPreference, Notification


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """The log of what tenants were told. Read-only; failed email and SMS can be retried."""

    list_display = ["created_at", "event", "channel", "recipient", "language", "status", "attempts"]
    list_filter = ["status", "channel", "event", "language"]
    search_fields = ["recipient", "idempotency_key", "uuid", "provider_message_id"]
    date_hierarchy = "created_at"
    actions = ["retry"]

    @admin.action(description="Retry the selected failed email and SMS")
    def retry(self, request, queryset):
        count = services.notifications_retry_failed(
            notification_ids=list(queryset.values_list("pk", flat=True)), actor=request.user
        )
        messages.success(request, f"{count} notification(s) queued again.")


@admin.register(ChannelPreference)
class ChannelPreferenceAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "email", "sms", "portal", "updated_at"]
    list_filter = ["email", "sms", "portal"]
    search_fields = ["tenant__name"]
    list_select_related = ["tenant"]
