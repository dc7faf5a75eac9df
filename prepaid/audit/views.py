from django.http import Http404

from prepaid.staff import staff_view


@staff_view
def audit_log(request):
    raise Http404("placeholder")
