from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from reports.models import ExportJob


@admin.register(ExportJob)
class ExportJobAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organisation", "property", "report", "format", "state"]
    list_filter = ["state", "format", "report"]
    search_fields = ["uuid"]
    list_select_related = ["organisation", "property"]
