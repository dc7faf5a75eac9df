from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts import auth_views as staff_auth
from prepaid import views

urlpatterns = [
    path("", views.home, name="home"),
    path("overview/", views.overview, name="overview"),
    path("login/", staff_auth.SignInView.as_view(), name="login"),
    path("login/verify/", staff_auth.sign_in_verify, name="login-verify"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/two-factor/", staff_auth.two_factor_settings, name="two-factor"),
    path("account/two-factor/confirm/", staff_auth.two_factor_confirm, name="two-factor-confirm"),
    path("account/two-factor/remove/", staff_auth.two_factor_remove, name="two-factor-remove"),
    path(
        "account/organisation/security/",
        staff_auth.organisation_security,
        name="organisation-security",
    ),
    path("password-reset/", staff_auth.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("", include("accounts.urls")),
    path("", include("meters.urls")),
    path("", include("billing.urls")),
    path("", include("tariffs.urls")),
    path("", include("prepaid.audit.urls")),
    path("reports/", include("reports.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("prepaid.api.urls")),
    path("payments/", include("payments.urls")),
    path("portal/", include("portal.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("i18n/", include("django.conf.urls.i18n")),
]
