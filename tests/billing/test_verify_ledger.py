"""`manage.py verify_ledger`: silent on a ledger built by the services, loud and specific on
every kind of corruption. Corruption bypasses the services (and, where needed, the triggers)
inside the test's transaction, which is rolled back afterwards."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import F
from django.utils import timezone

from billing import services
from billing.debts import debt_raise
from billing.models import (
    Charge,
    ChargeTotals,
    Debt,
    Invoice,
    InvoiceSequence,
    LedgerAccount,
    LedgerTransaction,
    ReceiptSequence,
)
from billing.services import Entry
from billing.verification import CHECKS
from tests import factories
from tests.billing.bills import issued_bill

pytestmark = pytest.mark.django_db

Kind = LedgerAccount.Kind
CHECK_NAMES = [name for name, _ in CHECKS]


@pytest.fixture
def ledger(property_a1, owner_a):
    """A small but complete ledger: top-ups by cash and bank, a reversal, metered energy
    charges back to back, sub-minor-unit charges carried, standing charges with tax."""
    account = factories.AccountFactory(unit__property=property_a1)
    neighbour = factories.AccountFactory(unit__property=property_a1)
    meter = factories.MeterFactory(unit=account.unit)
    topup = factories.TopupFactory(account=account, amount=Decimal("200.00")).transaction
    factories.TopupFactory(account=neighbour, amount=Decimal("50.00"), channel="bank")
    mistake = factories.TopupFactory(account=account, amount=Decimal("20.00")).transaction
    services.transaction_reverse(
        original=mistake, actor=owner_a, reason="keyed twice", idempotency_key="rev-1"
    )
    start = timezone.now() - timedelta(days=1)
    services.charges_post(
        charges=[
            factories.ChargeInputFactory(
                account=account,
                meter_id=meter.pk,
                period_start=start + timedelta(hours=i),
                period_end=start + timedelta(hours=i + 1),
                net=Decimal("0.456789"),
                tax=Decimal("0.059383"),
            )
            for i in range(5)
        ]
        + [
            factories.ChargeInputFactory(
                account=neighbour, kind="standing", net=Decimal("0.6667"), tax=Decimal("0.0867")
            )
        ]
    )
    return {
        "property": property_a1,
        "account": account,
        "neighbour": neighbour,
        "meter": meter,
        "topup": topup,
        "start": start,
    }


def _verify() -> str:
    out = StringIO()
    call_command("verify_ledger", stdout=out)
    return out.getvalue()


def _failing(failed_check: str) -> str:
    """Run the command expecting failure of exactly `failed_check`; return its output."""
    out = StringIO()
    with pytest.raises(CommandError, match=r"The ledger has \d+ violation"):
        call_command("verify_ledger", stdout=out)
    output = out.getvalue()
    assert f"FAIL  {failed_check}:" in output
    for name in CHECK_NAMES:
        if name != failed_check:
            assert f"ok    {name}" in output
    return output


def test_a_ledger_built_by_the_services_passes(ledger):
    output = _verify()
    assert all(f"ok    {name}" in output for name in CHECK_NAMES)
    assert "FAIL" not in output
    assert "The ledger is consistent." in output


def test_an_empty_ledger_passes(db):
    assert "The ledger is consistent." in _verify()


def test_a_wallet_balance_off_by_a_fen_is_found(ledger):
    wallet_id = ledger["account"].wallet_id
    LedgerAccount.objects.filter(pk=wallet_id).update(balance=F("balance") + Decimal("0.01"))
    output = _failing("wallet balances equal their postings")
    stored = LedgerAccount.objects.get(pk=wallet_id).balance
    assert f"wallet {wallet_id}: stored {stored}, postings sum to {stored - Decimal('0.01')}" in (
        output
    )


def _bypass_posting_triggers() -> None:
    with connection.cursor() as cursor:
        # Fire the deferred balance checks of the postings made so far (they pass), so the
        # table has no pending trigger events and can be altered; then switch its triggers off
        # for the rest of this test's transaction.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE billing_posting DISABLE TRIGGER USER")


def _raw_posting(txn_id: int, account_id: int, amount: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_posting (transaction_id, ledger_account_id, amount) "
            "VALUES (%s, %s, %s)",
            [txn_id, account_id, amount],
        )


def test_an_unbalanced_transaction_is_found(ledger):
    topup = ledger["topup"]
    cash = LedgerAccount.objects.get(property=ledger["property"], kind=Kind.CASH)
    _bypass_posting_triggers()
    # On the cash book, which stores no balance, so only the transaction's sum is wrong.
    _raw_posting(topup.pk, cash.pk, "-0.01")
    output = _failing("postings balance per transaction")
    assert f"transaction {topup.pk}: 3 postings summing to -0.0100" in output


def test_a_transaction_without_postings_is_found(ledger):
    empty = LedgerTransaction.objects.create(
        organisation=ledger["property"].organisation,
        property=ledger["property"],
        kind=LedgerTransaction.Kind.ADJUSTMENT,
        currency="CNY",
        idempotency_key="empty",
        fingerprint="-",
        effective_at=timezone.now(),
    )
    output = _failing("postings balance per transaction")
    assert f"transaction {empty.pk}: 0 postings summing to 0" in output


def test_a_posting_in_a_foreign_currency_is_found(ledger):
    prop = ledger["property"]
    dollars = factories.PropertyFactory(organisation=prop.organisation, currency="USD")
    dollar_cash = services.book_account(property=dollars, kind=Kind.CASH)
    cash = LedgerAccount.objects.get(property=prop, kind=Kind.CASH)
    _bypass_posting_triggers()
    # Balanced, on books only: the one thing wrong is the currency.
    _raw_posting(ledger["topup"].pk, dollar_cash.pk, "5.00")
    _raw_posting(ledger["topup"].pk, cash.pk, "-5.00")
    output = _failing("one currency per transaction")
    assert "USD account in a CNY transaction" in output


def test_a_gap_in_a_propertys_receipt_numbers_is_found(ledger):
    prop = ledger["property"]
    # A number taken outside topup_record and never issued.
    ReceiptSequence.objects.filter(property=prop).update(last_number=F("last_number") + 1)
    factories.TopupFactory(account=ledger["account"], amount=Decimal("10.00"))
    output = _failing("receipt numbers gapless per property")
    assert f"property {prop.pk}: 4 receipts numbered up to 5" in output


def test_a_second_property_with_its_own_sequence_is_no_gap(ledger, property_a2):
    factories.TopupFactory(
        account=factories.AccountFactory(unit__property=property_a2), amount=Decimal(10)
    )
    assert "The ledger is consistent." in _verify()


def test_a_gap_in_a_propertys_invoice_numbers_is_found(ledger):
    prop = ledger["property"]
    issued_bill(property=prop)
    InvoiceSequence.objects.filter(property=prop).update(last_number=F("last_number") + 1)
    issued_bill(property=prop)
    output = _failing("invoice numbers gapless per property")
    assert f"property {prop.pk}: 2 invoices numbered up to 3" in output


def test_a_bill_paid_beyond_its_allocations_is_found(ledger):
    bill = issued_bill(property=ledger["property"], amount="80.00")
    Invoice.objects.filter(pk=bill.pk).update(paid=Decimal("10.00"))
    output = _failing("bills add up to their allocations and the wallets")
    assert f"invoice {bill.pk}: paid 10.0000, allocations sum to 0" in output


def test_open_bills_asking_for_more_than_the_wallet_owes_are_found(ledger):
    bill = issued_bill(property=ledger["property"], amount="80.00")
    Invoice.objects.filter(pk=bill.pk).update(amount=Decimal("90.00"))
    output = _failing("bills add up to their allocations and the wallets")
    expected = f"account {bill.account_id}: open bills ask for 90.0000, the wallet holds -80.0000"
    assert expected in output


def test_a_debt_recovered_behind_the_ledgers_back_is_found(ledger, owner_a):
    debt = debt_raise(
        account=ledger["account"],
        amount=Decimal("30.00"),
        reason="Broken door",
        counter="fees",
        actor=owner_a,
        idempotency_key="debt-1",
    )
    Debt.objects.filter(pk=debt.pk).update(recovered=Decimal("5.00"))
    _failing("debts add up to the debtors book")


def test_posted_charge_totals_that_drift_from_the_postings_are_found(ledger):
    account = ledger["account"]
    ChargeTotals.objects.filter(account=account, kind="energy").update(
        posted_net=F("posted_net") + Decimal("0.01")
    )
    output = _failing("charges counted once and rounded without loss")
    assert f"account {account.pk} energy charges: posted" in output
    assert "is not exact total rounded" in output
    assert "differ from the posted total" in output


def test_exact_charge_totals_that_drift_from_the_charges_are_found(ledger):
    neighbour = ledger["neighbour"]
    ChargeTotals.objects.filter(account=neighbour).update(exact_tax=F("exact_tax") + 1)
    output = _failing("charges counted once and rounded without loss")
    assert f"account {neighbour.pk} standing charges: totals 0.666700000000+1.086700000000" in (
        output
    )
    assert "posted tax 0.0900 is not exact 1.086700000000 rounded" in output


def test_a_charge_recorded_behind_charges_posts_back_is_found(ledger):
    account = ledger["account"]
    Charge.objects.create(
        account=account,
        kind="energy",
        idempotency_key="smuggled",
        period_start=ledger["start"] - timedelta(hours=2),
        period_end=ledger["start"] - timedelta(hours=1),
        quantity=Decimal(1),
        net=Decimal("1.00"),
        tax=Decimal(0),
    )
    output = _failing("charges counted once and rounded without loss")
    assert f"account {account.pk} energy charges: totals" in output


def test_charges_without_running_totals_are_found(ledger):
    stranger = factories.AccountFactory(unit__property=ledger["property"])
    Charge.objects.create(
        account=stranger,
        kind="standing",
        idempotency_key="orphan",
        period_start=ledger["start"],
        period_end=ledger["start"] + timedelta(days=1),
        quantity=Decimal(1),
        net=Decimal("0.60"),
        tax=Decimal(0),
    )
    output = _failing("charges counted once and rounded without loss")
    assert f"account {stranger.pk} standing: charges without running totals" in output


def test_a_meter_interval_charged_twice_is_found(ledger):
    meter, start = ledger["meter"], ledger["start"]
    # charges_post trusts its caller; an overlap that slips past the charging job is caught here.
    (overlap,) = services.charges_post(
        charges=[
            factories.ChargeInputFactory(
                account=ledger["account"],
                meter_id=meter.pk,
                period_start=start + timedelta(minutes=90),
                period_end=start + timedelta(minutes=150),
                net=Decimal("0.50"),
            )
        ]
    )
    output = _failing("no meter interval charged twice")
    assert f"charge {overlap.pk} overlaps an earlier charge of meter {meter.pk}" in output


def test_a_reversal_that_does_not_mirror_its_original_is_found(ledger):
    topup = ledger["topup"]
    cash = LedgerAccount.objects.get(property=ledger["property"], kind=Kind.CASH)
    wallet = ledger["account"].wallet
    # Balanced and pointing at the top-up, but for half of it.
    half = services.transaction_post(
        property=ledger["property"],
        kind=LedgerTransaction.Kind.REVERSAL,
        entries=[Entry(wallet, Decimal("-100.00")), Entry(cash, Decimal("100.00"))],
        idempotency_key="half-reversal",
        reverses=topup,
    ).transaction
    output = _failing("reversals mirror what they reverse")
    assert f"reversal {half.pk} does not mirror transaction {topup.pk}" in output


def test_violations_shown_are_limited_but_all_counted(ledger, property_a1):
    wallets = [factories.AccountFactory(unit__property=property_a1).wallet_id for _ in range(3)]
    LedgerAccount.objects.filter(pk__in=wallets).update(balance=Decimal(1))
    out = StringIO()
    with pytest.raises(CommandError, match="3 violation"):
        call_command("verify_ledger", "--limit", "2", stdout=out)
    output = out.getvalue()
    assert "FAIL  wallet balances equal their postings: 3 violation(s)" in output
    assert output.count("stored 1.0000, postings sum to 0") == 2
