from django.http import Http404
from django.urls import path

from prepaid.staff import staff_view


@staff_view
def property_list(request):
    raise Http404("placeholder")


@staff_view
def units_grid(request, property_id):
    raise Http404("placeholder")


@staff_view
def units_list(request):
    raise Http404("placeholder")


@staff_view
def search(request):
    raise Http404("placeholder")


urlpatterns = [
    path("properties/", property_list, name="properties"),
    path("properties/<uuid:property_id>/", units_grid, name="units"),
    path("units/", units_list, name="units-all"),
    path("search/", search, name="search"),
]
