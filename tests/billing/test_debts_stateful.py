"""Debts under random sequences of raising, emergency credit, top-ups that recover (and their
reversals, which give it back), plans, cancellations, days passing and instalments billed onto a
postpaid wallet.

After every step: the ledger verifies clean, `check_debts` finds nothing, the debtors book is
minus what the debts still owe, every wallet is the sum of its postings, and no top-up gave
its debts more than the policy allows.
"""

import contextlib
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from itertools import count

from django.core.exceptions import ValidationError
from django.db.models import Sum
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule, run_state_machine_as_test

from accounts.models import Account
from billing import debts
from billing.debts import DebtError
from billing.models import CreditPolicy, Debt, DebtRecovery, LedgerAccount, Posting
from billing.services import topup_record, transaction_reverse
from billing.verification import ledger_violations
from tests import factories
from tests.stateful import DatabaseMachine

PERCENT = Decimal(25)
CAP = Decimal(30)
ENERGY_MINIMUM = Decimal(5)
START = datetime(2026, 11, 10, 2, tzinfo=UTC)
_machines = count()

cents = st.integers(min_value=1, max_value=20000).map(lambda c: Decimal(c).scaleb(-2))


class DebtsMachine(DatabaseMachine):
    def __init__(self, clock):
        super().__init__()
        # The test's time_machine fixture owns the clock, so it stops even if a run fails.
        self.clock = clock
        self.clock.move_to(START, tick=False)
        self.run = next(_machines)
        self.property = factories.PropertyFactory(
            organisation=factories.OrganisationFactory(), code=f"D{self.run}"
        )
        CreditPolicy.objects.create(
            property=self.property,
            recovery_percent=PERCENT,
            recovery_daily_cap=CAP,
            recovery_energy_minimum=ENERGY_MINIMUM,
            emergency_credit_amount=Decimal(20),
            emergency_credit_below=Decimal(10),
        )
        factories.TopupLimitsFactory(
            property=self.property, minimum=Decimal("0.01"), max_balance=Decimal(10**6)
        )
        self.prepaid = [factories.AccountFactory(unit__property=self.property) for _ in range(2)]
        self.postpaid = factories.AccountFactory(
            unit__property=self.property, mode=Account.Mode.POSTPAID
        )
        self.accounts = [*self.prepaid, self.postpaid]
        self.keys = count()
        self.topups = []

    def _key(self) -> str:
        return f"{self.run}-{next(self.keys)}"

    def _open_debts(self, i: int) -> list[Debt]:
        return list(Debt.objects.filter(account=self.accounts[i], status="open").order_by("pk"))

    # Rules ---------------------------------------------------------------------------------------

    @rule(i=st.integers(0, 2), amount=cents, counter=st.sampled_from(["fees", "opening_balances"]))
    def raise_debt(self, i, amount, counter):
        debts.debt_raise(
            account=self.accounts[i],
            amount=amount,
            reason="test",
            counter=counter,
            actor=None,
            idempotency_key=self._key(),
        )

    @rule(i=st.integers(0, 2))
    def take_emergency_credit(self, i):
        # Refused whenever the balance is not low or it was taken this month: both fine here.
        with contextlib.suppress(DebtError):
            debts.emergency_credit_take(account=self.accounts[i], actor=None, by_tenant=True)

    @rule(i=st.integers(0, 1), amount=cents)
    def topup(self, i, amount):
        result = topup_record(
            account=self.prepaid[i],
            amount=amount,
            channel="cash",
            actor=None,
            idempotency_key=self._key(),
        )
        self._check_split(result.receipt.transaction, amount)
        self.topups.append(result.receipt.transaction)

    @rule(pick=st.integers(0, 50))
    def reverse_a_topup(self, pick):
        """A top-up keyed in error, taken back with whatever it recovered (refused once its
        debt has been planned since, or when it was reversed already)."""
        if not self.topups:
            return
        original = self.topups[pick % len(self.topups)]
        with contextlib.suppress(ValidationError):
            transaction_reverse(
                original=original, actor=None, reason="test", idempotency_key=self._key()
            )

    @rule(i=st.integers(0, 2), parts=st.integers(1, 3), first_in=st.integers(0, 3))
    def make_plan(self, i, parts, first_in):
        open_debts = [d for d in self._open_debts(i) if not d.plans.filter(status="active")]
        if not open_debts:
            return
        debt = open_debts[0]
        owed = debt.amount - debt.recovered
        part = (owed / parts).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
        amounts = [part] * (parts - 1) + [owed - part * (parts - 1)]
        if any(amount <= 0 for amount in amounts):
            return
        today = debts.local_today(property=self.property)
        dates = [today + timedelta(days=first_in + 7 * n) for n in range(parts)]
        debts.instalment_plan_create(
            debt=debt, instalments=list(zip(dates, amounts, strict=True)), actor=None
        )

    @rule(i=st.integers(0, 2))
    def cancel_a_plan(self, i):
        for debt in self._open_debts(i):
            plan = debt.plans.filter(status="active").first()
            if plan is not None:
                debts.instalment_plan_cancel(plan=plan, actor=None, reason="test")
                return

    @rule(days=st.integers(0, 10), hours=st.integers(0, 23))
    def time_passes(self, days, hours):
        self.clock.shift(timedelta(days=days, hours=hours))

    @rule()
    def bill_instalments(self):
        debts.instalments_bill(account_id=self.postpaid.pk)

    def _check_split(self, topup, amount):
        rows = DebtRecovery.objects.filter(topup=topup).select_related("debt")
        total = sum((row.amount for row in rows), Decimal(0))
        assert total <= max(amount - ENERGY_MINIMUM, Decimal(0))
        by_percent = sum(
            (
                row.amount
                for row in rows
                if row.debt.source != "emergency_credit"
                and not row.debt.plans.filter(status__in=["active", "completed"]).exists()
            ),
            Decimal(0),
        )
        assert by_percent <= (amount * PERCENT / 100).quantize(Decimal("0.01"), ROUND_DOWN)
        assert by_percent <= CAP

    # Invariants ----------------------------------------------------------------------------------

    @invariant()
    def the_ledger_and_the_debts_verify_clean(self):
        violations = ledger_violations()
        assert not any(violations.values()), violations
        assert list(debts.check_debts()) == []

    @invariant()
    def the_debtors_book_is_minus_what_the_debts_owe(self):
        book = Posting.objects.filter(
            ledger_account__property=self.property, ledger_account__kind="debtors"
        ).aggregate(total=Sum("amount"))["total"] or Decimal(0)
        owed = sum(
            (d.amount - d.recovered for d in Debt.objects.filter(property=self.property)),
            Decimal(0),
        )
        assert book == -owed

    @invariant()
    def wallets_equal_their_postings(self):
        for account in self.accounts:
            wallet = LedgerAccount.objects.get(pk=account.wallet_id)
            summed = wallet.postings.aggregate(total=Sum("amount"))["total"] or Decimal(0)
            assert wallet.balance == summed

    @invariant()
    def no_day_recovers_more_than_the_cap_by_percentage(self):
        for account in self.prepaid:
            day = debts.local_today(property=self.property)
            recovered = debts._percentage_recovered_on(
                account_id=account.pk, property=self.property, day=day
            )
            assert recovered <= CAP


def test_random_sequences_of_debt_operations_keep_every_invariant(db, time_machine):
    run_state_machine_as_test(
        lambda: DebtsMachine(time_machine),
        settings=settings(max_examples=12, stateful_step_count=25, deadline=None),
    )
