from celery import shared_task

from billing.charging import charge_meters


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def charge_meters_task(meter_ids: list[int]) -> dict:
    """Charge the new readings of these meters now. Idempotent: a repeat charges nothing."""
    run = charge_meters(meter_ids=meter_ids)
    return {"meters": run.meters, "accepted": run.accepted, "charges": run.charges}
