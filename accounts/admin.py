"""Admin for superusers to inspect data. Changes made here bypass the services' audit, so the
money-bearing and lifecycle models are read-only; day-to-day work happens in the dashboard."""

from django.contrib import admin

from accounts.models import Account, Membership, Organisation, Property, Tenant, Unit


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Organisation)
class OrganisationAdmin(ReadOnlyAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]


@admin.register(Property)
class PropertyAdmin(ReadOnlyAdmin):
    list_display = ["name", "code", "organisation", "time_zone", "currency", "country"]
    list_filter = ["organisation", "currency", "country"]
    search_fields = ["name", "code"]


@admin.register(Unit)
class UnitAdmin(ReadOnlyAdmin):
    list_display = ["name", "property", "kind", "floor"]
    list_filter = ["property", "kind"]
    search_fields = ["name"]
    list_select_related = ["property"]


@admin.register(Tenant)
class TenantAdmin(ReadOnlyAdmin):
    list_display = ["name", "organisation", "phone", "email", "preferred_language"]
    list_filter = ["organisation", "preferred_language"]
    search_fields = ["name", "phone", "email"]


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "unit", "mode", "status", "protected", "opened_at", "closed_at"]
    list_filter = ["status", "mode", "protected", "unit__property"]
    search_fields = ["tenant__name", "unit__name"]
    list_select_related = ["tenant", "unit__property"]


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["user", "organisation", "role"]
    list_filter = ["organisation", "role"]
    filter_horizontal = ["properties"]
