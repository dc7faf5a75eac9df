"""Reading an uploaded settlement file of a chosen format: its encoding, its lines, its period,
and every problem by row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from payments.reconciliation import alipay, bank, stripe, wechat
from payments.reconciliation.lines import (
    MAX_BYTES,
    MAX_LINES,
    FileRejected,
    Parsed,
    RowError,
    decode,
    duplicates,
    header_key,
    whole_days,
)


@dataclass(frozen=True)
class Format:
    source: str
    label: Promise
    # The time zone the file's times are in; bank statements say theirs in the mapping.
    zone: str


FORMATS = {
    "stripe": Format("stripe", gettext_lazy("Stripe balance transactions export"), stripe.ZONE),
    "wechat": Format("wechat", gettext_lazy("WeChat Pay trade bill"), wechat.ZONE),
    "alipay": Format("alipay", gettext_lazy("Alipay account bill"), alipay.ZONE),
    "bank": Format("bank", gettext_lazy("bank statement"), ""),
}


def looks_like(text: str) -> str | None:
    """Which provider's format the start of a file looks like, if any."""
    start = text.lstrip("\ufeff").lstrip()[:2000]
    first = start.splitlines()[0] if start else ""
    if start.startswith("#") and "支付宝" in first:
        return "alipay"
    if "交易时间" in first and "商户订单号" in first:
        return "wechat"
    names = {header_key(name) for name in first.split(",")}
    if {"id", "type", "source", "amount", "fee", "net"} <= names:
        return "stripe"
    return None


def read(
    *, source: str, data: bytes, encoding: str, mapping: bank.BankMapping | None = None
) -> Parsed:
    """The file's lines, or its problems (in `errors`, by row), never both."""
    if len(data) > MAX_BYTES:
        return Parsed(
            lines=[],
            errors=[
                RowError(
                    0,
                    "",
                    _("The file is larger than %(size)d MB: import it in parts, a month at a time.")
                    % {"size": MAX_BYTES // 1_000_000},
                )
            ],
        )
    try:
        text, used = decode(data, encoding)
        parsers: dict[str, Callable[[str], Parsed]] = {
            "stripe": stripe.parse,
            "wechat": wechat.parse,
            "alipay": alipay.parse,
            "bank": lambda text: bank.parse(text, mapping),
        }
        parsed = parsers[source](text)
    except FileRejected as rejected:
        return Parsed(lines=[], errors=_with_hint(rejected.errors, source, data, encoding))
    parsed.encoding = used
    parsed.errors += duplicates(parsed.lines)
    if not parsed.errors and not parsed.lines:
        parsed.errors.append(RowError(0, "", _("The file has no lines under its header.")))
    if len(parsed.lines) > MAX_LINES:
        parsed.errors.append(
            RowError(
                0,
                "",
                _("The file has more than %(lines)d lines: import it in parts.")
                % {"lines": MAX_LINES},
            )
        )
    if parsed.errors:
        parsed.errors.sort(key=lambda error: error.row)
        parsed.lines = []
    return parsed


def _with_hint(errors: list[RowError], source: str, data: bytes, encoding: str) -> list[RowError]:
    """A file of another format says which one it looks like."""
    try:
        text = decode(data, encoding)[0]
    except FileRejected:
        return errors
    guess = looks_like(text)
    if guess is None or guess == source:
        return errors
    hint = _("The file looks like another format: choose “%(format)s” instead.") % {
        "format": FORMATS[guess].label
    }
    return [*errors, RowError(0, "", hint)]


def covered_period(
    parsed: Parsed, *, start: datetime | None = None, end: datetime | None = None
) -> tuple[datetime, datetime]:
    """The instants the file covers: as given, else as the file states, else the whole days (in
    the file's time zone) from its first line's to its last's."""
    stated = parsed.period or whole_days(
        (line.occurred_at for line in parsed.lines), ZoneInfo(parsed.zone)
    )
    return (start or stated[0], end or stated[1])
