"""Postpaid bills under random sequences of charges, bills, payments and reversals, and online
payments refunded through the sandbox provider (whose side lives in our database, so no call
leaves the process): refunds paid out, refused by the provider, or left pending.

After every step, for every account, the open bills ask for no more than the wallet owes, each
bill's paid amount is the sum of its allocations, and `verify_ledger` finds nothing.
"""

import json
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from itertools import count

import pytest
from django.db.models import Sum
from django.utils import timezone
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from billing import services
from billing.invoices import invoice_issue
from billing.models import Invoice, InvoiceAllocation, LedgerAccount
from billing.verification import ledger_violations
from payments.models import PaymentIntent, Refund, SandboxPayment
from payments.providers.base import RefundResult
from payments.services import (
    intent_create,
    notification_receive,
    provider_config_save,
    provider_for,
    refund_conclude,
    refund_start,
    refund_submit,
)
from tests import factories
from tests.billing.bills import charge, postpaid_account
from tests.stateful import DatabaseMachine

ACCOUNTS = 2
_machines = count()
cents = st.integers(min_value=100, max_value=20000).map(lambda c: Decimal(c).scaleb(-2))
# A refund of this share of what the payment and the wallet's credit both still allow.
shares = st.integers(min_value=1, max_value=100)


class BillsMachine(DatabaseMachine):
    payments = Bundle("payments")
    online_payments = Bundle("online_payments")
    pending_refunds = Bundle("pending_refunds")

    def __init__(self):
        super().__init__()
        run = next(_machines)
        self.property = factories.PropertyFactory(
            organisation=factories.OrganisationFactory(), code=f"B{run}"
        )
        factories.TopupLimitsFactory(
            property=self.property,
            minimum=Decimal(1),
            maximum=Decimal(600),
            max_balance=Decimal(5000),
        )
        self.accounts = [postpaid_account(property=self.property) for _ in range(ACCOUNTS)]
        self.sandbox = provider_config_save(
            organisation=self.property.organisation,
            provider="sandbox",
            actor=None,
            secrets={"webhook_secret": "whsec_sandbox_test"},
        )
        self.keys = count()
        self.period_end = timezone.now()

    @rule(i=st.integers(0, ACCOUNTS - 1), amount=cents)
    def charge(self, i, amount):
        charge(self.accounts[i], str(amount))

    @rule(i=st.integers(0, ACCOUNTS - 1))
    def issue_bill(self, i):
        self.period_end += timedelta(seconds=1)
        issued = invoice_issue(account=self.accounts[i], period_end=self.period_end)
        assert issued.created

    @rule(target=payments, i=st.integers(0, ACCOUNTS - 1), amount=cents)
    def pay(self, i, amount):
        result = services.topup_record(
            account=self.accounts[i],
            amount=amount,
            channel="cash",
            actor=None,
            idempotency_key=f"pay-{next(self.keys)}",
        )
        return result.receipt.transaction

    @rule(payment=consumes(payments))
    def reverse(self, payment):
        services.transaction_reverse(
            original=payment, actor=None, reason="test", idempotency_key=f"rev-{next(self.keys)}"
        )

    @rule(target=online_payments, i=st.integers(0, ACCOUNTS - 1), amount=cents)
    def pay_online(self, i, amount):
        """Checkout at the sandbox, paid on its page, its signed webhook received."""
        intent = intent_create(
            account=self.accounts[i],
            config=self.sandbox,
            amount=amount,
            actor=None,
            notify_url="http://127.0.0.1:9/unused",
            return_url="/portal/payments/{reference}/",
        )
        SandboxPayment.objects.filter(reference=intent.reference).update(
            status=SandboxPayment.Status.PAID, transaction_id=f"sbx_{intent.reference[:12]}"
        )
        body = json.dumps(
            {
                "id": f"evt_{intent.reference}",
                "type": "payment.succeeded",
                "data": {
                    "reference": intent.reference,
                    "amount": str(intent.amount),
                    "currency": intent.currency,
                    "transaction_id": f"sbx_{intent.reference[:12]}",
                },
            }
        ).encode()
        provider = provider_for(self.sandbox)
        notification_receive(config=self.sandbox, body=body, headers=provider.sign(body))
        intent.refresh_from_db()
        assert intent.is_credited()
        return intent

    @rule(target=pending_refunds, intent=online_payments, share=shares)
    def refund(self, intent, share):
        """Refund part of an online payment, as far as it and the wallet's credit allow."""
        intent.refresh_from_db()
        credit = LedgerAccount.objects.get(pk=intent.account.wallet_id).balance
        allowed = min(intent.refundable(), credit)
        amount = (allowed * share / 100).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
        if amount <= 0:
            return multiple()
        return refund_start(
            intent=intent,
            amount=amount,
            reason="stateful",
            actor=None,
            idempotency_key=f"refund-{next(self.keys)}",
        )

    @rule(refund=consumes(pending_refunds), paid_out=st.booleans())
    def settle_refund(self, refund, paid_out):
        """The sandbox pays the refund out, or the provider refuses it and the money goes back
        into the wallet, where it meets the bills again."""
        if paid_out:
            assert refund_submit(refund_id=refund.pk) == Refund.Status.SUCCEEDED
        else:
            result = RefundResult(status="failed", payload={"error": "declined"})
            assert refund_conclude(refund_id=refund.pk, result=result) == Refund.Status.FAILED

    @invariant()
    def open_bills_ask_for_no_more_than_the_wallet_owes(self):
        for account in self.accounts:
            balance = LedgerAccount.objects.get(pk=account.wallet_id).balance
            bills = Invoice.objects.filter(account=account, status=Invoice.Status.OPEN)
            totals = bills.aggregate(amount=Sum("amount"), paid=Sum("paid"))
            open_amount = (totals["amount"] or 0) - (totals["paid"] or 0)
            assert open_amount <= max(Decimal(0), -balance)

    @invariant()
    def every_bill_is_paid_by_its_allocations(self):
        for bill in Invoice.objects.filter(account__in=self.accounts):
            allocated = bill.allocations.aggregate(total=Sum("amount"))["total"] or 0
            assert allocated == bill.paid
            assert (bill.status == Invoice.Status.PAID) == (bill.paid == bill.amount)
        assert not InvoiceAllocation.objects.filter(amount=0).exists()

    @invariant()
    def refunds_never_take_more_than_was_paid_online(self):
        for intent in PaymentIntent.objects.filter(account__in=self.accounts):
            live = intent.refunds.exclude(status=Refund.Status.FAILED)
            refunded = live.aggregate(total=Sum("amount"))["total"] or 0
            assert refunded == intent.refunded_amount <= intent.amount

    @invariant()
    def verification_finds_nothing(self):
        violations = ledger_violations()
        assert not any(violations.values()), violations


@pytest.mark.timeout(420)
def test_random_sequences_of_bills_payments_reversals_and_refunds_keep_every_invariant(db):
    run_state_machine_as_test(
        BillsMachine,
        settings=settings(max_examples=20, stateful_step_count=20, deadline=None),
    )
