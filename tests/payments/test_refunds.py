"""Refunds: held from the wallet, paid out on confirmation, given back on failure, and never
beyond what was paid or what is left."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from billing.models import LedgerAccount, LedgerTransaction
from billing.services import (
    Entry,
    LedgerError,
    book_account,
    transaction_post,
    transaction_reverse,
)
from billing.verification import ledger_violations
from payments.models import PaymentIntent, Refund, SandboxPayment
from payments.providers.base import RefundResult
from payments.services import (
    PaymentError,
    pending_refunds_retry,
    refund_conclude,
    refund_start,
    refund_submit,
)
from prepaid.audit.models import AuditLog
from tests.payments.conftest import sandbox_event

pytestmark = pytest.mark.django_db

Kind = LedgerAccount.Kind


def _balance(account) -> Decimal:
    return LedgerAccount.objects.get(pk=account.wallet_id).balance


def _book(property, kind, channel="") -> Decimal:
    book = LedgerAccount.objects.filter(property=property, kind=kind, channel=channel).first()
    return sum(book.postings.values_list("amount", flat=True), Decimal(0)) if book else Decimal(0)


@pytest.fixture
def paid(make_intent, deliver):
    intent = make_intent("50.00")
    # Paid on the sandbox's side too, as its hosted page would record it.
    SandboxPayment.objects.filter(reference=intent.reference).update(
        status=SandboxPayment.Status.PAID, transaction_id=f"sbx_{intent.reference[:8]}"
    )
    deliver(sandbox_event(intent))
    intent.refresh_from_db()
    return intent


def test_a_partial_refund_pays_back_through_the_provider(paid, owner_a, account):
    refund = refund_start(intent=paid, amount=Decimal("20.00"), reason="overpaid", actor=owner_a)
    assert _balance(account) == Decimal("30.00")
    assert _book(account.unit.property, Kind.REFUNDS_PAYABLE) == Decimal("20.00")
    assert refund_submit(refund_id=refund.pk) == "succeeded"
    paid.refresh_from_db()
    assert paid.status == PaymentIntent.Status.PARTIALLY_REFUNDED
    assert paid.refundable() == Decimal("30.00")
    assert _book(account.unit.property, Kind.REFUNDS_PAYABLE) == 0
    assert _book(account.unit.property, Kind.CLEARING, "sandbox") == Decimal("-30.00")
    assert not any(ledger_violations().values())
    entry = AuditLog.objects.get(action="payment.refund")
    assert (entry.actor, entry.reason) == (owner_a, "overpaid")


def test_refunding_the_rest_marks_the_payment_refunded(paid, owner_a):
    for amount in ("20.00", "30.00"):
        refund = refund_start(intent=paid, amount=Decimal(amount), reason="moved", actor=owner_a)
        refund_submit(refund_id=refund.pk)
    paid.refresh_from_db()
    assert paid.status == PaymentIntent.Status.REFUNDED
    assert paid.refundable() == 0


def test_a_refund_beyond_what_was_paid_is_refused(paid, owner_a):
    refund_start(intent=paid, amount=Decimal("40.00"), reason="first", actor=owner_a)
    with pytest.raises(PaymentError, match=r"At most 10\.00"):
        refund_start(intent=paid, amount=Decimal("10.01"), reason="second", actor=owner_a)
    assert Refund.objects.count() == 1


def test_a_refund_beyond_the_credit_left_is_refused(paid, owner_a, account):
    transaction_post(
        property=account.unit.property,
        kind=LedgerTransaction.Kind.ADJUSTMENT,
        entries=[
            Entry(LedgerAccount.objects.get(pk=account.wallet_id), Decimal("-45.00")),
            Entry(book_account(property=account.unit.property, kind=Kind.WRITE_OFFS), Decimal(45)),
        ],
        idempotency_key="consumed",
    )
    with pytest.raises(PaymentError, match=r"Only 5\.00"):
        refund_start(intent=paid, amount=Decimal("10.00"), reason="moved", actor=owner_a)


@pytest.mark.parametrize("amount", ["0", "-1", "0.001"])
def test_a_refund_of_a_bad_amount_is_refused(paid, owner_a, amount):
    with pytest.raises(PaymentError):
        refund_start(intent=paid, amount=Decimal(amount), reason="x", actor=owner_a)


def test_a_refund_needs_a_reason(paid, owner_a):
    with pytest.raises(PaymentError, match="reason"):
        refund_start(intent=paid, amount=Decimal(1), reason="  ", actor=owner_a)


def test_the_sandbox_refuses_a_refund_of_a_payment_it_never_took(make_intent, deliver, owner_a):
    intent = make_intent("50.00")
    deliver(sandbox_event(intent))
    intent.refresh_from_db()
    refund = refund_start(intent=intent, amount=Decimal(5), reason="x", actor=owner_a)
    assert refund_submit(refund_id=refund.pk) == "failed"


def test_an_unpaid_intent_cannot_be_refunded(make_intent, owner_a):
    with pytest.raises(PaymentError, match="credited"):
        refund_start(intent=make_intent("50.00"), amount=Decimal(1), reason="x", actor=owner_a)


def test_a_refund_the_provider_refuses_gives_the_credit_back(paid, owner_a, account):
    refund = refund_start(intent=paid, amount=Decimal("20.00"), reason="moved", actor=owner_a)
    status = refund_conclude(
        refund_id=refund.pk, result=RefundResult(status="failed", payload={"error": "closed"})
    )
    assert status == "failed"
    assert _balance(account) == Decimal("50.00")
    paid.refresh_from_db()
    assert (paid.status, paid.refundable()) == (PaymentIntent.Status.SUCCEEDED, Decimal(50))
    assert _book(account.unit.property, Kind.REFUNDS_PAYABLE) == 0
    assert not any(ledger_violations().values())


def test_a_refund_still_processing_stays_held_until_the_provider_answers(paid, owner_a, account):
    refund = refund_start(intent=paid, amount=Decimal("20.00"), reason="moved", actor=owner_a)
    assert refund_conclude(refund_id=refund.pk, result=RefundResult(status="pending")) == "pending"
    assert _balance(account) == Decimal("30.00")
    assert refund_conclude(refund_id=refund.pk, result=RefundResult(status="succeeded")) == (
        "succeeded"
    )
    # A late duplicate answer settles nothing twice.
    assert refund_conclude(refund_id=refund.pk, result=RefundResult(status="failed")) == (
        "succeeded"
    )
    assert _balance(account) == Decimal("30.00")
    assert not any(ledger_violations().values())


def test_the_same_refund_key_returns_the_first_refund(paid, owner_a):
    first = refund_start(
        intent=paid, amount=Decimal(5), reason="x", actor=owner_a, idempotency_key="rf-1"
    )
    again = refund_start(
        intent=paid, amount=Decimal(5), reason="x", actor=owner_a, idempotency_key="rf-1"
    )
    assert first.pk == again.pk
    with pytest.raises(PaymentError, match="different refund"):
        refund_start(
            intent=paid, amount=Decimal(6), reason="x", actor=owner_a, idempotency_key="rf-1"
        )


def test_an_online_top_up_is_refunded_not_reversed(paid, owner_a):
    with pytest.raises(LedgerError, match="Refund"):
        transaction_reverse(
            original=paid.receipt.transaction, actor=owner_a, reason="x", idempotency_key="rv"
        )


def test_a_refund_left_pending_is_sent_again_and_settled_by_the_retry(paid, owner_a, account):
    refund = refund_start(intent=paid, amount=Decimal("20.00"), reason="moved", actor=owner_a)
    refund_conclude(refund_id=refund.pk, result=RefundResult(status="pending"))
    assert pending_refunds_retry() == {}
    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        assert pending_refunds_retry() == {"succeeded": 1}
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert _balance(account) == Decimal("30.00")
