"""Background exports: the job runs after commit on the `reports` queue's task, records its
progress every few thousand rows in one UPDATE, shows it on a page htmx polls, fails with its
error, starts again from scratch after a worker died, serves its file only inside the caller's
scope, and expires."""

import csv
import io
from datetime import timedelta
from pathlib import Path

import openpyxl
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from reports import tasks
from reports.catalogue import REPORTS
from reports.exports import PROGRESS_EVERY, export_run
from reports.models import ExportJob
from tests.reports import SyntheticReport

pytestmark = pytest.mark.django_db

FILTERS = {"start": "2026-01-01", "end": "2026-01-31"}


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path):
    settings.REPORT_EXPORT_DIR = tmp_path / "exports"
    settings.REPORT_INLINE_EXPORT_ROWS = 2
    return settings.REPORT_EXPORT_DIR


@pytest.fixture
def synthetic(monkeypatch):
    report = SyntheticReport(size=3)
    monkeypatch.setitem(REPORTS, report.slug, report)
    return report


@pytest.fixture
def run_on_commit(monkeypatch):
    """The task runs in this process, as a worker would, once the request commits."""
    monkeypatch.setattr(tasks.export_run_task, "delay", tasks.export_run_task)


def _job(prop, user, fmt="csv", report="synthetic", **fields) -> ExportJob:
    return ExportJob.objects.create(
        organisation=prop.organisation,
        property=prop,
        requested_by=user,
        report=report,
        filters={"property": str(prop.uuid), **FILTERS},
        format=fmt,
        language="en",
        **fields,
    )


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def _download(client, job):
    return client.get(reverse("reports:export-download", args=[job.uuid]))


def test_a_large_export_runs_after_commit_and_its_file_downloads(
    client, accountant_a, property_a1, synthetic, run_on_commit, export_dir,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    client.force_login(accountant_a)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("reports:export", args=["synthetic"]),
            {"property": str(property_a1.uuid), **FILTERS, "format": "csv"},
        )
    job = ExportJob.objects.get()
    assert response["Location"] == reverse("reports:export-job", args=[job.uuid])
    assert (job.state, job.rows_written, job.rows_total, job.attempts) == ("done", 3, 3, 1)
    assert job.expires_at == job.finished_at + timedelta(hours=72)
    assert (export_dir / job.file).is_file()
    page = client.get(response["Location"]).content.decode()
    assert reverse("reports:export-download", args=[job.uuid]) in page
    assert "hx-trigger" not in page
    download = _download(client, job)
    assert download.status_code == 200
    assert (
        download["Content-Disposition"]
        == 'attachment; filename="synthetic_A1_2026-01-01_2026-01-31.csv"'
    )
    rows = _rows(b"".join(download.streaming_content))
    assert rows[1][0] == "名称"
    assert [row[0] for row in rows[2:]] == ["Row 000000", "Row 000001", "Row 000002", "Total"]


def test_an_xlsx_job_writes_a_workbook(client, owner_a, property_a1, synthetic, export_dir):
    job = export_run(job_id=_job(property_a1, owner_a, fmt="xlsx").pk)
    assert job.state == "done"
    book = openpyxl.load_workbook(export_dir / job.file)
    assert book.active["A3"].value == "Row 000000"
    assert book.active["C3"].number_format == "#,##0.00"


def test_a_job_writes_in_the_language_it_was_asked_in(
    client, accountant_a, property_a1, synthetic, run_on_commit, export_dir,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    client.force_login(accountant_a)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("reports:export", args=["synthetic"]),
            {"property": str(property_a1.uuid), **FILTERS, "format": "csv"},
            headers={"Accept-Language": "zh-hans"},
        )
    job = ExportJob.objects.get()
    assert job.language == "zh-hans"
    rows = _rows((export_dir / job.file).read_bytes())
    assert rows[1][1] == "物业"
    assert rows[-1][0] == "合计"


class Watched(SyntheticReport):
    """Reads its job's progress from the database while its rows are being written."""

    def __init__(self, size, watch_at):
        super().__init__(size=size)
        self.watch_at = watch_at
        self.seen = {}

    def row(self, filters, index):
        if index in self.watch_at:
            job = ExportJob.objects.get()
            self.seen[index] = (job.state, job.rows_written, job.rows_total)
        return super().row(filters, index)


def test_a_running_job_records_its_progress_every_few_thousand_rows(
    owner_a, property_a1, monkeypatch
):
    size = 2 * PROGRESS_EVERY + 2_000
    report = Watched(size=size, watch_at={1, PROGRESS_EVERY + 1, 2 * PROGRESS_EVERY + 1})
    monkeypatch.setitem(REPORTS, report.slug, report)
    job = _job(property_a1, owner_a)
    with CaptureQueriesContext(connection) as queries:
        export_run(job_id=job.pk)
    assert report.seen == {
        1: ("running", 0, size),
        PROGRESS_EVERY + 1: ("running", PROGRESS_EVERY, size),
        2 * PROGRESS_EVERY + 1: ("running", 2 * PROGRESS_EVERY, size),
    }
    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "reports_exportjob"')]
    # The claim, the total, two progress updates and the end: never one per row.
    assert len(updates) == 5


def test_the_job_page_polls_its_progress_while_it_runs(client, accountant_a, property_a1):
    job = _job(property_a1, accountant_a, state="running", rows_total=12_000, rows_written=5_000)
    client.force_login(accountant_a)
    url = reverse("reports:export-job", args=[job.uuid])
    page = client.get(url).content.decode()
    assert f'hx-get="{url}" hx-trigger="every 2s" hx-swap="outerHTML"' in page
    assert "5,000 of 12,000 rows written." in page
    assert 'max="12000" value="5000"' in page
    partial = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section id="export-progress"')
    assert "breadcrumbs" not in partial
    assert "export-download" not in partial


class Broken(SyntheticReport):
    def row(self, filters, index):
        if index == 2:
            raise RuntimeError("database went away")
        return super().row(filters, index)


def test_a_failed_job_shows_its_error_and_leaves_no_file(
    client, owner_a, property_a1, monkeypatch, export_dir
):
    monkeypatch.setitem(REPORTS, "synthetic", Broken(size=3))
    job = export_run(job_id=_job(property_a1, owner_a).pk)
    assert job.state == "failed"
    assert job.error == "The export failed unexpectedly. Export again, or ask for help."
    assert list(export_dir.iterdir()) == []
    client.force_login(owner_a)
    page = client.get(reverse("reports:export-job", args=[job.uuid])).content.decode()
    assert "The export failed: The export failed unexpectedly." in page
    assert "hx-trigger" not in page
    assert _download(client, job).status_code == 404


class Slow(SyntheticReport):
    def row(self, filters, index):
        raise SoftTimeLimitExceeded


def test_a_job_that_runs_out_of_time_says_so(owner_a, property_a1, monkeypatch, export_dir):
    monkeypatch.setitem(REPORTS, "synthetic", Slow(size=3))
    job = export_run(job_id=_job(property_a1, owner_a).pk)
    assert (job.state, job.error) == (
        "failed",
        "The export took too long. Export fewer days at a time.",
    )
    assert list(export_dir.iterdir()) == []


def test_a_job_for_a_report_that_is_gone_fails_with_the_reason(owner_a, property_a1):
    job = export_run(job_id=_job(property_a1, owner_a, report="no-longer-here").pk)
    assert (job.state, job.error) == ("failed", "This report no longer exists.")


def test_a_job_whose_filters_no_longer_hold_fails_with_the_reason(owner_a, property_a1, synthetic):
    job = _job(property_a1, owner_a)
    job.filters = {**job.filters, "end": "2025-12-01"}
    job.save()
    job = export_run(job_id=job.pk)
    assert job.state == "failed"
    assert job.error == "The filters are no longer valid: The end date is before the start date."


def test_a_job_whose_worker_died_runs_again_from_scratch(
    owner_a, property_a1, synthetic, export_dir
):
    job = _job(property_a1, owner_a, state="running", attempts=1, rows_written=2)
    export_dir.mkdir(parents=True)
    leftover = export_dir / f"{job.uuid}.1.part"
    leftover.write_bytes(b"half a file")
    assert tasks.export_run_task(job.pk) == "done"
    job.refresh_from_db()
    assert (job.state, job.attempts, job.rows_written) == ("done", 2, 3)
    assert not leftover.exists()
    assert _rows((export_dir / job.file).read_bytes())[2][0] == "Row 000000"


class Overtaken(SyntheticReport):
    """A redelivered task claims the job while this run is still writing."""

    def row(self, filters, index):
        if index == 1:
            ExportJob.objects.update(attempts=2)
        return super().row(filters, index)


def test_a_run_overtaken_by_a_newer_one_changes_nothing(owner_a, property_a1, monkeypatch):
    monkeypatch.setitem(REPORTS, "synthetic", Overtaken(size=3))
    job = export_run(job_id=_job(property_a1, owner_a).pk)
    assert (job.state, job.file, job.rows_written) == ("running", "", 0)


def test_a_finished_job_is_left_alone_when_its_task_runs_again(
    owner_a, property_a1, synthetic, export_dir
):
    job = export_run(job_id=_job(property_a1, owner_a).pk)
    written = (export_dir / job.file).stat().st_mtime_ns
    assert tasks.export_run_task(job.pk) == "nothing to do"
    job.refresh_from_db()
    assert (job.state, job.attempts) == ("done", 1)
    assert (export_dir / job.file).stat().st_mtime_ns == written


# Who may download ---------------------------------------------------------------------------------


def test_an_accountant_downloads_the_organisations_exports(
    client, accountant_a, owner_a, property_a2, synthetic
):
    job = export_run(job_id=_job(property_a2, owner_a).pk)
    client.force_login(accountant_a)
    assert _download(client, job).status_code == 200
    assert client.get(reverse("reports:export-job", args=[job.uuid])).status_code == 200


def test_another_organisation_cannot_see_or_download_an_export(
    client, owner_b, owner_a, property_a1, synthetic
):
    job = export_run(job_id=_job(property_a1, owner_a).pk)
    client.force_login(owner_b)
    assert _download(client, job).status_code == 404
    assert client.get(reverse("reports:export-job", args=[job.uuid])).status_code == 404


def test_limited_staff_download_only_their_propertys_exports(
    client, manager_a1, owner_a, property_a1, property_a2, synthetic
):
    theirs = export_run(job_id=_job(property_a2, owner_a).pk)
    mine = export_run(job_id=_job(property_a1, owner_a).pk)
    client.force_login(manager_a1)
    assert _download(client, theirs).status_code == 404
    assert _download(client, mine).status_code == 200


def test_an_unfinished_export_has_nothing_to_download(client, owner_a, property_a1):
    job = _job(property_a1, owner_a)
    client.force_login(owner_a)
    assert _download(client, job).status_code == 404


# Expiry ------------------------------------------------------------------------------------------


def test_expired_exports_lose_their_files_and_say_so(
    client, owner_a, property_a1, synthetic, export_dir
):
    old = export_run(job_id=_job(property_a1, owner_a).pk)
    fresh = export_run(job_id=_job(property_a1, owner_a).pk)
    ExportJob.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    old_file = Path(export_dir / old.file)
    assert tasks.exports_expire_task() == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert (old.state, old.file) == ("expired", "")
    assert not old_file.exists()
    assert fresh.state == "done"
    assert (export_dir / fresh.file).is_file()
    client.force_login(owner_a)
    assert _download(client, old).status_code == 404
    page = client.get(reverse("reports:export-job", args=[old.uuid])).content.decode()
    assert "has been deleted" in page
    # Expiring again finds nothing more.
    assert tasks.exports_expire_task() == 0
