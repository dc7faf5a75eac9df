from django.http import Http404

from prepaid.staff import staff_view


@staff_view
def counter_topup(request, account_id):
    raise Http404("placeholder")


@staff_view
def policy_edit(request, property_id):
    raise Http404("placeholder")
