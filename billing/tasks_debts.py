"""Debts' background work: billing postpaid accounts' instalments as they fall due."""

from celery import shared_task
from django.db import transaction


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def bill_instalments_task(account_id: int) -> int:
    """Bill one postpaid account's instalments due by its local today. Safe to run twice: each
    instalment is billed under its own key, once."""
    from billing.debts import instalments_bill

    return instalments_bill(account_id=account_id)


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def instalments_due_sweep_task() -> int:
    """Periodically: one task per postpaid account with an instalment that may be due."""
    from billing.debts import instalments_due_accounts

    account_ids = instalments_due_accounts()
    for account_id in account_ids:
        transaction.on_commit(lambda account_id=account_id: bill_instalments_task.delay(account_id))
    return len(account_ids)
