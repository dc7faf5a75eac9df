"""The billing API: counter top-ups, the ledger and reversals."""

import uuid
from decimal import Decimal

import pytest
from django.urls import reverse

from billing import services
from billing.models import LedgerTransaction, Receipt
from tests import factories

pytestmark = pytest.mark.django_db

TOPUPS = reverse("topup-list")
LEDGER = reverse("ledger-transaction-list")
# The caller's membership and its properties, the page, and one prefetch of the postings with
# their ledger accounts.
LEDGER_LIST_QUERIES = 4


@pytest.fixture
def owner_api(owner_a, api_as):
    return api_as(owner_a)


def _balance(account) -> Decimal:
    account.wallet.refresh_from_db(fields=["balance"])
    return account.wallet.balance


def _topup(account, amount="10.00"):
    return services.topup_record(
        account=account,
        amount=Decimal(amount),
        channel="cash",
        actor=None,
        idempotency_key=f"test:{uuid.uuid4()}",
    ).receipt


def _post_topup(api, account, key="key-1", **body):
    body = {
        "account": str(account.uuid),
        "amount": "50.00",
        "currency": "CNY",
        "channel": "cash",
        **body,
    }
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return api.post(TOPUPS, body, format="json", **headers)


def _reverse(api, txn, key="rev-1", reason="Keyed in twice"):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    url = reverse("ledger-transaction-reverse", args=[txn.uuid])
    return api.post(url, {"reason": reason}, format="json", **headers)


# Top-ups -----------------------------------------------------------------------------------------


def test_a_counter_topup_credits_the_wallet_and_returns_its_receipt(owner_api, account):
    response = _post_topup(owner_api, account, reference="till 3")
    assert response.status_code == 201, response.content
    receipt = Receipt.objects.get()
    assert response.json() == {
        "id": str(receipt.uuid),
        "number": "A1-00000001",
        "property": str(account.unit.property.uuid),
        "account": str(account.uuid),
        "tenant_name": account.tenant.name,
        "amount": "50.00",
        "currency": "CNY",
        "channel": "cash",
        "reference": "till 3",
        "issued_at": response.json()["issued_at"],
        "transaction": str(receipt.transaction.uuid),
    }
    assert _balance(account) == Decimal("50.00")
    assert receipt.transaction.actor.username == "owner-a"


def test_a_replay_with_the_same_key_returns_the_same_receipt_and_credits_once(owner_api, account):
    first = _post_topup(owner_api, account)
    replay = _post_topup(owner_api, account)
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json()["id"] == first.json()["id"]
    assert Receipt.objects.count() == 1
    assert _balance(account) == Decimal("50.00")


def test_the_same_key_for_a_different_amount_is_refused(owner_api, account):
    assert _post_topup(owner_api, account).status_code == 201
    response = _post_topup(owner_api, account, amount="60.00")
    assert response.status_code == 400
    assert response.json() == {
        "idempotency_key": ["This idempotency key was already used for a different request."]
    }
    assert _balance(account) == Decimal("50.00")


def test_a_new_key_records_a_new_topup(owner_api, account):
    assert _post_topup(owner_api, account, key="k-1").status_code == 201
    second = _post_topup(owner_api, account, key="k-2")
    assert second.status_code == 201
    assert second.json()["number"] == "A1-00000002"
    assert _balance(account) == Decimal("100.00")


def test_keys_belong_to_one_organisation(owner_api, account, owner_b, property_b1, api_as):
    assert _post_topup(owner_api, account, key="shared").status_code == 201
    theirs = factories.AccountFactory(unit__property=property_b1)
    response = _post_topup(api_as(owner_b), theirs, key="shared", amount="70.00")
    assert response.status_code == 201
    assert _balance(theirs) == Decimal("70.00")


def test_a_topup_without_an_idempotency_key_is_refused(owner_api, account):
    response = _post_topup(owner_api, account, key=None)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert not Receipt.objects.exists()


def test_an_overlong_idempotency_key_is_refused(owner_api, account):
    response = _post_topup(owner_api, account, key="k" * 201)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()


def test_a_long_idempotency_key_still_replays(owner_api, account):
    key = "k" * 200
    assert _post_topup(owner_api, account, key=key).status_code == 201
    assert _post_topup(owner_api, account, key=key).status_code == 200
    assert _balance(account) == Decimal("50.00")


def test_an_amount_finer_than_the_minor_unit_is_refused(owner_api, account):
    response = _post_topup(owner_api, account, amount="10.005")
    assert response.status_code == 400
    assert "amount" in response.json()
    assert _balance(account) == 0


def test_a_json_number_amount_is_read_exactly(owner_api, account):
    response = _post_topup(owner_api, account, amount=20.1)
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "20.10"
    assert _balance(account) == Decimal("20.10")


def test_a_topup_in_another_currency_is_refused(owner_api, account):
    response = _post_topup(owner_api, account, currency="USD")
    assert response.status_code == 400
    assert response.json() == {"currency": ["This property takes CNY, not USD."]}


def test_a_topup_needs_a_currency_and_a_counter_channel(owner_api, account):
    response = _post_topup(owner_api, account, currency="cny", channel="stripe")
    assert response.status_code == 400
    assert {"currency", "channel"} <= set(response.json())


def test_accountants_cannot_record_topups(accountant_a, api_as, account):
    assert _post_topup(api_as(accountant_a), account).status_code == 403


def test_managers_record_topups_in_their_properties(manager_a1, api_as, account):
    assert _post_topup(api_as(manager_a1), account).status_code == 201


def test_an_account_outside_the_managers_properties_is_unknown(manager_a1, api_as, property_a2):
    elsewhere = factories.AccountFactory(unit__property=property_a2)
    response = _post_topup(api_as(manager_a1), elsewhere)
    assert response.status_code == 400
    assert response.json() == {"account": [f"No such object: {elsewhere.uuid}."]}
    assert _balance(elsewhere) == 0


def test_topups_are_listed_and_filtered_by_account(owner_api, account, property_a1):
    other = factories.AccountFactory(unit__property=property_a1)
    mine = _topup(account)
    _topup(other)
    rows = owner_api.get(TOPUPS, {"account": str(account.uuid)}).json()["results"]
    assert [row["id"] for row in rows] == [str(mine.uuid)]
    assert owner_api.get(TOPUPS, {"channel": "bank"}).json()["results"] == []


# The ledger --------------------------------------------------------------------------------------


def test_the_ledger_lists_transactions_with_their_postings(owner_api, account):
    receipt = _topup(account, "25.00")
    rows = owner_api.get(LEDGER).json()["results"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["id"], row["kind"], row["currency"]) == (
        str(receipt.transaction.uuid),
        "topup",
        "CNY",
    )
    assert row["reverses"] is None
    postings = {posting["kind"]: posting for posting in row["postings"]}
    assert postings["wallet"] == {
        "ledger_account": str(account.wallet.uuid),
        "kind": "wallet",
        "channel": "",
        "amount": "25.00",
    }
    assert postings["cash"]["amount"] == "-25.00"
    assert set(postings) == {"wallet", "cash"}


def test_the_ledger_list_takes_as_many_queries_for_20_transactions_as_for_1(
    owner_api, account, django_assert_max_num_queries
):
    _topup(account)
    with django_assert_max_num_queries(LEDGER_LIST_QUERIES):
        assert len(owner_api.get(LEDGER).json()["results"]) == 1
    for _ in range(19):
        _topup(account, "1.00")
    with django_assert_max_num_queries(LEDGER_LIST_QUERIES):
        assert len(owner_api.get(LEDGER).json()["results"]) == 20


def test_the_ledger_is_filtered_by_tenant_account_and_kind(owner_api, account, property_a1):
    other = factories.AccountFactory(unit__property=property_a1)
    mine = _topup(account)
    _topup(other)
    rows = owner_api.get(LEDGER, {"account": str(account.uuid)}).json()["results"]
    assert [row["id"] for row in rows] == [str(mine.transaction.uuid)]
    assert owner_api.get(LEDGER, {"kind": "reversal"}).json()["results"] == []


# Reversals ---------------------------------------------------------------------------------------


def test_an_owner_reverses_a_topup_once_however_often_the_request_is_sent(owner_api, account):
    original = _topup(account, "30.00").transaction
    first = _reverse(owner_api, original)
    replay = _reverse(owner_api, original)
    assert (first.status_code, replay.status_code) == (201, 200), first.content
    assert first.json()["id"] == replay.json()["id"]
    assert first.json()["kind"] == "reversal"
    assert first.json()["reverses"] == str(original.uuid)
    assert first.json()["memo"] == "Keyed in twice"
    assert LedgerTransaction.objects.filter(kind="reversal").count() == 1
    assert _balance(account) == 0
    shown = owner_api.get(reverse("ledger-transaction-detail", args=[original.uuid])).json()
    assert shown["reversed_by"] == first.json()["id"]


def test_reversing_again_under_another_key_is_refused(owner_api, account):
    original = _topup(account).transaction
    assert _reverse(owner_api, original, key="rev-1").status_code == 201
    response = _reverse(owner_api, original, key="rev-2")
    assert response.status_code == 400
    assert _balance(account) == 0


def test_a_reversal_key_reused_for_another_transaction_is_refused(owner_api, account):
    first, twin = _topup(account).transaction, _topup(account).transaction
    assert _reverse(owner_api, first, key="rev-1").status_code == 201
    response = _reverse(owner_api, twin, key="rev-1")
    assert response.status_code == 400
    assert "idempotency_key" in response.json()
    assert _balance(account) == Decimal("10.00")


def test_a_reversal_needs_a_reason(owner_api, account):
    response = _reverse(owner_api, _topup(account).transaction, reason="")
    assert response.status_code == 400
    assert "reason" in response.json()


def test_managers_cannot_reverse(manager_a1, api_as, account):
    response = _reverse(api_as(manager_a1), _topup(account).transaction)
    assert response.status_code == 403
    assert _balance(account) == Decimal("10.00")


def test_a_reversal_without_an_idempotency_key_is_refused(owner_api, account):
    response = _reverse(owner_api, _topup(account).transaction, key=None)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert _balance(account) == Decimal("10.00")
