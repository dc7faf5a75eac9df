"""The `reports` queue's tasks (every `reports.tasks.*` is routed there)."""

from celery import shared_task

# Exports -----------------------------------------------------------------------------------------


@shared_task(
    acks_late=True, reject_on_worker_lost=True, time_limit=2 * 3600, soft_time_limit=2 * 3600 - 300
)
def export_run_task(job_id: int) -> str:
    """Write an export job's file. Idempotent: a finished job is left alone, and a job whose
    worker died is written again from scratch."""
    from reports.exports import export_run

    job = export_run(job_id=job_id)
    return job.state if job else "nothing to do"


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def exports_expire_task() -> int:
    """Hourly: delete the export files past their keeping time; how many jobs expired."""
    from reports.exports import exports_expire

    return exports_expire()


# Monthly statements ------------------------------------------------------------------------------


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=1800, soft_time_limit=1740)
def monthly_statements_task() -> int:
    """Every 15 minutes: email each account's statement of the month that just ended, once,
    after the property's last daily freeze of that month; how many accounts were told."""
    from reports.statements import monthly_statements_send

    return monthly_statements_send()
