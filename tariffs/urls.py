from django.urls import path

from tariffs import views

app_name = "tariffs"
urlpatterns = [
    path("tariffs/", views.tariff_list, name="list"),
    path("tariffs/new/<uuid:property_id>/", views.tariff_create, name="create"),
    path("tariffs/<uuid:tariff_id>/", views.tariff_detail, name="detail"),
    path("tariffs/<uuid:tariff_id>/versions/new/", views.version_add, name="version-add"),
    path("tariffs/<uuid:tariff_id>/what-if/", views.what_if, name="what-if"),
]
