"""Sending sign-in codes, on the `notify` queue."""

from celery import shared_task

from notifications.delivery import DeliveryError

# A code lives ten minutes: a few quick retries, then give up and let the tenant ask again.
RETRY_SECONDS = 30
MAX_RETRIES = 3


@shared_task(bind=True, acks_late=True, time_limit=60, soft_time_limit=45)
def send_sign_in_code(self, code_id: int) -> str:
    """Deliver one code by id; nothing if it was sent, used or has expired."""
    # Services that enqueue tasks import this module, so tasks import services when they run.
    from portal.signin import sign_in_code_send

    try:
        return sign_in_code_send(code_id=code_id)
    except DeliveryError as error:
        if error.permanent:
            return "failed"
        raise self.retry(exc=error, countdown=RETRY_SECONDS, max_retries=MAX_RETRIES) from error
