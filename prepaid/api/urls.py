from rest_framework.routers import DefaultRouter

from accounts.api import AccountViewSet, PropertyViewSet, TenantViewSet, UnitViewSet
from billing.api import (
    BalanceWarningViewSet,
    ChargeViewSet,
    CutoffDecisionViewSet,
    DailyFreezeViewSet,
    LedgerTransactionViewSet,
    MeterFreezeViewSet,
    TopupViewSet,
)
from meters.api import (
    AlarmViewSet,
    GatewayViewSet,
    MeterProfileViewSet,
    MeterViewSet,
    MqttDeviceViewSet,
    ReadingViewSet,
    RelayCommandViewSet,
)
from notifications.api import ChannelPreferenceViewSet, NotificationViewSet
from payments.api import PaymentIntentViewSet, ProviderConfigViewSet, RefundViewSet
from prepaid.audit.api import AuditLogViewSet
from tariffs.api import TariffViewSet

router = DefaultRouter()
router.register("properties", PropertyViewSet, basename="property")
router.register("units", UnitViewSet, basename="unit")
router.register("tenants", TenantViewSet, basename="tenant")
router.register("accounts", AccountViewSet, basename="account")
router.register("meters", MeterViewSet, basename="meter")
router.register("audit-log", AuditLogViewSet, basename="audit-log")
router.register("ledger-transactions", LedgerTransactionViewSet, basename="ledger-transaction")
router.register("topups", TopupViewSet, basename="topup")
router.register("charges", ChargeViewSet, basename="charge")
router.register("cutoff-decisions", CutoffDecisionViewSet, basename="cutoff-decision")
router.register("balance-warnings", BalanceWarningViewSet, basename="balance-warning")
router.register("daily-freezes", DailyFreezeViewSet, basename="daily-freeze")
router.register("meter-freezes", MeterFreezeViewSet, basename="meter-freeze")
router.register("tariffs", TariffViewSet, basename="tariff")
router.register("readings", ReadingViewSet, basename="reading")
router.register("meter-profiles", MeterProfileViewSet, basename="meter-profile")
router.register("gateways", GatewayViewSet, basename="gateway")
router.register("mqtt-devices", MqttDeviceViewSet, basename="mqtt-device")
router.register("relay-commands", RelayCommandViewSet, basename="relay-command")
router.register("alarms", AlarmViewSet, basename="alarm")
router.register("notifications", NotificationViewSet, basename="notification")
router.register(
    "notification-preferences", ChannelPreferenceViewSet, basename="notification-preference"
)

router.register("payments", PaymentIntentViewSet, basename="payment")
router.register("payment-providers", ProviderConfigViewSet, basename="payment-provider")
router.register("refunds", RefundViewSet, basename="refund")

urlpatterns = router.urls
