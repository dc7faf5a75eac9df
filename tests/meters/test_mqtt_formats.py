"""MQTT payload parsers: exact units per device family, every rejection reason, and fuzzing."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meters.protocols.mqtt_formats import (
    MAX_PAYLOAD_BYTES,
    Ack,
    Format,
    Rejected,
    Status,
    Telemetry,
    parse,
)

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
KEYS = {
    Format.native: "SN123",
    Format.tasmota: "plug1",
    Format.shelly: "shellypro3em-abc",
    Format.zigbee2mqtt: "kitchen_plug",
    Format.emonhub: "emontx",
}


def run(fmt, topic, payload, **kwargs):
    if not isinstance(payload, bytes):
        payload = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    kwargs.setdefault("device_key", KEYS[fmt])
    kwargs.setdefault("now", NOW)
    return parse(fmt, topic, payload, **kwargs)


def rejected(fmt, topic, payload, **kwargs):
    with pytest.raises(Rejected) as info:
        run(fmt, topic, payload, **kwargs)
    return info.value.reason


# --- native --------------------------------------------------------------------------------


def test_native_telemetry_keeps_kwh_and_all_fields_exactly():
    body = (
        b'{"ts": "2026-11-22T09:59:00Z", "energy_kwh": 1234.567, "power_w": 1500.5,'
        b' "voltage_v": 230.1, "current_a": 6.52, "relay": "on", "alarms": ["tamper", "low"]}'
    )
    assert run(Format.native, "meters/SN123/telemetry", body) == Telemetry(
        register=Decimal("1234.567"),
        taken_at=datetime(2026, 11, 22, 9, 59, tzinfo=UTC),
        power_w=Decimal("1500.5"),
        voltage_v=Decimal("230.1"),
        current_a=Decimal("6.52"),
        relay_closed=True,
        flags=("tamper", "low"),
    )


def test_native_telemetry_accepts_epoch_seconds_and_water_volume():
    reading = run(
        Format.native,
        "meters/SN123/telemetry",
        {"ts": 1795341600, "volume_m3": 12.345, "relay": False},
    )
    assert reading.register == Decimal("12.345")
    assert reading.taken_at == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert reading.relay_closed is False
    assert reading.power_w is None


def test_native_telemetry_without_timestamp_leaves_taken_at_to_the_caller():
    assert run(Format.native, "meters/SN123/telemetry", b'{"energy_kwh": 1}').taken_at is None


def test_native_status_and_command_ack():
    assert run(Format.native, "meters/SN123/status", "online") == Status(online=True)
    assert run(Format.native, "meters/SN123/status", "offline") == Status(online=False)
    ack = run(Format.native, "meters/SN123/cmd/ack", {"id": "c-42", "relay": False})
    assert ack == Ack(command_id="c-42", relay_closed=False)


def test_native_own_command_topic_is_ignored():
    assert run(Format.native, "meters/SN123/cmd", b"whatever") is None


# --- Tasmota -------------------------------------------------------------------------------


def test_tasmota_sensor_is_kwh_and_ignores_the_zoneless_time():
    body = {
        "Time": "2026-11-22T10:00:00",
        "ENERGY": {"Total": 2.813, "Today": 0.1, "Power": 45, "Voltage": 231, "Current": 0.2},
    }
    assert run(Format.tasmota, "tele/plug1/SENSOR", body) == Telemetry(
        register=Decimal("2.813"),
        taken_at=None,
        power_w=Decimal(45),
        voltage_v=Decimal(231),
        current_a=Decimal("0.2"),
    )


def test_tasmota_array_picks_the_channel():
    body = {"ENERGY": {"Total": [2.813, 0.254], "Power": [10, 20], "Voltage": 230}}
    reading = run(Format.tasmota, "tele/plug1/SENSOR", body, channel=1)
    assert reading.register == Decimal("0.254")
    assert reading.power_w == Decimal(20)
    assert reading.voltage_v == Decimal(230)


def test_tasmota_sml_key_reads_the_named_group():
    body = {"Time": "2026-11-22T10:00:00", "SML": {"Total_in": 15234.5678, "Power_cur": 321}}
    reading = run(Format.tasmota, "tele/plug1/SENSOR", body, sml_key="SML.Total_in")
    assert reading == Telemetry(register=Decimal("15234.5678"))


def test_tasmota_lwt_power_and_state():
    assert run(Format.tasmota, "tele/plug1/LWT", "Online") == Status(online=True)
    assert run(Format.tasmota, "tele/plug1/LWT", "Offline") == Status(online=False)
    assert run(Format.tasmota, "stat/plug1/POWER", "ON") == Ack(None, True)
    assert run(Format.tasmota, "stat/plug1/POWER", "OFF") == Ack(None, False)
    assert run(Format.tasmota, "stat/plug1/POWER2", "ON", channel=1) == Ack(None, True)
    assert run(Format.tasmota, "stat/plug1/POWER2", "ON") is None
    assert run(Format.tasmota, "tele/plug1/STATE", {"POWER": "ON", "Uptime": "1T"}) is None


# --- Shelly --------------------------------------------------------------------------------


def test_shelly_emdata_wh_becomes_kwh_exactly():
    body = {
        "method": "NotifyStatus",
        "params": {
            "ts": 1795341600.25,
            "emdata:0": {"total_act": 123456, "total_act_ret": 7},
            "em:0": {"total_act_power": 1500.5, "a_voltage": 230.4, "total_current": 6.5},
        },
    }
    assert run(Format.shelly, "shellypro3em-abc/events/rpc", body) == Telemetry(
        register=Decimal("123.456"),
        taken_at=datetime(2026, 11, 22, 10, 0, 0, 250000, tzinfo=UTC),
        power_w=Decimal("1500.5"),
        voltage_v=Decimal("230.4"),
        current_a=Decimal("6.5"),
        export_register=Decimal("0.007"),
    )


def test_shelly_em1data_uses_the_channel():
    body = {
        "method": "NotifyStatus",
        "params": {"em1data:0": {"total_act_energy": 1}, "em1data:2": {"total_act_energy": 9.5}},
    }
    reading = run(Format.shelly, "shellypro3em-abc/events/rpc", body, channel=2)
    assert reading.register == Decimal("0.0095")


def test_shelly_switch_energy_power_and_output():
    body = {
        "method": "NotifyStatus",
        "params": {
            "switch:0": {
                "output": True,
                "apower": 0,
                "voltage": 229.9,
                "current": 0.05,
                "aenergy": {"total": 5432.1, "by_minute": [1, 2, 3]},
            }
        },
    }
    assert run(Format.shelly, "shellypro3em-abc/events/rpc", body) == Telemetry(
        register=Decimal("5.4321"),
        power_w=Decimal(0),
        voltage_v=Decimal("229.9"),
        current_a=Decimal("0.05"),
        relay_closed=True,
    )


def test_shelly_output_only_is_an_ack_and_other_messages_are_ignored():
    topic = "shellypro3em-abc/events/rpc"
    output_only = {"method": "NotifyStatus", "params": {"switch:0": {"output": False}}}
    assert run(Format.shelly, topic, output_only) == Ack(None, False)
    power_only = {"method": "NotifyStatus", "params": {"em:0": {"total_act_power": 5}}}
    assert run(Format.shelly, topic, power_only) is None
    assert run(Format.shelly, topic, {"method": "NotifyEvent", "params": {}}) is None
    assert run(Format.shelly, "shellypro3em-abc/online", "false") == Status(online=False)


# --- Zigbee2MQTT ---------------------------------------------------------------------------


def test_zigbee2mqtt_energy_is_kwh_and_state_is_the_relay():
    body = {"energy": 12.34, "power": 56, "voltage": 229, "current": 0.25, "state": "OFF"}
    assert run(Format.zigbee2mqtt, "zigbee2mqtt/kitchen_plug", body) == Telemetry(
        register=Decimal("12.34"),
        power_w=Decimal(56),
        voltage_v=Decimal(229),
        current_a=Decimal("0.25"),
        relay_closed=False,
    )


def test_zigbee2mqtt_state_without_energy_is_an_ack():
    assert run(Format.zigbee2mqtt, "zigbee2mqtt/kitchen_plug", {"state": "ON"}) == Ack(None, True)


def test_zigbee2mqtt_availability_in_both_styles():
    topic = "zigbee2mqtt/kitchen_plug/availability"
    assert run(Format.zigbee2mqtt, topic, "offline") == Status(online=False)
    assert run(Format.zigbee2mqtt, topic, {"state": "online"}) == Status(online=True)


# --- emonhub -------------------------------------------------------------------------------


def test_emonhub_plain_energy_wh_becomes_kwh():
    assert run(Format.emonhub, "emon/emontx/E1", "98765") == Telemetry(register=Decimal("98.765"))
    assert run(Format.emonhub, "emon/emontx/E3", "1500", channel=2).register == Decimal("1.5")


def test_emonhub_power_and_other_keys_are_checked_or_ignored():
    assert run(Format.emonhub, "emon/emontx/P1", "250.5") is None
    assert run(Format.emonhub, "emon/emontx/T1", "21.5") is None
    assert run(Format.emonhub, "emon/emontx/E2", "x") is None  # another channel


def test_emonhub_json_node():
    body = b'{"E1": 2500, "P1": 120.5, "time": 1795341000}'
    assert run(Format.emonhub, "emon/emontx", body) == Telemetry(
        register=Decimal("2.5"),
        taken_at=datetime(2026, 11, 22, 9, 50, tzinfo=UTC),
        power_w=Decimal("120.5"),
    )


# --- export registers and flags ------------------------------------------------------------


def test_native_export_kwh_and_alarm_flags_are_kept_exactly():
    body = b'{"energy_kwh": 10, "export_kwh": 2.125, "alarms": ["cover_open", "reverse"]}'
    reading = run(Format.native, "meters/SN123/telemetry", body)
    assert (reading.export_register, reading.flags) == (Decimal("2.125"), ("cover_open", "reverse"))


def test_a_device_without_an_export_register_reports_none():
    assert (
        run(Format.native, "meters/SN123/telemetry", b'{"energy_kwh": 1}').export_register is None
    )
    z2m = run(Format.zigbee2mqtt, "zigbee2mqtt/kitchen_plug", {"energy": 1})
    assert z2m.export_register is None


def test_tasmota_export_active_is_kwh_and_follows_the_channel():
    body = {"ENERGY": {"Total": [1.5, 2.5], "ExportActive": [0.25, 0.75]}}
    reading = run(Format.tasmota, "tele/plug1/SENSOR", body, channel=1)
    assert (reading.register, reading.export_register) == (Decimal("2.5"), Decimal("0.75"))


def test_shelly_returned_energy_wh_becomes_kwh_from_the_registers_component():
    body = {
        "method": "NotifyStatus",
        "params": {
            "em1data:1": {"total_act_energy": 6644.9, "total_act_ret_energy": 2595.26},
            "switch:0": {"aenergy": {"total": 5}, "ret_aenergy": {"total": 9}},
        },
    }
    em1 = run(Format.shelly, "shellypro3em-abc/events/rpc", body, channel=1)
    assert (em1.register, em1.export_register) == (Decimal("6.6449"), Decimal("2.59526"))
    switch = run(Format.shelly, "shellypro3em-abc/events/rpc", body, channel=0)
    assert (switch.register, switch.export_register) == (Decimal("0.005"), Decimal("0.009"))


def test_zigbee2mqtt_produced_energy_is_kwh():
    body = {"energy": 3.25, "produced_energy": 1.5}
    reading = run(Format.zigbee2mqtt, "zigbee2mqtt/kitchen_plug", body)
    assert reading.export_register == Decimal("1.5")


# --- rejections ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "topic", "payload", "reason"),
    [
        (Format.native, "meters/SN123/telemetry", b"{not json", "invalid json"),
        (Format.native, "meters/SN123/telemetry", b"\xff\xfe", "invalid utf-8"),
        (Format.native, "meters/SN123/telemetry", b"[" * 5000 + b"]" * 5000, "invalid json"),
        (Format.native, "meters/SN123/telemetry", b"[1]", "wrong type"),
        (Format.native, "meters/SN123/telemetry", b'{"energy_kwh": true}', "wrong type"),
        (Format.native, "meters/SN123/telemetry", b'{"energy_kwh": "12"}', "wrong type"),
        (Format.native, "meters/SN123/telemetry", b'{"energy_kwh": NaN}', "not finite"),
        (Format.native, "meters/SN123/telemetry", b'{"energy_kwh": "Infinity"}', "not finite"),
        (Format.native, "meters/SN123/telemetry", b'{"energy_kwh": -1}', "negative"),
        (Format.native, "meters/SN123/telemetry", b'{"power_w": 5}', "missing register"),
        (Format.native, "meters/SN123/telemetry", b'{"energy_kwh": 1e400}', "out of range"),
        (
            Format.native,
            "meters/SN123/telemetry",
            b'{"energy_kwh": 1e99999999999999999999}',
            "invalid json",
        ),
        (
            Format.native,
            "meters/SN123/telemetry",
            b'{"energy_kwh": 1, "volume_m3": 1}',
            "ambiguous register",
        ),
        (
            Format.native,
            "meters/SN123/telemetry",
            b'{"energy_kwh": 1, "ts": "2026-11-22T10:05:01Z"}',
            "timestamp in the future",
        ),
        (
            Format.native,
            "meters/SN123/telemetry",
            b'{"energy_kwh": 1, "ts": "2026-11-22T10:00"}',
            "naive timestamp",
        ),
        (
            Format.native,
            "meters/SN123/telemetry",
            b'{"energy_kwh": 1, "ts": "soon"}',
            "bad timestamp",
        ),
        (Format.native, "meters/SN123/telemetry", b'{"energy_kwh": 1, "ts": -5}', "bad timestamp"),
        (
            Format.native,
            "meters/SN123/telemetry",
            b'{"energy_kwh": 1, "alarms": [1]}',
            "wrong type",
        ),
        (
            Format.native,
            "meters/SN123/telemetry",
            b'{"energy_kwh": 1, "alarms": [""]}',
            "bad value",
        ),
        (
            Format.native,
            "meters/SN123/telemetry",
            b'{"energy_kwh": 1, "alarms": ["' + b"x" * 51 + b'"]}',
            "bad value",
        ),
        (
            Format.native,
            "meters/SN123/telemetry",
            b'{"energy_kwh": 1, "alarms": [' + b",".join([b'"a"'] * 17) + b"]}",
            "bad value",
        ),
        (
            Format.native,
            "meters/SN123/telemetry",
            b'{"energy_kwh": 1, "export_kwh": -1}',
            "negative",
        ),
        (
            Format.native,
            "meters/SN123/telemetry",
            b'{"energy_kwh": 1, "export_kwh": "3"}',
            "wrong type",
        ),
        (
            Format.native,
            "meters/SN123/telemetry",
            b'{"energy_kwh": 1, "relay": "maybe"}',
            "bad value",
        ),
        (Format.native, "meters/OTHER/telemetry", b'{"energy_kwh": 1}', "unknown topic"),
        (Format.native, "meters/SN123", b"{}", "unknown topic"),
        (Format.native, "meters/SN123/status", b"sleepy", "bad value"),
        (Format.native, "meters/SN123/cmd/ack", b'{"id": 5}', "wrong type"),
        (Format.tasmota, "tele/plug1/SENSOR", b'{"ENERGY": {"Total": -0.5}}', "negative"),
        (
            Format.tasmota,
            "tele/plug1/SENSOR",
            b'{"DS18B20": {"Temperature": 20}}',
            "missing register",
        ),
        (Format.tasmota, "tele/plug1/SENSOR", b'{"ENERGY": {"Total": []}}', "missing register"),
        (
            Format.tasmota,
            "tele/plug1/SENSOR",
            b'{"ENERGY": {"Total": 1, "Power": false}}',
            "wrong type",
        ),
        (Format.tasmota, "tele/plug2/SENSOR", b'{"ENERGY": {"Total": 1}}', "unknown topic"),
        (
            Format.tasmota,
            "tele/plug1/SENSOR",
            b'{"ENERGY": {"Total": 1, "ExportActive": -2}}',
            "negative",
        ),
        (Format.tasmota, "stat/plug1/POWER", b"TOGGLE", "bad value"),
        (
            Format.shelly,
            "shellypro3em-abc/events/rpc",
            b'{"method": "NotifyStatus", "params": {"emdata:0": {"total_act": "NaN"}}}',
            "not finite",
        ),
        (
            Format.shelly,
            "shellypro3em-abc/events/rpc",
            b'{"method": "NotifyStatus", "params": {"switch:0": {"output": 1}}}',
            "wrong type",
        ),
        (
            Format.shelly,
            "shellypro3em-abc/events/rpc",
            b'{"method": "NotifyStatus",'
            b' "params": {"ts": 1795342000, "emdata:0": {"total_act": 1}}}',
            "timestamp in the future",
        ),
        (Format.shelly, "shellypro3em-abc/events/rpc", b'{"method": "NotifyStatus"}', "wrong type"),
        (
            Format.shelly,
            "shellypro3em-abc/events/rpc",
            b'{"method": "NotifyStatus",'
            b' "params": {"emdata:0": {"total_act": 1, "total_act_ret": -1}}}',
            "negative",
        ),
        (
            Format.shelly,
            "shellypro3em-abc/events/rpc",
            b'{"method": "NotifyStatus",'
            b' "params": {"switch:0": {"aenergy": {"total": 1}, "ret_aenergy": 5}}}',
            "wrong type",
        ),
        (Format.shelly, "other/events/rpc", b"{}", "unknown topic"),
        (
            Format.zigbee2mqtt,
            "zigbee2mqtt/kitchen_plug",
            b'{"linkquality": 99}',
            "missing register",
        ),
        (Format.zigbee2mqtt, "zigbee2mqtt/kitchen_plug", b'{"energy": Infinity}', "not finite"),
        (Format.zigbee2mqtt, "zigbee2mqtt/other_plug", b'{"energy": 1}', "unknown topic"),
        (
            Format.zigbee2mqtt,
            "zigbee2mqtt/kitchen_plug",
            b'{"energy": 1, "produced_energy": "lots"}',
            "wrong type",
        ),
        (
            Format.zigbee2mqtt,
            "zigbee2mqtt/kitchen_plug/availability",
            b'{"state": 1}',
            "wrong type",
        ),
        (Format.emonhub, "emon/emontx/E1", b"nan", "not finite"),
        (Format.emonhub, "emon/emontx/E1", b"-3", "negative"),
        (Format.emonhub, "emon/emontx/E1", b"1_000", "wrong type"),
        (Format.emonhub, "emon/emontx/P1", b"inf", "not finite"),
        (Format.emonhub, "emon/emontx", b'{"P1": 5}', "missing register"),
        (Format.emonhub, "emon/other/E1", b"5", "unknown topic"),
    ],
)
def test_bad_messages_are_rejected_with_a_stable_reason(fmt, topic, payload, reason):
    assert rejected(fmt, topic, payload) == reason


def test_payloads_over_64_kib_are_rejected_before_decoding():
    payload = b"\xff" * (MAX_PAYLOAD_BYTES + 1)  # not even UTF-8: size is checked first
    assert rejected(Format.native, "meters/SN123/telemetry", payload) == "too large"
    ok = b'{"energy_kwh": 1}'
    ok += b" " * (MAX_PAYLOAD_BYTES - len(ok))
    assert run(Format.native, "meters/SN123/telemetry", ok).register == Decimal(1)


def test_rejected_is_a_value_error_with_a_readable_message():
    with pytest.raises(ValueError, match="negative: energy_kwh is -1"):
        run(Format.native, "meters/SN123/telemetry", b'{"energy_kwh": -1}')


def test_timestamps_within_five_minutes_ahead_are_accepted():
    ahead = (NOW + timedelta(minutes=5)).isoformat()
    reading = run(Format.native, "meters/SN123/telemetry", {"energy_kwh": 1, "ts": ahead})
    assert reading.taken_at == NOW + timedelta(minutes=5)


# --- properties ----------------------------------------------------------------------------

TOPICS = {
    Format.native: [
        "meters/SN123/telemetry",
        "meters/SN123/status",
        "meters/SN123/cmd/ack",
        "meters/SN123/cmd",
    ],
    Format.tasmota: [
        "tele/plug1/SENSOR",
        "tele/plug1/LWT",
        "tele/plug1/STATE",
        "stat/plug1/POWER",
        "stat/plug1/POWER2",
    ],
    Format.shelly: ["shellypro3em-abc/events/rpc", "shellypro3em-abc/online"],
    Format.zigbee2mqtt: ["zigbee2mqtt/kitchen_plug", "zigbee2mqtt/kitchen_plug/availability"],
    Format.emonhub: ["emon/emontx", "emon/emontx/E1", "emon/emontx/E2", "emon/emontx/P1"],
}
ALL = [(fmt, topic) for fmt, topics in TOPICS.items() for topic in topics]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["NaN", "Infinity", "on", "OFF", "online", "2026-11-22T10:00:00Z"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def only_rejected(fmt, topic, payload, **kwargs):
    try:
        result = run(fmt, topic, payload, **kwargs)
    except Rejected as exc:
        result = exc
    if isinstance(result, Rejected):
        assert result.reason
    else:
        assert result is None or isinstance(result, Telemetry | Status | Ack)


@FUZZ
@given(st.sampled_from(ALL), st.binary(max_size=200), st.integers(0, 3))
def test_arbitrary_bytes_never_raise_anything_but_rejected(where, payload, channel):
    only_rejected(*where, payload, channel=channel)


@FUZZ
@given(st.sampled_from(list(Format)), st.text(max_size=40), st.binary(max_size=50))
def test_arbitrary_topics_never_raise_anything_but_rejected(fmt, topic, payload):
    only_rejected(fmt, topic, payload)


@FUZZ
@given(st.sampled_from(ALL), json_values, st.integers(0, 2), st.sampled_from([None, "SML.T"]))
def test_arbitrary_json_never_raises_anything_but_rejected(where, value, channel, sml_key):
    fmt, topic = where
    only_rejected(fmt, topic, json.dumps(value).encode(), channel=channel, sml_key=sml_key)


def shaped(fmt, value):
    """Plausible message skeletons with an arbitrary value in every interesting slot."""
    return {
        Format.native: {
            "energy_kwh": value,
            "ts": value,
            "relay": value,
            "alarms": value,
            "export_kwh": value,
        },
        Format.tasmota: {
            "ENERGY": {"Total": value, "Power": value, "ExportActive": value},
            "SML": {"T": value},
        },
        Format.shelly: {
            "method": "NotifyStatus",
            "params": {
                "ts": value,
                "emdata:0": {"total_act": value, "total_act_ret": value},
                "em1data:1": value,
                "switch:0": {
                    "output": value,
                    "aenergy": value,
                    "apower": value,
                    "ret_aenergy": value,
                },
                "em:0": value,
            },
        },
        Format.zigbee2mqtt: {
            "energy": value,
            "state": value,
            "power": value,
            "produced_energy": value,
        },
        Format.emonhub: {"E1": value, "P1": value, "time": value},
    }[fmt]


@FUZZ
@given(st.sampled_from(ALL), json_values, st.integers(0, 2), st.sampled_from([None, "SML.T"]))
def test_arbitrary_values_in_real_shapes_never_raise_anything_but_rejected(
    where, value, channel, sml_key
):
    fmt, topic = where
    payload = json.dumps(shaped(fmt, value)).encode()
    only_rejected(fmt, topic, payload, channel=channel, sml_key=sml_key)


energies = st.decimals(min_value=0, max_value=Decimal("999999999999"), places=4)


def with_energy(fmt, energy):
    """(topic, payload, expected register) for a valid message carrying `energy`."""
    text = str(energy)
    shelly = '{"method": "NotifyStatus", "params": {"em1data:1": {"total_act_energy": @}}}'
    return {
        Format.native: ("meters/SN123/telemetry", '{"energy_kwh": @}'.replace("@", text), energy),
        Format.tasmota: (
            "tele/plug1/SENSOR",
            '{"ENERGY": {"Total": [0, @]}}'.replace("@", text),
            energy,
        ),
        Format.shelly: ("shellypro3em-abc/events/rpc", shelly.replace("@", text), energy / 1000),
        Format.zigbee2mqtt: (
            "zigbee2mqtt/kitchen_plug",
            '{"energy": @}'.replace("@", text),
            energy,
        ),
        Format.emonhub: ("emon/emontx/E2", text, energy / 1000),
    }[fmt]


@FUZZ
@given(st.sampled_from(list(Format)), energies)
def test_valid_payloads_round_trip_their_energy_exactly(fmt, energy):
    topic, payload, expected = with_energy(fmt, energy)
    reading = run(fmt, topic, payload, channel=1)
    assert reading.register == expected
    assert reading.register.as_tuple().exponent >= -7  # no rounding tail crept in


@FUZZ
@given(st.decimals(min_value=0, max_value=Decimal("999999999999"), places=3))
def test_shelly_wh_values_land_on_exact_kwh_strings(wh):
    body = '{"method": "NotifyStatus", "params": {"emdata:0": {"total_act": @}}}'.replace(
        "@", str(wh)
    )
    reading = run(Format.shelly, "shellypro3em-abc/events/rpc", body)
    assert reading.register * 1000 == wh
