from celery import shared_task


@shared_task(acks_late=True, time_limit=120, soft_time_limit=90)
def execute_relay_command(command_id: int) -> str:
    """Switch a relay now and confirm it; retries reschedule this task. Safe to run twice: a
    command that is no longer active, or waits for a later attempt, is left alone."""
    # Services that enqueue tasks import this module, so tasks import services when they run.
    from meters.relay import relay_command_execute

    return relay_command_execute(command_id=command_id)


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def check_relay_confirmation(command_id: int, attempt: int) -> str:
    """An MQTT device had its window to confirm this attempt; fail the attempt if it did not."""
    from meters.relay import relay_command_unconfirmed

    return relay_command_unconfirmed(command_id=command_id, attempt=attempt)


@shared_task(acks_late=True, time_limit=300, soft_time_limit=270)
def poll_due_gateways() -> int:
    """Every minute: hand each gateway that is due to a poll worker, in shards."""
    from meters.polling import gateways_due_claim

    shards = gateways_due_claim()
    for shard in shards:
        poll_gateways_task.delay(shard)
    return len(shards)


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def poll_gateways_task(gateway_ids: list[int]) -> dict:
    """Read every meter behind these gateways once and store what they said."""
    from meters.polling import poll_gateways

    run = poll_gateways(gateway_ids=gateway_ids)
    return {"meters": run.meters, "answered": run.answered, "readings": run.readings}


@shared_task(acks_late=True, time_limit=120, soft_time_limit=90)
def resume_relay_commands() -> dict:
    """Every minute: send again what a lost task left waiting. Safe to run twice."""
    from meters.relay import relay_commands_resume

    return relay_commands_resume()


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def detect_property_task(property_id: int) -> dict:
    """After charging: run the detectors over the property's last day and raise or clear its
    alarms. Runs are spaced (meters.detection.MIN_INTERVAL), and a repeat over the same data
    raises nothing new."""
    from accounts.models import Property
    from meters.detection import detect_property, detection_claim

    if not detection_claim(property_id=property_id):
        return {"skipped": "ran recently"}
    prop = Property.objects.filter(pk=property_id).first()
    if prop is None:
        return {"skipped": "no such property"}
    return detect_property(property=prop).as_dict()
