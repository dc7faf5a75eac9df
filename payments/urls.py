from django.urls import path

from payments import views

app_name = "payments"
urlpatterns = [
    path("webhooks/<str:provider>/<uuid:config_uuid>/", views.webhook, name="webhook"),
    path("sandbox/<str:reference>/", views.sandbox_page, name="sandbox-page"),
]
