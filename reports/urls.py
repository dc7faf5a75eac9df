"""The reports pages; each subject's views module keeps its own routes beside its views."""

from reports import reconciliation_views, statement_views, views

app_name = "reports"
urlpatterns = [
    *views.urlpatterns,
    *reconciliation_views.urlpatterns,
    *statement_views.urlpatterns,
]
