"""Staff pages of the monthly tenant statements: an account's statements month by month, and one
month's statement as a PDF. Both only read, so VIEW (every staff role) opens them."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from accounts.models import Account
from notifications.texts import LANGUAGES, language_for
from prepaid.staff import scoped_or_404, staff_view
from reports.statement_pdf import PDF_MIMETYPE, statement_filename, statement_pdf
from reports.statements import (
    NoStatement,
    month_label,
    monthly_statement,
    parse_month,
    statement_months,
    summary_rows,
)

TEMPLATE = "reports/statements.html"


def _account(request: HttpRequest, account_id) -> Account:
    return scoped_or_404(
        Account.objects.select_related("tenant", "unit__property"), request.scope, uuid=account_id
    )


@staff_view
def statements(request: HttpRequest, account_id) -> HttpResponse:
    """The months an account has statements for, and the chosen one's figures (the latest
    unless `?month=YYYY-MM` asks for another)."""
    account = _account(request, account_id)
    months = statement_months(account=account)
    month = parse_month(request.GET.get("month", ""))
    if month is None or month not in months:
        month = months[-1] if months else None
    statement = monthly_statement(account=account, month=month) if month else None
    context = {
        "account": account,
        "property": account.unit.property,
        "months": [(value, month_label(value)) for value in months],
        "month": month,
        "statement": statement,
        "rows": summary_rows(statement) if statement else [],
        "tenant_language": language_for(account.tenant.preferred_language),
        "pdf_languages": LANGUAGES,
    }
    if request.htmx:
        return render(request, f"{TEMPLATE}#statement", context)
    return render(request, TEMPLATE, context)


@staff_view
def statement(request: HttpRequest, account_id, month: str) -> HttpResponse:
    """One month's statement as a PDF, in the tenant's language unless `?language=` asks for
    another."""
    account = _account(request, account_id)
    first = parse_month(month)
    if first is None:
        raise Http404("Give the month as YYYY-MM.")
    try:
        found = monthly_statement(account=account, month=first)
    except NoStatement as error:
        raise Http404("The account has no frozen day in that month.") from error
    language = request.GET.get("language", "")
    if language not in LANGUAGES:
        language = language_for(found.tenant_language)
    response = HttpResponse(
        statement_pdf(statement=found, language=language), content_type=PDF_MIMETYPE
    )
    response["Content-Disposition"] = f'inline; filename="{statement_filename(statement=found)}"'
    return response


urlpatterns = [
    path("statements/<uuid:account_id>/", statements, name="statements"),
    path("statements/<uuid:account_id>/<str:month>.pdf", statement, name="statement"),
]
