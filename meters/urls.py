from django.urls import path

from meters import views

app_name = "meters"
urlpatterns = [
    path("meters/", views.meter_list, name="list"),
    path("meters/<uuid:meter_id>/", views.meter_detail, name="detail"),
    path("alarms/", views.alarm_inbox, name="alarms"),
]
