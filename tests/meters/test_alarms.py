import pytest

from meters.alarms import alarm_acknowledge, alarm_clear, alarm_raise, alarm_resolve
from meters.models import Alarm
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def meter(property_a1):
    return factories.MeterFactory(unit__property=property_a1)


def test_raising_an_open_alarm_again_adds_nothing(meter):
    first = alarm_raise(meter=meter, kind="offline", message="no answer for 3 polls")
    assert alarm_raise(meter=meter, kind="offline", message="still nothing") == first
    assert Alarm.objects.count() == 1
    assert first.property == meter.unit.property


def test_clearing_closes_it_and_a_new_problem_opens_a_new_alarm(meter):
    first = alarm_raise(meter=meter, kind="offline", message="gone")
    assert alarm_clear(meter=meter, kind="offline") == 1
    second = alarm_raise(meter=meter, kind="offline", message="gone again")
    assert second != first
    assert alarm_clear(meter=meter, kind="tamper") == 0


def test_staff_acknowledge_and_resolve_with_notes_and_audit(meter, manager_a1):
    alarm = alarm_raise(meter=meter, kind="tamper", message="cover open")
    alarm_acknowledge(alarm=alarm, actor=manager_a1, note="technician sent")
    alarm_resolve(alarm=alarm, actor=manager_a1, note="cover closed, seal replaced")
    alarm.refresh_from_db()
    assert alarm.acknowledged_by == manager_a1
    assert alarm.closed_at is not None
    assert alarm.notes == "technician sent\ncover closed, seal replaced"
    assert set(
        AuditLog.objects.filter(object_id=str(alarm.uuid)).values_list("action", flat=True)
    ) == {
        "alarm.acknowledge",
        "alarm.resolve",
    }
