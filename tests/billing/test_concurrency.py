"""The ledger under real concurrency: threads with their own database connections, committing.

Each test starts its threads together at a barrier; each thread closes its connection when done.
"""

from collections import Counter
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from accounts import services as accounts_services
from accounts.models import Account
from billing import services
from billing.models import Charge, LedgerAccount, LedgerTransaction, Receipt
from billing.services import ChargeInput, LedgerError
from prepaid.money import quantize
from tests import factories
from tests.threads import run_together

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8
ROUNDS = 6


def _run_together(work, count: int = THREADS) -> list:
    return run_together(work, count)


def _fresh(account: Account) -> Account:
    """The account as this thread's connection sees it, not an object shared between threads."""
    return Account.objects.select_related("unit__property", "wallet").get(pk=account.pk)


def _balance(account: Account) -> Decimal:
    return LedgerAccount.objects.get(pk=account.wallet_id).balance


@pytest.fixture
def accounts(property_a1):
    return [factories.AccountFactory(unit__property=property_a1) for _ in range(3)]


def test_concurrent_topups_and_charges_on_shared_wallets_add_up_exactly(property_a1, accounts):
    start = timezone.now()

    def work(n: int) -> tuple[list, list]:
        mine = [_fresh(account) for account in accounts]
        topups, charges = [], []
        for r in range(ROUNDS):
            i = (n + r) % 3
            amount = Decimal(10 + n) + Decimal(r).scaleb(-2)
            services.topup_record(
                account=mine[i],
                amount=amount,
                channel=["cash", "bank"][r % 2],
                actor=None,
                idempotency_key=f"topup-{n}-{r}",
            )
            topups.append((i, amount))
            # A batch across all three wallets, in an order that differs per thread.
            batch = []
            for j in sorted(range(3), key=lambda j: (j + n) % 3):
                kind = ["energy", "standing"][(n + j) % 2]
                net, tax = Decimal("0.123457"), Decimal("0.016049")
                batch.append(
                    ChargeInput(
                        account=mine[j],
                        kind=kind,
                        idempotency_key=f"charge-{n}-{r}-{j}",
                        period_start=start + timedelta(minutes=r),
                        period_end=start + timedelta(minutes=r + 1),
                        quantity=Decimal("0.25"),
                        net=net,
                        tax=tax,
                    )
                )
                charges.append((j, kind, net + tax))
            services.charges_post(charges=batch)
        return topups, charges

    results = _run_together(work)
    errors = [result for result in results if isinstance(result, Exception)]
    assert not errors, errors

    credited = Counter()
    exact = Counter()
    for topups, charges in results:
        for i, amount in topups:
            credited[i] += amount
        for j, kind, amount in charges:
            exact[(j, kind)] += amount
    for i, account in enumerate(accounts):
        charged = sum(quantize(total, "CNY") for (j, _), total in exact.items() if j == i)
        assert _balance(account) == credited[i] - charged, f"wallet {i}"

    numbers = list(Receipt.objects.filter(property=property_a1).values_list("number", flat=True))
    assert len(numbers) == THREADS * ROUNDS
    assert sorted(numbers) == list(range(1, THREADS * ROUNDS + 1))
    assert Charge.objects.count() == THREADS * ROUNDS * 3
    call_command("verify_ledger", stdout=StringIO())


# With the books already there, the threads race straight to the wallet lock; on first use they
# also race to create the property's books.
BOOKS = pytest.mark.parametrize("books_exist", [True, False], ids=["warm", "first-use"])


@BOOKS
def test_one_idempotency_key_replayed_by_eight_threads_at_once_credits_once(
    property_a1, accounts, books_exist
):
    account = accounts[0]
    if books_exist:
        services.book_account(property=property_a1, kind=LedgerAccount.Kind.CASH)

    def work(n: int):
        return services.topup_record(
            account=_fresh(account),
            amount=Decimal("30.00"),
            channel="cash",
            actor=None,
            idempotency_key="the-same-key",
        )

    results = _run_together(work)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(result.created for result in results) == [False] * (THREADS - 1) + [True]
    assert {result.receipt.pk for result in results} == {Receipt.objects.get().pk}
    assert LedgerTransaction.objects.filter(idempotency_key="the-same-key").count() == 1
    assert _balance(account) == Decimal("30.00")


@BOOKS
def test_one_charge_batch_posted_by_eight_threads_at_once_is_charged_once(
    property_a1, accounts, books_exist
):
    if books_exist:
        for kind in (LedgerAccount.Kind.ENERGY_REVENUE, LedgerAccount.Kind.TAX_PAYABLE):
            services.book_account(property=property_a1, kind=kind)
    start = timezone.now()
    batch = [
        ChargeInput(
            account=account,
            kind="energy",
            idempotency_key=f"batch-{i}",
            period_start=start,
            period_end=start + timedelta(minutes=15),
            quantity=Decimal("1.5"),
            net=Decimal("0.755"),
            tax=Decimal("0.098"),
        )
        for i, account in enumerate(accounts)
    ]

    def work(n: int):
        mine = {account.pk: _fresh(account) for account in accounts}
        return services.charges_post(
            charges=[
                ChargeInput(**{**charge.__dict__, "account": mine[charge.account.pk]})
                for charge in batch
            ]
        )

    results = _run_together(work)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(len(rows) for rows in results) == [0] * (THREADS - 1) + [3]
    assert Charge.objects.count() == 3
    assert LedgerTransaction.objects.filter(kind="charge").count() == 3
    assert [_balance(account) for account in accounts] == [Decimal("-0.85")] * 3
    call_command("verify_ledger", stdout=StringIO())


def test_concurrent_reversals_of_one_topup_reverse_it_once(accounts):
    account = accounts[0]
    original = factories.TopupFactory(account=account, amount=Decimal("40.00")).transaction

    def work(n: int):
        return services.transaction_reverse(
            original=LedgerTransaction.objects.get(pk=original.pk),
            actor=None,
            reason="keyed twice",
            idempotency_key=f"reversal-{n}",
        )

    results = _run_together(work)
    posted = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(posted) == 1
    assert posted[0].created
    assert len(refused) == THREADS - 1
    assert all(isinstance(error, LedgerError) for error in refused), refused
    assert all("already been reversed" in str(error) for error in refused)
    assert LedgerTransaction.objects.filter(reverses=original).count() == 1
    assert _balance(account) == 0


def test_batches_creating_two_properties_books_in_opposite_orders_do_not_deadlock(org_a):
    """Each thread charges its own two wallets, one per property, listing the properties in
    the order its parity says; on first use every batch also creates both properties' books."""
    start = timezone.now()
    for attempt in range(3):
        # Fresh properties each time, so their books are created by the racing batches.
        first, second = (factories.PropertyFactory(organisation=org_a) for _ in range(2))
        pairs = [
            [factories.AccountFactory(unit__property=prop) for prop in (first, second)]
            for _ in range(THREADS)
        ]

        def work(n: int, pairs=pairs, attempt=attempt):
            mine = [_fresh(account) for account in pairs[n]]
            return services.charges_post(
                charges=[
                    ChargeInput(
                        account=account,
                        kind="energy",
                        idempotency_key=f"opposite-{attempt}-{n}-{account.pk}",
                        period_start=start,
                        period_end=start + timedelta(minutes=15),
                        quantity=Decimal(1),
                        net=Decimal("1.00"),
                        tax=Decimal("0.13"),
                    )
                    for account in (mine if n % 2 else mine[::-1])
                ]
            )

        results = _run_together(work)
        errors = [result for result in results if isinstance(result, Exception)]
        assert not errors, f"attempt {attempt}: {errors}"
    assert Charge.objects.count() == 3 * THREADS * 2
    call_command("verify_ledger", stdout=StringIO())


def test_a_topup_racing_a_move_out_never_leaves_money_in_a_closed_account(property_a1):
    """Half the threads top up, half close the same accounts: whichever wins, no closed account
    holds money. Three rounds, as one round of four races may not overlap."""
    pairs = THREADS // 2
    for attempt in range(3):
        targets = [factories.AccountFactory(unit__property=property_a1) for _ in range(pairs)]

        def work(n: int, targets=targets, attempt=attempt):
            account = _fresh(targets[n % pairs])
            if n < pairs:
                return services.topup_record(
                    account=account,
                    amount=Decimal("20.00"),
                    channel="cash",
                    actor=None,
                    idempotency_key=f"race-{attempt}-{n}",
                )
            return accounts_services.account_close(account=account, actor=None)

        results = _run_together(work)
        for n, account in enumerate(targets):
            account.refresh_from_db()
            topped_up, closed = results[n], results[n + pairs]
            if account.status == Account.Status.CLOSED:
                assert isinstance(topped_up, LedgerError), (attempt, topped_up)
                assert "open accounts only" in str(topped_up)
                assert _balance(account) == 0
            else:
                assert isinstance(closed, ValidationError), (attempt, closed)
                assert "Settle the wallet" in str(closed)
                assert _balance(account) == Decimal("20.00")
    call_command("verify_ledger", stdout=StringIO())
