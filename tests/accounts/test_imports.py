"""Bulk import (accounts.imports): reading CSV and XLSX, validating every row, committing all or
nothing, the templates, opening balances in the ledger, and scoping."""

import csv
import io
from decimal import Decimal

import openpyxl
import pytest
from django.core.exceptions import ValidationError
from django.db.models import Sum

from accounts import imports, services
from accounts.models import Account, Property, Tenant, Unit
from accounts.selectors import scope_for_user
from billing.models import LedgerAccount, LedgerTransaction, Posting
from meters import services as meter_services
from meters.models import Gateway, Meter, MqttDevice
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db


def _csv(*rows: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


def _xlsx(*rows: list) -> bytes:
    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@pytest.fixture
def scope(owner_a):
    return scope_for_user(user=owner_a)


def _check(scope, kind, data, file_format="csv"):
    return imports.import_check(
        scope=scope,
        actor=None,
        kind=kind,
        data=data,
        file_format=file_format,
        file_name=f"{kind}.{file_format}",
    )


def _commit(scope, kind, data, file_format="csv", actor=None):
    return imports.import_commit(
        scope=scope,
        actor=actor,
        kind=kind,
        data=data,
        file_format=file_format,
        file_name=f"{kind}.{file_format}",
    )


def _errors(report):
    return {(error.row, error.column) for error in report.errors}


def _counts():
    return (
        Property.objects.count(),
        Unit.objects.count(),
        Tenant.objects.count(),
        Account.objects.count(),
        Meter.objects.count(),
        Gateway.objects.count(),
        MqttDevice.objects.count(),
        LedgerTransaction.objects.count(),
        AuditLog.objects.count(),
    )


PROPERTY_HEADER = ["code", "name", "time_zone", "currency", "country"]


# Reading files -----------------------------------------------------------------------------------


def test_csv_and_xlsx_files_read_as_the_same_rows():
    rows = [["code", "name", "poll_interval_minutes"], ["RSA", "Riverside", "15"]]
    from_csv = imports.read_table(data=_csv(*rows), file_format="csv")
    # Excel stores 15 as the double 15.0; it reads back as the text a CSV would hold.
    from_xlsx = imports.read_table(
        data=_xlsx(["code", "name", "poll_interval_minutes"], ["RSA", "Riverside", 15.0]),
        file_format="xlsx",
    )
    assert from_csv == from_xlsx
    header, [row] = from_csv
    assert (header, row.number, row.values["poll_interval_minutes"]) == (rows[0], 2, "15")


def test_rows_keep_their_spreadsheet_numbers_across_blank_rows():
    _header, rows = imports.read_table(data=_csv(["code"], ["A"], [""], ["B"]), file_format="csv")
    assert [row.number for row in rows] == [2, 4]


def test_a_csv_saved_by_a_chinese_excel_in_gb18030_is_read():
    data = "code,name\nRSA,河畔公寓\n".encode("gb18030")
    _header, [row] = imports.read_table(data=data, file_format="csv")
    assert row.values["name"] == "河畔公寓"


def test_a_file_that_is_not_a_workbook_is_refused_as_a_whole():
    with pytest.raises(imports.ImportRejected) as rejected:
        imports.read_table(data=b"not a zip", file_format="xlsx")
    assert rejected.value.errors[0].row == 0


def test_unknown_and_missing_columns_are_reported_against_the_header(scope):
    before = _counts()
    report = _check(scope, "properties", _csv(["code", "name", "colour"], ["RSA", "R", "red"]))
    assert {(1, "colour"), (1, "time_zone"), (1, "currency"), (1, "country")} <= _errors(report)
    assert _counts() == before


# Validation: every kind's bad rows, and nothing written ------------------------------------------


def test_bad_property_rows_are_each_reported_and_nothing_is_written(scope, property_a1):
    data = _csv(
        [*PROPERTY_HEADER, "poll_interval_minutes"],
        ["NEW", "New", "Asia/Shanghai", "CNY", "CN", "15"],
        ["", "No code", "Asia/Shanghai", "CNY", "CN", ""],
        ["BAD", "Bad zone", "Mars/Olympus", "ZZZ", "China", "99"],
        ["A1", "Clash", "Asia/Shanghai", "CNY", "CN", ""],
        ["NEW", "New", "Asia/Shanghai", "CNY", "CN", ""],
    )
    before = _counts()
    report = _check(scope, "properties", data)
    assert _errors(report) == {
        (3, "code"),
        (4, "time_zone"),
        (4, "currency"),
        (4, "country"),
        (4, "poll_interval_minutes"),
        (5, "code"),
        (6, "code"),
        (6, "name"),
    }
    assert report.rows_with_errors == 4
    with pytest.raises(imports.ImportRejected):
        _commit(scope, "properties", data)
    assert _counts() == before


def test_bad_unit_rows_are_each_reported_and_nothing_is_written(scope, property_a1):
    factories.UnitFactory(property=property_a1, name="101")
    data = _csv(
        ["property_code", "name", "kind"],
        ["A1", "102", "shop"],
        ["A1", "101", ""],
        ["ZZ", "1", ""],
        ["A1", "103", "castle"],
        ["a1", "102", ""],
    )
    before = _counts()
    report = _check(scope, "units", data)
    assert _errors(report) == {(3, "name"), (4, "property_code"), (5, "kind"), (6, "name")}
    assert _counts() == before


def test_bad_tenant_rows_are_each_reported_and_nothing_is_written(scope, property_a1, account):
    vacant = factories.UnitFactory(property=property_a1, name="V1")
    known = factories.TenantFactory(
        organisation=property_a1.organisation, phone="+86 138 1111 2222"
    )
    data = _csv(
        ["name", "email", "phone", "property_code", "unit_name", "opened_at", "mode"],
        ["Fine", "fine@example.test", "", "A1", vacant.name, "2025-01-01", ""],
        ["", "", "", "", "", "", "prepaid"],
        ["Dup", known.email.upper(), "+8613811112222", "", "", "", ""],
        ["Taken", "taken@example.test", "", "A1", account.unit.name, "", ""],
        ["Twice", "FINE@example.test", "", "A1", vacant.name, "2999-01-01", "weekly"],
        ["Half", "half@example.test", "not a phone", "A1", "", "", ""],
    )
    before = _counts()
    report = _check(scope, "tenants", data)
    assert _errors(report) == {
        (3, "name"),
        (3, "email"),
        (3, "unit_name"),
        (4, "email"),
        (4, "phone"),
        (5, "unit_name"),
        (6, "email"),
        (6, "unit_name"),
        (6, "opened_at"),
        (6, "mode"),
        (7, "phone"),
        (7, "unit_name"),
    }
    assert _counts() == before


METER_HEADER = [
    "serial",
    "utility",
    "property_code",
    "unit_name",
    "gateway",
    "gateway_host",
    "modbus_unit",
    "profile",
    "mqtt_format",
    "mqtt_key",
    "mqtt_channel",
]


def test_bad_meter_rows_are_each_reported_and_nothing_is_written(
    scope, property_a1, builtin_profiles
):
    factories.UnitFactory(property=property_a1, name="101")
    other = factories.UnitFactory(property=property_a1, name="102")
    factories.MeterFactory(unit=other, serial="OLD-1")
    data = _csv(
        METER_HEADER,
        ["M-1", "electricity", "A1", "101", "GW", "192.0.2.1", "1", "sdm120", "", "", ""],
        ["M-2", "water", "A1", "101", "GW", "", "1", "sdm120", "", "", ""],
        ["OLD-1", "gas", "A1", "", "", "", "", "", "", "", ""],
        ["M-3", "electricity", "A1", "102", "", "", "", "", "", "", ""],
        ["M-4", "electricity", "A1", "", "NEWGW", "", "", "nosuch", "", "", ""],
        ["M-5", "electricity", "A1", "", "GW", "", "2", "sdm120", "native", "M-5", ""],
        ["M-6", "water", "A1", "", "", "", "", "", "shelly", "meters", "40"],
        ["M-1", "electricity", "A1", "101", "", "", "", "", "", "", ""],
    )
    before = _counts()
    report = _check(scope, "meters", data)
    assert _errors(report) == {
        (3, "modbus_unit"),  # the unit id is row 2's on the same new gateway
        (4, "serial"),  # exists already
        (4, "utility"),
        (5, "unit_name"),  # 102 has an electricity meter in service
        (6, "gateway_host"),  # a new gateway needs its host
        (6, "modbus_unit"),
        (6, "profile"),
        (7, "mqtt_key"),  # Modbus and MQTT at once
        (8, "mqtt_key"),  # a reserved Shelly prefix
        (8, "mqtt_channel"),
        (9, "serial"),  # row 2's serial
        (9, "unit_name"),  # row 2 puts an electricity meter in 101 already
    }
    assert _counts() == before


def test_bad_opening_balance_rows_are_each_reported_and_nothing_is_written(scope, property_a1):
    account = factories.AccountFactory(unit__property=property_a1, unit__name="101")
    factories.UnitFactory(property=property_a1, name="vacant")
    data = _csv(
        ["property_code", "unit_name", "amount", "tenant"],
        ["A1", "101", "10.005", ""],
        ["A1", "vacant", "5", ""],
        ["A1", "nosuch", "5", ""],
        ["A1", "101", "-5", "someone@else.test"],
        ["A1", "101", "lots", account.tenant.email],
    )
    before = _counts()
    report = _check(scope, "opening_balances", data)
    assert _errors(report) == {
        (2, "amount"),
        (3, "unit_name"),
        (4, "unit_name"),
        (5, "unit_name"),
        (5, "amount"),
        (5, "tenant"),
        (6, "unit_name"),
        (6, "amount"),
    }
    assert _counts() == before


# Commit: all rows in one transaction, or none ----------------------------------------------------


def test_a_clean_file_commits_every_row_and_audits_the_import(scope, owner_a):
    data = _csv(
        PROPERTY_HEADER,
        ["RSA", "Riverside", "Asia/Shanghai", "CNY", "CN"],
        ["HKG", "Harbour", "Asia/Hong_Kong", "HKD", "HK"],
    )
    dry = _check(scope, "properties", data)
    assert dry.clean
    assert dry.created == {"properties": 2}
    assert not Property.objects.filter(code__in=["RSA", "HKG"]).exists()
    report = _commit(scope, "properties", data, actor=owner_a)
    assert report.created == {"properties": 2}
    assert set(
        Property.objects.filter(organisation=scope.organisation).values_list("code", flat=True)
    ) >= {
        "RSA",
        "HKG",
    }
    assert AuditLog.objects.filter(action="property.create", actor=owner_a).count() == 2
    entry = AuditLog.objects.get(action="import.commit")
    assert entry.after["kind"] == "properties"
    assert entry.after["rows"] == 2
    assert entry.after["sha256"] == imports.file_digest(data)


def test_a_failure_while_writing_a_later_row_rolls_back_every_row(scope, property_a1, monkeypatch):
    real = services.unit_create
    calls = []

    def fails_on_the_third(**kwargs):
        calls.append(kwargs["name"])
        if len(calls) == 3:
            raise ValidationError({"name": "The database refused this one."})
        return real(**kwargs)

    monkeypatch.setattr(services, "unit_create", fails_on_the_third)
    data = _csv(["property_code", "name"], ["A1", "1"], ["A1", "2"], ["A1", "3"], ["A1", "4"])
    before = _counts()
    with pytest.raises(imports.ImportRejected) as rejected:
        _commit(scope, "units", data)
    assert [(e.row, e.column) for e in rejected.value.errors] == [(4, "name")]
    assert _counts() == before
    assert not AuditLog.objects.filter(action="unit.create").exists()


def test_the_dry_run_reports_what_a_service_refuses_and_keeps_nothing(
    scope, property_a1, monkeypatch
):
    def refuses(**kwargs):
        raise ValidationError({"floor": "No such floor."})

    monkeypatch.setattr(services, "unit_create", refuses)
    report = _check(scope, "units", _csv(["property_code", "name", "floor"], ["A1", "1", "99"]))
    assert [(e.row, e.column, e.message) for e in report.errors] == [(2, "floor", "No such floor.")]


def test_committing_the_same_file_again_creates_nothing_twice(scope, property_a1):
    data = _csv(
        ["name", "email", "property_code", "unit_name"],
        ["Li Wei", "li@example.test", "A1", "101"],
    )
    factories.UnitFactory(property=property_a1, name="101")
    _commit(scope, "tenants", data)
    before = _counts()
    with pytest.raises(imports.ImportRejected) as rejected:
        _commit(scope, "tenants", data)
    assert {(e.row, e.column) for e in rejected.value.errors} == {(2, "email"), (2, "unit_name")}
    assert _counts() == before


# Opening balances in the ledger ------------------------------------------------------------------


def test_opening_balances_credit_wallets_from_the_opening_balances_book(
    scope, property_a1, owner_a
):
    first = factories.AccountFactory(unit__property=property_a1, unit__name="101")
    second = factories.AccountFactory(unit__property=property_a1, unit__name="102")
    data = _csv(
        ["property_code", "unit_name", "amount", "tenant", "memo"],
        ["A1", "101", "120.50", first.tenant.phone, "From the old system"],
        ["A1", "102", "7", "", ""],
    )
    report = _commit(scope, "opening_balances", data, actor=owner_a)
    assert report.created == {"opening_balances": 2}
    first.wallet.refresh_from_db()
    second.wallet.refresh_from_db()
    assert (first.wallet.balance, second.wallet.balance) == (Decimal("120.50"), Decimal("7.00"))
    book = LedgerAccount.objects.get(property=property_a1, kind=LedgerAccount.Kind.OPENING_BALANCES)
    assert book.postings.aggregate(total=Sum("amount"))["total"] == Decimal("-127.50")
    txn = LedgerTransaction.objects.get(idempotency_key=imports.opening_balance_key(first))
    assert (txn.kind, txn.memo, txn.actor) == ("adjustment", "From the old system", owner_a)
    assert sum(posting.amount for posting in txn.postings.all()) == 0
    audit = AuditLog.objects.get(action="account.opening_balance", object_id=str(first.uuid))
    assert audit.after["amount"] == "120.50"


def test_re_committing_opening_balances_never_credits_twice(scope, property_a1):
    account = factories.AccountFactory(unit__property=property_a1, unit__name="101")
    data = _csv(["property_code", "unit_name", "amount"], ["A1", "101", "50"])
    _commit(scope, "opening_balances", data)
    with pytest.raises(imports.ImportRejected):
        _commit(scope, "opening_balances", data)
    # Another file with another amount for the same account is refused as well.
    with pytest.raises(imports.ImportRejected):
        _commit(
            scope,
            "opening_balances",
            _csv(["property_code", "unit_name", "amount"], ["A1", "101", "60"]),
        )
    account.wallet.refresh_from_db()
    assert account.wallet.balance == Decimal("50.00")
    assert Posting.objects.filter(ledger_account=account.wallet).count() == 1


def test_the_ledger_key_alone_stops_a_second_opening_balance(scope, property_a1):
    """Even past validation (two commits racing), the account's key posts once."""
    account = factories.AccountFactory(unit__property=property_a1, unit__name="101")
    kind = imports.KINDS["opening_balances"]
    run = imports._Run(scope=scope, actor=None, file_name="f.csv", digest="d")
    plan = [imports._BalanceRow(2, account, Decimal("5"), None, "")]
    kind.write(run, plan)
    with pytest.raises(imports.ImportRejected):
        kind.write(run, plan)
    account.wallet.refresh_from_db()
    assert account.wallet.balance == Decimal("5.00")


# Meters with their transports --------------------------------------------------------------------


def test_meters_are_connected_to_new_gateways_and_new_mqtt_devices(
    scope, property_a1, builtin_profiles
):
    factories.UnitFactory(property=property_a1, name="101")
    factories.UnitFactory(property=property_a1, name="102")
    header = [*METER_HEADER, "gateway_port", "has_relay"]
    data = _csv(
        header,
        [
            "E-1",
            "electricity",
            "A1",
            "101",
            "GW-1",
            "192.0.2.7",
            "1",
            "sdm120",
            "",
            "",
            "",
            "5020",
            "yes",
        ],
        ["E-2", "electricity", "A1", "102", "GW-1", "", "2", "sdm630", "", "", "", "", "no"],
        ["W-1", "water", "A1", "101", "", "", "", "", "tasmota", "plug-1", "0", "", ""],
        ["W-2", "water", "A1", "102", "", "", "", "", "tasmota", "plug-1", "1", "", ""],
        ["STOCK", "water", "A1", "", "", "", "", "", "", "", "", "", ""],
    )
    report = _commit(scope, "meters", data)
    assert report.created == {"gateways": 1, "mqtt_devices": 1, "meters": 5}
    gateway = Gateway.objects.get(name="GW-1")
    assert (gateway.host, gateway.port, gateway.property) == ("192.0.2.7", 5020, property_a1)
    e1, e2 = Meter.objects.get(serial="E-1"), Meter.objects.get(serial="E-2")
    assert (e1.gateway, e1.modbus_unit, e1.profile.name, e1.has_relay) == (
        gateway,
        1,
        "sdm120",
        True,
    )
    assert (e2.gateway, e2.modbus_unit, e2.profile.name) == (gateway, 2, "sdm630")
    device = MqttDevice.objects.get(key="plug-1")
    channels = Meter.objects.filter(mqtt_device=device).values_list("serial", "mqtt_channel")
    assert sorted(channels) == [("W-1", 0), ("W-2", 1)]
    assert Meter.objects.get(serial="STOCK").unit is None
    [credential] = report.credentials
    assert credential.username == device.username
    assert len(credential.password) > 20


def test_an_existing_gateway_is_used_by_name_and_its_unit_ids_stay_unique(
    scope, property_a1, builtin_profiles
):
    gateway = meter_services.gateway_create(
        property=property_a1, actor=None, name="GW", host="192.0.2.1"
    )
    meter = factories.MeterFactory(unit__property=property_a1)
    meter_services.meter_connect(
        meter=meter, actor=None, gateway=gateway, modbus_unit=1, profile=None
    )
    data = _csv(
        ["serial", "utility", "property_code", "gateway", "modbus_unit", "profile"],
        ["N-1", "electricity", "A1", "GW", "1", "sdm120"],
        ["N-2", "electricity", "A1", "GW", "2", "sdm120"],
    )
    assert _errors(_check(scope, "meters", data)) == {(2, "modbus_unit")}


# Scoping -----------------------------------------------------------------------------------------


def test_another_organisations_properties_cannot_be_imported_into(scope, property_b1):
    factories.AccountFactory(unit__property=property_b1, unit__name="101")
    before = _counts()
    units = _check(scope, "units", _csv(["property_code", "name"], ["B1", "9"]))
    balances = _check(
        scope,
        "opening_balances",
        _csv(["property_code", "unit_name", "amount"], ["B1", "101", "5"]),
    )
    assert _errors(units) == {(2, "property_code")}
    assert _errors(balances) == {(2, "property_code")}
    assert _counts() == before


def test_another_organisations_mqtt_device_key_cannot_be_taken(scope, property_a1, property_b1):
    factories.MqttDeviceFactory(property=property_b1, format="tasmota", key="shared")
    data = _csv(
        ["serial", "utility", "property_code", "mqtt_format", "mqtt_key"],
        ["X-1", "electricity", "A1", "tasmota", "shared"],
    )
    assert _errors(_check(scope, "meters", data)) == {(2, "mqtt_key")}


def test_a_limited_scope_cannot_import_into_an_unassigned_property(
    property_a1, property_a2, manager_a1
):
    limited = scope_for_user(user=manager_a1)
    report = _check(limited, "units", _csv(["property_code", "name"], ["A2", "1"]))
    assert _errors(report) == {(2, "property_code")}


# Templates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_every_template_imports_cleanly_in_order(scope, builtin_profiles, file_format):
    write = imports.TEMPLATE_WRITERS[file_format]
    for kind in ("properties", "units", "tenants", "meters", "opening_balances"):
        template = write(kind)
        header, rows = imports.read_table(data=template, file_format=file_format)
        assert header == imports.KINDS[kind].column_names
        assert rows, kind
        report = _check(scope, kind, template, file_format)
        assert report.errors == [], kind
        _commit(scope, kind, template, file_format)
    account = Account.objects.get(unit__property__code="RSA", unit__name="101")
    account.wallet.refresh_from_db()
    assert account.wallet.balance == Decimal("100.00")
    assert Meter.objects.filter(unit=account.unit).count() == 2


def test_the_xlsx_template_describes_its_columns_on_a_second_sheet():
    workbook = openpyxl.load_workbook(io.BytesIO(imports.template_xlsx("units")))
    columns = workbook.worksheets[1]
    names = [row[0] for row in columns.iter_rows(min_row=2, values_only=True)]
    assert names == imports.KINDS["units"].column_names
