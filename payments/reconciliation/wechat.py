"""WeChat Pay's trade bill (交易账单, API v3 `tradebill`, type ALL): a header row, one row per
payment (交易状态 SUCCESS) or refund (REFUND), then a summary header (总交易单数, ...) and the
summary row. Every value is prefixed with a backtick so spreadsheets keep long numbers as text.
Amounts are in yuan; 手续费 (the fee) to five places; times in China Standard Time.
"""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils.translation import gettext as _

from payments.reconciliation.lines import (
    Columns,
    FileRejected,
    Line,
    LineKind,
    Parsed,
    Record,
    RowError,
    RowReader,
    amount,
    currency_code,
    local_datetime,
    locate,
    records,
    whole_minor_units,
)

ZONE = "Asia/Shanghai"
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S",)
REQUIRED = {
    "time": ["交易时间"],
    "transaction_id": ["微信支付订单号", "微信订单号"],
    "reference": ["商户订单号"],
    "status": ["交易状态"],
    "currency": ["货币种类"],
    "settled": ["应结订单金额"],
    "refund_id": ["微信退款单号"],
    "refund_reference": ["商户退款单号"],
    "refund": ["退款金额"],
    "fee": ["手续费"],
}
OPTIONAL = {
    "mch_id": ["商户号"],
    "trade_type": ["交易类型"],
    "refund_status": ["退款状态"],
    "description": ["商品名称"],
    "rate": ["费率"],
    "ordered": ["订单金额"],
}
LABELS = {name: aliases[0] for name, aliases in {**REQUIRED, **OPTIONAL}.items()}
SUMMARY_FIRST = "总交易单数"
SUMMARY = {
    "count": ["总交易单数"],
    "settled": ["应结订单总金额"],
    "refund": ["退款总金额"],
    "fee": ["手续费总金额"],
}


def cell(value: str) -> str:
    value = value.strip()
    return value[1:] if value.startswith("`") else value


def parse(text: str) -> Parsed:
    rows = records(text)
    header = next((record for record in rows if any(c.strip() for c in record.cells)), None)
    if header is None:
        raise FileRejected([RowError(0, "", _("The file is empty."))])
    columns = locate(
        [cell(value) for value in header.cells],
        row=header.row,
        required=REQUIRED,
        optional=OPTIONAL,
        format_label=_("WeChat Pay trade bill"),
    )
    zone = ZoneInfo(ZONE)
    parsed = Parsed(lines=[], errors=[], zone=ZONE)
    details = 0
    summary: tuple[Record, Record | None] | None = None
    for record in rows:
        record = Record(record.row, [cell(value) for value in record.cells])
        if not any(record.cells):
            continue
        if record.cells[0] == SUMMARY_FIRST:
            values = next(rows, None)
            if values is not None:
                values = Record(values.row, [cell(value) for value in values.cells])
            summary = (record, values)
            break
        details += 1
        row = RowReader(record, columns, LABELS)
        line = _line(row, zone)
        if row.problems:
            parsed.errors += row.problems
        else:
            parsed.lines.append(line)
    if summary is None:
        parsed.errors.append(
            RowError(
                0,
                "",
                _("The summary rows at the end are missing: the file may have been cut short."),
            )
        )
    elif not parsed.errors:
        parsed.errors += _summary_problems(*summary, details=details, lines=parsed.lines)
    return parsed


def _line(row: RowReader, zone: ZoneInfo) -> Line | None:
    moment = row.read("time", local_datetime, zone, TIME_FORMATS)
    currency = row.read("currency", currency_code)
    fee = row.read("fee", amount)
    status = row.text("status").upper()
    transaction_id = row.text("transaction_id")
    if not transaction_id:
        row.problem("transaction_id", _("The line has no WeChat Pay transaction id."))
    if status == "REFUND":
        kind, field = LineKind.REFUND, "refund"
    elif status == "SUCCESS":
        kind, field = LineKind.PAYMENT, "settled"
    else:
        kind, field = LineKind.OTHER, "settled"
    value = row.read(field, amount)
    if currency and value is not None:
        row.read(field, lambda text: whole_minor_units(value, currency))
    if row.problems:
        return None
    common = {
        "row": row.row,
        "kind": kind,
        "fee": fee,
        "currency": currency,
        "occurred_at": moment,
        "transaction_id": transaction_id,
        "reference": row.text("reference"),
        "description": row.text("description")[:300],
        "raw": row.raw(),
    }
    if kind == LineKind.REFUND:
        refund_id = row.text("refund_id") or row.text("refund_reference")
        return Line(
            **common,
            identity=f"refund:{refund_id}",
            gross=-value,
            refund_id=row.text("refund_id"),
            refund_reference=row.text("refund_reference"),
        )
    return Line(**common, identity=f"{status.lower() or 'payment'}:{transaction_id}", gross=value)


def _summary_problems(
    head: Record, values: Record | None, *, details: int, lines: list[Line]
) -> list[RowError]:
    if values is None:
        return [RowError(head.row, "", _("The summary row under its header is missing."))]
    try:
        columns = locate(
            head.cells, row=head.row, required=SUMMARY, format_label=_("WeChat Pay trade bill")
        )
    except FileRejected as rejected:
        return rejected.errors
    problems = []
    payments = [line for line in lines if line.kind != LineKind.REFUND]
    refunds = [line for line in lines if line.kind == LineKind.REFUND]
    totals = {
        "count": Decimal(details),
        "settled": sum((line.gross for line in payments), Decimal(0)),
        "refund": -sum((line.gross for line in refunds), Decimal(0)),
        "fee": sum((line.fee for line in lines), Decimal(0)),
    }
    for name, total in totals.items():
        stated = _stated(columns, values, name)
        if stated is None or stated != total:
            problems.append(
                RowError(
                    values.row,
                    SUMMARY[name][0],
                    _(
                        "The summary says %(stated)s but the lines add up to %(total)s: the file "
                        "is incomplete or was edited."
                    )
                    % {"stated": columns.get(values.cells, name) or "—", "total": total},
                )
            )
    return problems


def _stated(columns: Columns, values: Record, name: str) -> Decimal | None:
    try:
        return amount(columns.get(values.cells, name))
    except ValueError:
        return None
