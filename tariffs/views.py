from django.http import Http404

from prepaid.staff import staff_view


@staff_view
def tariff_list(request):
    raise Http404("placeholder")
