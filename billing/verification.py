"""Checks of the ledger invariants in `domain.md`, as set-based queries over all the data.

Each check returns human-readable violations; `manage.py verify_ledger` prints them and fails.
"""

from collections.abc import Callable, Iterator
from decimal import Decimal

from django.db import connection

from billing.debts import check_debts
from billing.models import EXACT_DECIMAL_PLACES, ChargeTotals
from prepaid.money import AMOUNT_DECIMAL_PLACES, quantize


def _rows(sql: str, params: tuple = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(_decimal(value) for value in row) for row in cursor.fetchall()]


# SQLite, the embedded demo database, keeps decimals as floats and sums them as floats; there,
# sums are compared at the columns' own precision. PostgreSQL sums numerics exactly.
def _sum(expression: str, places: int = AMOUNT_DECIMAL_PLACES) -> str:
    if connection.vendor == "sqlite":
        return f"ROUND(COALESCE(SUM({expression}), 0), {places})"
    return f"COALESCE(SUM({expression}), 0)"


def _value(expression: str, places: int = AMOUNT_DECIMAL_PLACES) -> str:
    return f"ROUND({expression}, {places})" if connection.vendor == "sqlite" else expression


def _decimal(value):
    return Decimal(repr(value)) if isinstance(value, float) else value


def unbalanced_transactions() -> Iterator[str]:
    """Invariant 1: every transaction has two or more postings summing to zero."""
    for txn_id, count, total in _rows(
        """
        SELECT t.id, COUNT(p.id), {total}
        FROM billing_ledgertransaction t LEFT JOIN billing_posting p ON p.transaction_id = t.id
        GROUP BY t.id HAVING COUNT(p.id) < 2 OR {total} <> 0
        """.format(total=_sum("p.amount"))
    ):
        yield f"transaction {txn_id}: {count} postings summing to {total}"


def mixed_currencies() -> Iterator[str]:
    for posting_id, txn_currency, account_currency in _rows(
        """
        SELECT p.id, t.currency, a.currency FROM billing_posting p
        JOIN billing_ledgertransaction t ON t.id = p.transaction_id
        JOIN billing_ledgeraccount a ON a.id = p.ledger_account_id
        WHERE t.currency <> a.currency
        """
    ):
        yield f"posting {posting_id}: {account_currency} account in a {txn_currency} transaction"


def wallet_balances_off() -> Iterator[str]:
    """Invariant 2: a wallet's stored balance equals the sum of its postings."""
    for wallet_id, stored, summed in _rows(
        """
        SELECT a.id, a.balance, {total} FROM billing_ledgeraccount a
        LEFT JOIN billing_posting p ON p.ledger_account_id = a.id
        WHERE a.kind = 'wallet' GROUP BY a.id, a.balance
        HAVING {balance} <> {total}
        """.format(total=_sum("p.amount"), balance=_value("a.balance"))
    ):
        yield f"wallet {wallet_id}: stored {stored}, postings sum to {summed}"


def reversals_not_mirrored() -> Iterator[str]:
    """Corrections are exact opposites of what they reverse."""
    for reversal_id, original_id in _rows(
        """
        SELECT r.id, r.reverses_id FROM billing_ledgertransaction r
        WHERE r.reverses_id IS NOT NULL AND EXISTS (
            SELECT ledger_account_id, SUM(amount) FROM (
                SELECT ledger_account_id, amount FROM billing_posting WHERE transaction_id = r.id
                UNION ALL
                SELECT ledger_account_id, amount FROM billing_posting
                WHERE transaction_id = r.reverses_id
            ) both_sides GROUP BY ledger_account_id HAVING {total} <> 0
        )
        """.format(total=_sum("amount"))
    ):
        yield f"reversal {reversal_id} does not mirror transaction {original_id}"


def charge_totals_off() -> Iterator[str]:
    """Invariants 3 and 5: charges are counted once, and rounding neither creates nor loses
    money: what reached the wallet is the exact total rounded, with the remainder carried."""
    summed = {
        (account_id, kind): (net, tax)
        for account_id, kind, net, tax in _rows(
            f"SELECT account_id, kind, {_sum('net', EXACT_DECIMAL_PLACES)}, "
            f"{_sum('tax', EXACT_DECIMAL_PLACES)} FROM billing_charge GROUP BY 1, 2"
        )
    }
    posted = {
        (account_id, kind): -amount
        for account_id, kind, amount in _rows(
            """
            SELECT c.account_id, c.kind, {total} FROM billing_posting p
            JOIN billing_ledgeraccount a ON a.id = p.ledger_account_id AND a.kind = 'wallet'
            JOIN (SELECT DISTINCT transaction_id, account_id, kind FROM billing_charge
                  WHERE transaction_id IS NOT NULL) c ON c.transaction_id = p.transaction_id
            GROUP BY 1, 2
            """.format(total=_sum("p.amount"))
        )
    }
    totals = ChargeTotals.objects.select_related("account__wallet")
    for row in totals.iterator(chunk_size=2000):
        key = (row.account_id, row.kind)
        currency = row.account.wallet.currency
        net, tax = summed.pop(key, (Decimal(0), Decimal(0)))
        label = f"account {row.account_id} {row.kind} charges"
        if (row.exact_net, row.exact_tax) != (net, tax):
            yield f"{label}: totals {row.exact_net}+{row.exact_tax}, charges sum {net}+{tax}"
        if row.posted_tax != quantize(row.exact_tax, currency):
            yield f"{label}: posted tax {row.posted_tax} is not exact {row.exact_tax} rounded"
        if row.posted_net + row.posted_tax != quantize(row.exact_net + row.exact_tax, currency):
            yield f"{label}: posted {row.posted_net + row.posted_tax} is not exact total rounded"
        if posted.get(key, Decimal(0)) != row.posted_net + row.posted_tax:
            yield f"{label}: wallet postings {posted.get(key)} differ from the posted total"
    for account_id, kind in summed:
        yield f"account {account_id} {kind}: charges without running totals"


def overlapping_meter_charges() -> Iterator[str]:
    """Invariant 3 for consumption: no interval of a meter is charged twice."""
    for charge_id, meter_id in _rows(
        """
        SELECT id, meter_id FROM (
            SELECT id, meter_id, period_start,
                   LAG(period_end) OVER (PARTITION BY meter_id ORDER BY period_start, id) AS before
            FROM billing_charge WHERE kind = 'energy' AND meter_id IS NOT NULL
        ) ordered WHERE period_start < before
        """
    ):
        yield f"charge {charge_id} overlaps an earlier charge of meter {meter_id}"


def receipt_gaps() -> Iterator[str]:
    for property_id, count, highest in _rows(
        """
        SELECT property_id, COUNT(*), MAX(number) FROM billing_receipt GROUP BY property_id
        HAVING COUNT(*) <> MAX(number) OR MIN(number) <> 1
        """
    ):
        yield f"property {property_id}: {count} receipts numbered up to {highest}"


def invoice_gaps() -> Iterator[str]:
    for property_id, count, highest in _rows(
        """
        SELECT property_id, COUNT(*), MAX(number) FROM billing_invoice GROUP BY property_id
        HAVING COUNT(*) <> MAX(number) OR MIN(number) <> 1
        """
    ):
        yield f"property {property_id}: {count} invoices numbered up to {highest}"


def invoices_off() -> Iterator[str]:
    """A bill's paid amount is the sum of its allocations, and an account's open bills never
    ask for more than its wallet owes (`billing.allocation`)."""
    for invoice_id, paid, allocated in _rows(
        """
        SELECT i.id, i.paid, {total} FROM billing_invoice i
        LEFT JOIN billing_invoiceallocation x ON x.invoice_id = i.id
        GROUP BY i.id, i.paid HAVING i.paid <> {total}
        """.format(total=_sum("x.amount"))
    ):
        yield f"invoice {invoice_id}: paid {paid}, allocations sum to {allocated}"
    for account_id, open_amount, balance in _rows(
        """
        SELECT a.id, {open}, w.balance FROM billing_invoice i
        JOIN accounts_account a ON a.id = i.account_id
        JOIN billing_ledgeraccount w ON w.id = a.wallet_id
        WHERE i.status = 'open'
        GROUP BY a.id, w.balance HAVING {open} > CASE WHEN w.balance < 0 THEN -w.balance ELSE 0 END
        """.format(open=_sum("i.amount - i.paid"))
    ):
        yield f"account {account_id}: open bills ask for {open_amount}, the wallet holds {balance}"


CHECKS: list[tuple[str, Callable[[], Iterator[str]]]] = [
    ("postings balance per transaction", unbalanced_transactions),
    ("one currency per transaction", mixed_currencies),
    ("wallet balances equal their postings", wallet_balances_off),
    ("reversals mirror what they reverse", reversals_not_mirrored),
    ("charges counted once and rounded without loss", charge_totals_off),
    ("no meter interval charged twice", overlapping_meter_charges),
    ("receipt numbers gapless per property", receipt_gaps),
    ("invoice numbers gapless per property", invoice_gaps),
    ("bills add up to their allocations and the wallets", invoices_off),
    ("debts add up to the debtors book", check_debts),
]


def ledger_violations() -> dict[str, list[str]]:
    return {name: list(check()) for name, check in CHECKS}
