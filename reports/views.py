"""The report pages and their exports, the same for every report in the catalogue.

- `reports:index`: the reports the caller's role may open, and the caller's recent exports.
- `reports:report`: one report's filters (its own form; by default the first property in scope
  and its current month to date), its time zone and currency, its chart, its table fifty rows a
  page (`?part=table` is the table alone for htmx, any other htmx request the filters and all
  below) with the totals, and the export buttons.
- `reports:export` (POST): the CSV or XLSX streamed at once when the report has at most
  `REPORT_INLINE_EXPORT_ROWS` rows, otherwise a background job and a redirect to its page.
- `reports:export-job`: the job's progress, polled by htmx every 2 s while it runs, and its file
  when done (`reports:export-download`).

A property the caller may not see is a 404, exactly like a missing one. Every page needs only
VIEW: accountants read and export everything.
"""

import tempfile
from collections.abc import Sequence

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import path, register_converter, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Property
from prepaid.staff import require, scoped_or_404, staff_view
from reports.base import Chart, Filters, FiltersForm, Kind, Report
from reports.catalogue import REPORTS
from reports.exports import (
    CONTENT_TYPES,
    csv_stream,
    export_filename,
    export_inline_record,
    export_job_create,
    export_path,
    form_data,
    query_dict,
    write_xlsx,
)
from reports.models import ExportJob

PAGE_SIZE = 50
# How often a running job's page asks for its progress (seconds).
POLL_SECONDS = 2
RECENT_EXPORTS = 10
NUMERIC_KINDS = frozenset({Kind.INTEGER, Kind.MONEY, Kind.QUANTITY, Kind.PERCENT})
FILTER_FIELDS = ("property", "start", "end")


def _report_or_404(request: HttpRequest, slug: str) -> Report:
    report = REPORTS.get(slug)
    if report is None:
        raise Http404("No such report.")
    require(request, report.capability)
    return report


def _bound_form(request: HttpRequest, report: Report, submitted: QueryDict) -> FiltersForm | None:
    """The report's form bound to what was asked, with the defaults for what was not: the
    first property in scope, its current local month to date and, on a first visit, each
    report-specific field's initial value. None when the caller sees no property at all."""
    data = submitted.copy()
    first_visit = not any(name in data for name in FILTER_FIELDS)
    properties = Property.objects.for_scope(request.scope).order_by("name")
    if data.get("property"):
        try:
            prop = properties.get(uuid=data["property"])
        except (Property.DoesNotExist, ValueError, ValidationError) as error:
            raise Http404("No property matches.") from error
    else:
        prop = properties.first()
        if prop is None:
            return None
        data["property"] = str(prop.uuid)
    today = timezone.localdate(timezone=prop.zone)
    data.setdefault("start", today.replace(day=1).isoformat())
    data.setdefault("end", today.isoformat())
    form = report.form_class(data, scope=request.scope)
    if first_visit:
        for name, field in form.fields.items():
            initial = form.get_initial_for_field(field, name)
            if name not in data and initial not in (None, "", []):
                values = initial if isinstance(initial, list | tuple) else [initial]
                data.setlist(name, [str(field.prepare_value(value)) for value in values])
    return form


class _Rows:
    """A report's rows as the paginator sees them: counted by the report, sliced by `rows`."""

    def __init__(self, report: Report, filters: Filters):
        self.report = report
        self.filters = filters

    def count(self) -> int:
        return self.report.count(self.filters)

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, window: slice) -> list:
        limit = window.stop - window.start
        if limit <= 0:
            return []
        return list(self.report.rows(self.filters, offset=window.start, limit=limit))


def _cells(kinds: Sequence[Kind], row) -> list[tuple[Kind, object]]:
    return list(zip(kinds, row, strict=True))


def _chart_data(chart: Chart) -> dict:
    """The chart for static/js/report-chart.js; amounts as strings, never floats."""
    return {
        "labels": [str(label) for label in chart.labels],
        "series": [
            {
                "label": str(series.label),
                "values": [None if value is None else str(value) for value in series.values],
            }
            for series in chart.series
        ],
        "unit": chart.unit,
        "style": chart.style,
    }


def _chart_context(report: Report, filters: Filters) -> dict:
    chart = report.chart(filters)
    if chart is None:
        return {}
    values = zip(*(series.values for series in chart.series), strict=True)
    # The chart's figures as a table too, for readers without the picture.
    return {
        "chart": _chart_data(chart),
        "chart_rows": list(zip(chart.labels, values, strict=False)),
    }


def _table_context(request: HttpRequest, report: Report, filters: Filters) -> dict:
    columns = report.columns(filters)
    kinds = [column.kind for column in columns]
    page = Paginator(_Rows(report, filters), PAGE_SIZE).get_page(request.GET.get("page"))
    totals = report.totals(filters)
    return {
        "columns": columns,
        "page": page,
        "rows": [_cells(kinds, row) for row in page],
        "totals": None if totals is None else _cells(kinds, totals),
    }


def _page_context(request: HttpRequest, report: Report, form: FiltersForm | None) -> dict:
    context = {
        "report": report,
        "form": form,
        "numeric_kinds": NUMERIC_KINDS,
        "table_part": "table",
    }
    if form is None or not form.is_valid():
        return context
    filters = form.filters()
    context.update(
        filters=filters,
        property=filters.property,
        zone=filters.zone,
        currency=filters.currency,
        export_fields=[
            (name, value)
            for name, values in form_data(form).items()
            for value in (values if isinstance(values, list) else [values])
        ],
    )
    return context


@staff_view
@require_GET
def report_index(request: HttpRequest) -> HttpResponse:
    """The reports the caller's role may open, and the caller's latest exports."""
    reports = [report for report in REPORTS.values() if request.scope.can(report.capability)]
    exports = (
        ExportJob.objects.for_scope(request.scope)
        .filter(requested_by=request.user)
        .select_related("property")[:RECENT_EXPORTS]
    )
    titles = {slug: report.title for slug, report in REPORTS.items()}
    context = {
        "reports": reports,
        "exports": [(job, titles.get(job.report, job.report)) for job in exports],
    }
    return render(request, "reports/index.html", context)


@staff_view
@require_GET
def report_page(request: HttpRequest, slug: str) -> HttpResponse:
    """One report: its filters, chart, table and totals; for htmx the table alone
    (`?part=table`, the pagination) or everything below the heading (the filters)."""
    report = _report_or_404(request, slug)
    form = _bound_form(request, report, request.GET)
    context = _page_context(request, report, form)
    status = 200
    if "filters" in context:
        filters = context["filters"]
        context.update(_table_context(request, report, filters))
        if not (request.htmx and request.GET.get("part") == "table"):
            context.update(_chart_context(report, filters))
    elif form is not None:
        status = 400
    if request.htmx:
        part = "table" if request.GET.get("part") == "table" and "page" in context else "body"
        # htmx swaps only successful answers: the refused filters come back as a 200.
        return render(request, f"reports/report.html#{part}", context)
    return render(request, "reports/report.html", context, status=status)


@staff_view
@require_POST
def report_export(request: HttpRequest, slug: str) -> HttpResponse:
    """The report as CSV or XLSX: streamed now when it is small, otherwise a background job."""
    report = _report_or_404(request, slug)
    fmt = request.POST.get("format", "")
    if fmt not in ExportJob.Format.values:
        return HttpResponseBadRequest(_("Choose CSV or XLSX."))
    form = _bound_form(request, report, request.POST)
    if form is None or not form.is_valid():
        context = _page_context(request, report, form)
        return render(request, "reports/report.html", context, status=400)
    filters = form.filters()
    rows = report.count(filters)
    if rows > settings.REPORT_INLINE_EXPORT_ROWS:
        job = export_job_create(
            actor=request.user, report=report, form=form, fmt=fmt, rows_total=rows
        )
        return redirect("reports:export-job", job_id=job.uuid)
    filename = export_filename(report, filters, fmt)
    if fmt == ExportJob.Format.CSV:
        export_inline_record(actor=request.user, report=report, form=form, fmt=fmt, rows=rows)
        response = StreamingHttpResponse(
            csv_stream(report, filters), content_type=CONTENT_TYPES[fmt]
        )
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
    # A temporary file without a name on disk: closed, and so gone, when the response is sent.
    workbook = tempfile.TemporaryFile()  # noqa: SIM115 - FileResponse closes it
    written = write_xlsx(report, filters, workbook)
    export_inline_record(actor=request.user, report=report, form=form, fmt=fmt, rows=written)
    workbook.seek(0)
    return FileResponse(
        workbook, as_attachment=True, filename=filename, content_type=CONTENT_TYPES[fmt]
    )


def _job_context(job: ExportJob) -> dict:
    report = REPORTS.get(job.report)
    back = None
    if report is not None:
        query = query_dict(job.filters).urlencode()
        back = f"{reverse('reports:report', args=[job.report])}?{query}"
    return {
        "job": job,
        "report": report,
        "report_title": report.title if report else job.report,
        "back": back,
        "zone": job.property.zone,
        "poll_seconds": POLL_SECONDS,
        "downloadable": export_path(job) is not None,
    }


@staff_view
@require_GET
def export_job(request: HttpRequest, job_id) -> HttpResponse:
    """A background export: its progress while it runs, its file when done, its error if it
    failed. htmx polls the progress partial."""
    job = scoped_or_404(ExportJob.objects.select_related("property"), request.scope, uuid=job_id)
    context = _job_context(job)
    if request.htmx:
        return render(request, "reports/export.html#progress", context)
    return render(request, "reports/export.html", context)


@staff_view
@require_GET
def export_download(request: HttpRequest, job_id) -> FileResponse:
    """A finished export's file; a 404 once it has expired."""
    job = scoped_or_404(ExportJob.objects.select_related("property"), request.scope, uuid=job_id)
    path = export_path(job)
    if path is None:
        raise Http404("This export has no file.")
    start, end = job.filters.get("start", ""), job.filters.get("end", "")
    filename = f"{job.report}_{job.property.code}_{start}_{end}.{job.format}"
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=filename,
        content_type=CONTENT_TYPES[job.format],
    )


class ReportSlugConverter:
    """A slug of the catalogue only, checked when the URL is resolved: any other path falls
    through to the routes after these (reconciliation, statements) or is a 404."""

    regex = "[-a-zA-Z0-9_]+"

    def to_python(self, value: str) -> str:
        if value not in REPORTS:
            raise ValueError(value)
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ReportSlugConverter, "report")

urlpatterns = [
    path("", report_index, name="index"),
    path("exports/<uuid:job_id>/", export_job, name="export-job"),
    path("exports/<uuid:job_id>/download/", export_download, name="export-download"),
    path("<report:slug>/", report_page, name="report"),
    path("<report:slug>/export/", report_export, name="export"),
]
