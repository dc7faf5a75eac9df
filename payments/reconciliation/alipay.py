"""Alipay's account bill (账务明细), as the merchant platform exports it: comment lines starting
with "#" above the header (the account, and the period: 起始日期 … 终止日期) and below the lines
(收入合计 and 支出合计, the count and total of money in and out), and values padded with a tab.
Income and expense are in separate columns (收入金额, 支出金额), in yuan; times in China Standard
Time. Alipay's service fees (收费) are lines of their own, tied to the payment by its numbers.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils.translation import gettext as _

from payments.reconciliation.lines import (
    FileRejected,
    Line,
    LineKind,
    Parsed,
    Record,
    RowError,
    RowReader,
    amount,
    header_key,
    local_datetime,
    locate,
    records,
    whole_minor_units,
)

ZONE = "Asia/Shanghai"
CURRENCY = "CNY"
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M")
REQUIRED = {
    "log_id": ["账务流水号"],
    "trade_no": ["业务流水号"],
    "reference": ["商户订单号"],
    "time": ["发生时间"],
    "income": ["收入金额"],
    "expense": ["支出金额"],
    "type": ["业务类型"],
}
OPTIONAL = {
    "description": ["商品名称"],
    "counterparty": ["对方账号"],
    "balance": ["账户余额"],
    "memo": ["备注"],
    "biz_description": ["业务描述"],
    "base_order": ["业务基础订单号"],
}
LABELS = {name: aliases[0] for name, aliases in {**REQUIRED, **OPTIONAL}.items()}
# The comment lines' colons and commas are full-width, as Alipay writes them (or plain).
_PERIOD = re.compile(
    r"起始日期[：:]\s*\[(?P<start>[^\]]+)\]\s*终止日期[：:]\s*\[(?P<end>[^\]]+)\]"  # noqa: RUF001
)
_TOTAL = re.compile(
    r"(?P<side>支出|收入)合计[：:]\s*(?P<count>\d+)\s*笔[，,]\s*共\s*(?P<sum>[-+\d.,]+)\s*元"  # noqa: RUF001
)
_PERIOD_FORMAT = "%Y年%m月%d日 %H:%M:%S"


def column_key(name: str) -> str:
    """A column name without the unit Alipay puts after it in parentheses, full-width or not:
    收入金额 whatever follows it."""
    return header_key(re.sub(r"[\uff08(][^\uff09)]*[\uff09)]\s*$", "", name.strip()))


def cell(value: str) -> str:
    return value.strip().strip("\t").strip()


def kind_of(business_type: str, description: str, gross: Decimal) -> LineKind:
    words = f"{business_type} {description}"
    if "退款" in words:
        return LineKind.REFUND
    if any(word in words for word in ("收费", "服务费", "手续费")):
        return LineKind.FEE
    if "提现" in words:
        return LineKind.PAYOUT
    if gross > 0 and any(word in words for word in ("支付", "交易", "收款")):
        return LineKind.PAYMENT
    return LineKind.OTHER


def parse(text: str) -> Parsed:
    zone = ZoneInfo(ZONE)
    parsed = Parsed(lines=[], errors=[], zone=ZONE)
    comments: list[Record] = []
    header: Record | None = None
    body: list[Record] = []
    for record in records(text):
        cells = [cell(value) for value in record.cells]
        if not any(cells):
            continue
        if cells[0].startswith("#"):
            comments.append(Record(record.row, [",".join(c for c in cells if c)]))
        elif header is None:
            header = Record(record.row, cells)
        else:
            body.append(Record(record.row, cells))
    if header is None:
        raise FileRejected([RowError(0, "", _("The file has no header row."))])
    columns = locate(
        header.cells,
        row=header.row,
        required=REQUIRED,
        optional=OPTIONAL,
        format_label=_("Alipay account bill"),
        key=column_key,
    )
    for record in body:
        row = RowReader(record, columns, LABELS)
        line = _line(row, zone)
        if row.problems:
            parsed.errors += row.problems
        else:
            parsed.lines.append(line)
    parsed.period = _period(comments, zone, parsed.errors)
    if not parsed.errors:
        parsed.errors += _total_problems(comments, parsed.lines)
    return parsed


def _line(row: RowReader, zone: ZoneInfo) -> Line | None:
    moment = row.read("time", local_datetime, zone, TIME_FORMATS)
    income = row.read("income", lambda text: amount(text or "0"))
    expense = row.read("expense", lambda text: abs(amount(text or "0")))
    identity = row.text("log_id")
    if not identity:
        row.problem("log_id", _("The line has no account log number."))
    for name, value in (("income", income), ("expense", expense)):
        if value is not None:
            row.read(name, lambda text, value=value: whole_minor_units(value, CURRENCY))
    if income is not None and income < 0:
        row.problem("income", _("Money in cannot be negative."))
    if row.problems:
        return None
    gross = income - expense
    kind = kind_of(row.text("type"), row.text("biz_description"), gross)
    reference = row.text("reference")
    common = {
        "row": row.row,
        "identity": identity,
        "kind": kind,
        "currency": CURRENCY,
        "occurred_at": moment,
        "transaction_id": row.text("trade_no") or row.text("base_order"),
        "reference": reference,
        "description": (row.text("description") or row.text("memo"))[:300],
        "raw": row.raw(),
    }
    if kind == LineKind.FEE:
        return Line(**common, gross=Decimal(0), fee=-gross)
    if kind == LineKind.REFUND:
        return Line(**common, gross=gross, fee=Decimal(0), refund_reference=reference)
    return Line(**common, gross=gross, fee=Decimal(0))


def _period(
    comments: list[Record], zone: ZoneInfo, errors: list[RowError]
) -> tuple[datetime, datetime] | None:
    for comment in comments:
        found = _PERIOD.search(comment.cells[0])
        if not found:
            continue
        try:
            start = datetime.strptime(found["start"].strip(), _PERIOD_FORMAT).replace(tzinfo=zone)
            end = datetime.strptime(found["end"].strip(), _PERIOD_FORMAT).replace(tzinfo=zone)
        except ValueError:
            errors.append(RowError(comment.row, "", _("The period in this line cannot be read.")))
            return None
        return start, end
    return None


def _total_problems(comments: list[Record], lines: list[Line]) -> list[RowError]:
    money_in = [line.gross for line in lines if line.gross > 0]
    money_out = [-line.net for line in lines if line.net < 0]
    actual = {
        "收入": (len(money_in), sum(money_in, Decimal(0))),
        "支出": (len(money_out), sum(money_out, Decimal(0))),
    }
    problems = []
    for comment in comments:
        found = _TOTAL.search(comment.cells[0])
        if not found:
            continue
        count, total = actual[found["side"]]
        try:
            stated = abs(amount(found["sum"]))
        except ValueError:
            stated = None
        if int(found["count"]) != count or stated != total:
            problems.append(
                RowError(
                    comment.row,
                    "",
                    _(
                        "This total says %(stated_count)s lines of %(stated)s, but the file has "
                        "%(count)s lines of %(total)s: the file is incomplete or was edited."
                    )
                    % {
                        "stated_count": found["count"],
                        "stated": stated,
                        "count": count,
                        "total": total,
                    },
                )
            )
    return problems
