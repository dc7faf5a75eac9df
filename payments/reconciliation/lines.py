"""What every settlement file becomes: normalised lines, or the problems found, by row.

A line is signed as money into our balance at the source: a payment is positive; a refund, a
payout and money out are negative. `fee` is what the source charged for the line (negative when
it gave a fee back) and `net` is gross less fee. Fee lines (a provider's charges on their own
lines) have a gross of zero and the charge as their fee.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from zoneinfo import ZoneInfo

from django.utils.translation import gettext as _

from prepaid.money import CurrencyError, is_whole_minor_units, validate_currency

# A file's lines stay in memory between the dry run and the commit, so files are bounded.
MAX_BYTES = 5_000_000
MAX_LINES = 50_000


class LineKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"
    FEE = "fee"
    PAYOUT = "payout"
    OTHER = "other"


@dataclass(frozen=True)
class RowError:
    # The line of the file, counting from 1; 0 for the file as a whole.
    row: int
    column: str
    message: str


@dataclass(frozen=True)
class Line:
    row: int
    identity: str
    kind: LineKind
    gross: Decimal
    fee: Decimal
    currency: str
    occurred_at: datetime
    # The provider's id of the payment (PaymentIntent, transaction_id, trade_no).
    transaction_id: str = ""
    refund_id: str = ""
    # Our reference for the payment (out_trade_no, metadata) and for the refund.
    reference: str = ""
    refund_reference: str = ""
    description: str = ""
    raw: Mapping[str, str] = field(default_factory=dict)

    @property
    def net(self) -> Decimal:
        return self.gross - self.fee


@dataclass
class Parsed:
    lines: list[Line]
    errors: list[RowError]
    # The encoding the file was read in, and the time zone of its times.
    encoding: str = ""
    zone: str = "UTC"
    # The instants the file says it covers, [start, end), or None when it does not say.
    period: tuple[datetime, datetime] | None = None


class FileRejected(Exception):
    """The file cannot be read at all (its encoding, its format): nothing of it is kept."""

    def __init__(self, errors: Sequence[RowError]):
        super().__init__(f"{len(errors)} problem(s)")
        self.errors = list(errors)


# Text ---------------------------------------------------------------------------------------------

ENCODINGS = {"utf-8": "utf-8-sig", "gbk": "gb18030"}


def _bad_line(data: bytes, error: UnicodeDecodeError) -> int:
    return data.count(b"\n", 0, error.start) + 1


def decode(data: bytes, encoding: str) -> tuple[str, str]:
    """The file's text and the encoding it was read in. `encoding` is "auto" (UTF-8, else GBK),
    "utf-8" or "gbk" (read as GB 18030, which GBK is a part of)."""
    tried = ["utf-8", "gbk"] if encoding == "auto" else [encoding]
    first_error: tuple[str, UnicodeDecodeError] | None = None
    for name in tried:
        try:
            return data.decode(ENCODINGS[name]), name
        except UnicodeDecodeError as error:
            first_error = first_error or (name, error)
    name, error = first_error
    if encoding == "auto":
        message = _("This line is neither UTF-8 nor GBK text: is it a CSV file?")
    elif name == "utf-8":
        message = _(
            "This line is not UTF-8 text. Chinese bill files are often GBK: choose GBK, or "
            "let the encoding be detected."
        )
    else:
        message = _("This line is not GBK text: choose UTF-8, or let the encoding be detected.")
    raise FileRejected([RowError(_bad_line(data, error), "", message)])


@dataclass(frozen=True)
class Record:
    # The file line the record ends on (a quoted value may span lines).
    row: int
    cells: list[str]


def records(text: str, *, delimiter: str = ",") -> Iterator[Record]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for cells in reader:
            yield Record(reader.line_num, cells)
    except csv.Error as error:
        raise FileRejected(
            [RowError(reader.line_num, "", _("This line is not valid CSV: %s") % error)]
        ) from error


def header_key(name: str) -> str:
    """A column name compared without case, spacing or a UTF-8 byte-order mark."""
    return re.sub(r"\s+", " ", name.replace("\ufeff", "")).strip().lower()


@dataclass(frozen=True)
class Columns:
    """Where each wanted field is in a header row."""

    positions: dict[str, int]

    def get(self, cells: Sequence[str], name: str) -> str:
        index = self.positions.get(name)
        return cells[index] if index is not None and index < len(cells) else ""

    def __contains__(self, name: str) -> bool:
        return name in self.positions


def locate(
    header: Sequence[str],
    *,
    row: int,
    required: Mapping[str, Iterable[str]],
    optional: Mapping[str, Iterable[str]] | None = None,
    format_label: str,
    key=header_key,
) -> Columns:
    """Each field's column, found by any of its names; FileRejected when the header is not
    this format's, or lacks some of its columns."""
    keys = [key(name) for name in header]
    positions: dict[str, int] = {}
    problems: list[RowError] = []
    for name, count in _counts(k for k in keys if k).items():
        if count > 1:
            problems.append(RowError(row, name, _("This column appears twice.")))
    wanted = {**(optional or {}), **required}
    for name, aliases in wanted.items():
        for alias in aliases:
            if key(alias) in keys:
                positions[name] = keys.index(key(alias))
                break
    missing = [next(iter(aliases)) for name, aliases in required.items() if name not in positions]
    if len(missing) * 2 > len(required):
        raise FileRejected(
            [
                RowError(
                    row,
                    "",
                    _(
                        "This is not a %(format)s: its header row lacks most of that format's "
                        "columns (%(columns)s). Check the file, the format chosen and, when the "
                        "column names look garbled, the encoding."
                    )
                    % {"format": format_label, "columns": ", ".join(missing)},
                )
            ]
        )
    problems += [RowError(row, name, _("This column is missing.")) for name in missing]
    if problems:
        raise FileRejected(problems)
    return Columns(positions)


def _counts(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


# Values -------------------------------------------------------------------------------------------


class BadValue(ValueError):
    """A cell that cannot be read; the message says why, for the row's error."""


_PLAIN = re.compile(r"[+-]?\d+(\.\d+)?")


def amount(text: str, *, decimal_separator: str = ".") -> Decimal:
    """A decimal amount as files write it: an optional sign, digits grouped or not, and the
    given decimal separator. Never a float."""
    value = text.strip().replace("\u00a0", "").replace(" ", "")
    grouping = "," if decimal_separator == "." else "."
    if value.startswith(("+", "-")):
        sign, value = value[0], value[1:]
    else:
        sign = ""
    grouped = re.fullmatch(rf"\d{{1,3}}(\{grouping}\d{{3}})+(\{decimal_separator}\d+)?", value)
    if grouped:
        value = value.replace(grouping, "")
    value = sign + value.replace(decimal_separator, ".")
    if not _PLAIN.fullmatch(value):
        raise BadValue(_("“%(value)s” is not an amount.") % {"value": text.strip()})
    try:
        return Decimal(value)
    except InvalidOperation:
        raise BadValue(_("“%(value)s” is not an amount.") % {"value": text.strip()}) from None


def whole_minor_units(value: Decimal, currency: str) -> Decimal:
    if not is_whole_minor_units(value, currency):
        raise BadValue(
            _("%(amount)s is finer than a %(currency)s minor unit.")
            % {"amount": value, "currency": currency}
        )
    return value


def currency_code(text: str) -> str:
    code = text.strip().upper()
    try:
        return validate_currency(code)
    except CurrencyError:
        raise BadValue(
            _("“%(value)s” is not a currency code such as CNY or USD.") % {"value": text.strip()}
        ) from None


def local_datetime(text: str, zone: ZoneInfo, formats: Sequence[str]) -> datetime:
    value = text.strip()
    for pattern in formats:
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=zone)
        except ValueError:
            continue
    example = datetime(2026, 9, 1, 14, 3, 5, tzinfo=zone).strftime(formats[0])
    raise BadValue(
        _("“%(value)s” is not a date and time written like %(example)s.")
        % {"value": value, "example": example}
    )


def whole_days(moments: Iterable[datetime], zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """From the local midnight starting the first moment's day to the one after the last's."""
    days = [moment.astimezone(zone).date() for moment in moments]
    if not days:
        return None
    return midnight(min(days), zone), midnight(max(days) + timedelta(days=1), zone)


def midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def duplicates(lines: Sequence[Line]) -> list[RowError]:
    """A line whose identity an earlier line of the same file has."""
    first: dict[str, int] = {}
    problems = []
    for line in lines:
        if line.identity in first:
            problems.append(
                RowError(
                    line.row,
                    "",
                    _("This line repeats line %(row)d of the file.")
                    % {"row": first[line.identity]},
                )
            )
        else:
            first[line.identity] = line.row
    return problems


class RowReader:
    """One data row's cells by field, collecting each cell's problem instead of stopping at the
    first, so the error report lists them all."""

    def __init__(self, record: Record, columns: Columns, labels: Mapping[str, str]):
        self.record = record
        self.columns = columns
        self.labels = labels
        self.problems: list[RowError] = []

    @property
    def row(self) -> int:
        return self.record.row

    def text(self, name: str) -> str:
        return self.columns.get(self.record.cells, name).strip()

    def read(self, name: str, reader, *args):
        """`reader(cell text, *args)`, or None with the problem noted against the column."""
        try:
            return reader(self.text(name), *args)
        except BadValue as error:
            self.problem(name, str(error))
            return None

    def problem(self, name: str, message: str) -> None:
        self.problems.append(RowError(self.row, self.labels.get(name, name), message))

    def raw(self) -> dict[str, str]:
        cells = self.record.cells
        return {
            self.labels.get(name, name): cells[index].strip()
            for name, index in self.columns.positions.items()
            if index < len(cells)
        }

    def blank(self) -> bool:
        return not any(cell.strip() for cell in self.record.cells)
