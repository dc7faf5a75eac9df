from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from meters.models import Meter, Reading, VacantConsumption


@admin.register(Meter)
class MeterAdmin(ReadOnlyAdmin):
    list_display = ["serial", "utility", "unit", "has_relay", "installed_at", "removed_at"]
    list_filter = ["utility", "has_relay", "organisation"]
    search_fields = ["serial"]
    list_select_related = ["unit__property"]


@admin.register(Reading)
class ReadingAdmin(ReadOnlyAdmin):
    list_display = ["meter", "taken_at", "register", "source", "status", "reason", "received_at"]
    list_filter = ["status", "source"]
    search_fields = ["meter__serial"]
    date_hierarchy = "taken_at"
    list_select_related = ["meter"]


@admin.register(VacantConsumption)
class VacantConsumptionAdmin(ReadOnlyAdmin):
    list_display = ["meter", "period_start", "period_end", "quantity"]
    list_select_related = ["meter"]
