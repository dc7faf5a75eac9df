from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from tariffs.models import Tariff, TariffVersion


class TariffVersionInline(admin.StackedInline):
    model = TariffVersion
    extra = 0
    can_delete = False
    readonly_fields = [
        "effective_from",
        "kind",
        "flat_price",
        "bands",
        "periods",
        "standing_charge_per_day",
        "tax_rate",
        "prices_include_tax",
        "created_by",
    ]
    fields = readonly_fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Tariff)
class TariffAdmin(ReadOnlyAdmin):
    list_display = ["name", "property", "utility", "created_at"]
    list_filter = ["utility", "property"]
    inlines = [TariffVersionInline]


@admin.register(TariffVersion)
class TariffVersionAdmin(ReadOnlyAdmin):
    list_display = ["tariff", "effective_from", "kind", "tax_rate", "prices_include_tax"]
    list_select_related = ["tariff"]
