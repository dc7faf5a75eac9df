"""Relay and valve commands: a state machine in the database, driven by the `commands` queue.

The latest wish for a meter wins. Issuing a command supersedes any active one (a restore issued
after a cut-off replaces it), issuing the same wish again returns the active command, and a
stale command can never override a newer one because only the active command may be executed.
A worker claims a command, switches the relay, reads it back, and records the result: confirmed,
or retried with backoff until the deadline, then failed with an alarm.
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.services import Actor
from billing.tasks import notify_relay_switched
from meters.alarms import alarm_clear, alarm_raise
from meters.models import Alarm, Meter, RelayCommand
from meters.mqtt_client import PublishFailed, publisher
from meters.protocols.modbus_io import (
    Connection,
    MeterRefused,
    MeterUnreachable,
    make_client,
    switch_relay,
)
from meters.protocols.modbus_profile import ProfileError, profile_from_dict
from meters.protocols.mqtt_topics import NoRelay
from meters.protocols.mqtt_topics import relay_command as relay_command_message
from meters.tasks import check_relay_confirmation, execute_relay_command
from prepaid.audit.services import acting_user, audit_record

DEFAULT_DEADLINE = timedelta(minutes=10)
# An MQTT device confirms by publishing its new state; silence this long counts as a failure.
MQTT_CONFIRM_WITHIN = timedelta(seconds=10)
FIRST_RETRY = timedelta(seconds=2)
LONGEST_RETRY = timedelta(minutes=2)

State = RelayCommand.State


@transaction.atomic
def relay_command_issue(
    *,
    meter: Meter,
    close: bool,
    actor: Actor,
    reason: str,
    deadline: datetime | None = None,
    idempotency_key: str | None = None,
) -> RelayCommand:
    """Ask for a meter's relay to be closed (restore) or opened (cut off), now.

    With an idempotency key, asking again with the same key returns the first command, even one
    long finished, instead of switching again."""
    if not reason.strip():
        raise ValidationError({"reason": "Give a reason for switching the supply."})
    meter = (
        Meter.objects.select_for_update(of=("self",), no_key=True)
        .select_related("unit")
        .get(pk=meter.pk)
    )
    if idempotency_key is not None:
        # Under the meter's lock, so a concurrent repeat waits and then finds the first.
        earlier = RelayCommand.objects.filter(idempotency_key=idempotency_key).first()
        if earlier is not None:
            if (earlier.meter_id, earlier.close) != (meter.pk, close):
                raise ValidationError("This request's key was already used for another command.")
            return earlier
    if not meter.has_relay:
        raise ValidationError("This meter has no relay or valve to switch.")
    active = RelayCommand.objects.filter(meter=meter, state__in=RelayCommand.ACTIVE).first()
    if active is not None and active.close == close:
        return active
    now = timezone.now()
    if active is not None:
        active.state, active.finished_at = State.SUPERSEDED, now
        active.save(update_fields=["state", "finished_at"])
    command = RelayCommand.objects.create(
        meter=meter,
        close=close,
        reason=reason[:300],
        actor=acting_user(actor),
        created_at=now,
        deadline=deadline or now + DEFAULT_DEADLINE,
        idempotency_key=idempotency_key,
    )
    if active is not None:
        RelayCommand.objects.filter(pk=active.pk).update(superseded_by=command)
    audit_record(
        organisation_id=meter.organisation_id,
        property_id=meter.unit.property_id if meter.unit_id else None,
        actor=actor,
        action="relay.restore" if close else "relay.cut_off",
        instance=meter,
        after={"command": str(command.uuid), "close": close},
        reason=reason,
    )
    transaction.on_commit(lambda: execute_relay_command.delay(command.pk))
    return command


@transaction.atomic
def relay_command_claim(*, command_id: int) -> RelayCommand | None:
    """Take an active command to execute now; None when there is nothing to do (it finished,
    was superseded, waits for its next attempt, or just expired)."""
    command = (
        RelayCommand.objects.select_for_update(of=("self",))
        .select_related("meter__unit")
        .get(pk=command_id)
    )
    now = timezone.now()
    if command.state not in RelayCommand.ACTIVE:
        return None
    if now >= command.deadline:
        _finish(command, State.EXPIRED, "the deadline passed before the relay confirmed")
        return None
    if command.next_attempt_at and command.next_attempt_at > now:
        return None
    command.state, command.sent_at = State.SENT, now
    command.attempts += 1
    command.save(update_fields=["state", "sent_at", "attempts"])
    return command


@dataclass(frozen=True)
class Outcome:
    """What the worker saw: the relay's state read back, or why it could not tell."""

    observed_closed: bool | None
    error: str = ""


@transaction.atomic
def relay_command_record(*, command_id: int, outcome: Outcome) -> RelayCommand:
    """Confirm, schedule a retry with backoff, or fail the command with an alarm."""
    command = (
        RelayCommand.objects.select_for_update(of=("self",))
        .select_related("meter__unit")
        .get(pk=command_id)
    )
    if command.state != State.SENT:
        # Superseded while the worker was talking to the meter: the newer command decides.
        return command
    now = timezone.now()
    if outcome.observed_closed is not None:
        Meter.objects.filter(pk=command.meter_id).update(
            relay_closed=outcome.observed_closed, relay_confirmed_at=now
        )
    if outcome.observed_closed is command.close:
        command.state, command.finished_at, command.last_error = State.CONFIRMED, now, ""
        command.save(update_fields=["state", "finished_at", "last_error"])
        alarm_clear(
            meter=command.meter, kind=Alarm.Kind.COMMAND_FAILED, note="a later command confirmed"
        )
        transaction.on_commit(lambda: notify_relay_switched.delay(command_id))
        return command
    error = outcome.error or "the relay did not change state"
    retry_at = now + min(FIRST_RETRY * 2 ** (command.attempts - 1), LONGEST_RETRY)
    if retry_at >= command.deadline:
        _finish(command, State.FAILED, error)
        return command
    command.state, command.next_attempt_at, command.last_error = State.QUEUED, retry_at, error[:300]
    command.save(update_fields=["state", "next_attempt_at", "last_error"])
    # Staff see at once that a meter did not switch (most often: it is offline), not only
    # when the retries run out.
    alarm_raise(
        meter=command.meter,
        kind=Alarm.Kind.COMMAND_FAILED,
        message=f"Could not {_action(command)} meter {command.meter.serial} (attempt "
        f"{command.attempts}): {error}. Retrying until {command.deadline:%Y-%m-%d %H:%M} UTC.",
    )
    return command


def _action(command: RelayCommand) -> str:
    return "restore supply to" if command.close else "cut off"


def _finish(command: RelayCommand, state: str, error: str) -> None:
    command.state, command.finished_at, command.last_error = state, timezone.now(), error[:300]
    command.save(update_fields=["state", "finished_at", "last_error"])
    alarm_raise(
        meter=command.meter,
        kind=Alarm.Kind.COMMAND_FAILED,
        severity=Alarm.Severity.CRITICAL,
        message=f"Could not {_action(command)} meter {command.meter.serial} after "
        f"{command.attempts} attempt(s): {error}",
    )


def relay_command_execute(*, command_id: int) -> str:
    """Claim the command and switch the relay. Over Modbus the relay is read back at once and
    the result recorded; over MQTT the command is published and the device's own report
    confirms it (see relay_state_observed), or the confirmation check fails it. Schedules the
    next attempt when it has to be retried. Returns the command's state."""
    try:
        command = relay_command_claim(command_id=command_id)
    except RelayCommand.DoesNotExist:
        return "missing"
    if command is None:
        return RelayCommand.objects.get(pk=command_id).state
    meter = Meter.objects.select_related("gateway", "profile", "mqtt_device").get(
        pk=command.meter_id
    )
    if meter.mqtt_device is not None:
        error = _publish_command(meter, command)
        if not error:
            check_relay_confirmation.apply_async(
                (command_id, command.attempts), countdown=MQTT_CONFIRM_WITHIN.total_seconds()
            )
            return command.state
        outcome = Outcome(None, error)
    else:
        outcome = asyncio.run(_switch(meter, close=command.close))
    return _record_and_reschedule(command_id, outcome).state


def _record_and_reschedule(command_id: int, outcome: Outcome) -> RelayCommand:
    command = relay_command_record(command_id=command_id, outcome=outcome)
    if command.state == State.QUEUED and command.next_attempt_at:
        delay = max((command.next_attempt_at - timezone.now()).total_seconds(), 0)
        execute_relay_command.apply_async((command.pk,), countdown=delay)
    return command


def _publish_command(meter: Meter, command: RelayCommand) -> str:
    """Send the command in the device's dialect; the error, or "" once the broker has it."""
    device = meter.mqtt_device
    try:
        message = relay_command_message(
            device.format,
            device.key,
            channel=meter.mqtt_channel,
            close=command.close,
            command_id=str(command.uuid),
        )
    except NoRelay as error:
        return str(error)
    try:
        publisher().publish(message.topic, message.payload)
    except PublishFailed as error:
        return str(error)
    return ""


def relay_command_unconfirmed(*, command_id: int, attempt: int) -> str:
    """The confirmation window of an MQTT attempt is over: if that attempt is still waiting,
    count it as failed (retried with backoff, or failed with an alarm at the deadline)."""
    command = RelayCommand.objects.filter(pk=command_id).first()
    if command is None:
        return "missing"
    if command.state != State.SENT or command.attempts != attempt:
        return command.state
    seconds = MQTT_CONFIRM_WITHIN.total_seconds()
    outcome = Outcome(None, f"the device did not confirm within {seconds:g} s")
    return _record_and_reschedule(command_id, outcome).state


@transaction.atomic
def relay_state_observed(
    *, meter_id: int, closed: bool, command_uuid: str | None = None
) -> RelayCommand | None:
    """A device reported its relay state (an acknowledgement, a state message or telemetry).

    The meter's confirmed state follows the report. A command waiting for confirmation is
    confirmed when the report shows what it asked for; a report of the other state may predate
    the command, so it leaves the command to its confirmation window. A native acknowledgement
    names its command: one naming another command confirms nothing.
    """
    command = (
        RelayCommand.objects.select_for_update(of=("self",))
        .filter(meter_id=meter_id, state=State.SENT)
        .first()
    )
    confirms = (
        command is not None
        and closed is command.close
        and command_uuid in (None, str(command.uuid))
    )
    if confirms:
        return relay_command_record(command_id=command.pk, outcome=Outcome(closed))
    Meter.objects.filter(pk=meter_id).update(relay_closed=closed, relay_confirmed_at=timezone.now())
    return None


async def _switch(meter: Meter, *, close: bool) -> Outcome:
    if meter.gateway is None or meter.profile is None or meter.modbus_unit is None:
        return Outcome(None, "the meter has no Modbus gateway, unit id or profile")
    try:
        profile = profile_from_dict(meter.profile.definition)
    except ProfileError as error:
        return Outcome(None, f"the meter's profile is invalid: {error}")
    gateway = meter.gateway
    client = make_client(Connection.of(gateway))
    try:
        if not await client.connect():
            return Outcome(None, f"cannot connect to {gateway}")
        observed = await switch_relay(
            client, profile, meter.modbus_unit, closed=close, gap_ms=gateway.gap_ms
        )
    except (MeterUnreachable, MeterRefused) as error:
        return Outcome(None, str(error))
    finally:
        client.close()
    return Outcome(observed)


# Longer than any attempt can take: the execute task's time limit plus the MQTT window.
LOST_AFTER = timedelta(seconds=120) + MQTT_CONFIRM_WITHIN
# A countdown task may fire a little late; only a command overdue by more has lost its task.
OVERDUE_AFTER = timedelta(seconds=30)


def relay_commands_resume(*, now: datetime | None = None) -> dict[str, int]:
    """The periodic safety net under the countdown tasks: enqueue every command whose attempt
    is overdue (its task was lost to a broker restart or a killed worker), and count as failed
    every attempt that has been sent for longer than any attempt can take. Claiming is
    exclusive, so a command enqueued twice is sent once."""
    now = now or timezone.now()
    lost = RelayCommand.objects.filter(state=State.SENT, sent_at__lte=now - LOST_AFTER)
    lost_ids = list(lost.values_list("pk", "attempts"))
    for command_id, attempt in lost_ids:
        outcome = Outcome(None, f"attempt {attempt} was lost before it finished")
        command = RelayCommand.objects.get(pk=command_id)
        if command.state == State.SENT and command.attempts == attempt:
            _record_and_reschedule(command_id, outcome)
    overdue = RelayCommand.objects.filter(state=State.QUEUED).filter(
        Q(next_attempt_at__lte=now - OVERDUE_AFTER)
        | Q(next_attempt_at__isnull=True, created_at__lte=now - OVERDUE_AFTER)
    )
    overdue_ids = list(overdue.values_list("pk", flat=True))
    for command_id in overdue_ids:
        execute_relay_command.delay(command_id)
    return {"lost": len(lost_ids), "resumed": len(overdue_ids)}
