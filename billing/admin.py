from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from billing.models import LedgerAccount


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "property", "kind", "channel", "currency", "balance"]
    list_filter = ["kind", "currency", "property"]
    list_select_related = ["property"]
