from celery import shared_task


@shared_task(acks_late=True, time_limit=120, soft_time_limit=90)
def execute_relay_command(command_id: int) -> str:
    """Switch a relay now and confirm it; retries reschedule this task. Safe to run twice: a
    command that is no longer active, or waits for a later attempt, is left alone."""
    # Imported here because the relay service enqueues this task and so imports this module.
    from meters.relay import relay_command_execute

    return relay_command_execute(command_id=command_id)
