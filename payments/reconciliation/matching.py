"""Matching a file's lines against what we recorded, and what we recorded against the file.

Each line finds our payment by the provider's transaction id or our reference, our refund by
the provider's refund id or our refund reference (else the payment's refund of the same amount),
and, for bank statements, our bank top-up by the reference the counter typed. Then each of our
credited payments, settled refunds and bank top-ups inside the file's period that no line (of
this file or another of the same source) claims is missing at the provider.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models import Q
from django.db.models.functions import Trim, Upper

from billing.models import Receipt
from payments.models import (
    RECONCILIATION_DETAILS,
    PaymentIntent,
    ReconciliationItem,
    Refund,
    SettlementLine,
    SettlementProfile,
    SettlementSource,
)
from payments.reconciliation.lines import Line, LineKind
from prepaid.money import quantize

Status = ReconciliationItem.Status

DETAILS = RECONCILIATION_DETAILS


@dataclass
class Outcome:
    status: str
    detail: str
    currency: str
    occurred_at: datetime
    line: Line | None = None
    intent_id: int | None = None
    refund_id: int | None = None
    receipt_id: int | None = None
    property_id: int | None = None
    provider_amount: Decimal | None = None
    our_amount: Decimal | None = None
    fee: Decimal | None = None
    expected_fee: Decimal | None = None

    def key(self) -> tuple[str, int] | None:
        """What a missing-at-the-provider item is about: it is kept once per import."""
        if self.line is not None:
            return None
        if self.refund_id is not None:
            return ("refund", self.refund_id)
        if self.receipt_id is not None:
            return ("receipt", self.receipt_id)
        return ("intent", self.intent_id)


@dataclass
class _Claims:
    intents: set[int] = field(default_factory=set)
    refunds: set[int] = field(default_factory=set)
    receipts: set[int] = field(default_factory=set)


def expected_fee(profile: SettlementProfile | None, gross: Decimal, currency: str):
    """The fee the organisation expects on a payment, or None when it set no expectation."""
    if profile is None or (profile.fee_percent is None and profile.fee_fixed is None):
        return None
    percent = profile.fee_percent or Decimal(0)
    return quantize(gross * percent / 100 + (profile.fee_fixed or Decimal(0)), currency)


def stored_line(line: SettlementLine) -> Line:
    return Line(
        row=line.row,
        identity=line.identity,
        kind=LineKind(line.kind),
        gross=line.gross,
        fee=line.fee,
        currency=line.currency,
        occurred_at=line.occurred_at,
        transaction_id=line.transaction_id,
        refund_id=line.refund_id,
        reference=line.reference,
        refund_reference=line.refund_reference,
        description=line.description,
        raw=line.raw,
    )


def match(
    *,
    organisation_id: int,
    source: str,
    config_id: int | None,
    lines: Sequence[Line],
    period: tuple[datetime, datetime],
    profile: SettlementProfile | None,
    import_id: int | None = None,
) -> list[Outcome]:
    """One outcome per line, in order, then one per thing of ours missing at the provider."""
    claims = _Claims()
    if source == SettlementSource.BANK:
        outcomes = _bank_lines(organisation_id, lines, claims)
        missing = _bank_missing(organisation_id, period, claims, profile, import_id)
    else:
        outcomes = _provider_lines(config_id, lines, claims, profile)
        missing = _provider_missing(organisation_id, source, config_id, period, claims, import_id)
    return outcomes + missing


# Provider files -----------------------------------------------------------------------------------

_INTENT_FIELDS = ("pk", "reference", "transaction_id", "amount", "currency", "property_id",
                  "receipt_id")  # fmt: skip
_REFUND_FIELDS = ("pk", "reference", "provider_refund_id", "amount", "status", "intent_id",
                  "intent__property_id", "intent__currency")  # fmt: skip


def _keyed(rows: Iterable[dict], key: str) -> dict[str, dict]:
    return {row[key]: row for row in rows if row[key]}


def _provider_lines(
    config_id: int | None,
    lines: Sequence[Line],
    claims: _Claims,
    profile: SettlementProfile | None,
) -> list[Outcome]:
    ids = {line.transaction_id for line in lines if line.transaction_id}
    references = {line.reference for line in lines if line.reference}
    intents = list(
        PaymentIntent.objects.filter(config_id=config_id)
        .filter(Q(transaction_id__in=ids) | Q(reference__in=references))
        .values(*_INTENT_FIELDS)
    )
    by_transaction, by_reference = _keyed(intents, "transaction_id"), _keyed(intents, "reference")

    def intent_of(line: Line) -> dict | None:
        return by_transaction.get(line.transaction_id) or by_reference.get(line.reference)

    refund_lines = [line for line in lines if line.kind == LineKind.REFUND]
    refund_ids = {line.refund_id for line in refund_lines if line.refund_id}
    refund_references = {line.refund_reference for line in refund_lines if line.refund_reference}
    refunded_intents = {intent["pk"] for line in refund_lines if (intent := intent_of(line))}
    refunds = list(
        Refund.objects.filter(intent__config_id=config_id)
        .filter(
            Q(provider_refund_id__in=refund_ids)
            | Q(reference__in=refund_references)
            | Q(intent_id__in=refunded_intents)
        )
        .order_by("created_at", "pk")
        .values(*_REFUND_FIELDS)
    )
    by_refund_id = _keyed(refunds, "provider_refund_id")
    by_refund_reference = _keyed(refunds, "reference")
    refunds_of: dict[int, list[dict]] = defaultdict(list)
    for refund in refunds:
        refunds_of[refund["intent_id"]].append(refund)

    outcomes = []
    for line in lines:
        outcome = Outcome(
            status=Status.INFORMATION,
            detail="other",
            currency=line.currency,
            occurred_at=line.occurred_at,
            line=line,
            provider_amount=line.gross,
            fee=line.fee,
        )
        if line.kind == LineKind.PAYMENT:
            _payment(outcome, intent_of(line), claims)
        elif line.kind == LineKind.REFUND:
            refund = by_refund_id.get(line.refund_id) or by_refund_reference.get(
                line.refund_reference
            )
            intent = intent_of(line)
            if refund is None and intent is not None:
                refund = _same_amount(refunds_of[intent["pk"]], -line.gross, claims)
            _refund(outcome, refund, intent, claims)
        elif line.kind == LineKind.FEE:
            intent = intent_of(line)
            if intent is None:
                outcome.detail = "account_fee"
            else:
                outcome.status, outcome.detail = Status.MATCHED, "payment_fee"
                outcome.intent_id, outcome.property_id = intent["pk"], intent["property_id"]
        elif line.kind == LineKind.PAYOUT:
            outcome.detail = "payout"
        outcomes.append(outcome)
    _check_fees(outcomes, profile)
    return outcomes


def _payment(outcome: Outcome, intent: dict | None, claims: _Claims) -> None:
    line = outcome.line
    if intent is None:
        outcome.status, outcome.detail = Status.MISSING_OURS, "unknown"
        return
    outcome.intent_id, outcome.property_id = intent["pk"], intent["property_id"]
    outcome.our_amount = intent["amount"]
    if intent["pk"] in claims.intents:
        outcome.status, outcome.detail = Status.MISSING_OURS, "twice"
        return
    claims.intents.add(intent["pk"])
    if intent["receipt_id"] is None:
        outcome.status, outcome.detail = Status.MISSING_OURS, "not_credited"
    elif intent["currency"] != line.currency:
        outcome.status, outcome.detail = Status.AMOUNT_MISMATCH, "currency"
    elif intent["amount"] != line.gross:
        outcome.status, outcome.detail = Status.AMOUNT_MISMATCH, "amount"
    else:
        outcome.status, outcome.detail = Status.MATCHED, ""


def _same_amount(refunds: list[dict], amount: Decimal, claims: _Claims) -> dict | None:
    unclaimed = [refund for refund in refunds if refund["pk"] not in claims.refunds]
    return next((r for r in unclaimed if r["amount"] == amount), None) or next(
        iter(unclaimed), None
    )


def _refund(outcome: Outcome, refund: dict | None, intent: dict | None, claims: _Claims) -> None:
    line = outcome.line
    if refund is None:
        outcome.status = Status.MISSING_OURS
        outcome.detail = "unknown" if intent is None else "no_refund"
        if intent is not None:
            outcome.intent_id, outcome.property_id = intent["pk"], intent["property_id"]
        return
    outcome.refund_id, outcome.intent_id = refund["pk"], refund["intent_id"]
    outcome.property_id = refund["intent__property_id"]
    outcome.our_amount = -refund["amount"]
    if refund["pk"] in claims.refunds:
        outcome.status, outcome.detail = Status.MISSING_OURS, "twice"
        return
    claims.refunds.add(refund["pk"])
    if refund["status"] != Refund.Status.SUCCEEDED:
        outcome.status, outcome.detail = Status.MISSING_OURS, "refund_pending"
    elif refund["intent__currency"] != line.currency:
        outcome.status, outcome.detail = Status.AMOUNT_MISMATCH, "currency"
    elif refund["amount"] != -line.gross:
        outcome.status, outcome.detail = Status.AMOUNT_MISMATCH, "amount"
    else:
        outcome.status, outcome.detail = Status.MATCHED, ""


def _check_fees(outcomes: list[Outcome], profile: SettlementProfile | None) -> None:
    """A matched payment's fee, with the fee lines tied to it, against the fee expected."""
    extra: dict[int, Decimal] = defaultdict(Decimal)
    for outcome in outcomes:
        if outcome.line.kind == LineKind.FEE and outcome.intent_id is not None:
            extra[outcome.intent_id] += outcome.line.fee
    for outcome in outcomes:
        if outcome.line.kind != LineKind.PAYMENT or outcome.status != Status.MATCHED:
            continue
        outcome.fee = outcome.line.fee + extra.get(outcome.intent_id, Decimal(0))
        expected = expected_fee(profile, outcome.line.gross, outcome.currency)
        outcome.expected_fee = expected
        if expected is not None and quantize(outcome.fee, outcome.currency) != expected:
            outcome.status, outcome.detail = Status.FEE_DIFFERENCE, "fee"


def _claimed_elsewhere(
    organisation_id: int,
    source: str,
    import_id: int | None,
    field_name: str,
    ids: set[int],
    kind: LineKind,
) -> set[int]:
    """Which of `ids` a line of `kind` in another import of the source already claims."""
    if not ids:
        return set()
    claimed = ReconciliationItem.objects.filter(
        organisation_id=organisation_id,
        settlement_import__source=source,
        line__kind=kind,
        **{f"{field_name}__in": ids},
    )
    if import_id is not None:
        claimed = claimed.exclude(settlement_import_id=import_id)
    return set(claimed.values_list(field_name, flat=True))


def _provider_missing(
    organisation_id: int,
    source: str,
    config_id: int | None,
    period: tuple[datetime, datetime],
    claims: _Claims,
    import_id: int | None,
) -> list[Outcome]:
    start, end = period
    intents = {
        row["pk"]: row
        for row in PaymentIntent.objects.filter(
            config_id=config_id, receipt__isnull=False, succeeded_at__gte=start,
            succeeded_at__lt=end,
        ).values("pk", "amount", "currency", "property_id", "succeeded_at")
    }  # fmt: skip
    refunds = {
        row["pk"]: row
        for row in Refund.objects.filter(
            intent__config_id=config_id,
            status=Refund.Status.SUCCEEDED,
            completed_at__gte=start,
            completed_at__lt=end,
        ).values("pk", "amount", "intent_id", "intent__currency", "intent__property_id",
                 "completed_at")
    }  # fmt: skip
    open_intents = set(intents) - claims.intents
    open_intents -= _claimed_elsewhere(
        organisation_id, source, import_id, "intent", open_intents, LineKind.PAYMENT
    )
    open_refunds = set(refunds) - claims.refunds
    open_refunds -= _claimed_elsewhere(
        organisation_id, source, import_id, "refund", open_refunds, LineKind.REFUND
    )
    missing = [
        Outcome(
            status=Status.MISSING_PROVIDER,
            detail="no_line",
            currency=row["currency"],
            occurred_at=row["succeeded_at"],
            intent_id=row["pk"],
            property_id=row["property_id"],
            our_amount=row["amount"],
        )
        for pk, row in intents.items()
        if pk in open_intents
    ]
    missing += [
        Outcome(
            status=Status.MISSING_PROVIDER,
            detail="no_line",
            currency=row["intent__currency"],
            occurred_at=row["completed_at"],
            intent_id=row["intent_id"],
            refund_id=row["pk"],
            property_id=row["intent__property_id"],
            our_amount=-row["amount"],
        )
        for pk, row in refunds.items()
        if pk in open_refunds
    ]
    return sorted(missing, key=lambda outcome: outcome.occurred_at)


# Bank statements ----------------------------------------------------------------------------------


def bank_key(text: str) -> str:
    return " ".join(text.split()).upper()


def _bank_lines(organisation_id: int, lines: Sequence[Line], claims: _Claims) -> list[Outcome]:
    keys = {bank_key(text) for line in lines for text in (line.reference, line.description)}
    keys.discard("")
    receipts: dict[str, list[dict]] = defaultdict(list)
    found = (
        Receipt.objects.filter(property__organisation_id=organisation_id, channel="bank")
        .exclude(reference="")
        .annotate(key=Upper(Trim("reference")))
        .filter(key__in=keys)
        .order_by("issued_at", "pk")
        .values("pk", "key", "amount", "currency", "property_id")
    )
    for receipt in found:
        receipts[receipt["key"]].append(receipt)
    outcomes = []
    for line in lines:
        outcome = Outcome(
            status=Status.INFORMATION,
            detail="money_out",
            currency=line.currency,
            occurred_at=line.occurred_at,
            line=line,
            provider_amount=line.gross,
            fee=line.fee,
        )
        if line.kind == LineKind.PAYMENT:
            candidates = receipts.get(bank_key(line.reference)) or receipts.get(
                bank_key(line.description), []
            )
            _bank_payment(outcome, candidates, claims)
        outcomes.append(outcome)
    return outcomes


def _bank_payment(outcome: Outcome, candidates: list[dict], claims: _Claims) -> None:
    line = outcome.line
    unclaimed = [receipt for receipt in candidates if receipt["pk"] not in claims.receipts]
    receipt = next((r for r in unclaimed if r["amount"] == line.gross), None) or next(
        iter(unclaimed), None
    )
    if receipt is None:
        outcome.status = Status.MISSING_OURS
        outcome.detail = "twice" if candidates else "unknown"
        return
    claims.receipts.add(receipt["pk"])
    outcome.receipt_id, outcome.property_id = receipt["pk"], receipt["property_id"]
    outcome.our_amount = receipt["amount"]
    if receipt["currency"] != line.currency:
        outcome.status, outcome.detail = Status.AMOUNT_MISMATCH, "currency"
    elif receipt["amount"] != line.gross:
        outcome.status, outcome.detail = Status.AMOUNT_MISMATCH, "amount"
    else:
        outcome.status, outcome.detail = Status.MATCHED, ""


def _bank_missing(
    organisation_id: int,
    period: tuple[datetime, datetime],
    claims: _Claims,
    profile: SettlementProfile | None,
    import_id: int | None,
) -> list[Outcome]:
    start, end = period
    receipts = {
        row["pk"]: row
        for row in Receipt.objects.filter(
            property__organisation_id=organisation_id,
            channel="bank",
            currency=profile.currency if profile else "",
            issued_at__gte=start,
            issued_at__lt=end,
        ).values("pk", "amount", "currency", "property_id", "issued_at")
    }
    open_receipts = set(receipts) - claims.receipts
    open_receipts -= _claimed_elsewhere(
        organisation_id, SettlementSource.BANK, import_id, "receipt", open_receipts,
        LineKind.PAYMENT,
    )  # fmt: skip
    return [
        Outcome(
            status=Status.MISSING_PROVIDER,
            detail="no_line",
            currency=row["currency"],
            occurred_at=row["issued_at"],
            receipt_id=pk,
            property_id=row["property_id"],
            our_amount=row["amount"],
        )
        for pk, row in sorted(receipts.items(), key=lambda item: item[1]["issued_at"])
        if pk in open_receipts
    ]
