"""The portal's postpaid pages: the tenant's bills, one bill and its PDF, and the home page's
card with the next bill due."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path

from billing.invoice_pdf import (
    PDF_MIMETYPE,
    invoice_document,
    invoice_filename,
    invoice_language,
    invoice_pdf,
)
from billing.invoices import (
    account_invoices,
    invoice_display_number,
    next_due_invoice,
    open_amount,
)
from billing.models import Invoice
from portal import selectors
from portal.access import tenant_required

PAGE_SIZE = 24


def _invoice(request: HttpRequest, invoice_uuid) -> Invoice:
    """One of the signed-in tenant's bills; anyone else's is not found."""
    return get_object_or_404(
        Invoice.objects.select_related("property", "account__unit__property").filter(
            account__in=selectors.portal_accounts(user=request.user)
        ),
        uuid=invoice_uuid,
    )


@tenant_required
def bills_card(request: HttpRequest, account_uuid) -> HttpResponse:
    """The home page's card: the next bill due and what the open bills ask for; nothing for an
    account that has never been billed."""
    account = selectors.portal_account(user=request.user, account_uuid=account_uuid)
    if not account.invoices.exists():
        return HttpResponse("")
    bill = next_due_invoice(account=account)
    context = {
        "account": account,
        "bill": bill,
        "number": invoice_display_number(bill) if bill else "",
        "open_amount": open_amount(account=account),
        "currency": account.unit.property.currency,
    }
    return render(request, "portal/bills/_card.html", context)


@tenant_required
def bills(request: HttpRequest, account_uuid) -> HttpResponse:
    account = selectors.portal_account(user=request.user, account_uuid=account_uuid)
    page = Paginator(account_invoices(account=account), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "account": account,
        "page": page,
        "open_amount": open_amount(account=account),
        "currency": account.unit.property.currency,
    }
    template = "portal/bills/list.html"
    return render(request, f"{template}#list" if request.htmx else template, context)


@tenant_required
def bill(request: HttpRequest, invoice_uuid) -> HttpResponse:
    found = _invoice(request, invoice_uuid)
    context = {
        "invoice": found,
        "account": found.account,
        "document": invoice_document(invoice=found, language=invoice_language(invoice=found)),
    }
    return render(request, "portal/bills/bill.html", context)


@tenant_required
def bill_download(request: HttpRequest, invoice_uuid) -> HttpResponse:
    found = _invoice(request, invoice_uuid)
    pdf = invoice_pdf(invoice=found, language=invoice_language(invoice=found))
    response = HttpResponse(pdf, content_type=PDF_MIMETYPE)
    response["Content-Disposition"] = f'attachment; filename="{invoice_filename(invoice=found)}"'
    return response


urlpatterns = [
    path("accounts/<uuid:account_uuid>/bills/card/", bills_card, name="bills-card"),
    path("accounts/<uuid:account_uuid>/bills/", bills, name="bills"),
    path("bills/<uuid:invoice_uuid>/", bill, name="bill"),
    path("bills/<uuid:invoice_uuid>/pdf/", bill_download, name="bill-pdf"),
]
