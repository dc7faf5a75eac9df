from django.http import Http404
from django.urls import path

from prepaid.scoping import Capability
from prepaid.staff import staff_view


@staff_view(read=Capability.ADMINISTER)
def staff_list(request):
    raise Http404("placeholder")


urlpatterns = [
    path("staff/", staff_list, name="staff"),
]
