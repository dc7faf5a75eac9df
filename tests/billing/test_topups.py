"""Counter top-ups: wallet credited once, a gapless receipt, limits, and clean refusals."""

from decimal import Decimal

import pytest

from accounts import services as accounts
from billing import services
from billing.models import LedgerAccount, LedgerTransaction, Posting, Receipt, ReceiptSequence
from billing.services import IdempotencyConflict, LedgerError
from billing.verification import ledger_violations
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db

Kind = LedgerAccount.Kind


def _topup(account, amount, key="t-1", channel="cash", **kwargs):
    return services.topup_record(
        account=account,
        amount=amount,
        channel=channel,
        actor=kwargs.pop("actor", None),
        idempotency_key=key,
        **kwargs,
    )


def _balance(account) -> Decimal:
    return LedgerAccount.objects.get(pk=account.wallet_id).balance


def _book_postings(property, kind, channel="") -> Decimal:
    book = LedgerAccount.objects.get(property=property, kind=kind, channel=channel)
    return sum(book.postings.values_list("amount", flat=True), Decimal(0))


def _numbers(property) -> list[int]:
    return list(
        Receipt.objects.filter(property=property)
        .order_by("number")
        .values_list("number", flat=True)
    )


def test_a_cash_topup_credits_the_wallet_debits_cash_and_issues_receipt_one(
    property_a1, account, owner_a
):
    result = _topup(account, Decimal("100.00"), actor=owner_a, reference="till 3")
    receipt = result.receipt
    assert result.created
    assert (receipt.number, receipt.amount, receipt.currency, receipt.channel) == (
        1,
        Decimal("100.00"),
        "CNY",
        "cash",
    )
    assert (receipt.account, receipt.property, receipt.reference) == (
        account,
        property_a1,
        "till 3",
    )
    assert receipt.display_number() == "A1-00000001"
    assert receipt.transaction.kind == LedgerTransaction.Kind.TOPUP
    assert receipt.transaction.actor == owner_a
    assert _balance(account) == Decimal("100.00")
    assert _book_postings(property_a1, Kind.CASH) == Decimal("-100.00")
    assert not LedgerAccount.objects.filter(kind=Kind.CLEARING).exists()
    row = AuditLog.objects.get(action="topup.record")
    assert (row.actor, row.object_id, row.object_repr, row.after) == (
        owner_a,
        str(account.uuid),
        str(account),
        {"amount": "100.00", "channel": "cash", "receipt": str(receipt.uuid)},
    )
    assert not any(ledger_violations().values())


def test_a_bank_topup_debits_bank_clearing_instead_of_cash(property_a1, account):
    _topup(account, Decimal("80.00"), channel="bank", reference="TRX-991")
    assert _balance(account) == Decimal("80.00")
    assert _book_postings(property_a1, Kind.CLEARING, "bank") == Decimal("-80.00")
    assert not LedgerAccount.objects.filter(kind=Kind.CASH).exists()


def test_amounts_given_as_int_or_string_are_taken_exactly(account):
    _topup(account, 25, key="t-int")
    _topup(account, "1.10", key="t-str")
    assert _balance(account) == Decimal("26.10")


def test_receipt_numbers_are_gapless_and_independent_per_property(property_a1, property_a2):
    here = factories.AccountFactory(unit__property=property_a1)
    there = factories.AccountFactory(unit__property=property_a2)
    for i, target in enumerate([here, there, here, here, there]):
        _topup(target, Decimal(10), key=f"t-{i}", channel=["cash", "bank"][i % 2])
    assert _numbers(property_a1) == [1, 2, 3]
    assert _numbers(property_a2) == [1, 2]
    assert ReceiptSequence.objects.get(property=property_a1).last_number == 3
    assert ReceiptSequence.objects.get(property=property_a2).last_number == 2
    assert not any(ledger_violations().values())


def test_a_replayed_topup_returns_the_same_receipt_and_credits_once(account):
    first = _topup(account, Decimal("50.00"), reference="r-1")
    again = _topup(account, Decimal(50), reference="r-1")
    assert (again.created, again.receipt.pk, again.receipt.number) == (
        False,
        first.receipt.pk,
        1,
    )
    assert _balance(account) == Decimal("50.00")
    assert (Receipt.objects.count(), LedgerTransaction.objects.count()) == (1, 1)
    assert AuditLog.objects.filter(action="topup.record").count() == 1
    assert ReceiptSequence.objects.get().last_number == 1


@pytest.mark.parametrize(
    "change",
    [
        {"amount": Decimal("50.01")},
        {"channel": "bank"},
        {"reference": "another slip"},
    ],
    ids=["amount", "channel", "reference"],
)
def test_the_same_key_for_a_different_request_is_refused(account, change):
    _topup(account, Decimal("50.00"))
    request = {"amount": Decimal("50.00"), "channel": "cash", **change}
    with pytest.raises(IdempotencyConflict):
        _topup(account, request.pop("amount"), **request)
    assert _balance(account) == Decimal("50.00")
    assert Receipt.objects.count() == 1


def test_the_same_key_for_another_account_is_refused(property_a1, account):
    other = factories.AccountFactory(unit__property=property_a1)
    _topup(account, Decimal("50.00"))
    with pytest.raises(IdempotencyConflict):
        _topup(other, Decimal("50.00"))
    assert (_balance(account), _balance(other)) == (Decimal("50.00"), 0)


# Limits ------------------------------------------------------------------------------------------


@pytest.fixture
def limits(property_a1):
    return factories.TopupLimitsFactory(
        property=property_a1,
        minimum=Decimal(10),
        maximum=Decimal(500),
        max_balance=Decimal(1000),
    )


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (Decimal("9.99"), "The smallest top-up is 10"),
        (Decimal("500.01"), "The largest top-up is 500"),
    ],
)
def test_a_topup_outside_the_propertys_limits_is_refused(limits, account, amount, message):
    with pytest.raises(LedgerError) as refused:
        _topup(account, amount)
    assert message in refused.value.message_dict["amount"][0]
    assert _balance(account) == 0


def test_the_limits_themselves_are_allowed(limits, account):
    _topup(account, Decimal(10), key="t-min")
    _topup(account, Decimal(500), key="t-max")
    assert _balance(account) == Decimal(510)


def test_a_topup_that_would_lift_the_wallet_above_its_maximum_is_refused(limits, account):
    _topup(account, Decimal(500), key="t-1")
    _topup(account, Decimal(400), key="t-2")
    with pytest.raises(LedgerError) as refused:
        _topup(account, Decimal("100.01"), key="t-3")
    assert refused.value.message_dict["amount"] == [
        "A wallet may hold at most 1000.0000; at most 100.0000 fits."
    ]
    # Exactly up to the maximum is fine.
    _topup(account, Decimal(100), key="t-4")
    assert _balance(account) == Decimal(1000)


def test_without_a_limits_row_the_defaults_apply(account):
    for amount, key in [(Decimal("0.99"), "t-small"), (Decimal("5000.01"), "t-big")]:
        with pytest.raises(LedgerError) as refused:
            _topup(account, amount, key=key)
        assert "amount" in refused.value.message_dict
    _topup(account, Decimal(5000), key="t-ok")
    assert _balance(account) == Decimal(5000)


# Refusals write nothing --------------------------------------------------------------------------


def _state(account) -> tuple:
    sequence = ReceiptSequence.objects.filter(property_id=account.unit.property_id).first()
    return (
        _balance(account),
        LedgerAccount.objects.count(),
        LedgerTransaction.objects.count(),
        Posting.objects.count(),
        Receipt.objects.count(),
        sequence.last_number if sequence else None,
        AuditLog.objects.filter(action="topup.record").count(),
    )


def _closed_account(property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    accounts.account_close(account=account, actor=None)
    return account


REFUSALS = {
    "zero": (Decimal(0), {}, LedgerError, "amount"),
    "negative": (Decimal("-5.00"), {}, LedgerError, "amount"),
    "sub-minor-unit": (Decimal("10.001"), {}, LedgerError, "amount"),
    "float": (10.0, {}, TypeError, None),
    "wrong currency": (Decimal(10), {"currency": "USD"}, LedgerError, "currency"),
    "unknown channel": (Decimal(10), {"channel": "barter"}, LedgerError, "channel"),
    "closed account": (Decimal(10), {"closed": True}, LedgerError, None),
    "above maximum": (Decimal(6000), {"channel": "bank"}, LedgerError, "amount"),
    "above max balance": (Decimal(10), {"max_balance": Decimal(15)}, LedgerError, "amount"),
}


@pytest.mark.parametrize(("amount", "options", "error", "field"), REFUSALS.values(), ids=REFUSALS)
def test_a_refused_topup_leaves_nothing_half_written(
    property_a1, account, amount, options, error, field
):
    options = dict(options)
    if "max_balance" in options:
        factories.TopupLimitsFactory(property=property_a1, max_balance=options.pop("max_balance"))
    # An earlier top-up, so the receipt sequence exists and must stay where it is.
    _topup(account, Decimal(10), key="t-0")
    target = _closed_account(property_a1) if options.pop("closed", False) else account
    # A first bank top-up would create the clearing book: that must be rolled back too.
    before = _state(target)
    with pytest.raises(error) as refused:
        _topup(target, amount, key="t-refused", **options)
    if field is not None:
        assert field in refused.value.message_dict
    assert _state(target) == before
    assert not LedgerTransaction.objects.filter(idempotency_key="t-refused").exists()
    assert not any(ledger_violations().values())


def test_a_closed_account_is_refused_with_a_clear_message(property_a1):
    closed = _closed_account(property_a1)
    with pytest.raises(LedgerError, match="open accounts only"):
        _topup(closed, Decimal(10))


def test_a_refused_key_can_be_used_again_for_a_valid_topup(limits, account):
    with pytest.raises(LedgerError):
        _topup(account, Decimal(5), key="t-1")
    assert _topup(account, Decimal(50), key="t-1").created
    assert _numbers(account.unit.property) == [1]
