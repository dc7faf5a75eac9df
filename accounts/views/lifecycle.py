from django.http import Http404
from django.urls import path

from prepaid.staff import staff_view


@staff_view
def move_in(request, unit_id):
    raise Http404("placeholder")


@staff_view
def account_detail(request, account_id):
    raise Http404("placeholder")


@staff_view
def move_out(request, account_id):
    raise Http404("placeholder")


@staff_view
def settlement_pdf(request, account_id):
    raise Http404("placeholder")


@staff_view
def tenant_detail(request, tenant_id):
    raise Http404("placeholder")


@staff_view
def meter_replace(request, meter_id):
    raise Http404("placeholder")


urlpatterns = [
    path("units/<uuid:unit_id>/move-in/", move_in, name="move-in"),
    path("tenancies/<uuid:account_id>/", account_detail, name="account"),
    path("tenancies/<uuid:account_id>/move-out/", move_out, name="move-out"),
    path("tenancies/<uuid:account_id>/settlement.pdf", settlement_pdf, name="settlement-pdf"),
    path("tenants/<uuid:tenant_id>/", tenant_detail, name="tenant"),
    path("meters/<uuid:meter_id>/replace/", meter_replace, name="meter-replace"),
]
