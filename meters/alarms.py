"""Alarms: raised and cleared by the system, acknowledged and resolved by staff."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.services import Actor
from meters.models import Alarm, Meter
from prepaid.audit.services import audit_record, update_audited

_GRAVITY = list(Alarm.Severity.values)


def alarm_raise(
    *, meter: Meter, kind: str, message: str, severity: str = Alarm.Severity.WARNING
) -> Alarm:
    """Open an alarm for a meter, or return the one of that kind already open, made graver
    when this one is (a command that keeps failing goes from warning to critical)."""
    open_alarm = Alarm.objects.filter(meter=meter, kind=kind, closed_at__isnull=True).first()
    if open_alarm is not None:
        if _GRAVITY.index(severity) > _GRAVITY.index(open_alarm.severity):
            open_alarm.severity, open_alarm.message = severity, message[:500]
            open_alarm.save(update_fields=["severity", "message"])
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
