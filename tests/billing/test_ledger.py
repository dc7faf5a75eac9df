"""The ledger's core: balanced, append-only, idempotent transactions and their reversals."""

from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from billing import services
from billing.models import LedgerAccount, LedgerTransaction, Posting
from billing.services import Entry, IdempotencyConflict, LedgerError
from billing.verification import ledger_violations
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db

Kind = LedgerAccount.Kind
TxnKind = LedgerTransaction.Kind


@pytest.fixture
def wallet(account):
    return account.wallet


@pytest.fixture
def cash(property_a1):
    return services.book_account(property=property_a1, kind=Kind.CASH)


def _post(property, entries, key="adjust-1", kind=TxnKind.ADJUSTMENT, **kwargs):
    return services.transaction_post(
        property=property, kind=kind, entries=entries, idempotency_key=key, **kwargs
    )


def _balance(ledger_account: LedgerAccount) -> Decimal:
    ledger_account.refresh_from_db(fields=["balance"])
    return ledger_account.balance


def _postings(txn: LedgerTransaction) -> list[tuple[int, Decimal]]:
    return sorted(txn.postings.values_list("ledger_account_id", "amount"))


def _nothing_posted() -> bool:
    return not LedgerTransaction.objects.exists() and not Posting.objects.exists()


def _no_violations() -> bool:
    return not any(ledger_violations().values())


# Posting -----------------------------------------------------------------------------------------


def test_a_balanced_transaction_posts_its_entries_and_moves_the_wallet(property_a1, wallet, cash):
    posted = _post(property_a1, [Entry(wallet, Decimal("10.50")), Entry(cash, Decimal("-10.50"))])
    assert posted.created
    assert posted.transaction.currency == "CNY"
    assert _postings(posted.transaction) == sorted(
        [(wallet.pk, Decimal("10.50")), (cash.pk, Decimal("-10.50"))]
    )
    assert _balance(wallet) == Decimal("10.50")
    # Books are summed from postings, never stored.
    assert _balance(cash) == 0
    assert _no_violations()


def test_an_unbalanced_transaction_is_refused(property_a1, wallet, cash):
    with pytest.raises(LedgerError, match="sum to zero"):
        _post(property_a1, [Entry(wallet, Decimal(10)), Entry(cash, Decimal("-9.99"))])
    assert _nothing_posted()
    assert _balance(wallet) == 0


@pytest.mark.parametrize("amount", [Decimal(0), Decimal(5)])
def test_a_transaction_with_a_single_posting_is_refused(property_a1, wallet, amount):
    with pytest.raises(LedgerError, match="at least two postings"):
        _post(property_a1, [Entry(wallet, amount)])
    assert _nothing_posted()


def test_a_transaction_mixing_currencies_is_refused(property_a1, wallet):
    dollars = factories.PropertyFactory(organisation=property_a1.organisation, currency="USD")
    dollar_cash = services.book_account(property=dollars, kind=Kind.CASH)
    with pytest.raises(LedgerError, match="one currency"):
        _post(property_a1, [Entry(wallet, Decimal(10)), Entry(dollar_cash, Decimal(-10))])
    assert _nothing_posted()
    assert _balance(wallet) == 0


@pytest.mark.parametrize(
    ("currency", "amount"),
    [("CNY", Decimal("0.001")), ("CNY", Decimal("10.005")), ("JPY", Decimal("0.5"))],
)
def test_an_amount_below_the_currencys_minor_unit_is_refused(org_a, currency, amount):
    prop = factories.PropertyFactory(organisation=org_a, currency=currency)
    wallet = factories.AccountFactory(unit__property=prop).wallet
    cash = services.book_account(property=prop, kind=Kind.CASH)
    with pytest.raises(LedgerError, match="minor units"):
        _post(prop, [Entry(wallet, amount), Entry(cash, -amount)])
    assert _nothing_posted()


def test_a_float_amount_is_refused_before_anything_is_posted(property_a1, wallet, cash):
    with pytest.raises(TypeError, match="never float"):
        _post(property_a1, [Entry(wallet, 0.1), Entry(cash, -0.1)])
    assert _nothing_posted()


def test_a_retry_with_the_same_key_returns_the_original_and_posts_nothing(
    property_a1, wallet, cash
):
    first = _post(property_a1, [Entry(wallet, Decimal("10.00")), Entry(cash, Decimal("-10.00"))])
    # The same request, written differently ("10" is "10.00") and in another order.
    again = _post(property_a1, [Entry(cash, Decimal(-10)), Entry(wallet, Decimal(10))])
    assert (again.created, again.transaction.pk) == (False, first.transaction.pk)
    assert LedgerTransaction.objects.count() == 1
    assert Posting.objects.count() == 2
    assert _balance(wallet) == Decimal(10)


def test_the_same_key_with_different_entries_is_an_idempotency_conflict(property_a1, wallet, cash):
    _post(property_a1, [Entry(wallet, Decimal(10)), Entry(cash, Decimal(-10))])
    with pytest.raises(IdempotencyConflict) as refused:
        _post(property_a1, [Entry(wallet, Decimal(20)), Entry(cash, Decimal(-20))])
    assert "idempotency_key" in refused.value.message_dict
    assert LedgerTransaction.objects.count() == 1
    assert _balance(wallet) == Decimal(10)


def test_the_same_key_for_another_kind_of_transaction_is_an_idempotency_conflict(
    property_a1, wallet, cash
):
    _post(property_a1, [Entry(wallet, Decimal(10)), Entry(cash, Decimal(-10))])
    with pytest.raises(IdempotencyConflict):
        _post(
            property_a1,
            [Entry(wallet, Decimal(10)), Entry(cash, Decimal(-10))],
            kind=TxnKind.TOPUP,
        )
    assert _balance(wallet) == Decimal(10)


# The database's own guards -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE billing_posting SET amount = amount + 1 WHERE transaction_id = %s",
        "DELETE FROM billing_posting WHERE transaction_id = %s",
        "UPDATE billing_ledgertransaction SET memo = 'edited' WHERE id = %s",
        "DELETE FROM billing_ledgertransaction WHERE id = %s",
    ],
)
def test_raw_sql_cannot_update_or_delete_postings_or_transactions(
    property_a1, wallet, cash, statement
):
    txn = _post(property_a1, [Entry(wallet, Decimal(10)), Entry(cash, Decimal(-10))]).transaction
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, [txn.pk])
    assert _postings(txn) == sorted([(wallet.pk, Decimal(10)), (cash.pk, Decimal(-10))])
    assert LedgerTransaction.objects.get(pk=txn.pk).memo == ""


def _raw_posting(cursor, txn_id: int, account_id: int, amount: str) -> None:
    cursor.execute(
        "INSERT INTO billing_posting (transaction_id, ledger_account_id, amount) "
        "VALUES (%s, %s, %s)",
        [txn_id, account_id, amount],
    )


def _insert_and_check_now(*postings: tuple[int, int, str]) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        for posting in postings:
            _raw_posting(cursor, *posting)
        # The balance check is deferred to commit, and a test never commits: fire it now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_an_unbalanced_raw_posting_is_refused_by_the_deferred_balance_check(
    property_a1, wallet, cash
):
    txn = _post(property_a1, [Entry(wallet, Decimal(10)), Entry(cash, Decimal(-10))]).transaction
    with pytest.raises(DatabaseError, match="unbalanced"):
        _insert_and_check_now((txn.pk, wallet.pk, "1.00"))
    assert Posting.objects.filter(transaction=txn).count() == 2


def test_a_raw_transaction_with_a_single_zero_posting_is_refused(property_a1, wallet, cash):
    txn = _post(property_a1, [Entry(wallet, Decimal(10)), Entry(cash, Decimal(-10))]).transaction
    twin = LedgerTransaction.objects.create(
        organisation=property_a1.organisation,
        property=property_a1,
        kind=TxnKind.ADJUSTMENT,
        currency="CNY",
        idempotency_key="raw-single",
        fingerprint="-",
        effective_at=txn.effective_at,
    )
    with pytest.raises(DatabaseError, match="unbalanced"):
        _insert_and_check_now((twin.pk, wallet.pk, "0"))
    assert not Posting.objects.filter(transaction=twin).exists()


def test_balanced_raw_postings_pass_the_deferred_balance_check(property_a1, wallet, cash):
    """The control for the two tests above: the check refuses imbalance, not raw SQL."""
    _post(property_a1, [Entry(wallet, Decimal(10)), Entry(cash, Decimal(-10))])
    twin = LedgerTransaction.objects.create(
        organisation=property_a1.organisation,
        property=property_a1,
        kind=TxnKind.ADJUSTMENT,
        currency="CNY",
        idempotency_key="raw-balanced",
        fingerprint="-",
        effective_at=LedgerTransaction.objects.get().effective_at,
    )
    _insert_and_check_now((twin.pk, cash.pk, "3.00"), (twin.pk, cash.pk, "-3.00"))
    assert Posting.objects.filter(transaction=twin).count() == 2


# Reversals ---------------------------------------------------------------------------------------


@pytest.fixture
def topup(account):
    receipt = factories.TopupFactory(account=account, amount=Decimal("50.00"))
    return receipt.transaction


def test_a_reversal_posts_the_exact_mirror_and_points_at_the_original(owner_a, wallet, topup):
    posted = services.transaction_reverse(
        original=topup, actor=owner_a, reason="keyed twice", idempotency_key="rev-1"
    )
    reversal = posted.transaction
    assert posted.created
    assert (reversal.kind, reversal.reverses, reversal.memo) == (
        TxnKind.REVERSAL,
        topup,
        "keyed twice",
    )
    assert LedgerTransaction.objects.get(pk=topup.pk).reversed_by == reversal
    assert _postings(reversal) == sorted(
        (account_id, -amount) for account_id, amount in _postings(topup)
    )
    assert _balance(wallet) == 0
    assert _no_violations()


def test_a_reversal_retried_with_the_same_key_returns_the_first_and_posts_nothing(
    owner_a, wallet, topup
):
    first = services.transaction_reverse(
        original=topup, actor=owner_a, reason="keyed twice", idempotency_key="rev-1"
    )
    again = services.transaction_reverse(
        original=topup, actor=owner_a, reason="keyed twice", idempotency_key="rev-1"
    )
    assert (again.created, again.transaction.pk) == (False, first.transaction.pk)
    assert LedgerTransaction.objects.filter(kind=TxnKind.REVERSAL).count() == 1
    assert AuditLog.objects.filter(action="ledger.reverse").count() == 1
    assert _balance(wallet) == 0


def test_a_second_reversal_under_another_key_is_refused(owner_a, wallet, topup):
    services.transaction_reverse(
        original=topup, actor=owner_a, reason="keyed twice", idempotency_key="rev-1"
    )
    with pytest.raises(LedgerError, match="already been reversed"):
        services.transaction_reverse(
            original=topup, actor=owner_a, reason="again", idempotency_key="rev-2"
        )
    assert LedgerTransaction.objects.filter(kind=TxnKind.REVERSAL).count() == 1
    assert _balance(wallet) == 0


def test_a_reversal_key_reused_for_another_transaction_is_refused(owner_a, account, wallet, topup):
    # A second top-up identical to the first: its mirror has the same accounts and amounts.
    twin = factories.TopupFactory(account=account, amount=Decimal("50.00")).transaction
    services.transaction_reverse(
        original=topup, actor=owner_a, reason="keyed twice", idempotency_key="rev-1"
    )
    with pytest.raises(IdempotencyConflict):
        services.transaction_reverse(
            original=twin, actor=owner_a, reason="keyed twice", idempotency_key="rev-1"
        )
    assert not LedgerTransaction.objects.filter(reverses=twin).exists()
    assert _balance(wallet) == Decimal("50.00")


def test_a_consumption_charge_cannot_be_reversed(owner_a, account):
    charge = factories.ChargeInputFactory(account=account, net=Decimal("3.00"))
    (row,) = services.charges_post(charges=[charge])
    with pytest.raises(LedgerError, match="cannot be reversed"):
        services.transaction_reverse(
            original=row.transaction, actor=owner_a, reason="disputed", idempotency_key="rev-c"
        )
    assert not LedgerTransaction.objects.filter(kind=TxnKind.REVERSAL).exists()


def test_a_standing_charge_cannot_be_reversed(owner_a, account):
    charge = factories.ChargeInputFactory(account=account, kind="standing", net=Decimal("1.00"))
    (row,) = services.charges_post(charges=[charge])
    assert row.transaction.kind == TxnKind.STANDING_CHARGE
    with pytest.raises(LedgerError, match="cannot be reversed"):
        services.transaction_reverse(
            original=row.transaction, actor=owner_a, reason="disputed", idempotency_key="rev-s"
        )


def test_a_reversal_cannot_itself_be_reversed(owner_a, wallet, topup):
    reversal = services.transaction_reverse(
        original=topup, actor=owner_a, reason="keyed twice", idempotency_key="rev-1"
    ).transaction
    with pytest.raises(LedgerError, match="cannot be reversed"):
        services.transaction_reverse(
            original=reversal, actor=owner_a, reason="undo", idempotency_key="rev-rev"
        )
    assert _balance(wallet) == 0


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_reversal_needs_a_reason(owner_a, wallet, topup, reason):
    with pytest.raises(LedgerError) as refused:
        services.transaction_reverse(
            original=topup, actor=owner_a, reason=reason, idempotency_key="rev-1"
        )
    assert "reason" in refused.value.message_dict
    assert not LedgerTransaction.objects.filter(kind=TxnKind.REVERSAL).exists()
    assert _balance(wallet) == Decimal("50.00")


def test_a_reversal_is_audited_with_its_actor_and_reason(owner_a, topup):
    reversal = services.transaction_reverse(
        original=topup, actor=owner_a, reason="keyed twice", idempotency_key="rev-1"
    ).transaction
    row = AuditLog.objects.get(action="ledger.reverse")
    assert (row.actor, row.reason, row.object_id, row.after) == (
        owner_a,
        "keyed twice",
        str(topup.uuid),
        {"reversal": str(reversal.uuid)},
    )
    assert reversal.actor == owner_a
