"""The alarm page and a property's detector settings in the generated access matrix."""

from meters.alarms import alarm_raise
from meters.models import Alarm
from prepaid.scoping import Capability
from tests.factories import MeterFactory
from tests.staff_matrix import StaffUrl

SPIKE_EVIDENCE = {
    "detector": "spike",
    "rule": {
        "name": "spike",
        "hour": 1790730000,
        "quantity": 3.2,
        "median": 0.4,
        "k": 4.0,
        "threshold": 1.6,
        "minimum": 0.5,
        "weeks": 4,
        "hours": 1,
        "unit": "kWh",
    },
    "chart": {
        "x": [1790726400, 1790730000, 1790733600],
        "series": [
            {"key": "consumption", "values": [0.4, 3.2, 0.5]},
            {"key": "threshold", "values": [1.6, 1.6, 1.6]},
        ],
        "unit": "kWh",
        "style": "bars",
        "band": [1790730000, 1790733600],
    },
}


def detected_alarm(prop):
    meter = MeterFactory(unit__property=prop)
    alarm = alarm_raise(
        meter=meter,
        kind=Alarm.Kind.SPIKE,
        message=f"Meter {meter.serial} counted 3.2 kWh in an hour.",
        evidence=SPIKE_EVIDENCE,
        suggested_action=Alarm.Action.ASK_TENANT,
    )
    return {"alarm_id": alarm.uuid}


def settings_form(**changes):
    """A complete, valid detector settings form (the defaults), with changes."""
    data = {
        "max_gap_minutes": "120",
        "bypass_enabled": "on",
        "bypass_tolerance": "0.100",
        "tamper_enabled": "on",
        "reverse_power_w": "20",
        "export_tolerance": "0.010",
        "spike_enabled": "on",
        "spike_k": "4.00",
        "spike_minimum": "0.500",
        "spike_weeks": "4",
        "spike_min_weeks": "3",
        "flatline_enabled": "on",
        "flatline_days": "3",
        "overload_enabled": "on",
        "overload_limit_source": "meter_or_property",
        "overload_limit_w": "",
        "overload_minutes": "15",
        "loss_enabled": "on",
        "loss_percent": "10.00",
        "loss_minimum": "5.000",
        "main_meter": "",
    }
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


STAFF_URLS = {
    "meters:alarm": StaffUrl(kwargs=detected_alarm),
    "meters:detector-settings": StaffUrl(
        kwargs=lambda prop: {"property_id": prop.uuid},
        post=Capability.ADMINISTER,
        post_data=lambda kwargs: settings_form(spike_k="5.00"),
    ),
}
