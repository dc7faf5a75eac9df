"""The report pages, the exports and the export jobs in the access matrix: all need only VIEW,
so every staff role reads and exports.

A report is addressed by its slug and a property in its filters, not in its path: the matrix
gives the property only to `kwargs`, so the report's entries remember it there and send it in
the query (GET) or the body (POST). A property outside the caller's scope is then a 404, as an
object outside it would be.
"""

import atexit
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from django.conf import settings

from accounts.models import Property
from prepaid.scoping import Capability
from reports.catalogue import REPORTS
from reports.models import ExportJob
from tests import factories
from tests.staff_matrix import StaffUrl

_addressed: dict[str, Property] = {}


def _slug() -> str:
    """A report of the catalogue that VIEW opens, the daily freeze report when it is there."""
    readable = sorted(
        slug for slug, report in REPORTS.items() if report.capability == Capability.VIEW
    )
    if not readable:
        pytest.skip("the catalogue has no report yet")
    return "daily-freeze" if "daily-freeze" in readable else readable[0]


def _report(prop: Property) -> dict:
    _addressed["property"] = prop
    return {"slug": _slug()}


def _filters() -> dict[str, str]:
    return {"property": str(_addressed["property"].uuid)}


class _Query(Mapping):
    """The query string of the property `_report` was last given."""

    def __getitem__(self, key: str) -> str:
        return _filters()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_filters())

    def __len__(self) -> int:
        return len(_filters())


def _job(prop: Property, **fields) -> ExportJob:
    return ExportJob.objects.create(
        organisation=prop.organisation,
        property=prop,
        requested_by=factories.UserFactory(),
        report="daily-freeze",
        filters={"property": str(prop.uuid), "start": "2026-01-01", "end": "2026-01-31"},
        format="csv",
        language="en",
        **fields,
    )


def _running_job(prop: Property) -> dict:
    return {"job_id": _job(prop, state="running", rows_total=10, rows_written=5).uuid}


def _done_job(prop: Property) -> dict:
    job = _job(prop, state="done", rows_total=1, rows_written=1, file="")
    directory = Path(settings.REPORT_EXPORT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{job.uuid}.csv"
    path = directory / name
    path.write_bytes(b"\xef\xbb\xbfmatrix\r\n")
    # The matrix cannot give it a temporary folder: the file goes when the test run ends.
    atexit.register(path.unlink, missing_ok=True)
    ExportJob.objects.filter(pk=job.pk).update(file=name)
    return {"job_id": job.uuid}


STAFF_URLS = {
    "reports:index": StaffUrl(),
    "reports:report": StaffUrl(kwargs=_report, query=_Query()),
    "reports:export": StaffUrl(
        kwargs=_report,
        get=False,
        post=Capability.VIEW,
        post_data=lambda kwargs: {**_filters(), "format": "csv"},
    ),
    "reports:export-job": StaffUrl(kwargs=_running_job),
    "reports:export-download": StaffUrl(kwargs=_done_job),
}
