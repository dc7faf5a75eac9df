"""A bank statement CSV, read through the organisation's column mapping: which column holds the
date, the amount (or money in and money out in two), the reference and the description, and how
the bank writes them (encoding, delimiter, date format, decimal separator, lines above the
header). Money in is a payment line; money out is "other".

A line is the same line in every statement that has it: by the bank's transaction id when the
mapping names that column, else by its date, amount, reference, description and running balance.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils.translation import gettext as _

from payments.reconciliation.lines import (
    BadValue,
    FileRejected,
    Line,
    LineKind,
    Parsed,
    RowError,
    RowReader,
    amount,
    locate,
    records,
    whole_minor_units,
)

# The date formats a mapping may name, as strptime patterns; the labels are examples.
DATE_FORMATS = {
    "%Y-%m-%d": "2026-09-30",
    "%d/%m/%Y": "30/09/2026",
    "%m/%d/%Y": "09/30/2026",
    "%d.%m.%Y": "30.09.2026",
    "%Y/%m/%d": "2026/09/30",
    "%Y%m%d": "20260930",
    "%d-%m-%Y": "30-09-2026",
    "%Y-%m-%d %H:%M:%S": "2026-09-30 14:03:05",
    "%d/%m/%Y %H:%M": "30/09/2026 14:03",
}


@dataclass(frozen=True)
class BankMapping:
    currency: str
    time_zone: str
    date_column: str
    date_format: str
    amount_column: str
    reference_column: str
    debit_column: str = ""
    description_column: str = ""
    id_column: str = ""
    balance_column: str = ""
    delimiter: str = ","
    skip_rows: int = 0
    decimal_separator: str = "."


def _date(text: str, pattern: str, zone: ZoneInfo) -> datetime:
    try:
        return datetime.strptime(text, pattern).replace(tzinfo=zone)
    except ValueError:
        raise BadValue(
            _("“%(value)s” is not a date written like %(example)s.")
            % {"value": text, "example": DATE_FORMATS.get(pattern, pattern)}
        ) from None


def parse(text: str, mapping: BankMapping) -> Parsed:
    zone = ZoneInfo(mapping.time_zone)
    rows = records(text, delimiter=mapping.delimiter)
    for _skipped in range(mapping.skip_rows):
        next(rows, None)
    header = next((record for record in rows if any(c.strip() for c in record.cells)), None)
    if header is None:
        raise FileRejected([RowError(0, "", _("The file has no header row."))])
    wanted = {
        "date": mapping.date_column,
        "amount": mapping.amount_column,
        "reference": mapping.reference_column,
        "debit": mapping.debit_column,
        "description": mapping.description_column,
        "id": mapping.id_column,
        "balance": mapping.balance_column,
    }
    named = {key: [column] for key, column in wanted.items() if column}
    required = {key: named[key] for key in ("date", "amount", "reference")}
    optional = {key: value for key, value in named.items() if key not in required}
    columns = locate(
        header.cells,
        row=header.row,
        required=required,
        optional=optional,
        format_label=_("bank statement with the columns set up for it"),
    )
    labels = {key: column for key, column in wanted.items() if column}
    parsed = Parsed(lines=[], errors=[], zone=mapping.time_zone)
    for record in rows:
        row = RowReader(record, columns, labels)
        if row.blank():
            continue
        line = _line(row, mapping, zone)
        if row.problems:
            parsed.errors += row.problems
        else:
            parsed.lines.append(line)
    return parsed


def _money(text: str, separator: str) -> Decimal:
    return amount(text or "0", decimal_separator=separator)


def _line(row: RowReader, mapping: BankMapping, zone: ZoneInfo) -> Line | None:
    separator = mapping.decimal_separator
    moment = row.read("date", _date, mapping.date_format, zone)
    value = row.read("amount", _money, separator)
    if mapping.debit_column and value is not None:
        debit = row.read("debit", _money, separator)
        value = None if debit is None else value - abs(debit)
    if value is not None:
        row.read("amount", lambda text: whole_minor_units(value, mapping.currency))
        if value == 0:
            row.problem("amount", _("The line moves no money."))
    if mapping.balance_column:
        row.read("balance", _money, separator)
    if row.problems:
        return None
    reference = " ".join(row.text("reference").split())
    description = " ".join(row.text("description").split())
    identity = row.text("id")
    if not identity:
        fingerprint = "|".join(
            [row.text("date"), str(value), reference, description, row.text("balance")]
        )
        identity = "line:" + hashlib.sha256(fingerprint.encode()).hexdigest()
    return Line(
        row=row.row,
        identity=identity[:200],
        kind=LineKind.PAYMENT if value > 0 else LineKind.OTHER,
        gross=value,
        fee=Decimal(0),
        currency=mapping.currency,
        occurred_at=moment,
        reference=reference[:200],
        description=description[:300],
        raw=row.raw(),
    )
