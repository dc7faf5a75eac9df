"""The meter pages, the relay switch and the alarms inbox in the generated access matrix."""

import uuid

from meters.alarms import alarm_raise
from meters.models import Alarm
from prepaid.scoping import Capability
from tests.factories import MeterFactory
from tests.staff_matrix import StaffUrl


def _meter(prop):
    return {"meter_id": MeterFactory(unit__property=prop, has_relay=True).uuid}


def _alarm(prop):
    meter = MeterFactory(unit__property=prop)
    alarm = alarm_raise(meter=meter, kind=Alarm.Kind.OFFLINE, message="No answer for an hour.")
    return {"alarm_id": alarm.uuid}


STAFF_URLS = {
    "meters:list": StaffUrl(),
    "meters:detail": StaffUrl(kwargs=_meter),
    "meters:relay": StaffUrl(
        kwargs=_meter,
        get=False,
        post=Capability.OPERATE,
        post_data=lambda kwargs: {
            "action": "cut_off",
            "reason": "Tenant asked for the supply to be cut during repairs.",
            "idempotency_key": str(uuid.uuid4()),
        },
    ),
    "meters:settings": StaffUrl(
        kwargs=_meter,
        get=False,
        post=Capability.OPERATE,
        post_data=lambda kwargs: {"power_limit_w": "4600"},
    ),
    "meters:alarms": StaffUrl(),
    "meters:alarm-acknowledge": StaffUrl(
        kwargs=_alarm,
        get=False,
        post=Capability.OPERATE,
        post_data=lambda kwargs: {"note": "Looking into it."},
    ),
    "meters:alarm-resolve": StaffUrl(
        kwargs=_alarm,
        get=False,
        post=Capability.OPERATE,
        post_data=lambda kwargs: {"note": "The gateway was restarted."},
    ),
}
