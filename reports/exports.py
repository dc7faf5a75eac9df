"""Every report as CSV or XLSX, streamed row by row, inline or as a background job.

- `write_csv` and `write_xlsx` write every row of a report: the rows come from the report's
  streamed `rows`, go through one converter per column and out to the file, so a million rows
  never sit in memory. Both start with a line naming the report, the property, the dates, the
  time zone and the currency, then a header row of the columns' labels in the active language,
  the rows, and the totals row when the report has one.
- CSV is UTF-8 with a byte order mark, so Excel opens Chinese labels correctly; amounts and
  quantities are plain decimal strings, dates ISO, datetimes in the property's zone.
- XLSX is XlsxWriter's workbook in constant memory (each row goes to disk as it is written):
  money and quantities are numbers with a number format, dates are dates, datetimes are converted
  to the property's zone and written naive, and text is always text, never a formula.
- Small exports stream from the request (`csv_stream`, or a temporary XLSX file); larger ones are
  an `ExportJob` run by `reports.tasks.export_run_task` (`export_run`), which records its
  progress every `PROGRESS_EVERY` rows. Every export is audited as "report.export".
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.http import QueryDict
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from xlsxwriter import Workbook

from accounts.selectors import scope_for_user
from prepaid.audit.services import audit_record
from prepaid.money import minor_unit
from reports.base import Column, Filters, FiltersForm, Kind, Report, Value
from reports.models import ExportJob

logger = logging.getLogger(__name__)

# A running job records how far it got this often: one UPDATE per so many rows, never per row.
PROGRESS_EVERY = 5_000
# The CSV stream hands the response a chunk this many rows long.
CSV_CHUNK_ROWS = 1_000
AUDIT_ACTION = "report.export"
CONTENT_TYPES = {
    ExportJob.Format.CSV: "text/csv; charset=utf-8",
    ExportJob.Format.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

Progress = Callable[[int], Any]


class ExportFailed(Exception):
    """A job that cannot run, with the reason shown to its requester."""


# What both formats start with --------------------------------------------------------------------


def title_line(report: Report, filters: Filters) -> str:
    """The report, its property, its dates, time zone and currency, in one line."""
    line = _(
        "%(title)s: %(property)s, %(start)s to %(end)s, times in %(zone)s, amounts in %(currency)s"
    )
    return line % {
        "title": report.title,
        "property": filters.property.name,
        "start": filters.start.isoformat(),
        "end": filters.end.isoformat(),
        "zone": filters.property.time_zone,
        "currency": filters.currency,
    }


def export_filename(report: Report, filters: Filters, fmt: str) -> str:
    return f"{report.slug}_{filters.property.code}_{filters.start}_{filters.end}.{fmt}"


def _totals_row(report: Report, filters: Filters) -> list[Value] | None:
    """The totals in column order, labelled in the first column when it has no total."""
    totals = report.totals(filters)
    if totals is None:
        return None
    row = list(totals)
    if row and row[0] is None:
        row[0] = _("Total")
    return row


class _Tally:
    """Rows written so far, reported to `progress` every PROGRESS_EVERY rows."""

    def __init__(self, progress: Progress | None):
        self.rows = 0
        self.progress = progress

    def add(self) -> None:
        self.rows += 1
        if self.progress is not None and self.rows % PROGRESS_EVERY == 0:
            self.progress(self.rows)


# CSV ---------------------------------------------------------------------------------------------

# Spreadsheets run a cell that starts with one of these as a formula: a tenant named
# "=HYPERLINK(...)" must stay text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(value: Value) -> Value:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _csv_decimal(value: Value) -> Value:
    # format(..., "f") never writes an exponent: Decimal("0E-4") is "0.0000", not "0E-4".
    return format(value, "f") if isinstance(value, Decimal) else value


def _csv_date(value: Value) -> Value:
    return value.isoformat() if isinstance(value, date) else value


def _csv_datetime(zone: ZoneInfo) -> Callable[[Value], Value]:
    def convert(value: Value) -> Value:
        if isinstance(value, datetime):
            return value.astimezone(zone).replace(tzinfo=None).isoformat(" ", "seconds")
        return value

    return convert


def _csv_converters(columns: Sequence[Column], zone: ZoneInfo) -> list[Callable]:
    by_kind = {
        Kind.TEXT: _csv_text,
        Kind.INTEGER: _csv_decimal,
        Kind.MONEY: _csv_decimal,
        Kind.QUANTITY: _csv_decimal,
        Kind.PERCENT: _csv_decimal,
        Kind.DATE: _csv_date,
        Kind.DATETIME: _csv_datetime(zone),
    }
    return [by_kind[column.kind] for column in columns]


def _csv_chunks(report: Report, filters: Filters, tally: _Tally) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = report.columns(filters)
    convert = _csv_converters(columns, filters.zone)
    buffer.write("\ufeff")
    writer.writerow([title_line(report, filters)])
    writer.writerow([str(column.label) for column in columns])
    for row in report.rows(filters):
        writer.writerow([change(value) for change, value in zip(convert, row, strict=True)])
        tally.add()
        if tally.rows % CSV_CHUNK_ROWS == 0:
            yield _drain(buffer)
    totals = _totals_row(report, filters)
    if totals is not None:
        writer.writerow([change(value) for change, value in zip(convert, totals, strict=True)])
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> bytes:
    chunk = buffer.getvalue().encode("utf-8")
    buffer.seek(0)
    buffer.truncate()
    return chunk


def csv_stream(report: Report, filters: Filters) -> Iterator[bytes]:
    """The CSV as chunks of bytes, for a StreamingHttpResponse."""
    return _csv_chunks(report, filters, _Tally(None))


def write_csv(
    report: Report, filters: Filters, out: IO[bytes], *, progress: Progress | None = None
) -> int:
    """Write the report as CSV into the binary file `out`; the number of rows written."""
    tally = _Tally(progress)
    for chunk in _csv_chunks(report, filters, tally):
        out.write(chunk)
    return tally.rows


# XLSX --------------------------------------------------------------------------------------------

_SHEET_TITLE_FORBIDDEN = str.maketrans("", "", "[]:*?/\\")
_WIDTHS = {Kind.TEXT: 24, Kind.DATE: 12, Kind.DATETIME: 20}


def _number_formats(currency: str) -> dict[Kind, str]:
    places = max(0, -minor_unit(currency).as_tuple().exponent)
    money = "#,##0." + "0" * places if places else "#,##0"
    return {
        Kind.TEXT: "General",
        Kind.INTEGER: "#,##0",
        Kind.MONEY: money,
        Kind.QUANTITY: "#,##0.000",
        Kind.PERCENT: "0.00%",
        Kind.DATE: "yyyy-mm-dd",
        Kind.DATETIME: "yyyy-mm-dd hh:mm:ss",
    }


def _xlsx_text(value: Value) -> Value:
    if value is None or isinstance(value, str | int | Decimal):
        return value
    return str(value)


def _xlsx_same(value: Value) -> Value:
    return value


def _xlsx_datetime(zone: ZoneInfo) -> Callable[[Value], Value]:
    def convert(value: Value) -> Value:
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(zone).replace(tzinfo=None)
        return value

    return convert


def _xlsx_converters(columns: Sequence[Column], zone: ZoneInfo) -> list[Callable]:
    to_local = _xlsx_datetime(zone)
    return [
        _xlsx_text
        if column.kind == Kind.TEXT
        else to_local
        if column.kind == Kind.DATETIME
        else _xlsx_same
        for column in columns
    ]


def _write_row(sheet, number: int, values: Sequence[Value], formats: Sequence) -> None:
    for column, (value, fmt) in enumerate(zip(values, formats, strict=True)):
        if value is None:
            continue
        if isinstance(value, str):
            # Never `write`, which would take a text starting with "=" for a formula.
            sheet.write_string(number, column, value, fmt)
        elif isinstance(value, bool):
            sheet.write_boolean(number, column, value, fmt)
        elif isinstance(value, int | Decimal):
            # Written as its shortest decimal text, as a spreadsheet keeps any number.
            sheet.write_number(number, column, value, fmt)
        elif isinstance(value, date):
            sheet.write_datetime(number, column, value, fmt)
        else:
            sheet.write_string(number, column, str(value), fmt)


def write_xlsx(
    report: Report,
    filters: Filters,
    path: str | os.PathLike | IO[bytes],
    *,
    progress: Progress | None = None,
) -> int:
    """Write the report as an XLSX workbook to `path` (a file name or a binary file); the
    number of rows written."""
    columns = report.columns(filters)
    convert = _xlsx_converters(columns, filters.zone)
    # Constant memory: each row is written out before the next, so rows must come in order.
    target = os.fspath(path) if isinstance(path, os.PathLike) else path
    book = Workbook(target, {"constant_memory": True})
    sheet = book.add_worksheet(str(report.title).translate(_SHEET_TITLE_FORBIDDEN)[:31])
    number_formats = _number_formats(filters.currency)
    plain = {kind: book.add_format({"num_format": code}) for kind, code in number_formats.items()}
    bold = {
        kind: book.add_format({"num_format": code, "bold": True})
        for kind, code in number_formats.items()
    }
    for index, column in enumerate(columns):
        sheet.set_column(index, index, _WIDTHS.get(column.kind, 14))
    sheet.freeze_panes(2, 0)
    sheet.write_string(0, 0, title_line(report, filters), bold[Kind.TEXT])
    for index, column in enumerate(columns):
        sheet.write_string(1, index, str(column.label), bold[Kind.TEXT])
    formats = [plain[column.kind] for column in columns]
    tally = _Tally(progress)
    line = 2
    for row in report.rows(filters):
        values = [change(value) for change, value in zip(convert, row, strict=True)]
        _write_row(sheet, line, values, formats)
        line += 1
        tally.add()
    totals = _totals_row(report, filters)
    if totals is not None:
        values = [change(value) for change, value in zip(convert, totals, strict=True)]
        _write_row(sheet, line, values, [bold[column.kind] for column in columns])
    book.close()
    return tally.rows


def write_export(
    report: Report,
    filters: Filters,
    fmt: str,
    out: IO[bytes],
    *,
    progress: Progress | None = None,
) -> int:
    if fmt == ExportJob.Format.CSV:
        return write_csv(report, filters, out, progress=progress)
    return write_xlsx(report, filters, out, progress=progress)


# The form's data, kept with a job ----------------------------------------------------------------


def form_data(form: FiltersForm) -> dict[str, str | list[str]]:
    """The report form's submitted values, field by field: one value, or a list for fields
    that take several."""
    data: dict[str, str | list[str]] = {}
    for name in form.fields:
        values = form.data.getlist(name) if hasattr(form.data, "getlist") else []
        if len(values) == 1:
            data[name] = values[0]
        elif values:
            data[name] = values
    return data


def query_dict(data: dict[str, str | list[str]]) -> QueryDict:
    query = QueryDict(mutable=True)
    for name, value in data.items():
        query.setlist(name, value if isinstance(value, list) else [value])
    return query


# Services ----------------------------------------------------------------------------------------


def _audit(
    *,
    actor,
    report: Report,
    filters: Filters,
    data: dict,
    fmt: str,
    rows: int,
    instance,
    delivery: str,
) -> None:
    audit_record(
        organisation_id=filters.property.organisation_id,
        property_id=filters.property.pk,
        actor=actor,
        action=AUDIT_ACTION,
        instance=instance,
        object_repr=f"{report.title}: {filters.property.name}",
        after={
            "report": report.slug,
            "filters": data,
            "format": fmt,
            "rows": rows,
            "delivery": delivery,
        },
    )


def export_inline_record(*, actor, report: Report, form: FiltersForm, fmt: str, rows: int) -> None:
    """Audit an export streamed from the request itself."""
    filters = form.filters()
    with transaction.atomic():
        _audit(
            actor=actor,
            report=report,
            filters=filters,
            data=form_data(form),
            fmt=fmt,
            rows=rows,
            instance=filters.property,
            delivery="inline",
        )


def export_job_create(
    *, actor, report: Report, form: FiltersForm, fmt: str, rows_total: int
) -> ExportJob:
    """Queue a background export of the report, audited, run on the `reports` queue once
    this transaction commits."""
    from reports.tasks import export_run_task

    filters = form.filters()
    data = form_data(form)
    with transaction.atomic():
        job = ExportJob.objects.create(
            organisation_id=filters.property.organisation_id,
            property=filters.property,
            requested_by=actor,
            report=report.slug,
            filters=data,
            format=fmt,
            language=translation.get_language() or settings.LANGUAGE_CODE,
            rows_total=rows_total,
        )
        _audit(
            actor=actor,
            report=report,
            filters=filters,
            data=data,
            fmt=fmt,
            rows=rows_total,
            instance=job,
            delivery="job",
        )
        transaction.on_commit(partial(export_run_task.delay, job.pk))
    return job


def export_directory() -> Path:
    directory = Path(settings.REPORT_EXPORT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def export_path(job: ExportJob) -> Path | None:
    """The finished file of a job, or None when there is none (any more)."""
    if job.state != ExportJob.State.DONE or not job.file:
        return None
    path = Path(settings.REPORT_EXPORT_DIR) / Path(job.file).name
    return path if path.is_file() else None


def _job_filters(job: ExportJob) -> tuple[Report, Filters]:
    """The job's report and filters, checked again against what its requester may see now."""
    from reports.catalogue import REPORTS

    report = REPORTS.get(job.report)
    if report is None:
        raise ExportFailed(_("This report no longer exists."))
    scope = scope_for_user(user=job.requested_by) if job.requested_by else None
    if scope is None or not scope.can(report.capability):
        raise ExportFailed(_("The person who asked for this export may no longer read it."))
    form = report.form_class(query_dict(job.filters), scope=scope)
    if not form.is_valid():
        problems = "; ".join(str(error) for errors in form.errors.values() for error in errors)
        raise ExportFailed(
            _("The filters are no longer valid: %(problems)s") % {"problems": problems}
        )
    filters = form.filters()
    if filters.property.pk != job.property_id:
        raise ExportFailed(_("The filters name another property."))
    return report, filters


def export_run(*, job_id: int) -> ExportJob | None:
    """Write a queued job's file from scratch; None when the job is finished already (done,
    failed or expired) or gone, so a repeated task does nothing.

    A run that finds the job running (its worker died) starts again: it takes the next attempt
    and the earlier run's writes, keyed to its attempt, no longer match.
    """
    now = timezone.now()
    claimed = ExportJob.objects.filter(
        pk=job_id, state__in=[ExportJob.State.QUEUED, ExportJob.State.RUNNING]
    ).update(
        state=ExportJob.State.RUNNING,
        attempts=F("attempts") + 1,
        rows_written=0,
        started_at=now,
        error="",
    )
    if not claimed:
        return None
    job = ExportJob.objects.select_related("property", "requested_by").get(pk=job_id)
    mine = ExportJob.objects.filter(pk=job.pk, attempts=job.attempts, state=ExportJob.State.RUNNING)
    directory = export_directory()
    for leftover in directory.glob(f"{job.uuid}.*.part"):
        leftover.unlink(missing_ok=True)
    part = directory / f"{job.uuid}.{job.attempts}.part"
    name = f"{job.uuid}.{job.format}"
    keep = timedelta(hours=settings.REPORT_EXPORT_KEEP_HOURS)
    with translation.override(job.language):
        try:
            report, filters = _job_filters(job)
            total = report.count(filters)
            mine.update(rows_total=total)
            with part.open("wb") as out:
                rows = write_export(
                    report, filters, job.format, out, progress=lambda n: mine.update(rows_written=n)
                )
            os.replace(part, directory / name)
        # Every failure is the job's, shown on its page.
        except Exception as error:
            part.unlink(missing_ok=True)
            if isinstance(error, ExportFailed):
                message = str(error)
            elif isinstance(error, SoftTimeLimitExceeded):
                message = _("The export took too long. Export fewer days at a time.")
            else:
                logger.exception("Export job %s failed", job.uuid)
                message = _("The export failed unexpectedly. Export again, or ask for help.")
            finished = timezone.now()
            mine.update(
                state=ExportJob.State.FAILED,
                error=message,
                finished_at=finished,
                expires_at=finished + keep,
            )
        else:
            finished = timezone.now()
            mine.update(
                state=ExportJob.State.DONE,
                rows_written=rows,
                rows_total=rows,
                file=name,
                finished_at=finished,
                expires_at=finished + keep,
            )
    job.refresh_from_db()
    return job


def exports_expire(*, now: datetime | None = None) -> int:
    """Delete the files of jobs past their keeping time and mark the jobs expired; how many."""
    now = now or timezone.now()
    due = ExportJob.objects.filter(
        state__in=[ExportJob.State.DONE, ExportJob.State.FAILED], expires_at__lte=now
    )
    directory = Path(settings.REPORT_EXPORT_DIR)
    expired = 0
    for job in due.only("pk", "file", "state").iterator(chunk_size=500):
        if job.file:
            (directory / Path(job.file).name).unlink(missing_ok=True)
        expired += ExportJob.objects.filter(pk=job.pk, state=job.state).update(
            state=ExportJob.State.EXPIRED, file=""
        )
    return expired
