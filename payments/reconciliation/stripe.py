"""Stripe's balance transactions export (Dashboard → Balances → Export, or the balance history
CSV): one line per movement of the Stripe balance, amounts in major units, times in UTC.

Columns used: id, Type, Source, Amount, Fee, Net, Currency, Created (UTC), and when present
Description, a PaymentIntent id column, and the metadata columns Stripe adds as
"<key> (metadata)": our checkout sets `reference`, our refunds `reference` and
`refund_reference`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

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
    currency_code,
    locate,
    records,
    whole_minor_units,
)

ZONE = "UTC"
REQUIRED = {
    "id": ["id"],
    "type": ["Type"],
    "source": ["Source"],
    "amount": ["Amount"],
    "fee": ["Fee"],
    "net": ["Net"],
    "currency": ["Currency"],
    "created": ["Created (UTC)", "Created date (UTC)"],
}
OPTIONAL = {
    "description": ["Description"],
    "payment_intent": ["PaymentIntent ID", "Payment Intent ID", "payment_intent_id"],
    "reference": ["reference (metadata)", "payment_metadata[reference]"],
    "refund_reference": ["refund_reference (metadata)", "refund_metadata[refund_reference]"],
}
LABELS = {name: aliases[0] for name, aliases in {**REQUIRED, **OPTIONAL}.items()}
KINDS = {
    "charge": LineKind.PAYMENT,
    "payment": LineKind.PAYMENT,
    "refund": LineKind.REFUND,
    "payment_refund": LineKind.REFUND,
    "payment_failure_refund": LineKind.REFUND,
    "payout": LineKind.PAYOUT,
    "payout_cancel": LineKind.PAYOUT,
    "payout_failure": LineKind.PAYOUT,
    "stripe_fee": LineKind.FEE,
    "application_fee": LineKind.FEE,
    "tax_fee": LineKind.FEE,
    "network_cost": LineKind.FEE,
}


def created_at(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadValue(
            _("“%(value)s” is not a date and time written like 2026-09-01 14:03.") % {"value": text}
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse(text: str) -> Parsed:
    rows = records(text)
    header = next(rows, None)
    if header is None:
        raise FileRejected([RowError(0, "", _("The file is empty."))])
    columns = locate(
        header.cells,
        row=header.row,
        required=REQUIRED,
        optional=OPTIONAL,
        format_label=_("Stripe balance transactions export"),
    )
    parsed = Parsed(lines=[], errors=[], zone=ZONE)
    for record in rows:
        row = RowReader(record, columns, LABELS)
        if row.blank():
            continue
        line = _line(row)
        if row.problems:
            parsed.errors += row.problems
        else:
            parsed.lines.append(line)
    return parsed


def _line(row: RowReader) -> Line | None:
    identity = row.text("id")
    if not identity:
        row.problem("id", _("The line has no id."))
    currency = row.read("currency", currency_code)
    gross = row.read("amount", amount)
    fee = row.read("fee", amount)
    net = row.read("net", amount)
    moment = row.read("created", created_at)
    if currency and gross is not None:
        row.read("amount", lambda text: whole_minor_units(gross, currency))
    if None not in (gross, fee, net) and gross - fee != net:
        row.problem("net", _("Net is not Amount less Fee."))
    if row.problems:
        return None
    kind = KINDS.get(row.text("type").lower(), LineKind.OTHER)
    common = {
        "row": row.row,
        "identity": identity,
        "kind": kind,
        "currency": currency,
        "occurred_at": moment,
        "reference": row.text("reference"),
        "description": row.text("description")[:300],
        "raw": row.raw(),
    }
    if kind == LineKind.FEE:
        # Stripe puts its own charges in Amount; normalised, they are the line's fee.
        return Line(**common, gross=Decimal(0), fee=fee - gross)
    if kind == LineKind.REFUND:
        return Line(
            **common,
            gross=gross,
            fee=fee,
            refund_id=row.text("source"),
            transaction_id=row.text("payment_intent"),
            refund_reference=row.text("refund_reference"),
        )
    return Line(
        **common,
        gross=gross,
        fee=fee,
        transaction_id=row.text("payment_intent") or row.text("source"),
    )
