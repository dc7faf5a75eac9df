"""The postpaid bills' tasks: issuing at the month-end freeze, the catch-up sweep and the
reminders. Each takes ids, calls one service and is safe to run twice."""

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=1800, soft_time_limit=1740)
def month_end_bills_task(property_id: int, month: str) -> int:
    """After a property's month-end freeze: issue that month's postpaid bills."""
    from datetime import date

    from accounts.models import Property
    from billing.invoices import month_end_bills_issue

    prop = Property.objects.get(pk=property_id)
    return month_end_bills_issue(property=prop, month=date.fromisoformat(month))


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=1800, soft_time_limit=1740)
def bills_issue_due_task() -> int:
    """Every 15 minutes: the bills of months frozen to their end that are not issued yet."""
    from billing.invoices import bills_issue_due

    return bills_issue_due()


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=1800, soft_time_limit=1740)
def reminders_task() -> dict:
    """Hourly: bill and instalment reminders due by the schedule, and late fees."""
    from billing.reminders import reminders_send

    return reminders_send()
