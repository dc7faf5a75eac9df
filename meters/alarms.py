"""Alarms: raised and cleared by the system, acknowledged and resolved by staff."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.services import Actor
from meters.models import Alarm, Meter
from prepaid.audit.services import audit_record, update_audited

_GRAVITY = list(Alarm.Severity.values)


def alarm_raise(
    *,
    meter: Meter,
    kind: str,
    message: str,
    severity: str = Alarm.Severity.WARNING,
    evidence: dict | None = None,
    suggested_action: str = "",
) -> Alarm:
    """Open an alarm for a meter, or return the one of that kind already open, made graver
    when this one is (a command that keeps failing goes from warning to critical).

    A detector's alarm carries its evidence (the rule that fired and the series) and what to
    do. Raised again while open, the alarm takes the newer evidence and message and counts
    the occurrence, keeping when it was first seen."""
    open_alarm = Alarm.objects.filter(meter=meter, kind=kind, closed_at__isnull=True).first()
    if open_alarm is not None:
        changed = []
        if _GRAVITY.index(severity) > _GRAVITY.index(open_alarm.severity):
            open_alarm.severity, open_alarm.message = severity, message[:500]
            changed += ["severity", "message"]
        if evidence is not None:
            earlier = open_alarm.evidence or {}
            open_alarm.evidence = {
                **evidence,
                "occurrences": earlier.get("occurrences", 1) + 1,
                "first_seen": earlier.get("first_seen", open_alarm.opened_at.isoformat()),
            }
            open_alarm.message = message[:500]
            changed += ["evidence", "message"]
        if suggested_action and suggested_action != open_alarm.suggested_action:
            open_alarm.suggested_action = suggested_action
            changed.append("suggested_action")
        if changed:
            open_alarm.save(update_fields=sorted(set(changed)))
        return open_alarm
    try:
        with transaction.atomic():
            return Alarm.objects.create(
                organisation_id=meter.organisation_id,
                property_id=meter.unit.property_id if meter.unit_id else None,
                meter=meter,
                kind=kind,
                severity=severity,
                message=message[:500],
                evidence=evidence or {},
                suggested_action=suggested_action,
            )
    except IntegrityError:
        # Raised concurrently by another worker: the same alarm.
        return Alarm.objects.get(meter=meter, kind=kind, closed_at__isnull=True)


def alarm_clear(*, meter: Meter, kind: str, note: str = "") -> int:
    """Close the meter's open alarm of this kind because the cause went away."""
    return Alarm.objects.filter(meter=meter, kind=kind, closed_at__isnull=True).update(
        closed_at=timezone.now(), notes=note
    )


@transaction.atomic
def alarm_acknowledge(*, alarm: Alarm, actor: Actor, note: str = "") -> Alarm:
    changes = {"acknowledged_at": timezone.now(), "acknowledged_by": actor}
    if note:
        changes["notes"] = "\n".join(filter(None, [alarm.notes, note]))
    update_audited(
        instance=alarm,
        changes=changes,
        actor=actor,
        action="alarm.acknowledge",
        organisation_id=alarm.organisation_id,
        property_id=alarm.property_id,
    )
    return alarm


@transaction.atomic
def alarm_resolve(*, alarm: Alarm, actor: Actor, note: str) -> Alarm:
    alarm = Alarm.objects.select_for_update().get(pk=alarm.pk)
    if alarm.closed_at is None:
        alarm.closed_at = timezone.now()
        alarm.notes = "\n".join(filter(None, [alarm.notes, note]))
        alarm.save(update_fields=["closed_at", "notes"])
        audit_record(
            organisation_id=alarm.organisation_id,
            property_id=alarm.property_id,
            actor=actor,
            action="alarm.resolve",
            instance=alarm,
            reason=note,
        )
    return alarm
