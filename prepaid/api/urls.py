from rest_framework.routers import DefaultRouter

from accounts.api import AccountViewSet, PropertyViewSet, TenantViewSet, UnitViewSet
from meters.api import MeterViewSet
from prepaid.audit.api import AuditLogViewSet

router = DefaultRouter()
router.register("properties", PropertyViewSet, basename="property")
router.register("units", UnitViewSet, basename="unit")
router.register("tenants", TenantViewSet, basename="tenant")
router.register("accounts", AccountViewSet, basename="account")
router.register("meters", MeterViewSet, basename="meter")
router.register("audit-log", AuditLogViewSet, basename="audit-log")

urlpatterns = router.urls
