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


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def autotopup_evaluate_task(account_id: int) -> int | None:
    """After a balance fell: record the auto top-up attempt it calls for, if any. Safe to run
    twice."""
    from payments.autotopup import autotopup_evaluate

    attempt = autotopup_evaluate(account_id=account_id)
    return attempt.pk if attempt else None


@shared_task(acks_late=True, time_limit=120, soft_time_limit=100)
def autotopup_attempt_task(attempt_id: int) -> str:
    """Charge one auto top-up attempt to the saved card. Charges at most once, however often
    it runs."""
    from payments.autotopup import autotopup_attempt

    return autotopup_attempt(attempt_id=attempt_id)


@shared_task(acks_late=True, time_limit=300, soft_time_limit=240)
def autotopup_sweep_task() -> dict:
    """Periodically: conclude auto top-up attempts whose payment has an outcome, and resume
    attempts whose worker went quiet."""
    from payments.autotopup import autotopup_sweep

    return autotopup_sweep()
