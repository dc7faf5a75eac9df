"""The ledger under random sequences of top-ups, replays, charges, retries and reversals.

A model kept in the test predicts every wallet; after each step the invariants of `domain.md`
are checked against the database and against the model.
"""

from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.db import connection
from django.db.models import Count, Sum
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
from billing.models import Charge, ChargeTotals, LedgerAccount, LedgerTransaction, Receipt
from billing.services import ChargeInput, IdempotencyConflict, LedgerError
from billing.verification import ledger_violations
from prepaid.money import quantize
from tests import factories
from tests.stateful import DatabaseMachine

ACCOUNTS = 3
MAX_BALANCE = Decimal(1500)
_machines = count()

cents = st.integers(min_value=100, max_value=70000).map(lambda c: Decimal(c).scaleb(-2))
exact = st.decimals(min_value=0, max_value=30, places=6, allow_nan=False, allow_infinity=False)


class LedgerMachine(DatabaseMachine):
    topups = Bundle("topups")

    def __init__(self):
        super().__init__()
        # Its own organisation and property: receipt numbers start at 1, checks stay scoped.
        self.run = next(_machines)
        self.property = factories.PropertyFactory(
            organisation=factories.OrganisationFactory(), code=f"S{self.run}"
        )
        factories.TopupLimitsFactory(
            property=self.property,
            minimum=Decimal(1),
            maximum=Decimal(600),
            max_balance=MAX_BALANCE,
        )
        self.accounts = [
            factories.AccountFactory(unit__property=self.property) for _ in range(ACCOUNTS)
        ]
        self.keys = count()
        self.clock = timezone.now()
        # The model.
        self.credited = [Decimal(0)] * ACCOUNTS  # top-ups minus reversed top-ups
        self.exact = defaultdict(Decimal)  # (account index, kind) -> exact net + tax
        self.exact_tax = defaultdict(Decimal)
        self.batches: list[list[ChargeInput]] = []
        self.topup_keys: set[str] = set()
        self.charge_keys: set[str] = set()
        self.reversal_keys: dict[str, str] = {}  # top-up key -> its reversal's key

    def _key(self, prefix: str) -> str:
        return f"{prefix}-{self.run}-{next(self.keys)}"

    def _balance_model(self, i: int) -> Decimal:
        charged = sum(
            quantize(total, "CNY") for (j, _), total in self.exact.items() if j == i
        ) or Decimal(0)
        return self.credited[i] - charged

    def _balance(self, i: int) -> Decimal:
        return LedgerAccount.objects.get(pk=self.accounts[i].wallet_id).balance

    # Rules ---------------------------------------------------------------------------------------

    @rule(target=topups, i=st.integers(0, ACCOUNTS - 1), amount=cents)
    def topup(self, i, amount):
        key = self._key("topup")
        fits = amount <= Decimal(600) and self._balance(i) + amount <= MAX_BALANCE
        request = {
            "account": self.accounts[i],
            "amount": amount,
            "channel": "cash",
            "actor": None,
            "idempotency_key": key,
        }
        if not fits:
            with pytest.raises(LedgerError) as refused:
                services.topup_record(**request)
            assert "amount" in refused.value.message_dict
            return multiple()
        result = services.topup_record(**request)
        assert result.created
        self.credited[i] += amount
        self.topup_keys.add(key)
        return (i, amount, key, result.receipt.pk)

    @rule(topup=topups)
    def replay_topup(self, topup):
        i, amount, key, receipt_id = topup
        result = services.topup_record(
            account=self.accounts[i],
            amount=amount,
            channel="cash",
            actor=None,
            idempotency_key=key,
        )
        assert (result.created, result.receipt.pk) == (False, receipt_id)

    @rule(topup=topups, other=cents)
    def reuse_topup_key_for_another_amount(self, topup, other):
        i, amount, key, _ = topup
        if other == amount:
            return
        try:
            services.topup_record(
                account=self.accounts[i],
                amount=other,
                channel="cash",
                actor=None,
                idempotency_key=key,
            )
        except IdempotencyConflict:
            return
        raise AssertionError(f"key {key} reused for {other} instead of {amount} was accepted")

    @rule(
        charges=st.lists(
            st.tuples(
                st.integers(0, ACCOUNTS - 1), st.sampled_from(["energy", "standing"]), exact, exact
            ),
            min_size=1,
            max_size=6,
        )
    )
    def charge(self, charges):
        batch = []
        for i, kind, net, tax in charges:
            self.clock += timedelta(minutes=15)
            batch.append(
                ChargeInput(
                    account=self.accounts[i],
                    kind=kind,
                    idempotency_key=self._key("charge"),
                    period_start=self.clock - timedelta(minutes=15),
                    period_end=self.clock,
                    quantity=Decimal(1),
                    net=net,
                    tax=tax,
                )
            )
        rows = services.charges_post(charges=batch)
        assert len(rows) == len(batch)
        for (i, kind, net, tax), charge in zip(charges, batch, strict=True):
            self.exact[(i, kind)] += net + tax
            self.exact_tax[(i, kind)] += tax
            self.charge_keys.add(charge.idempotency_key)
        self.batches.append(batch)

    @rule(data=st.data())
    def retry_charge_batch(self, data):
        if not self.batches:
            return
        batch = data.draw(st.sampled_from(self.batches), label="batch")
        assert services.charges_post(charges=batch) == []

    @rule(topup=consumes(topups), retry=st.booleans())
    def reverse_topup(self, topup, retry):
        i, amount, key, _ = topup
        original = LedgerTransaction.objects.get(idempotency_key=key)
        reversal_key = self._key("reversal")
        posted = services.transaction_reverse(
            original=original, actor=None, reason="test", idempotency_key=reversal_key
        )
        assert posted.created
        self.credited[i] -= amount
        self.reversal_keys[key] = reversal_key
        if retry:
            again = services.transaction_reverse(
                original=original, actor=None, reason="test", idempotency_key=reversal_key
            )
            assert (again.created, again.transaction.pk) == (False, posted.transaction.pk)

    @rule(data=st.data())
    def reverse_again_under_a_new_key(self, data):
        if not self.reversal_keys:
            return
        key = data.draw(st.sampled_from(sorted(self.reversal_keys)), label="reversed top-up")
        original = LedgerTransaction.objects.get(idempotency_key=key)
        try:
            services.transaction_reverse(
                original=original, actor=None, reason="twice", idempotency_key=self._key("rev")
            )
        except LedgerError:
            return
        raise AssertionError(f"top-up {key} was reversed twice")

    # Invariants ----------------------------------------------------------------------------------

    @invariant()
    def every_transaction_sums_to_zero(self):
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT t.id FROM billing_ledgertransaction t
                LEFT JOIN billing_posting p ON p.transaction_id = t.id
                WHERE t.property_id = %s
                GROUP BY t.id HAVING COUNT(p.id) < 2 OR COALESCE(SUM(p.amount), 0) <> 0
                """,
                [self.property.pk],
            )
            assert cursor.fetchall() == []

    @invariant()
    def wallets_equal_their_postings_and_the_model(self):
        for i, account in enumerate(self.accounts):
            wallet = LedgerAccount.objects.get(pk=account.wallet_id)
            summed = wallet.postings.aggregate(total=Sum("amount"))["total"] or Decimal(0)
            assert wallet.balance == summed
            assert wallet.balance == self._balance_model(i), f"wallet {i}"

    @invariant()
    def no_idempotency_key_posted_twice(self):
        txns = LedgerTransaction.objects.filter(property=self.property)
        duplicates = txns.values("idempotency_key").annotate(n=Count("id")).filter(n__gt=1)
        assert not duplicates.exists()
        topups = Counter(txns.filter(kind="topup").values_list("idempotency_key", flat=True))
        assert topups == Counter(self.topup_keys)
        reversed_ids = txns.filter(kind="reversal").values_list("reverses__idempotency_key")
        assert Counter(key for (key,) in reversed_ids) == Counter(self.reversal_keys.keys())
        charges = Charge.objects.filter(account__in=self.accounts)
        assert Counter(charges.values_list("idempotency_key", flat=True)) == Counter(
            self.charge_keys
        )
        receipts = Receipt.objects.filter(property=self.property)
        assert receipts.count() == len(self.topup_keys)
        assert sorted(receipts.values_list("number", flat=True)) == list(
            range(1, len(self.topup_keys) + 1)
        )

    @invariant()
    def posted_charges_are_the_exact_totals_rounded(self):
        for row in ChargeTotals.objects.filter(account__in=self.accounts):
            i = next(n for n, a in enumerate(self.accounts) if a.pk == row.account_id)
            exact_total = self.exact[(i, row.kind)]
            assert row.exact_net + row.exact_tax == exact_total
            assert row.posted_net + row.posted_tax == quantize(exact_total, "CNY")
            assert row.posted_tax == quantize(self.exact_tax[(i, row.kind)], "CNY")

    @invariant()
    def verification_finds_nothing(self):
        violations = ledger_violations()
        assert not any(violations.values()), violations


# A pass takes seconds. A failure is shrunk to a minimal sequence of steps, which hypothesis may
# spend up to five minutes on; the timeout leaves room for that instead of cutting it off.
@pytest.mark.timeout(420)
def test_random_sequences_of_ledger_operations_keep_every_invariant(db):
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(max_examples=25, stateful_step_count=25, deadline=None),
    )
