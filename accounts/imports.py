"""Bulk import of properties, units, tenants, meters and opening balances from CSV or XLSX.

A file holds one kind of row, under a header row of column names (docs/imports.md). Rows refer to
what is already in the database by natural keys: a property by its code, a unit by its name within
the property, a tenant by email or phone, a meter by its serial, a gateway by its name.

- `import_check` is the dry run: it reads the file, validates every row and reports every problem
  with its row number and column; when no row has one, it rehearses the commit in a transaction
  that is always rolled back, so whatever the services themselves refuse is reported too.
- `import_commit` does the same under a lock on the organisation and keeps the result: every row
  or, at the first problem, none.

Objects are created through the services (accounts, meters, billing), so each is validated and
audited as if made by hand, and the import as a whole gets one more audit row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import openpyxl
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import services
from accounts.models import Account, Organisation, Property, Tenant, Unit
from billing.models import LedgerAccount, LedgerTransaction
from billing.services import Entry, book_account, transaction_post
from meters import services as meter_services
from meters.models import Gateway, Meter, MeterProfile, MqttDevice
from meters.mqtt_devices import KEY_PATTERN, mqtt_device_create
from meters.protocols.mqtt_formats import Format
from meters.protocols.mqtt_topics import key_problem
from prepaid.audit.services import audit_record
from prepaid.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS, is_whole_minor_units
from prepaid.scoping import Scope

# An upload is kept in the session between the dry run and the commit, so it stays small.
MAX_BYTES = 1_000_000
MAX_ROWS = 5000
PREVIEW_ROWS = 50
FORMATS = ("csv", "xlsx")
# The book opening balances are credited from, so the money brought over from the previous
# system stays visible as one figure per property.
OPENING_BALANCE_BOOK = LedgerAccount.Kind.OPENING_BALANCES


class ImportRejected(Exception):
    """The file has problems: nothing was written."""

    def __init__(self, errors: Sequence[RowError]):
        super().__init__(f"{len(errors)} problem(s) in the file")
        self.errors = list(errors)
        # The commit's report of the file, with these errors, once the commit has it.
        self.report: ImportReport | None = None


@dataclass(frozen=True)
class RowError:
    # The row as a spreadsheet numbers it: the header is row 1. 0 for the file as a whole.
    row: int
    column: str
    message: str


@dataclass(frozen=True)
class Column:
    name: str
    description: Any
    example: str = ""
    required: bool = False


@dataclass(frozen=True)
class SourceRow:
    number: int
    values: dict[str, str]


@dataclass
class Credential:
    """A new MQTT device's broker login; the password is shown once and never stored."""

    device: str
    username: str
    password: str


@dataclass
class ImportReport:
    kind: str
    rows: int
    columns: list[str] = field(default_factory=list)
    # The first rows as read, each as (row number, cells under `columns`).
    preview: list[tuple[int, list[str]]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    created: Counter = field(default_factory=Counter)
    credentials: list[Credential] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.errors

    @property
    def rows_with_errors(self) -> int:
        return len({error.row for error in self.errors})


# Reading files -----------------------------------------------------------------------------------


def _header_name(value: str) -> str:
    return re.sub(r"[\s-]+", "_", value.strip().lower())


def _cell_text(value: Any) -> str:
    """A spreadsheet cell as the text a CSV would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        # Excel stores every number as a double: 502.0 is the integer 502, and repr gives the
        # shortest text that reads back as the same double (12.3, not 12.300000000000001).
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ") if value.time() != time(0) else value.date().isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value).strip()


def _read_csv(data: bytes) -> list[list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Excel on a Chinese Windows saves "CSV" in GB18030 (GBK) rather than UTF-8.
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError:
            raise ImportRejected(
                [RowError(0, "", _("The file is not text in UTF-8 or GB18030."))]
            ) from None
    try:
        return [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text))]
    except csv.Error as error:
        raise ImportRejected([RowError(0, "", _("The CSV cannot be read: %s") % error)]) from None


def _read_xlsx(data: bytes) -> list[list[str]]:
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        raise ImportRejected([RowError(0, "", _("The file is not an XLSX workbook."))]) from None
    try:
        sheet = workbook.worksheets[0]
        rows = []
        # One more than allowed (and the header), so a file that is too long is told so.
        for values in sheet.iter_rows(values_only=True, max_row=MAX_ROWS + 2):
            rows.append([_cell_text(value) for value in values])
        return rows
    finally:
        workbook.close()


def read_table(*, data: bytes, file_format: str) -> tuple[list[str], list[SourceRow]]:
    """The header's column names and the non-blank rows under it, numbered as in the file."""
    if len(data) > MAX_BYTES:
        raise ImportRejected(
            [RowError(0, "", _("The file is larger than %(size)s bytes.") % {"size": MAX_BYTES})]
        )
    table = _read_xlsx(data) if file_format == "xlsx" else _read_csv(data)
    if not table or not any(table[0]):
        raise ImportRejected([RowError(1, "", _("The first row must hold the column names."))])
    header = [_header_name(cell) for cell in table[0]]
    rows = []
    errors = []
    for index, cells in enumerate(table[1:], start=2):
        if not any(cells):
            continue
        values = {}
        for position, cell in enumerate(cells):
            name = header[position] if position < len(header) else ""
            if name:
                values[name] = cell
            elif cell:
                errors.append(RowError(index, "", _("A value has no column name above it.")))
        rows.append(SourceRow(index, values))
    if len(rows) > MAX_ROWS:
        raise ImportRejected(
            [RowError(0, "", _("A file may hold at most %(rows)s rows.") % {"rows": MAX_ROWS})]
        )
    if errors:
        raise ImportRejected(errors)
    return header, rows


# Validating rows ---------------------------------------------------------------------------------


class _Row:
    """One row's cells, read into values; each problem is recorded against its column."""

    def __init__(self, source: SourceRow, errors: list[RowError]):
        self.number = source.number
        self._values = source.values
        self._errors = errors
        self._count = len(errors)
        self._failed: set[str] = set()

    @property
    def ok(self) -> bool:
        return len(self._errors) == self._count

    def error(self, column: str, message: str) -> None:
        self._failed.add(column)
        self._errors.append(RowError(self.number, column, str(message)))

    def has(self, column: str) -> bool:
        return bool(self._values.get(column, ""))

    def text(self, column: str, *, required: bool = False) -> str:
        value = self._values.get(column, "")
        if required and not value:
            self.error(column, _("This column needs a value."))
        return value

    def code(self, column: str, *, required: bool = True) -> str:
        return self.text(column, required=required).upper()

    def choice(self, column: str, choices: type[models.TextChoices], default: str) -> str:
        value = self.text(column)
        if not value:
            return default
        wanted = value.lower().replace("_", "-")
        for option, label in choices.choices:
            if wanted in (option.lower().replace("_", "-"), str(label).lower()):
                return option
        self.error(
            column,
            _("Use one of: %(choices)s.") % {"choices": ", ".join(choices.values)},
        )
        return default

    def boolean(self, column: str, *, default: bool = False) -> bool:
        value = self.text(column).lower()
        if not value:
            return default
        if value in ("yes", "y", "true", "1", "是"):
            return True
        if value in ("no", "n", "false", "0", "否"):
            return False
        self.error(column, _("Use yes or no."))
        return default

    def integer(self, column: str, *, minimum: int, maximum: int) -> int | None:
        value = self.text(column)
        if not value:
            return None
        try:
            number = int(value)
        except ValueError:
            self.error(column, _("Enter a whole number."))
            return None
        if not minimum <= number <= maximum:
            self.error(
                column,
                _("Enter a number from %(minimum)s to %(maximum)s.")
                % {"minimum": minimum, "maximum": maximum},
            )
            return None
        return number

    def decimal(self, column: str, *, required: bool = False) -> Decimal | None:
        value = self.text(column, required=required)
        if not value:
            return None
        try:
            number = Decimal(value)
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite():
            self.error(column, _("Enter a number such as 120.50, without separators."))
            return None
        return number

    def moment(self, column: str, zone) -> datetime | None:
        """A date (local midnight) or a date and time, in the property's time zone."""
        value = self.text(column)
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.error(
                column, _("Enter a date as 2025-01-31, or a date and time as 2025-01-31 09:30.")
            )
            return None
        if timezone.is_naive(parsed):
            parsed = parsed.replace(tzinfo=zone)
        if parsed > timezone.now():
            self.error(column, _("The date cannot be in the future."))
            return None
        return parsed

    def model_errors(self, instance: models.Model, exclude: Iterable[str]) -> None:
        """The model's own field validation (lengths, formats, choices), reported per column
        unless the column has a problem already (an empty required cell, say)."""
        try:
            instance.full_clean(
                exclude=list(exclude), validate_unique=False, validate_constraints=False
            )
        except ValidationError as error:
            for name, messages in error.message_dict.items():
                column = "" if name == NON_FIELD_ERRORS else name
                if column in self._failed:
                    continue
                for message in messages:
                    self.error(column, message)


def _phone_key(phone: str) -> str:
    """A phone number as digits (and a leading +), so spacing does not hide a duplicate."""
    phone = phone.strip()
    digits = re.sub(r"\D", "", phone)
    return ("+" + digits if phone.startswith("+") else digits) if digits else ""


class _Seen:
    """Where each natural key first appeared in the file, to report duplicates within it."""

    def __init__(self) -> None:
        self._rows: dict[Any, int] = {}

    def check(self, row: _Row, column: str, key: Any, message: str) -> None:
        if key in self._rows:
            row.error(column, message % {"row": self._rows[key]})
        else:
            self._rows[key] = row.number


@dataclass
class _Run:
    """One pass over a file: who imports into which scope, and what came of it."""

    scope: Scope
    actor: Any
    file_name: str
    digest: str
    errors: list[RowError] = field(default_factory=list)
    created: Counter = field(default_factory=Counter)
    credentials: list[Credential] = field(default_factory=list)

    @property
    def organisation(self) -> Organisation:
        return self.scope.organisation

    def properties_by_code(self, codes: Iterable[str]) -> dict[str, Property]:
        """Properties the importer sees; another organisation's or an unassigned one's code is
        simply not found."""
        found = Property.objects.for_scope(self.scope).filter(code__in=set(codes))
        return {prop.code: prop for prop in found}

    def units_by_key(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Unit]:
        keys = set(keys)
        if not keys:
            return {}
        codes = {code for code, _name in keys}
        names = {name for _code, name in keys}
        found = (
            Unit.objects.for_scope(self.scope)
            .filter(property__code__in=codes, name__in=names)
            .select_related("property")
        )
        return {(unit.property.code, unit.name): unit for unit in found}


def _unknown_property(row: _Row, code: str) -> None:
    row.error("property_code", _("No property has the code %(code)s.") % {"code": code})


def _unknown_unit(row: _Row, code: str, name: str) -> None:
    row.error(
        "unit_name",
        _("Property %(code)s has no unit named %(name)s.") % {"code": code, "name": name},
    )


# The kinds of import -----------------------------------------------------------------------------


class ImportKind(ABC):
    """One kind of row: its columns, how a file of them is validated, and how it is written."""

    name: str
    label: Any
    columns: tuple[Column, ...]
    # Service error keys that are not column names.
    error_columns: dict[str, str] = {}
    # Rows of the example, beyond the one each column's `example` makes.
    extra_examples: tuple[dict[str, str], ...] = ()

    @abstractmethod
    def validate(self, run: _Run, rows: list[SourceRow]) -> list[Any]:
        """Every row checked against the file and the database: the plan to write, or errors."""

    @abstractmethod
    def write(self, run: _Run, plan: Any) -> None:
        """Write a validated plan through the services."""

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def examples(self) -> list[list[str]]:
        first = [column.example for column in self.columns]
        return [first] + [
            [extra.get(column.name, "") for column in self.columns] for extra in self.extra_examples
        ]

    def column_of(self, key: str) -> str:
        if key == NON_FIELD_ERRORS:
            return ""
        return self.error_columns.get(key, key if key in self.column_names else "")


class PropertiesImport(ImportKind):
    name = "properties"
    label = gettext_lazy("Properties")
    columns = (
        Column(
            "code",
            gettext_lazy("Short code in capitals, digits and dashes, printed on receipts."),
            example="RSA",
            required=True,
        ),
        Column(
            "name",
            gettext_lazy("The property's name, unique in the organisation."),
            example="Riverside Apartments",
            required=True,
        ),
        Column(
            "time_zone",
            gettext_lazy("IANA time zone, such as Asia/Shanghai."),
            example="Asia/Shanghai",
            required=True,
        ),
        Column(
            "currency",
            gettext_lazy("ISO 4217 currency code, such as CNY."),
            example="CNY",
            required=True,
        ),
        Column(
            "country",
            gettext_lazy("ISO 3166 country code for public holidays, such as CN."),
            example="CN",
            required=True,
        ),
        Column(
            "address",
            gettext_lazy("Postal address."),
            example="1 River Road, Shanghai",
        ),
        Column(
            "poll_interval_minutes",
            gettext_lazy("Minutes between readings of its Modbus meters (1 to 60, default 15)."),
            example="15",
        ),
        Column(
            "offline_after_missed_polls",
            gettext_lazy("Missed readings in a row before a meter is called offline (default 3)."),
            example="3",
        ),
        Column(
            "carbon_kg_per_kwh",
            gettext_lazy("Kilograms of CO2 per kWh of the local grid (default 0.5703)."),
            example="0.5703",
        ),
    )

    def validate(self, run, rows):
        existing = Property.objects.filter(organisation=run.organisation)
        codes = set(existing.values_list("code", flat=True))
        names = {name.lower() for name in existing.values_list("name", flat=True)}
        seen_codes, seen_names = _Seen(), _Seen()
        plan = []
        for source in rows:
            row = _Row(source, run.errors)
            fields: dict[str, Any] = {
                "code": row.code("code"),
                "name": row.text("name", required=True),
                "time_zone": row.text("time_zone", required=True),
                "currency": row.code("currency"),
                "country": row.code("country"),
                "address": row.text("address"),
            }
            for column, minimum, maximum in (
                ("poll_interval_minutes", 1, 60),
                ("offline_after_missed_polls", 1, 100),
            ):
                number = row.integer(column, minimum=minimum, maximum=maximum)
                if number is not None:
                    fields[column] = number
            carbon = row.decimal("carbon_kg_per_kwh")
            if carbon is not None:
                fields["carbon_kg_per_kwh"] = carbon
            row.model_errors(Property(organisation=run.organisation, **fields), ["organisation"])
            if fields["code"] in codes:
                row.error("code", _("A property with this code exists already."))
            if fields["name"].lower() in names:
                row.error("name", _("A property with this name exists already."))
            seen_codes.check(row, "code", fields["code"], _("This code is on row %(row)s too."))
            seen_names.check(
                row, "name", fields["name"].lower(), _("This name is on row %(row)s too.")
            )
            if row.ok:
                plan.append((row.number, fields))
        return plan

    def write(self, run, plan):
        for number, fields in plan:
            with _row_errors(self, number):
                services.property_create(organisation=run.organisation, actor=run.actor, **fields)
            run.created["properties"] += 1


class UnitsImport(ImportKind):
    name = "units"
    label = gettext_lazy("Units")
    columns = (
        Column(
            "property_code",
            gettext_lazy("The code of the property the unit is in."),
            example="RSA",
            required=True,
        ),
        Column(
            "name",
            gettext_lazy("The unit's name, unique in its property."),
            example="101",
            required=True,
        ),
        Column(
            "kind",
            gettext_lazy("flat, shop, room, office or common (default flat)."),
            example="flat",
        ),
        Column(
            "floor",
            gettext_lazy("Floor, as text."),
            example="1",
        ),
    )

    def validate(self, run, rows):
        codes = {source.values.get("property_code", "").upper() for source in rows}
        properties = run.properties_by_code(codes)
        existing = set(
            Unit.objects.filter(property__in=properties.values()).values_list(
                "property__code", "name"
            )
        )
        seen = _Seen()
        plan = []
        for source in rows:
            row = _Row(source, run.errors)
            code = row.code("property_code")
            fields = {
                "name": row.text("name", required=True),
                "kind": row.choice("kind", Unit.Kind, Unit.Kind.FLAT),
                "floor": row.text("floor"),
            }
            prop = properties.get(code)
            if code and prop is None:
                _unknown_property(row, code)
            row.model_errors(Unit(property=prop, **fields), ["property", "kind"])
            if (code, fields["name"]) in existing:
                row.error("name", _("This property has a unit with this name already."))
            seen.check(row, "name", (code, fields["name"]), _("This unit is on row %(row)s too."))
            if row.ok:
                plan.append((row.number, prop, fields))
        return plan

    def write(self, run, plan):
        for number, prop, fields in plan:
            with _row_errors(self, number):
                services.unit_create(property=prop, actor=run.actor, **fields)
            run.created["units"] += 1


@dataclass
class _TenantRow:
    number: int
    fields: dict[str, Any]
    unit: Unit | None
    mode: str
    opened_at: datetime | None
    protected: bool


class TenantsImport(ImportKind):
    name = "tenants"
    label = gettext_lazy("Tenants")
    columns = (
        Column(
            "name",
            gettext_lazy("The tenant's name: a person or a business."),
            example="Li Wei",
            required=True,
        ),
        Column(
            "email",
            gettext_lazy(
                "Email address; a tenant needs an email or a phone, each unique in the "
                "organisation."
            ),
            example="li.wei@example.com",
        ),
        Column(
            "phone",
            gettext_lazy("Phone number, such as +86 138 0013 8000."),
            example="+86 138 0013 8000",
        ),
        Column(
            "preferred_language",
            gettext_lazy("en or zh-hans (default en)."),
            example="zh-hans",
        ),
        Column(
            "property_code",
            gettext_lazy("With unit_name: move the tenant into this property's unit."),
            example="RSA",
        ),
        Column(
            "unit_name",
            gettext_lazy("The vacant unit the tenant moves into."),
            example="101",
        ),
        Column(
            "mode",
            gettext_lazy("prepaid or postpaid (default prepaid)."),
            example="prepaid",
        ),
        Column(
            "opened_at",
            gettext_lazy(
                "Move-in date, or date and time, in the property's time zone (default now)."
            ),
            example="2025-01-01",
        ),
        Column(
            "protected",
            gettext_lazy("yes for a medical or vulnerable household, never cut off automatically."),
            example="no",
        ),
    )
    error_columns = {"unit": "unit_name", "tenant": "name"}

    def validate(self, run, rows):
        keys = {
            (source.values.get("property_code", "").upper(), source.values.get("unit_name", ""))
            for source in rows
        }
        units = run.units_by_key(key for key in keys if all(key))
        properties = run.properties_by_code(code for code, _name in keys if code)
        occupied = set(
            Account.objects.filter(unit__in=units.values(), status=Account.Status.OPEN).values_list(
                "unit_id", flat=True
            )
        )
        known = Tenant.objects.filter(organisation=run.organisation).values_list("email", "phone")
        emails, phones = set(), set()
        for email, phone in known:
            emails.add(email.lower())
            phones.add(_phone_key(phone))
        emails.discard("")
        phones.discard("")
        seen_emails, seen_phones, seen_units = _Seen(), _Seen(), _Seen()
        plan = []
        for source in rows:
            row = _Row(source, run.errors)
            fields = {
                "name": row.text("name", required=True),
                "email": row.text("email").lower(),
                "phone": row.text("phone"),
                "preferred_language": row.choice(
                    "preferred_language", Tenant.Language, Tenant.Language.ENGLISH
                ),
            }
            if not fields["email"] and not fields["phone"]:
                row.error("email", _("Give an email address or a phone number."))
            row.model_errors(
                Tenant(organisation=run.organisation, **fields), ["organisation", "user"]
            )
            if fields["email"]:
                if fields["email"] in emails:
                    row.error("email", _("A tenant with this email address exists already."))
                seen_emails.check(
                    row, "email", fields["email"], _("This email address is on row %(row)s too.")
                )
            phone = _phone_key(fields["phone"])
            if phone:
                if phone in phones:
                    row.error("phone", _("A tenant with this phone number exists already."))
                seen_phones.check(
                    row, "phone", phone, _("This phone number is on row %(row)s too.")
                )
            unit = self._unit(row, properties, units, occupied, seen_units)
            mode = row.choice("mode", Account.Mode, Account.Mode.PREPAID)
            protected = row.boolean("protected")
            opened_at = row.moment("opened_at", unit.property.zone) if unit else None
            if unit is None and (row.has("opened_at") or row.has("mode") or row.has("protected")):
                row.error("unit_name", _("Moving in needs the property_code and unit_name."))
            if row.ok:
                plan.append(_TenantRow(row.number, fields, unit, mode, opened_at, protected))
        return plan

    @staticmethod
    def _unit(row: _Row, properties, units, occupied, seen: _Seen) -> Unit | None:
        code, name = row.code("property_code", required=False), row.text("unit_name")
        if not code and not name:
            return None
        if not (code and name):
            row.error("unit_name", _("Give both the property_code and the unit_name, or neither."))
            return None
        unit = units.get((code, name))
        if code not in properties:
            _unknown_property(row, code)
            return None
        if unit is None:
            _unknown_unit(row, code, name)
            return None
        if unit.pk in occupied:
            row.error("unit_name", _("This unit has an open account already."))
        seen.check(row, "unit_name", unit.pk, _("This unit is on row %(row)s too."))
        return unit

    def write(self, run, plan):
        for item in plan:
            with _row_errors(self, item.number):
                tenant = services.tenant_create(
                    organisation=run.organisation, actor=run.actor, **item.fields
                )
                run.created["tenants"] += 1
                if item.unit is not None:
                    services.account_open(
                        tenant=tenant,
                        unit=item.unit,
                        actor=run.actor,
                        mode=item.mode,
                        opened_at=item.opened_at,
                        protected=item.protected,
                    )
                    run.created["accounts"] += 1


@dataclass
class _NewGateway:
    name: str
    property: Property
    framer: str
    host: str
    port: int
    number: int


@dataclass
class _NewDevice:
    property: Property
    format: str
    key: str
    number: int


@dataclass
class _MeterRow:
    number: int
    serial: str
    utility: str
    has_relay: bool
    unit: Unit | None
    installed_at: datetime | None
    # An existing Gateway, or the name of one this import creates.
    gateway: Gateway | str | None = None
    modbus_unit: int | None = None
    profile: MeterProfile | None = None
    # An existing MqttDevice, or the (format, key) of one this import creates.
    device: MqttDevice | tuple[str, str] | None = None
    channel: int = 0
    sml_key: str = ""


class MetersImport(ImportKind):
    name = "meters"
    label = gettext_lazy("Meters")
    columns = (
        Column(
            "serial",
            gettext_lazy("The meter's serial number, unique in the organisation."),
            example="SDM120-0001",
            required=True,
        ),
        Column(
            "utility",
            gettext_lazy("electricity or water."),
            example="electricity",
            required=True,
        ),
        Column(
            "has_relay",
            gettext_lazy("yes when it has a relay (water: a valve) that can cut the supply."),
            example="yes",
        ),
        Column(
            "property_code",
            gettext_lazy("The property the meter, its gateway and its MQTT device belong to."),
            example="RSA",
            required=True,
        ),
        Column(
            "unit_name",
            gettext_lazy("The unit it is installed in; empty keeps it in stock."),
            example="101",
        ),
        Column(
            "installed_at",
            gettext_lazy("When it was installed, in the property's time zone (default now)."),
            example="2025-01-01",
        ),
        Column(
            "gateway",
            gettext_lazy(
                "Modbus: the gateway's name. A new name creates the gateway from the next three "
                "columns."
            ),
            example="RSA gateway 1",
        ),
        Column(
            "gateway_host",
            gettext_lazy("A new gateway's IP address or host name."),
            example="192.0.2.10",
        ),
        Column(
            "gateway_port",
            gettext_lazy("A new gateway's TCP port (default 502)."),
            example="502",
        ),
        Column(
            "gateway_framer",
            gettext_lazy("tcp or rtu_over_tcp (default tcp)."),
            example="tcp",
        ),
        Column(
            "modbus_unit",
            gettext_lazy("Modbus: the meter's unit id behind the gateway, 1 to 247."),
            example="1",
        ),
        Column(
            "profile",
            gettext_lazy("Modbus: the meter profile's name, such as sdm120."),
            example="sdm120",
        ),
        Column(
            "mqtt_format",
            gettext_lazy("MQTT instead: native, tasmota, shelly, zigbee2mqtt or emonhub."),
        ),
        Column(
            "mqtt_key",
            gettext_lazy(
                "MQTT: how the device names itself in its topics. A new key creates the device "
                "and its broker login."
            ),
        ),
        Column(
            "mqtt_channel",
            gettext_lazy("MQTT: the device's channel for this meter, 0 to 31 (default 0)."),
        ),
        Column(
            "mqtt_sml_key",
            gettext_lazy("MQTT, Tasmota SML only: the register as Group.Key."),
        ),
    )
    extra_examples = (
        {
            "serial": "WM-0001",
            "utility": "water",
            "has_relay": "no",
            "property_code": "RSA",
            "unit_name": "101",
            "installed_at": "2025-01-01",
            "mqtt_format": "native",
            "mqtt_key": "WM-0001",
            "mqtt_channel": "0",
        },
    )
    error_columns = {
        "unit": "unit_name",
        "device": "mqtt_key",
        "channel": "mqtt_channel",
        "sml_key": "mqtt_sml_key",
        "key": "mqtt_key",
        "format": "mqtt_format",
        "host": "gateway_host",
        "port": "gateway_port",
        "framer": "gateway_framer",
    }

    def validate(self, run, rows):
        values = [source.values for source in rows]
        properties = run.properties_by_code(v.get("property_code", "").upper() for v in values)
        units = run.units_by_key(
            (v.get("property_code", "").upper(), v["unit_name"])
            for v in values
            if v.get("unit_name")
        )
        org_meters = Meter.objects.filter(organisation=run.organisation)
        serials = {v.get("serial", "") for v in values}
        taken_serials = set(org_meters.filter(serial__in=serials).values_list("serial", flat=True))
        active = set(
            org_meters.filter(unit__in=units.values(), removed_at__isnull=True).values_list(
                "unit_id", "utility"
            )
        )
        profiles = {
            profile.name: profile
            for profile in MeterProfile.objects.for_scope(run.scope).filter(
                name__in={v.get("profile", "") for v in values}
            )
        }
        gateway_names = {v.get("gateway", "") for v in values} - {""}
        org_gateways = {
            gateway.name: gateway
            for gateway in Gateway.objects.filter(
                organisation=run.organisation, name__in=gateway_names
            )
        }
        visible_gateways = set(
            Gateway.objects.for_scope(run.scope)
            .filter(pk__in=[gateway.pk for gateway in org_gateways.values()])
            .values_list("pk", flat=True)
        )
        modbus_taken = set(
            Meter.objects.filter(gateway__in=org_gateways.values()).values_list(
                "gateway_id", "modbus_unit"
            )
        )
        keys = {v.get("mqtt_key", "") for v in values} - {""}
        devices = {
            (device.format, device.key): device
            for device in MqttDevice.objects.filter(key__in=keys)
        }
        visible_devices = set(
            MqttDevice.objects.for_scope(run.scope)
            .filter(pk__in=[device.pk for device in devices.values()])
            .values_list("pk", flat=True)
        )
        device_names = set(
            MqttDevice.objects.filter(organisation=run.organisation, name__in=keys).values_list(
                "name", flat=True
            )
        )
        channels_taken = set(
            Meter.objects.filter(mqtt_device__in=devices.values()).values_list(
                "mqtt_device_id", "mqtt_channel"
            )
        )
        context = {
            "properties": properties,
            "units": units,
            "taken_serials": taken_serials,
            "active": active,
            "profiles": profiles,
            "gateways": org_gateways,
            "visible_gateways": visible_gateways,
            "modbus_taken": modbus_taken,
            "devices": devices,
            "visible_devices": visible_devices,
            "device_names": device_names,
            "channels_taken": channels_taken,
            "new_gateways": {},
            "new_devices": {},
            "seen_serials": _Seen(),
            "seen_active": _Seen(),
            "seen_modbus": _Seen(),
            "seen_channels": _Seen(),
        }
        plan = []
        for source in rows:
            row = _Row(source, run.errors)
            item = self._meter(run, row, context)
            if row.ok and item is not None:
                plan.append(item)
        return plan, context["new_gateways"], context["new_devices"]

    def _meter(self, run, row: _Row, c: dict) -> _MeterRow | None:
        serial = row.text("serial", required=True)
        utility = row.choice("utility", Meter.Utility, "")
        if not utility and not row.has("utility"):
            row.error("utility", _("This column needs a value."))
        has_relay = row.boolean("has_relay")
        row.model_errors(
            Meter(organisation=run.organisation, serial=serial, utility=utility or "electricity"),
            ["organisation", "unit", "gateway", "profile", "mqtt_device"],
        )
        if serial in c["taken_serials"]:
            row.error("serial", _("A meter with this serial exists already."))
        c["seen_serials"].check(row, "serial", serial, _("This serial is on row %(row)s too."))
        code = row.code("property_code")
        prop = c["properties"].get(code)
        if code and prop is None:
            _unknown_property(row, code)
        unit, installed_at = None, None
        name = row.text("unit_name")
        if name and prop is not None:
            unit = c["units"].get((code, name))
            if unit is None:
                _unknown_unit(row, code, name)
        if unit is not None:
            installed_at = row.moment("installed_at", prop.zone)
            if (unit.pk, utility) in c["active"]:
                row.error(
                    "unit_name", _("This unit has a meter of this utility in service already.")
                )
            c["seen_active"].check(
                row,
                "unit_name",
                (unit.pk, utility),
                _("Row %(row)s puts a meter of this utility in this unit too."),
            )
        elif row.has("installed_at"):
            row.error(
                "installed_at", _("Only a meter installed in a unit has an installation date.")
            )
        item = _MeterRow(row.number, serial, utility, has_relay, unit, installed_at)
        modbus = any(row.has(column) for column in ("gateway", "modbus_unit", "profile"))
        mqtt = any(row.has(column) for column in ("mqtt_format", "mqtt_key", "mqtt_sml_key"))
        if modbus and mqtt:
            row.error("mqtt_key", _("A meter is read over Modbus or over MQTT, not both."))
        elif modbus:
            self._modbus(row, item, prop, c)
        elif mqtt:
            self._mqtt(row, item, prop, c)
        else:
            for column in ("gateway_host", "gateway_port", "gateway_framer", "mqtt_channel"):
                if row.has(column):
                    row.error(column, _("This column goes with a gateway or an MQTT device."))
        return item

    def _modbus(self, row: _Row, item: _MeterRow, prop: Property | None, c: dict) -> None:
        name = row.text("gateway", required=True)
        item.modbus_unit = row.integer("modbus_unit", minimum=1, maximum=247)
        if item.modbus_unit is None and not row.has("modbus_unit"):
            row.error("modbus_unit", _("A meter behind a gateway needs its unit id."))
        profile_name = row.text("profile", required=True)
        item.profile = c["profiles"].get(profile_name)
        if profile_name and item.profile is None:
            row.error("profile", _("No meter profile is named %(name)s.") % {"name": profile_name})
        framer = row.choice("gateway_framer", Gateway.Framer, Gateway.Framer.TCP)
        if framer == Gateway.Framer.SERIAL:
            row.error("gateway_framer", _("Use tcp or rtu_over_tcp; add serial gateways by hand."))
        host = row.text("gateway_host")
        port = row.integer("gateway_port", minimum=1, maximum=65535)
        if not name:
            return
        existing = c["gateways"].get(name)
        if existing is not None:
            if existing.pk not in c["visible_gateways"]:
                row.error("gateway", _("This gateway name is taken; choose another."))
                return
            if prop is not None and existing.property_id != prop.pk:
                row.error("gateway", _("This gateway is at another property."))
            changed = (
                (host and host != existing.host)
                or (port is not None and port != existing.port)
                or (row.has("gateway_framer") and framer != existing.framer)
            )
            if changed:
                row.error(
                    "gateway_host",
                    _("The gateway exists with another address; leave these columns empty."),
                )
            item.gateway = existing
            taken = (existing.pk, item.modbus_unit) in c["modbus_taken"]
        else:
            planned = c["new_gateways"].get(name)
            if planned is None:
                if not host:
                    row.error("gateway_host", _("A new gateway needs its host."))
                elif prop is not None:
                    c["new_gateways"][name] = _NewGateway(
                        name, prop, framer, host, port or 502, row.number
                    )
            elif (
                (prop is not None and planned.property.pk != prop.pk)
                or (host and host != planned.host)
                or (port is not None and port != planned.port)
                or framer != planned.framer
            ):
                row.error(
                    "gateway_host",
                    _("Row %(row)s describes this gateway differently.") % {"row": planned.number},
                )
            item.gateway = name
            taken = False
        if item.modbus_unit is not None:
            if taken:
                row.error("modbus_unit", _("Another meter has this unit id on this gateway."))
            c["seen_modbus"].check(
                row,
                "modbus_unit",
                (name, item.modbus_unit),
                _("Row %(row)s has this unit id on this gateway too."),
            )

    def _mqtt(self, row: _Row, item: _MeterRow, prop: Property | None, c: dict) -> None:
        fmt = row.choice("mqtt_format", MqttDevice.Format, "")
        if not row.has("mqtt_format"):
            row.error("mqtt_format", _("This column needs a value."))
        key = row.text("mqtt_key", required=True)
        channel = row.integer("mqtt_channel", minimum=0, maximum=31)
        item.channel = channel or 0
        item.sml_key = row.text("mqtt_sml_key")
        if item.sml_key:
            group, dot, register = item.sml_key.partition(".")
            if fmt != MqttDevice.Format.TASMOTA:
                row.error("mqtt_sml_key", _("Only Tasmota devices run SML scripts."))
            elif not (group and dot and register):
                row.error(
                    "mqtt_sml_key", _("Give the SML register as Group.Key, e.g. SML.Total_in.")
                )
        if not (fmt and key):
            return
        existing = c["devices"].get((fmt, key))
        if existing is not None:
            if existing.pk not in c["visible_devices"]:
                row.error("mqtt_key", _("These topics are already in use by another device."))
                return
            if prop is not None and existing.property_id != prop.pk:
                row.error("mqtt_key", _("This device is at another property."))
            item.device = existing
            taken = (existing.pk, item.channel) in c["channels_taken"]
        else:
            if not KEY_PATTERN.fullmatch(key):
                row.error(
                    "mqtt_key",
                    _(
                        "Use 1 to 100 letters, digits, '.', '_', ':' or '-', starting with a "
                        "letter or digit."
                    ),
                )
                return
            problem = key_problem(Format(fmt), key)
            if problem:
                row.error("mqtt_key", problem)
                return
            planned = c["new_devices"].get((fmt, key))
            if planned is None:
                if key in c["device_names"]:
                    row.error("mqtt_key", _("Another device is named like this key."))
                elif prop is not None:
                    c["new_devices"][(fmt, key)] = _NewDevice(prop, fmt, key, row.number)
            elif prop is not None and planned.property.pk != prop.pk:
                row.error(
                    "property_code",
                    _("Row %(row)s puts this device at another property.")
                    % {"row": planned.number},
                )
            item.device = (fmt, key)
            taken = False
        if taken:
            row.error("mqtt_channel", _("Another meter reads this channel of the device."))
        c["seen_channels"].check(
            row,
            "mqtt_channel",
            (fmt, key, item.channel),
            _("Row %(row)s reads this channel of the device too."),
        )

    def write(self, run, plan):
        items, new_gateways, new_devices = plan
        gateways: dict[str, Gateway] = {}
        for name, planned in new_gateways.items():
            with _row_errors(self, planned.number):
                gateways[name] = meter_services.gateway_create(
                    property=planned.property,
                    actor=run.actor,
                    name=name,
                    framer=planned.framer,
                    host=planned.host,
                    port=planned.port,
                )
            run.created["gateways"] += 1
        devices: dict[tuple[str, str], MqttDevice] = {}
        for identity, planned in new_devices.items():
            with _row_errors(self, planned.number):
                device, password = mqtt_device_create(
                    property=planned.property,
                    actor=run.actor,
                    name=planned.key,
                    format=planned.format,
                    key=planned.key,
                )
            devices[identity] = device
            run.credentials.append(Credential(device.name, device.username, password))
            run.created["mqtt_devices"] += 1
        for item in items:
            with _row_errors(self, item.number):
                meter = meter_services.meter_register(
                    organisation=run.organisation,
                    actor=run.actor,
                    serial=item.serial,
                    utility=item.utility,
                    has_relay=item.has_relay,
                    unit=item.unit,
                    installed_at=item.installed_at,
                )
                if item.gateway is not None:
                    gateway = (
                        gateways[item.gateway] if isinstance(item.gateway, str) else item.gateway
                    )
                    meter_services.meter_connect(
                        meter=meter,
                        actor=run.actor,
                        gateway=gateway,
                        modbus_unit=item.modbus_unit,
                        profile=item.profile,
                    )
                elif item.device is not None:
                    device = devices[item.device] if isinstance(item.device, tuple) else item.device
                    meter_services.meter_connect_mqtt(
                        meter=meter,
                        actor=run.actor,
                        device=device,
                        channel=item.channel,
                        sml_key=item.sml_key,
                    )
            run.created["meters"] += 1


def opening_balance_key(account: Account) -> str:
    """One opening balance per account, whichever file or how often: the key is the account's."""
    return f"opening-balance:{account.uuid}"


@dataclass
class _BalanceRow:
    number: int
    account: Account
    amount: Decimal
    effective_at: datetime | None
    memo: str


class OpeningBalancesImport(ImportKind):
    name = "opening_balances"
    label = gettext_lazy("Opening balances")
    columns = (
        Column(
            "property_code",
            gettext_lazy("The code of the property of the unit."),
            example="RSA",
            required=True,
        ),
        Column(
            "unit_name",
            gettext_lazy("The unit whose open account gets the balance."),
            example="101",
            required=True,
        ),
        Column(
            "amount",
            gettext_lazy("The credit brought over, in the property's currency, such as 120.50."),
            example="100.00",
            required=True,
        ),
        Column(
            "tenant",
            gettext_lazy(
                "Optional check: the tenant's email or phone; the row is refused if the account "
                "is someone else's."
            ),
            example="li.wei@example.com",
        ),
        Column(
            "effective_at",
            gettext_lazy("When the balance was taken over, not before move-in (default now)."),
        ),
        Column(
            "memo",
            gettext_lazy("A note kept on the ledger transaction."),
            example="Balance from the previous system",
        ),
    )

    def validate(self, run, rows):
        keys = {
            (source.values.get("property_code", "").upper(), source.values.get("unit_name", ""))
            for source in rows
        }
        units = run.units_by_key(key for key in keys if all(key))
        properties = run.properties_by_code(code for code, _name in keys)
        accounts = {
            account.unit_id: account
            for account in Account.objects.for_scope(run.scope)
            .filter(unit__in=units.values(), status=Account.Status.OPEN)
            .select_related("tenant", "wallet", "unit__property")
        }
        posted = set(
            LedgerTransaction.objects.filter(
                idempotency_key__in=[opening_balance_key(account) for account in accounts.values()]
            ).values_list("idempotency_key", flat=True)
        )
        seen = _Seen()
        plan = []
        limit = Decimal(10) ** (AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES)
        for source in rows:
            row = _Row(source, run.errors)
            code = row.code("property_code")
            name = row.text("unit_name", required=True)
            amount = row.decimal("amount", required=True)
            account = None
            if code and name:
                unit = units.get((code, name))
                if code not in properties:
                    _unknown_property(row, code)
                elif unit is None:
                    _unknown_unit(row, code, name)
                else:
                    account = accounts.get(unit.pk)
                    if account is None:
                        row.error("unit_name", _("This unit has no open account."))
            if account is not None:
                if opening_balance_key(account) in posted:
                    row.error("unit_name", _("This account has its opening balance already."))
                seen.check(row, "unit_name", account.pk, _("This account is on row %(row)s too."))
                self._check_tenant(row, account)
                currency = account.wallet.currency
                if amount is not None:
                    if amount <= 0:
                        row.error("amount", _("Enter an amount above zero."))
                    elif amount >= limit:
                        row.error("amount", _("This amount is too large."))
                    elif not is_whole_minor_units(amount, currency):
                        row.error(
                            "amount",
                            _("Enter a whole number of %(currency)s minor units, such as 120.50.")
                            % {"currency": currency},
                        )
            effective_at = None
            if account is not None:
                effective_at = row.moment("effective_at", account.unit.property.zone)
                if effective_at is not None and effective_at < account.opened_at:
                    row.error("effective_at", _("The account opened after this date."))
            if row.ok and account is not None:
                memo = row.text("memo")
                plan.append(_BalanceRow(row.number, account, amount, effective_at, memo))
        return plan

    @staticmethod
    def _check_tenant(row: _Row, account: Account) -> None:
        tenant = row.text("tenant")
        if not tenant:
            return
        matches = tenant.lower() == account.tenant.email.lower() or (
            _phone_key(tenant) and _phone_key(tenant) == _phone_key(account.tenant.phone)
        )
        if not matches:
            row.error("tenant", _("The unit's open account is another tenant's."))

    def write(self, run, plan):
        books: dict[int, LedgerAccount] = {}
        for item in plan:
            account = item.account
            prop = account.unit.property
            with _row_errors(self, item.number):
                if prop.pk not in books:
                    books[prop.pk] = book_account(property=prop, kind=OPENING_BALANCE_BOOK)
                memo = item.memo or _("Opening balance imported from %(file)s") % {
                    "file": run.file_name
                }
                posted = transaction_post(
                    property=prop,
                    kind=LedgerTransaction.Kind.ADJUSTMENT,
                    entries=[
                        Entry(account.wallet, item.amount),
                        Entry(books[prop.pk], -item.amount),
                    ],
                    idempotency_key=opening_balance_key(account),
                    actor=run.actor,
                    memo=memo,
                    effective_at=item.effective_at,
                )
                if not posted.created:
                    raise ValidationError(
                        {"unit_name": _("This account has its opening balance already.")}
                    )
                audit_record(
                    organisation_id=prop.organisation_id,
                    property_id=prop.pk,
                    actor=run.actor,
                    action="account.opening_balance",
                    instance=account,
                    after={
                        "amount": str(item.amount),
                        "currency": account.wallet.currency,
                        "transaction": str(posted.transaction.uuid),
                        "import": run.digest,
                    },
                    reason=memo,
                )
            run.created["opening_balances"] += 1


KINDS: dict[str, ImportKind] = {
    kind.name: kind
    for kind in (
        PropertiesImport(),
        UnitsImport(),
        TenantsImport(),
        MetersImport(),
        OpeningBalancesImport(),
    )
}


@contextmanager
def _row_errors(kind: ImportKind, number: int) -> Iterator[None]:
    """Turn what a service refuses while writing a row into that row's error, which rejects the
    whole import."""
    try:
        yield
    except ValidationError as error:
        details = error.message_dict if hasattr(error, "error_dict") else {"": error.messages}
        raise ImportRejected(
            [
                RowError(number, kind.column_of(key) if key else "", message)
                for key, messages in details.items()
                for message in messages
            ]
        ) from error
    except IntegrityError as error:
        message = _("This row conflicts with data saved meanwhile; check the file again.")
        raise ImportRejected([RowError(number, "", message)]) from error


# Running an import -------------------------------------------------------------------------------


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _header_problems(kind: ImportKind, header: list[str]) -> list[RowError]:
    problems = []
    known = set(kind.column_names)
    for name in header:
        if name and name not in known:
            problems.append(RowError(1, name, _("This column is not one of this import's.")))
    for column, count in Counter(name for name in header if name).items():
        if count > 1:
            problems.append(RowError(1, column, _("This column appears twice.")))
    for column in kind.columns:
        if column.required and column.name not in header:
            problems.append(RowError(1, column.name, _("This column is missing.")))
    return problems


def _run(
    *,
    scope: Scope,
    actor,
    kind: ImportKind,
    data: bytes,
    file_format: str,
    file_name: str,
    report: ImportReport,
) -> _Run:
    """Read, validate and write, inside the caller's transaction; raises ImportRejected."""
    # One import (or staff change) of an organisation at a time: the checks below then hold
    # until the writes are done, and a double-submitted commit finds the first one's rows. NO KEY,
    # so the organisation's other work (audit rows, top-ups) is not held up meanwhile.
    Organisation.objects.select_for_update(no_key=True).get(pk=scope.organisation_id)
    header, rows = read_table(data=data, file_format=file_format)
    report.rows = len(rows)
    report.columns = [name for name in header if name]
    report.preview = [
        (row.number, [row.values.get(name, "") for name in report.columns])
        for row in rows[:PREVIEW_ROWS]
    ]
    problems = _header_problems(kind, header)
    if problems:
        raise ImportRejected(problems)
    if not rows:
        raise ImportRejected([RowError(0, "", _("The file has no rows under its header."))])
    run = _Run(scope=scope, actor=actor, file_name=file_name, digest=file_digest(data))
    plan = kind.validate(run, rows)
    if run.errors:
        # By row, and within a row from left to right as the file has its columns.
        position = {name: index for index, name in enumerate(header)}
        raise ImportRejected(
            sorted(run.errors, key=lambda error: (error.row, position.get(error.column, -1)))
        )
    kind.write(run, plan)
    return run


class _Rehearsed(Exception):
    """Raised to roll back a dry run's rehearsal of the writes."""


def import_check(
    *, scope: Scope, actor, kind: str, data: bytes, file_format: str, file_name: str
) -> ImportReport:
    """The dry run: every row's problems, or (when there are none) what a commit would create.
    Nothing is kept."""
    report = ImportReport(kind=kind, rows=0)
    try:
        with transaction.atomic():
            run = _run(
                scope=scope,
                actor=actor,
                kind=KINDS[kind],
                data=data,
                file_format=file_format,
                file_name=file_name,
                report=report,
            )
            report.created = run.created
            raise _Rehearsed
    except _Rehearsed:
        pass
    except ImportRejected as rejected:
        report.errors = rejected.errors
    return report


@transaction.atomic
def import_commit(
    *, scope: Scope, actor, kind: str, data: bytes, file_format: str, file_name: str
) -> ImportReport:
    """Validate again and write every row in this one transaction; ImportRejected, with nothing
    written, at the first problem."""
    report = ImportReport(kind=kind, rows=0)
    try:
        run = _run(
            scope=scope,
            actor=actor,
            kind=KINDS[kind],
            data=data,
            file_format=file_format,
            file_name=file_name,
            report=report,
        )
    except ImportRejected as rejected:
        report.errors = rejected.errors
        rejected.report = report
        raise
    report.created = run.created
    report.credentials = run.credentials
    audit_record(
        organisation_id=scope.organisation_id,
        actor=actor,
        action="import.commit",
        instance=scope.organisation,
        after={
            "kind": kind,
            "file": file_name,
            "sha256": run.digest,
            "rows": report.rows,
            "created": dict(run.created),
        },
    )
    return report


# Templates ---------------------------------------------------------------------------------------


def template_csv(kind: str) -> bytes:
    """A CSV with the header row and an example row, with a BOM so Excel reads it as UTF-8."""
    spec = KINDS[kind]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(spec.column_names)
    writer.writerows(spec.examples())
    return buffer.getvalue().encode("utf-8-sig")


def template_xlsx(kind: str) -> bytes:
    """A workbook whose first sheet has the header and an example row (every cell text, so Excel
    keeps leading zeros and codes as typed), and a second sheet describing the columns."""
    spec = KINDS[kind]
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = spec.name
    sheet.append(spec.column_names)
    for example in spec.examples():
        sheet.append(example)
    for row in sheet.iter_rows():
        for cell in row:
            cell.number_format = "@"
    for column_cells in sheet.columns:
        width = max(len(str(cell.value or "")) for cell in column_cells)
        sheet.column_dimensions[column_cells[0].column_letter].width = max(12, width + 2)
    sheet.freeze_panes = "A2"
    help_sheet = workbook.create_sheet(_("Columns"))
    help_sheet.append([_("Column"), _("Required"), _("What it holds")])
    for column in spec.columns:
        help_sheet.append(
            [column.name, _("yes") if column.required else _("no"), str(column.description)]
        )
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


TEMPLATE_WRITERS: dict[str, Callable[[str], bytes]] = {"csv": template_csv, "xlsx": template_xlsx}
TEMPLATE_CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def kind_choices() -> list[tuple[str, Any]]:
    return [(kind.name, kind.label) for kind in KINDS.values()]


def created_summary(created: Counter) -> list[tuple[Any, int]]:
    """What an import created, in words, for the result page."""
    labels = {
        "properties": gettext_lazy("Properties"),
        "units": gettext_lazy("Units"),
        "tenants": gettext_lazy("Tenants"),
        "accounts": gettext_lazy("Accounts opened"),
        "gateways": gettext_lazy("Gateways"),
        "mqtt_devices": gettext_lazy("MQTT devices"),
        "meters": gettext_lazy("Meters"),
        "opening_balances": gettext_lazy("Opening balances"),
    }
    return [(labels[name], count) for name, count in created.items() if count]
