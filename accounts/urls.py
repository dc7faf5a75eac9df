"""The staff dashboard's pages for properties, units, tenants, staff and imports.

Each subject's views module keeps its own routes beside its views.
"""

from accounts.views import imports, lifecycle, staff, units

app_name = "accounts"
urlpatterns = [
    *units.urlpatterns,
    *lifecycle.urlpatterns,
    *staff.urlpatterns,
    *imports.urlpatterns,
]
