from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from payments.models import (
    AutoTopup,
    AutoTopupAttempt,
    PaymentIntent,
    ProviderConfig,
    ProviderEvent,
    ReconciliationItem,
    Refund,
    SandboxPayment,
    SettlementImport,
    SettlementLine,
    SettlementProfile,
)


@admin.register(ProviderConfig)
class ProviderConfigAdmin(ReadOnlyAdmin):
    # Sealed secrets stay out of the admin too: it shows which are set, never their values.
    list_display = ["organisation", "provider", "enabled", "updated_at"]
    list_filter = ["provider", "enabled"]
    fields = ["organisation", "provider", "enabled", "settings", "secrets_set", "updated_at"]
    readonly_fields = fields
    list_select_related = ["organisation"]


@admin.register(PaymentIntent)
class PaymentIntentAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "reference", "provider", "account", "amount", "status"]
    list_filter = ["provider", "status", "property"]
    search_fields = ["reference", "provider_reference", "transaction_id", "uuid"]
    date_hierarchy = "created_at"
    list_select_related = ["account__tenant", "account__unit__property"]


@admin.register(ProviderEvent)
class ProviderEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "config", "event_id", "source", "outcome", "reason", "status"]
    list_filter = ["outcome", "reason", "source"]
    search_fields = ["event_id"]
    date_hierarchy = "received_at"
    list_select_related = ["config"]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "intent", "amount", "status", "requested_by"]
    list_filter = ["status"]
    search_fields = ["reference", "provider_refund_id"]
    list_select_related = ["intent", "requested_by"]


@admin.register(SandboxPayment)
class SandboxPaymentAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "reference", "amount", "currency", "status"]
    list_filter = ["status"]


@admin.register(AutoTopup)
class AutoTopupAdmin(ReadOnlyAdmin):
    list_display = ["account", "amount", "threshold", "monthly_cap", "enabled", "failures"]
    list_filter = ["enabled"]
    search_fields = ["uuid", "customer_ref"]
    list_select_related = ["account__tenant", "account__unit__property"]


@admin.register(AutoTopupAttempt)
class AutoTopupAttemptAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "autotopup", "crossing", "amount", "status", "reason"]
    list_filter = ["status"]
    date_hierarchy = "created_at"
    list_select_related = ["autotopup"]


@admin.register(SettlementProfile)
class SettlementProfileAdmin(ReadOnlyAdmin):
    list_display = ["organisation", "source", "fee_percent", "encoding"]
    list_filter = ["source"]


@admin.register(SettlementImport)
class SettlementImportAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organisation", "source", "file_name", "lines_count"]
    list_filter = ["source"]
    search_fields = ["file_name", "uuid"]


@admin.register(SettlementLine)
class SettlementLineAdmin(ReadOnlyAdmin):
    list_display = ["settlement_import", "row", "kind", "transaction_id", "refund_id"]
    list_filter = ["source", "kind"]
    search_fields = ["transaction_id", "refund_id", "identity"]


@admin.register(ReconciliationItem)
class ReconciliationItemAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "property", "status", "detail", "resolved_at"]
    list_filter = ["status"]
    list_select_related = ["property"]
