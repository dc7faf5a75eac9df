"""The import pages: templates, upload, the dry run's error table, and the commit."""

import csv
import io

import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts import imports
from accounts.models import Property, Unit
from meters.models import MqttDevice
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db


def _csv(*rows) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


def _upload(client, kind, data, name=None):
    name = name or f"{kind}.csv"
    return client.post(
        reverse("accounts:imports"), {"kind": kind, "file": SimpleUploadedFile(name, data)}
    )


def _digest(response) -> str:
    return response.context["commit_form"].initial["digest"]


@pytest.fixture
def owner(client, owner_a):
    client.force_login(owner_a)
    return owner_a


UNITS = _csv(["property_code", "name", "kind"], ["A1", "101", "flat"], ["A1", "102", "shop"])


def test_the_page_lists_every_kind_with_its_templates_and_columns(client, owner):
    response = client.get(reverse("accounts:imports"))
    assert response.status_code == 200
    page = response.content.decode()
    for kind in imports.KINDS:
        for file_format in ("csv", "xlsx"):
            link = f"{reverse('accounts:import-template')}?kind={kind}&amp;format={file_format}"
            assert link in page
    assert "gateway_host" in page


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_each_template_downloads_with_its_header_and_an_example(client, owner, file_format):
    for kind, spec in imports.KINDS.items():
        response = client.get(
            reverse("accounts:import-template"), {"kind": kind, "format": file_format}
        )
        assert response.status_code == 200
        assert response["Content-Type"] == imports.TEMPLATE_CONTENT_TYPES[file_format]
        assert f"prepaid-{kind}.{file_format}" in response["Content-Disposition"]
        if file_format == "csv":
            rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        else:
            sheet = openpyxl.load_workbook(io.BytesIO(response.content)).worksheets[0]
            rows = [list(row) for row in sheet.iter_rows(values_only=True)]
        assert rows[0] == spec.column_names
        assert len(rows) >= 2


def test_an_unknown_template_is_not_found(client, owner):
    response = client.get(reverse("accounts:import-template"), {"kind": "x", "format": "csv"})
    assert response.status_code == 404


def test_a_downloaded_template_uploads_checks_and_imports_cleanly(client, owner):
    template = client.get(
        reverse("accounts:import-template"), {"kind": "properties", "format": "xlsx"}
    ).content
    response = _upload(client, "properties", template, "prepaid-properties.xlsx")
    assert response["Location"] == reverse("accounts:import-review")
    review = client.get(reverse("accounts:import-review"))
    assert review.context["report"].clean
    done = client.post(reverse("accounts:import-commit"), {"digest": _digest(review)})
    assert done.status_code == 200
    assert Property.objects.filter(code="RSA", organisation=owner.membership.organisation).exists()


def test_the_dry_run_shows_a_table_of_every_rows_problems_and_writes_nothing(
    client, owner, property_a1
):
    factories.UnitFactory(property=property_a1, name="101")
    data = _csv(["property_code", "name", "kind"], ["A1", "101", "flat"], ["B9", "x", "castle"])
    _upload(client, "units", data)
    units = Unit.objects.count()
    review = client.get(reverse("accounts:import-review"))
    assert review.status_code == 200
    report = review.context["report"]
    assert [(e.row, e.column) for e in report.errors] == [
        (2, "name"),
        (3, "property_code"),
        (3, "kind"),
    ]
    page = review.content.decode()
    assert "No property has the code B9." in page
    assert reverse("accounts:import-commit") not in page
    assert Unit.objects.count() == units


def test_a_commit_of_a_checked_file_writes_every_row_once(client, owner, property_a1):
    _upload(client, "units", UNITS)
    review = client.get(reverse("accounts:import-review"))
    assert reverse("accounts:import-commit") in review.content.decode()
    assert Unit.objects.filter(property=property_a1).count() == 0
    done = client.post(reverse("accounts:import-commit"), {"digest": _digest(review)})
    assert done.status_code == 200
    assert done["Cache-Control"].startswith("max-age=0")
    assert set(Unit.objects.filter(property=property_a1).values_list("name", flat=True)) == {
        "101",
        "102",
    }
    assert AuditLog.objects.filter(action="import.commit", actor=owner).count() == 1
    # A second submit of the same form finds nothing waiting and writes nothing.
    again = client.post(reverse("accounts:import-commit"), {"digest": _digest(review)})
    assert again["Location"] == reverse("accounts:imports")
    assert Unit.objects.filter(property=property_a1).count() == 2


def test_a_commit_is_refused_for_a_file_other_than_the_checked_one(client, owner, property_a1):
    _upload(client, "units", UNITS)
    review = client.get(reverse("accounts:import-review"))
    _upload(client, "units", _csv(["property_code", "name"], ["A1", "999"]))
    response = client.post(reverse("accounts:import-commit"), {"digest": _digest(review)})
    assert response["Location"] == reverse("accounts:import-review")
    assert Unit.objects.count() == 0


def test_a_commit_checks_the_file_again(client, owner, property_a1):
    _upload(client, "units", UNITS)
    review = client.get(reverse("accounts:import-review"))
    # Someone adds unit 101 by hand between the dry run and the commit.
    factories.UnitFactory(property=property_a1, name="101")
    response = client.post(reverse("accounts:import-commit"), {"digest": _digest(review)})
    assert response.status_code == 400
    assert [(e.row, e.column) for e in response.context["report"].errors] == [(2, "name")]
    assert Unit.objects.count() == 1


def test_csv_and_xlsx_uploads_both_import(client, owner, property_a1):
    workbook = openpyxl.Workbook()
    workbook.active.append(["property_code", "name"])
    workbook.active.append(["A1", "X1"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    for name, data in (
        ("u.xlsx", buffer.getvalue()),
        ("u.csv", _csv(["property_code", "name"], ["A1", "C1"])),
    ):
        _upload(client, "units", data, name)
        review = client.get(reverse("accounts:import-review"))
        client.post(reverse("accounts:import-commit"), {"digest": _digest(review)})
    assert set(Unit.objects.values_list("name", flat=True)) == {"X1", "C1"}


def test_an_upload_that_is_not_csv_or_xlsx_or_too_large_is_refused(client, owner):
    assert _upload(client, "units", b"x", "units.txt").status_code == 400
    big = b"property_code,name\n" + b"A1,x\n" * (imports.MAX_BYTES // 5 + 1)
    response = _upload(client, "units", big)
    assert response.status_code == 400
    assert "file" in response.context["form"].errors


def test_new_mqtt_devices_passwords_are_shown_once_on_the_result_page(client, owner, property_a1):
    data = _csv(
        ["serial", "utility", "property_code", "mqtt_format", "mqtt_key"],
        ["Z-1", "electricity", "A1", "zigbee2mqtt", "plug-z1"],
    )
    _upload(client, "meters", data)
    review = client.get(reverse("accounts:import-review"))
    done = client.post(reverse("accounts:import-commit"), {"digest": _digest(review)})
    [credential] = done.context["report"].credentials
    assert credential.username == MqttDevice.objects.get(key="plug-z1").username
    assert credential.password in done.content.decode()


def test_the_review_without_an_upload_goes_back_to_the_start(client, owner):
    response = client.get(reverse("accounts:import-review"))
    assert response["Location"] == reverse("accounts:imports")


def test_an_upload_waits_only_for_its_own_organisation(client, owner, owner_b, property_a1):
    _upload(client, "units", UNITS)
    pending = client.session["accounts.import"]
    client.force_login(owner_b)
    session = client.session
    session["accounts.import"] = pending
    session.save()
    response = client.post(reverse("accounts:import-commit"), {"digest": pending["digest"]})
    assert response["Location"] == reverse("accounts:imports")
    assert Unit.objects.count() == 0
