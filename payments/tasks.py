from celery import shared_task

# Services that enqueue these import this module, so tasks import services when they run.


@shared_task(acks_late=True, time_limit=120, soft_time_limit=100)
def submit_refund(refund_id: int) -> str:
    """Send a started refund to its provider and settle it. Safe to run twice."""
    from payments.services import refund_submit

    return refund_submit(refund_id=refund_id)


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def stranded_payments_task() -> dict:
    """Periodically: ask the providers about payments still open after 15 minutes, and about
    refunds they have not confirmed."""
    from payments.services import pending_refunds_retry, stranded_intents_sweep

    return {"intents": stranded_intents_sweep(), "refunds": pending_refunds_retry()}


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50, max_retries=8)
def deliver_sandbox_notification(reference: str, event_type: str, event_id: str) -> int:
    """The sandbox provider's webhook delivery, retried with backoff as a real provider's is."""
    from payments.sandbox import SandboxDeliveryError, sandbox_deliver

    try:
        return sandbox_deliver(reference=reference, event_type=event_type, event_id=event_id)
    except SandboxDeliveryError as exc:
        raise deliver_sandbox_notification.retry(
            exc=exc, countdown=min(2**deliver_sandbox_notification.request.retries * 5, 600)
        ) from exc
