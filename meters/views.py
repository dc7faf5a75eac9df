from django.http import Http404

from prepaid.staff import staff_view


@staff_view
def meter_list(request):
    raise Http404("placeholder")


@staff_view
def meter_detail(request, meter_id):
    raise Http404("placeholder")


@staff_view
def alarm_inbox(request):
    raise Http404("placeholder")
