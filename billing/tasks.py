from celery import shared_task


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def charge_meters_task(meter_ids: list[int]) -> dict:
    """Charge the new readings of these meters now, then check the accounts they charged for
    a cut-off. Idempotent: a repeat charges nothing."""
    # Services that enqueue tasks import this module, so tasks import services when they run.
    from billing.charging import charge_meters
    from billing.sweeps import cutoff_sweep

    run = charge_meters(meter_ids=meter_ids)
    cutoffs = cutoff_sweep(meter_ids=meter_ids)
    return {"meters": run.meters, "accepted": run.accepted, "charges": run.charges, **cutoffs}


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def cutoff_sweep_task() -> dict:
    """Periodically: cut off every account whose credit has run out and whose protection or
    grace has ended."""
    from billing.sweeps import cutoff_sweep

    return cutoff_sweep()


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def restore_supply(account_id: int) -> str:
    """Restore an account's supply now that its credit is back. Safe to run twice."""
    from billing.control import restore_evaluate

    decision = restore_evaluate(account_id=account_id)
    return decision.outcome if decision else "nothing to restore"
