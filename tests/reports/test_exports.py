"""CSV and XLSX exports: their title line, translated headers, values by kind (money as exact
strings or formatted numbers, dates, datetimes in the property's zone), the totals row, memory
that stays flat however many rows, and the export URL: inline under the threshold, a job above
it, and every export audited."""

import csv
import io
import tracemalloc
from datetime import date, datetime
from decimal import Decimal

import openpyxl
import pytest
from django.urls import reverse
from django.utils import translation

from prepaid.audit.models import AuditLog
from reports.base import Filters
from reports.catalogue import REPORTS
from reports.exports import write_csv, write_xlsx
from reports.models import ExportJob
from tests import factories
from tests.reports import SyntheticReport

pytestmark = pytest.mark.django_db

START, END = date(2026, 1, 1), date(2026, 1, 31)


def _filters(prop) -> Filters:
    return Filters(property=prop, start=START, end=END, extra={})


def _csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


@pytest.fixture
def synthetic(monkeypatch):
    report = SyntheticReport(size=3)
    monkeypatch.setitem(REPORTS, report.slug, report)
    return report


# CSV ---------------------------------------------------------------------------------------------


def test_csv_starts_with_a_bom_a_title_line_and_the_labels(property_a1):
    out = io.BytesIO()
    written = write_csv(SyntheticReport(size=3), _filters(property_a1), out)
    rows = _csv_rows(out.getvalue())
    assert written == 3
    assert rows[0] == [
        "Synthetic rows: A One, 2026-01-01 to 2026-01-31, times in Asia/Shanghai, amounts in CNY"
    ]
    assert rows[1] == ["名称", "Property", "金额", "电量 (kWh)", "占比", "日期", "时间"]


def test_csv_writes_exact_decimals_iso_dates_and_local_times(property_a1):
    out = io.BytesIO()
    write_csv(SyntheticReport(size=3), _filters(property_a1), out)
    rows = _csv_rows(out.getvalue())
    assert rows[2] == [
        "Row 000000", "0", "0.25", "1.234567", "0.125", "2026-01-01", "2026-01-05 08:30:00",
    ]  # fmt: skip
    assert rows[4][:3] == ["Row 000002", "2", "2.25"]
    # The totals close the file, labelled.
    assert rows[5] == ["Total", "3", "3.75", "", "", "", ""]
    assert len(rows) == 6


def test_csv_labels_follow_the_active_language(property_a1):
    out = io.BytesIO()
    with translation.override("zh-hans"):
        write_csv(SyntheticReport(size=1), _filters(property_a1), out)
    rows = _csv_rows(out.getvalue())
    assert rows[1][1] == "物业"
    assert rows[-1][0] == "合计"


def test_csv_never_writes_a_decimal_with_an_exponent(property_a1):
    class Tiny(SyntheticReport):
        def row(self, filters, index):
            return ("x", 0, Decimal("0E-4"), Decimal("1E+1"), None, None, None)

    out = io.BytesIO()
    write_csv(Tiny(size=1), _filters(property_a1), out)
    assert _csv_rows(out.getvalue())[2][2:5] == ["0.0000", "10", ""]


def test_csv_keeps_a_text_that_looks_like_a_formula_as_text(property_a1):
    out = io.BytesIO()
    write_csv(SyntheticReport(size=1, name="=HYPERLINK(1)"), _filters(property_a1), out)
    assert _csv_rows(out.getvalue())[2][0] == "'=HYPERLINK(1) 000000"


# XLSX --------------------------------------------------------------------------------------------


def _workbook(report, prop, currency="CNY"):
    if currency != prop.currency:
        prop.currency = currency
    out = io.BytesIO()
    written = write_xlsx(report, _filters(prop), out)
    out.seek(0)
    return written, openpyxl.load_workbook(out)


def test_xlsx_has_a_titled_sheet_with_translated_labels(property_a1):
    with translation.override("zh-hans"):
        written, book = _workbook(SyntheticReport(size=3), property_a1)
    sheet = book.active
    assert written == 3
    assert sheet.title == "Synthetic rows"
    assert sheet["A1"].value.startswith("Synthetic rows")
    assert "Asia/Shanghai" in sheet["A1"].value
    assert "CNY" in sheet["A1"].value
    assert [cell.value for cell in sheet[2]] == [
        "名称",
        "物业",
        "金额",
        "电量 (kWh)",
        "占比",
        "日期",
        "时间",
    ]
    assert sheet.freeze_panes == "A3"


def test_xlsx_writes_numbers_with_formats_dates_and_naive_local_times(property_a1):
    _written, book = _workbook(SyntheticReport(size=3), property_a1)
    sheet = book.active
    name, count, amount, energy, share, day, moment = sheet[3]
    assert name.value == "Row 000000"
    assert count.value == 0
    assert amount.value == pytest.approx(0.25)
    assert amount.number_format == "#,##0.00"
    assert energy.value == pytest.approx(1.234567)
    assert energy.number_format == "#,##0.000"
    assert share.number_format == "0.00%"
    assert day.value == datetime(2026, 1, 1)
    assert day.number_format == "yyyy-mm-dd"
    # 00:30 UTC is 08:30 in Shanghai, written without a zone, as Excel needs.
    assert moment.value == datetime(2026, 1, 5, 8, 30)
    assert moment.number_format == "yyyy-mm-dd hh:mm:ss"
    assert sheet["C5"].value == pytest.approx(2.25)
    assert sheet["A6"].value == "Total"
    assert sheet["C6"].value == pytest.approx(3.75)
    assert sheet.max_row == 6


def test_xlsx_money_has_the_currencys_places(property_a1):
    _written, book = _workbook(SyntheticReport(size=1), property_a1, currency="JPY")
    assert book.active["C3"].number_format == "#,##0"


def test_xlsx_keeps_a_text_that_looks_like_a_formula_as_text(property_a1):
    _written, book = _workbook(SyntheticReport(size=1, name="=1+1"), property_a1)
    cell = book.active["A3"]
    assert cell.value == "=1+1 000000"
    assert cell.data_type == "s"


# Memory ------------------------------------------------------------------------------------------

MANY = 100_000
# Fewer for XLSX, slower to write under tracemalloc; still twice the bound if held.
MANY_XLSX = 20_000
BOUND = 5 * 1024 * 1024


def _peak(work) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class _Sink(io.RawIOBase):
    """A binary file that keeps nothing, as a response or a file on disk would not."""

    def writable(self):
        return True

    def write(self, data):
        return len(data)


@pytest.mark.parametrize("size", [MANY, MANY_XLSX])
def test_holding_every_row_would_break_the_memory_bound(size, property_a1):
    report, filters = SyntheticReport(size=size), _filters(property_a1)
    assert _peak(lambda: list(report.rows(filters))) > 2 * BOUND


def test_a_large_csv_export_streams_within_the_memory_bound(property_a1):
    report, filters = SyntheticReport(size=MANY), _filters(property_a1)
    assert _peak(lambda: write_csv(report, filters, _Sink())) < BOUND


def test_a_large_xlsx_export_streams_within_the_memory_bound(property_a1, tmp_path):
    report, filters = SyntheticReport(size=MANY_XLSX), _filters(property_a1)
    assert _peak(lambda: write_xlsx(report, filters, tmp_path / "big.xlsx")) < BOUND


# The export URL ----------------------------------------------------------------------------------


def _export(client, prop, fmt="csv", **extra):
    data = {"property": str(prop.uuid), "start": "2026-01-01", "end": "2026-01-31", "format": fmt}
    return client.post(reverse("reports:export", args=["synthetic"]), {**data, **extra})


def test_an_accountant_downloads_a_small_csv_streamed_from_the_request(
    client, accountant_a, property_a1, synthetic
):
    client.force_login(accountant_a)
    response = _export(client, property_a1)
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response["Content-Disposition"]
        == 'attachment; filename="synthetic_A1_2026-01-01_2026-01-31.csv"'
    )
    rows = _csv_rows(b"".join(response.streaming_content))
    assert rows[2][0] == "Row 000000"
    assert len(rows) == 6
    assert not ExportJob.objects.exists()


def test_a_small_xlsx_comes_straight_back_as_a_file(client, accountant_a, property_a1, synthetic):
    client.force_login(accountant_a)
    response = _export(client, property_a1, fmt="xlsx")
    assert response.status_code == 200
    assert "spreadsheetml" in response["Content-Type"]
    book = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    assert book.active["A3"].value == "Row 000000"


def test_every_inline_export_is_audited_with_its_report_filters_format_and_rows(
    client, accountant_a, property_a1, synthetic
):
    client.force_login(accountant_a)
    _export(client, property_a1)
    _export(client, property_a1, fmt="xlsx")
    entries = AuditLog.objects.filter(action="report.export").order_by("id")
    assert [entry.after["format"] for entry in entries] == ["csv", "xlsx"]
    entry = entries[0]
    assert entry.actor == accountant_a
    assert entry.property_id == property_a1.pk
    assert entry.after == {
        "report": "synthetic",
        "filters": {"property": str(property_a1.uuid), "start": "2026-01-01", "end": "2026-01-31"},
        "format": "csv",
        "rows": 3,
        "delivery": "inline",
    }


def test_an_export_above_the_threshold_becomes_a_job(
    client, accountant_a, property_a1, synthetic, settings, django_capture_on_commit_callbacks
):
    settings.REPORT_INLINE_EXPORT_ROWS = 2
    client.force_login(accountant_a)
    with django_capture_on_commit_callbacks() as callbacks:
        response = _export(client, property_a1, fmt="xlsx")
    job = ExportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("reports:export-job", args=[job.uuid])
    assert (job.state, job.format, job.rows_total) == ("queued", "xlsx", 3)
    assert job.requested_by == accountant_a
    assert job.filters["start"] == "2026-01-01"
    # The task goes to the queue only once the job is committed.
    assert len(callbacks) == 1
    entry = AuditLog.objects.get(action="report.export")
    assert entry.object_id == str(job.uuid)
    assert entry.after["delivery"] == "job"
    assert entry.after["rows"] == 3


def test_an_export_at_the_threshold_is_still_inline(
    client, accountant_a, property_a1, synthetic, settings
):
    settings.REPORT_INLINE_EXPORT_ROWS = 3
    client.force_login(accountant_a)
    assert _export(client, property_a1).streaming
    assert not ExportJob.objects.exists()


def test_an_export_with_bad_filters_is_refused_and_not_audited(
    client, accountant_a, property_a1, synthetic
):
    client.force_login(accountant_a)
    response = _export(client, property_a1, start="2026-02-01")
    assert response.status_code == 400
    assert "The end date is before the start date." in response.content.decode()
    assert not AuditLog.objects.filter(action="report.export").exists()


def test_an_unknown_format_is_refused(client, accountant_a, property_a1, synthetic):
    client.force_login(accountant_a)
    assert _export(client, property_a1, fmt="pdf").status_code == 400


def test_exporting_another_organisations_property_is_not_found(
    client, owner_b, property_a1, synthetic
):
    client.force_login(owner_b)
    assert _export(client, property_a1).status_code == 404
    assert not AuditLog.objects.filter(action="report.export").exists()


def test_an_export_can_only_be_posted(client, accountant_a, synthetic):
    client.force_login(accountant_a)
    assert client.get(reverse("reports:export", args=["synthetic"])).status_code == 405


def test_a_report_over_real_freeze_rows_exports_them(client, owner_a, property_a1, monkeypatch):
    from tests.reports import FreezeReport

    report = FreezeReport()
    monkeypatch.setitem(REPORTS, report.slug, report)
    row = factories.DailyFreezeFactory(account__unit__property=property_a1)
    client.force_login(owner_a)
    response = client.post(
        reverse("reports:export", args=[report.slug]),
        {"property": str(property_a1.uuid), "start": row.day, "end": row.day, "format": "csv"},
    )
    rows = _csv_rows(b"".join(response.streaming_content))
    assert rows[2][:2] == [row.account.unit.name, row.day.isoformat()]
    assert rows[2][2] == format(row.opening_balance, "f")
