"""Posting exact charges: carried remainders, the right books, and replays that post nothing."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import services
from billing.models import Charge, ChargeTotals, LedgerAccount, LedgerTransaction, Posting
from billing.services import ChargeInput
from billing.verification import ledger_violations
from prepaid.money import quantize
from tests import factories

pytestmark = pytest.mark.django_db

Kind = LedgerAccount.Kind
CENT = Decimal("0.01")
HALF_CENT = Decimal("0.005")


def _balance(account) -> Decimal:
    return LedgerAccount.objects.get(pk=account.wallet_id).balance


def _book(property, kind) -> Decimal:
    """A book's balance, summed from its postings; zero for a book never used."""
    amounts = Posting.objects.filter(
        ledger_account__property=property, ledger_account__kind=kind
    ).values_list("amount", flat=True)
    return sum(amounts, Decimal(0))


def _totals(account, kind="energy") -> tuple[Decimal, Decimal, Decimal, Decimal]:
    row = ChargeTotals.objects.get(account=account, kind=kind)
    return row.exact_net, row.exact_tax, row.posted_net, row.posted_tax


def test_sub_minor_unit_charges_accumulate_and_post_once_the_rounded_total_moves(
    property_a1, account
):
    start = timezone.now()
    posted_after = []
    for i in range(300):
        charge = factories.ChargeInputFactory(
            account=account,
            net=Decimal("0.001"),
            period_start=start + timedelta(minutes=i),
            period_end=start + timedelta(minutes=i + 1),
        )
        services.charges_post(charges=[charge])
        posted_after.append(-_balance(account))
    # Half a fen rounds to even (0.00); from 0.006 on, a fen has reached the wallet.
    assert posted_after[:5] == [Decimal(0)] * 5
    assert posted_after[5] == CENT
    assert posted_after[-1] == Decimal("0.30")
    assert _balance(account) == Decimal("-0.30")
    assert _book(property_a1, Kind.ENERGY_REVENUE) == Decimal("0.30")
    assert _totals(account) == (Decimal("0.3"), 0, Decimal("0.30"), 0)
    # A transaction only when the rounded running total moved: 30 fen, 30 transactions.
    assert LedgerTransaction.objects.filter(kind="charge").count() == 30
    assert Charge.objects.filter(account=account).count() == 300
    assert Charge.objects.filter(account=account, transaction=None).count() == 270
    assert not any(ledger_violations().values())


def test_tax_goes_to_tax_payable_and_net_to_energy_revenue(property_a1, account):
    charge = factories.ChargeInputFactory(
        account=account, net=Decimal("10.00"), tax=Decimal("1.30"), quantity=Decimal("12.5")
    )
    (row,) = services.charges_post(charges=[charge])
    assert row.transaction.kind == LedgerTransaction.Kind.CHARGE
    assert sorted(row.transaction.postings.values_list("ledger_account__kind", "amount")) == [
        (Kind.ENERGY_REVENUE, Decimal("10.00")),
        (Kind.TAX_PAYABLE, Decimal("1.30")),
        (Kind.WALLET, Decimal("-11.30")),
    ]
    assert _balance(account) == Decimal("-11.30")
    assert _book(property_a1, Kind.STANDING_REVENUE) == 0


def test_standing_charges_go_to_standing_revenue(property_a1, account):
    charge = factories.ChargeInputFactory(
        account=account, kind="standing", net=Decimal("0.80"), tax=Decimal("0.10")
    )
    (row,) = services.charges_post(charges=[charge])
    assert row.transaction.kind == LedgerTransaction.Kind.STANDING_CHARGE
    assert _book(property_a1, Kind.STANDING_REVENUE) == Decimal("0.80")
    assert _book(property_a1, Kind.TAX_PAYABLE) == Decimal("0.10")
    assert _book(property_a1, Kind.ENERGY_REVENUE) == 0
    assert _balance(account) == Decimal("-0.90")
    assert _totals(account, "standing") == (
        Decimal("0.8"),
        Decimal("0.1"),
        Decimal("0.80"),
        Decimal("0.10"),
    )


def test_a_tax_remainder_moves_between_revenue_and_tax_without_touching_the_wallet(
    property_a1, account
):
    # 0.004 + 0.004 posts 0.01 to the wallet, all of it net; a third tax share tips tax over.
    services.charges_post(
        charges=[
            factories.ChargeInputFactory(account=account, net=Decimal("0.004"), tax=Decimal(0)),
            factories.ChargeInputFactory(account=account, net=Decimal(0), tax=Decimal("0.004")),
        ]
    )
    assert _balance(account) == Decimal("-0.01")
    assert (_book(property_a1, Kind.ENERGY_REVENUE), _book(property_a1, Kind.TAX_PAYABLE)) == (
        CENT,
        0,
    )
    # Tax now 0.0064 (rounds to 0.01), total 0.0104 (still 0.01): a revenue-to-tax transfer.
    (row,) = services.charges_post(
        charges=[
            factories.ChargeInputFactory(account=account, net=Decimal(0), tax=Decimal("0.0024"))
        ]
    )
    assert _balance(account) == Decimal("-0.01")
    assert sorted(row.transaction.postings.values_list("ledger_account__kind", "amount")) == [
        (Kind.ENERGY_REVENUE, -CENT),
        (Kind.TAX_PAYABLE, CENT),
    ]
    assert not any(ledger_violations().values())


def test_replaying_the_same_batch_posts_nothing(property_a1, account):
    batch = [
        factories.ChargeInputFactory(account=account, net=Decimal("1.234567")) for _ in range(3)
    ]
    assert len(services.charges_post(charges=batch)) == 3
    counts = (Charge.objects.count(), LedgerTransaction.objects.count(), Posting.objects.count())
    assert services.charges_post(charges=batch) == []
    assert services.charges_post(charges=list(reversed(batch))) == []
    assert (
        Charge.objects.count(),
        LedgerTransaction.objects.count(),
        Posting.objects.count(),
    ) == counts
    assert _balance(account) == Decimal("-3.70")
    assert _totals(account)[0] == Decimal("3.703701")


def test_a_batch_with_a_key_already_recorded_skips_only_that_charge(account):
    done = factories.ChargeInputFactory(account=account, net=Decimal("2.00"))
    services.charges_post(charges=[done])
    new = [factories.ChargeInputFactory(account=account, net=Decimal("0.50")) for _ in range(2)]
    rows = services.charges_post(charges=[new[0], done, new[1]])
    assert sorted(row.idempotency_key for row in rows) == sorted(c.idempotency_key for c in new)
    assert _balance(account) == Decimal("-3.00")
    assert Charge.objects.filter(idempotency_key=done.idempotency_key).count() == 1


def test_a_key_twice_in_one_batch_is_charged_once(account):
    charge = factories.ChargeInputFactory(account=account, net=Decimal("2.00"))
    rows = services.charges_post(charges=[charge, charge])
    assert len(rows) == 1
    assert _balance(account) == Decimal("-2.00")


def test_one_batch_charges_several_accounts_each_in_its_own_transaction(property_a1, account):
    other = factories.AccountFactory(unit__property=property_a1)
    services.charges_post(
        charges=[
            factories.ChargeInputFactory(account=account, net=Decimal("1.00")),
            factories.ChargeInputFactory(account=other, net=Decimal("2.00")),
            factories.ChargeInputFactory(account=account, kind="standing", net=Decimal("0.50")),
        ]
    )
    assert (_balance(account), _balance(other)) == (Decimal("-1.50"), Decimal("-2.00"))
    assert LedgerTransaction.objects.count() == 3
    assert not any(ledger_violations().values())


def test_an_empty_batch_posts_nothing(account):
    assert services.charges_post(charges=[]) == []
    assert not LedgerTransaction.objects.exists()


def test_a_float_charge_is_refused_and_nothing_is_recorded(account):
    charge = factories.ChargeInputFactory(account=account, net=0.1)
    with pytest.raises(TypeError):
        services.charges_post(charges=[charge])
    assert not Charge.objects.exists()
    assert not ChargeTotals.objects.exists()


# Invariants 4 and 5 at the ledger level ----------------------------------------------------------

exact = st.decimals(min_value=0, max_value=40, places=6, allow_nan=False, allow_infinity=False)
exact_charges = st.lists(
    st.tuples(st.sampled_from(["energy", "standing"]), exact, exact), min_size=1, max_size=25
)


def _chunks(items: list, cuts: list[bool]) -> list[list]:
    """Split `items` after every position whose cut flag is set."""
    chunks, current = [], []
    for item, cut in zip(items, [*cuts, True], strict=True):
        current.append(item)
        if cut:
            chunks.append(current)
            current = []
    return chunks


def _post_in_chunks(account, charges, cuts) -> None:
    start = timezone.now()
    inputs = [
        ChargeInput(
            account=account,
            kind=kind,
            idempotency_key=f"{account.pk}-{i}",
            period_start=start + timedelta(minutes=i),
            period_end=start + timedelta(minutes=i + 1),
            quantity=Decimal(1),
            net=net,
            tax=tax,
        )
        for i, (kind, net, tax) in enumerate(charges)
    ]
    for chunk in _chunks(inputs, cuts):
        services.charges_post(charges=chunk)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(charges=exact_charges, data=st.data())
def test_chunking_never_changes_what_is_posted_and_rounding_loses_nothing(
    property_a1, charges, data
):
    cut_flags = st.lists(st.booleans(), min_size=len(charges) - 1, max_size=len(charges) - 1)
    chunkings = [
        [False] * (len(charges) - 1),  # one batch
        [True] * (len(charges) - 1),  # one batch per charge
        data.draw(cut_flags, label="random chunking"),
    ]
    with transaction.atomic():
        wallets, totals = [], []
        for cuts in chunkings:
            account = factories.AccountFactory(unit__property=property_a1)
            _post_in_chunks(account, charges, cuts)
            wallets.append(_balance(account))
            totals.append(
                {
                    row.kind: (row.exact_net, row.exact_tax, row.posted_net, row.posted_tax)
                    for row in ChargeTotals.objects.filter(account=account)
                }
            )
        assert wallets[1:] == wallets[:1] * 2
        assert totals[1:] == totals[:1] * 2

        posted_total = Decimal(0)
        for kind, (exact_net, exact_tax, posted_net, posted_tax) in totals[0].items():
            net = sum((n for k, n, _ in charges if k == kind), Decimal(0))
            tax = sum((t for k, _, t in charges if k == kind), Decimal(0))
            assert (exact_net, exact_tax) == (net, tax)
            assert posted_net + posted_tax == quantize(net + tax, "CNY")
            assert posted_tax == quantize(tax, "CNY")
            assert abs(posted_net + posted_tax - (net + tax)) <= HALF_CENT
            assert abs(posted_tax - tax) <= HALF_CENT
            # Net is what is left of the rounded total after rounded tax: within one fen.
            assert abs(posted_net - net) <= CENT
            posted_total += posted_net + posted_tax
        assert wallets[0] == -posted_total
        books = sum(
            _book(property_a1, kind)
            for kind in (Kind.ENERGY_REVENUE, Kind.STANDING_REVENUE, Kind.TAX_PAYABLE)
        )
        assert books == 3 * posted_total
        assert not any(ledger_violations().values())
        transaction.set_rollback(True)
