from django.http import Http404
from django.urls import path

from prepaid.scoping import Capability
from prepaid.staff import staff_view


@staff_view(read=Capability.ADMINISTER)
def import_start(request):
    raise Http404("placeholder")


urlpatterns = [
    path("imports/", import_start, name="imports"),
]
