"""The `notify` queue: thin tasks over notifications.services. Each takes ids, re-reads what
it needs and is safe to run twice."""

from celery import shared_task


@shared_task(acks_late=True, time_limit=60, soft_time_limit=45)
def send_notification(notification_id: int) -> str:
    """Deliver one queued email or SMS now, or record why not and when to try again."""
    # Services that enqueue tasks import this module, so tasks import services when they run.
    from notifications.services import notification_send

    return notification_send(notification_id=notification_id)


@shared_task(acks_late=True, time_limit=60, soft_time_limit=45)
def notify_account(account_id: int, event: str, context: dict, idempotency_key: str) -> list[str]:
    """Tell an account's tenant about an event; the key makes a repeat send nothing. Returns
    the channels told."""
    from notifications.services import notify

    notifications = notify(
        account_id=account_id, event=event, context=context, idempotency_key=idempotency_key
    )
    return [notification.channel for notification in notifications]


@shared_task(acks_late=True, time_limit=120, soft_time_limit=100)
def retry_due_notifications() -> int:
    """Every minute: put messages whose next attempt is due (or whose task was lost) back on
    the queue."""
    from notifications.services import notifications_retry_due

    return notifications_retry_due()
