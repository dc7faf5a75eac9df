from django.urls import path

from portal import auth_views, views, views_bills, views_debts

app_name = "portal"
urlpatterns = [
    path("sign-in/", auth_views.sign_in, name="sign-in"),
    path("sign-in/code/", auth_views.code_request, name="code-request"),
    path("sign-in/code/<uuid:code_uuid>/", auth_views.code_verify, name="code-verify"),
    path("reset/", auth_views.reset_request, name="reset-request"),
    path("reset/<uuid:code_uuid>/", auth_views.reset_confirm, name="reset-confirm"),
    path("sign-out/", auth_views.sign_out, name="sign-out"),
    path("", views.index, name="index"),
    path("accounts/<uuid:account_uuid>/", views.home, name="home"),
    path("accounts/<uuid:account_uuid>/usage/", views.usage, name="usage"),
    path("accounts/<uuid:account_uuid>/recharge/", views.recharge, name="recharge"),
    path("accounts/<uuid:account_uuid>/history/", views.history, name="history"),
    path("accounts/<uuid:account_uuid>/auto-top-up/", views.autotopup, name="autotopup"),
    path("payments/<str:reference>/", views.payment, name="payment"),
    path("receipts/<uuid:receipt_uuid>/", views.receipt, name="receipt"),
    path("receipts/<uuid:receipt_uuid>/pdf/", views.receipt_download, name="receipt-pdf"),
    path("settings/", views.settings_page, name="settings"),
    *views_bills.urlpatterns,
    *views_debts.urlpatterns,
]
