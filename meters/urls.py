from django.urls import path

from meters import views

app_name = "meters"
urlpatterns = [
    path("meters/", views.meter_list, name="list"),
    path("meters/<uuid:meter_id>/", views.meter_detail, name="detail"),
    path("meters/<uuid:meter_id>/relay/", views.meter_relay, name="relay"),
    path("meters/<uuid:meter_id>/settings/", views.meter_settings, name="settings"),
    path("alarms/", views.alarm_inbox, name="alarms"),
    path("alarms/<uuid:alarm_id>/", views.alarm_detail, name="alarm"),
    path(
        "alarms/<uuid:alarm_id>/acknowledge/",
        views.alarm_acknowledge,
        name="alarm-acknowledge",
    ),
    path("alarms/<uuid:alarm_id>/resolve/", views.alarm_resolve, name="alarm-resolve"),
    path(
        "properties/<uuid:property_id>/detectors/",
        views.detector_settings_edit,
        name="detector-settings",
    ),
]
