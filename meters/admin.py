from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from meters.models import Meter


@admin.register(Meter)
class MeterAdmin(ReadOnlyAdmin):
    list_display = ["serial", "utility", "unit", "has_relay", "installed_at", "removed_at"]
    list_filter = ["utility", "has_relay", "organisation"]
    search_fields = ["serial"]
    list_select_related = ["unit__property"]
