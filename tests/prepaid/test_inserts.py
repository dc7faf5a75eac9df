from decimal import Decimal

import pytest
from django.db import transaction

from billing.models import LedgerTransaction, Posting
from billing.services import book_account
from prepaid.audit.models import AuditLog
from prepaid.inserts import insert

pytestmark = pytest.mark.django_db


def test_insert_applies_field_defaults_and_reads_back_like_the_orm(property_a1):
    entry = AuditLog(
        organisation_id=property_a1.organisation_id,
        property_id=property_a1.pk,
        action="test.insert",
        object_type="accounts.property",
        object_id=str(property_a1.uuid),
        after={"amount": "1.50", "nested": [1, None]},
    )
    with transaction.atomic():
        insert(entry)
    stored = AuditLog.objects.get(pk=entry.pk)
    assert not entry._state.adding
    assert entry.created_at is not None
    assert (stored.uuid, stored.created_at, stored.after) == (
        entry.uuid,
        entry.created_at,
        {"amount": "1.50", "nested": [1, None]},
    )


def test_insert_of_several_rows_gives_each_instance_its_own_row(property_a1, account):
    cash = book_account(property=property_a1, kind="cash")
    txn = LedgerTransaction(
        organisation_id=property_a1.organisation_id,
        property_id=property_a1.pk,
        kind=LedgerTransaction.Kind.TOPUP,
        currency="CNY",
        idempotency_key="inserts-test",
        effective_at=account.opened_at,
    )
    amounts = [Decimal("12.34"), Decimal("-12.34")]
    postings = [
        Posting(transaction=txn, ledger_account_id=ledger_id, amount=amount)
        for ledger_id, amount in zip([account.wallet_id, cash.pk], amounts, strict=True)
    ]
    with transaction.atomic():
        insert(txn)
        insert(*postings)
    stored = {
        p.pk: (p.ledger_account_id, p.amount) for p in Posting.objects.filter(transaction=txn)
    }
    assert stored == {p.pk: (p.ledger_account_id, p.amount) for p in postings}
    assert len(stored) == 2
