from django.urls import path

from tariffs import views

app_name = "tariffs"
urlpatterns = [
    path("tariffs/", views.tariff_list, name="list"),
]
