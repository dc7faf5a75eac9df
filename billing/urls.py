from django.urls import path

from billing import views

app_name = "billing"
urlpatterns = [
    path("tenancies/<uuid:account_id>/top-up/", views.counter_topup, name="topup"),
    path("properties/<uuid:property_id>/policy/", views.policy_edit, name="policy"),
]
