from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from prepaid.audit.models import AuditLog


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organisation", "actor", "action", "object_type", "object_repr"]
    list_filter = ["action", "object_type", "organisation"]
    search_fields = ["object_id", "object_repr", "reason"]
    date_hierarchy = "created_at"
    list_select_related = ["organisation", "actor"]
