from celery import shared_task


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def charge_meters_task(meter_ids: list[int]) -> dict:
    """Charge the new readings of these meters now, then check the accounts they charged for
    a cut-off. Idempotent: a repeat charges nothing."""
    # Services that enqueue tasks import this module, so tasks import services when they run.
    from billing.charging import charge_meters
    from billing.sweeps import cutoff_sweep
    from meters.detection import detection_enqueue

    run = charge_meters(meter_ids=meter_ids)
    cutoffs = cutoff_sweep(meter_ids=meter_ids)
    if run.accepted:
        # The detectors judge what was just charged, once it has committed.
        detection_enqueue(meter_ids=meter_ids)
    return {"meters": run.meters, "accepted": run.accepted, "charges": run.charges, **cutoffs}


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def cutoff_sweep_task() -> dict:
    """Periodically: cut off every account whose credit has run out and whose protection or
    grace has ended."""
    from billing.sweeps import cutoff_sweep

    return cutoff_sweep()


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def charge_new_readings_task() -> dict:
    """Periodically: charge every reading not charged yet (MQTT meters report on their own, and
    a charge run after a poll may have been lost). A repeat charges nothing."""
    from billing.charging import charge_new_readings
    from meters.detection import detection_enqueue

    run = charge_new_readings()
    if run.accepted:
        # Which meters were charged is not told: detect on the properties heard from lately.
        detection_enqueue()
    return {"meters": run.meters, "accepted": run.accepted, "charges": run.charges}


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def credit_warnings_task() -> dict:
    """Periodically: warn tenants whose credit will last only a few days, or will run out
    inside the next protected period. Each warning is sent once."""
    from billing.warnings import credit_warnings_sweep

    return credit_warnings_sweep()


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def restore_supply(account_id: int) -> str:
    """Restore an account's supply now that its credit is back. Safe to run twice."""
    from billing.control import restore_evaluate

    decision = restore_evaluate(account_id=account_id)
    return decision.outcome if decision else "nothing to restore"


# Telling tenants: keyed, so a task run twice notifies once.


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def notify_warning(warning_id: int) -> int:
    from billing.notices import warning_notify

    return len(warning_notify(warning_id=warning_id))


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def notify_topup(receipt_id: int, balance: str) -> int:
    from billing.notices import topup_notify

    return len(topup_notify(receipt_id=receipt_id, balance=balance))


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def notify_relay_switched(command_id: int) -> int:
    from billing.notices import relay_switch_notify

    return len(relay_switch_notify(command_id=command_id))


@shared_task(acks_late=True, time_limit=3600, soft_time_limit=3300)
def daily_freeze_task() -> dict:
    """Every few minutes: freeze each property's local days that are over, catching up on any
    missed. Each property-day commits on its own, so a run cut short resumes where it stopped."""
    from billing.freeze import freeze_due

    return freeze_due()
