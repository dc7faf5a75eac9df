"""The properties list, a property's units grid, the units list across properties, and search.

The grid and the list are one table (the `units-grid` partial of accounts/units_grid.html): it
polls itself every 10 seconds with the filters it was drawn with, and the filter form swaps it
in place, so the page updates live and works without JavaScript too.
"""

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from accounts import selectors
from accounts.models import Property
from accounts.selectors import UnitFilter, UnitSort
from prepaid.scoping import Capability
from prepaid.staff import scoped_or_404, staff_view

UNITS_PER_PAGE = 200
GRID = "accounts/units_grid.html"
SEARCH_MIN_LENGTH = 2


def _choice(request: HttpRequest, name: str, choices, default: str) -> str:
    value = request.GET.get(name, default)
    return value if value in choices.values else default


def _page_url(request: HttpRequest, number: int) -> str:
    query = request.GET.copy()
    query["page"] = str(number)
    return f"{request.path}?{query.urlencode()}"


def _units_context(request: HttpRequest, properties: list[Property]) -> dict:
    """The filtered, paged units of the properties and everything the table shows of them."""
    status = _choice(request, "status", UnitFilter, UnitFilter.ALL)
    sort = _choice(request, "sort", UnitSort, UnitSort.NAME)
    query = request.GET.get("q", "").strip()[:100]
    counts = selectors.unit_status_counts(scope=request.scope, properties=properties)
    rows = selectors.unit_rows(
        scope=request.scope, properties=properties, status=status, query=query, sort=sort
    )
    page = Paginator(rows, UNITS_PER_PAGE).get_page(request.GET.get("page"))
    return {
        "status": status,
        "sort": sort,
        "query": query,
        "filters": [(choice, counts[choice.value]) for choice in UnitFilter],
        "sorts": UnitSort.choices,
        "page": page,
        "units": selectors.unit_rows_complete(
            scope=request.scope, rows=page.object_list, properties=properties
        ),
        "previous_url": _page_url(request, page.previous_page_number())
        if page.has_previous()
        else None,
        "next_url": _page_url(request, page.next_page_number()) if page.has_next() else None,
        "poll_url": request.get_full_path(),
        "can_operate": request.scope.can(Capability.OPERATE),
    }


def _table_or_page(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    if request.htmx:
        return render(request, f"{GRID}#units-grid", context)
    return render(request, template, context)


@staff_view
def property_list(request: HttpRequest) -> HttpResponse:
    properties = selectors.property_rows(
        scope=request.scope, properties=selectors.scope_properties(scope=request.scope)
    )
    return render(
        request,
        "accounts/property_list.html",
        {
            "properties": properties,
            "can_administer": request.scope.can(Capability.ADMINISTER),
        },
    )


@staff_view
def units_grid(request: HttpRequest, property_id) -> HttpResponse:
    properties = Property.objects.select_related("balance_policy")
    prop = scoped_or_404(properties, request.scope, uuid=property_id)
    context = _units_context(request, [prop])
    context.update(property=prop, show_property=False)
    return _table_or_page(request, GRID, context)


@staff_view
def units_list(request: HttpRequest) -> HttpResponse:
    properties = selectors.scope_properties(scope=request.scope)
    context = _units_context(request, properties)
    context.update(show_property=len(properties) > 1)
    return _table_or_page(request, "accounts/units_list.html", context)


@staff_view
def search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    context = {
        "query": query,
        "too_short": 0 < len(query) < SEARCH_MIN_LENGTH,
        "min_length": SEARCH_MIN_LENGTH,
        "results": selectors.search(scope=request.scope, query=query)
        if len(query) >= SEARCH_MIN_LENGTH
        else None,
        "can_operate": request.scope.can(Capability.OPERATE),
    }
    if request.htmx:
        return render(request, "accounts/search.html#results", context)
    return render(request, "accounts/search.html", context)


urlpatterns = [
    path("properties/", property_list, name="properties"),
    path("properties/<uuid:property_id>/", units_grid, name="units"),
    path("units/", units_list, name="units-all"),
    path("search/", search, name="search"),
]
