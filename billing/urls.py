from django.urls import path

from billing import views, views_bills, views_debts

app_name = "billing"
urlpatterns = [
    path("tenancies/<uuid:account_id>/top-up/", views.counter_topup, name="topup"),
    path("receipts/<uuid:receipt_id>/", views.receipt, name="receipt"),
    path("receipts/<uuid:receipt_id>/pdf/", views.receipt_download, name="receipt-pdf"),
    path("properties/<uuid:property_id>/policy/", views.policy_edit, name="policy"),
    path(
        "properties/<uuid:property_id>/policy/preview/",
        views.policy_preview,
        name="policy-preview",
    ),
    path("properties/<uuid:property_id>/periods/", views.periods, name="periods"),
    *views_bills.urlpatterns,
    *views_debts.urlpatterns,
]
