from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from billing.models import (
    BalancePolicy,
    BalanceWarning,
    Charge,
    ChargeCursor,
    ChargeTotals,
    ClosedPeriod,
    CreditPolicy,
    CutoffDecision,
    DailyFreeze,
    Debt,
    DebtRecovery,
    FreezeCursor,
    Instalment,
    InstalmentPlan,
    Invoice,
    InvoiceAllocation,
    InvoiceSequence,
    LedgerAccount,
    LedgerTransaction,
    MeterFreeze,
    PeriodCursor,
    Posting,
    Receipt,
    ReceiptSequence,
    Reminder,
    TierUsage,
    TopupLimits,
)


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "property", "kind", "channel", "currency", "balance"]
    list_filter = ["kind", "currency", "property"]
    list_select_related = ["property"]


class PostingInline(admin.TabularInline):
    model = Posting
    fields = ["ledger_account", "amount"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "property", "currency", "memo", "idempotency_key"]
    list_filter = ["kind", "property"]
    search_fields = ["idempotency_key", "memo", "uuid"]
    date_hierarchy = "created_at"
    list_select_related = ["property"]
    inlines = [PostingInline]


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = ["transaction", "ledger_account", "amount"]
    list_select_related = ["transaction", "ledger_account"]


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdmin):
    list_display = ["period_end", "kind", "account", "meter", "quantity", "net", "tax"]
    list_filter = ["kind"]
    list_select_related = ["account__tenant", "account__unit__property", "meter"]


@admin.register(ChargeTotals)
class ChargeTotalsAdmin(ReadOnlyAdmin):
    list_display = ["account", "kind", "exact_net", "exact_tax", "posted_net", "posted_tax"]
    list_select_related = ["account__tenant", "account__unit__property"]


@admin.register(Receipt)
class ReceiptAdmin(ReadOnlyAdmin):
    list_display = ["display_number", "issued_at", "account", "amount", "currency", "channel"]
    list_filter = ["channel", "property"]
    search_fields = ["reference"]
    list_select_related = ["property", "account__tenant", "account__unit__property"]


@admin.register(ReceiptSequence)
class ReceiptSequenceAdmin(ReadOnlyAdmin):
    list_display = ["property", "last_number"]


@admin.register(TopupLimits)
class TopupLimitsAdmin(ReadOnlyAdmin):
    list_display = ["property", "minimum", "maximum", "max_balance"]


@admin.register(ChargeCursor)
class ChargeCursorAdmin(ReadOnlyAdmin):
    list_display = ["meter", "taken_at", "register"]
    list_select_related = ["meter"]


@admin.register(TierUsage)
class TierUsageAdmin(ReadOnlyAdmin):
    list_display = ["account", "utility", "month", "quantity"]
    list_filter = ["utility", "month"]


@admin.register(BalancePolicy)
class BalancePolicyAdmin(ReadOnlyAdmin):
    list_display = ["property", "cutoff_threshold", "restore_threshold", "grace_minutes"]


@admin.register(CutoffDecision)
class CutoffDecisionAdmin(ReadOnlyAdmin):
    list_display = ["account", "decided_at", "outcome", "balance", "until", "command"]
    list_filter = ["outcome"]
    list_select_related = ["account", "command"]


@admin.register(BalanceWarning)
class BalanceWarningAdmin(ReadOnlyAdmin):
    list_display = ["account", "created_at", "kind", "balance", "level", "days_left", "cutoff_at"]
    list_filter = ["kind"]
    list_select_related = ["account"]


@admin.register(FreezeCursor)
class FreezeCursorAdmin(ReadOnlyAdmin):
    list_display = ["property", "frozen_through", "updated_at"]
    list_select_related = ["property"]


@admin.register(MeterFreeze)
class MeterFreezeAdmin(ReadOnlyAdmin):
    list_display = ["day", "meter", "register", "method", "estimated", "consumption"]
    list_filter = ["method", "estimated", "property"]
    date_hierarchy = "day"
    list_select_related = ["meter"]


@admin.register(DailyFreeze)
class DailyFreezeAdmin(ReadOnlyAdmin):
    list_display = [
        "day", "account", "currency", "opening_balance", "topups", "energy_net", "energy_tax",
        "standing_net", "standing_tax", "refunds", "adjustments", "closing_balance", "month_end",
    ]  # fmt: skip
    list_filter = ["month_end", "property"]
    date_hierarchy = "day"
    list_select_related = ["account__tenant", "account__unit__property"]


@admin.register(ClosedPeriod)
class ClosedPeriodAdmin(ReadOnlyAdmin):
    list_display = ["property", "month", "closed_at", "closed_by"]
    list_filter = ["property"]
    list_select_related = ["property", "closed_by"]


@admin.register(PeriodCursor)
class PeriodCursorAdmin(ReadOnlyAdmin):
    list_display = ["property", "closed_through", "updated_at"]
    list_select_related = ["property"]


@admin.register(CreditPolicy)
class CreditPolicyAdmin(ReadOnlyAdmin):
    list_display = ["property", "bill_due_days", "late_fee", "recovery_percent"]
    list_select_related = ["property"]


@admin.register(InvoiceSequence)
class InvoiceSequenceAdmin(ReadOnlyAdmin):
    list_display = ["property", "last_number"]


class InvoiceAllocationInline(admin.TabularInline):
    model = InvoiceAllocation
    fields = ["transaction", "amount", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ["number", "property", "account", "kind", "month", "amount", "paid", "status"]
    list_filter = ["status", "kind", "property"]
    date_hierarchy = "issued_at"
    list_select_related = ["property", "account__tenant", "account__unit__property"]
    inlines = [InvoiceAllocationInline]


@admin.register(InvoiceAllocation)
class InvoiceAllocationAdmin(ReadOnlyAdmin):
    list_display = ["invoice", "transaction", "amount", "created_at"]
    list_select_related = ["invoice", "transaction"]


@admin.register(Debt)
class DebtAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "source", "amount", "recovered", "status"]
    list_filter = ["status", "source", "property"]
    list_select_related = ["account__tenant", "account__unit__property"]


@admin.register(DebtRecovery)
class DebtRecoveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "debt", "transaction", "topup", "amount"]
    list_select_related = ["debt", "transaction", "topup"]


class InstalmentInline(admin.TabularInline):
    model = Instalment
    fields = ["number", "due_on", "amount", "collected"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(InstalmentPlan)
class InstalmentPlanAdmin(ReadOnlyAdmin):
    list_display = ["debt", "status", "created_at", "created_by"]
    list_filter = ["status"]
    list_select_related = ["debt", "created_by"]
    inlines = [InstalmentInline]


@admin.register(Instalment)
class InstalmentAdmin(ReadOnlyAdmin):
    list_display = ["plan", "number", "due_on", "amount", "collected"]
    list_select_related = ["plan"]


@admin.register(Reminder)
class ReminderAdmin(ReadOnlyAdmin):
    list_display = ["sent_at", "invoice", "instalment", "days"]
    list_select_related = ["invoice", "instalment"]
