import json

import pytest

from meters.protocols.mqtt_formats import Format
from meters.protocols.mqtt_topics import (
    SUBSCRIPTIONS,
    NoRelay,
    backend_grants,
    device_grants,
    device_of,
    key_problem,
    relay_command,
)


@pytest.mark.parametrize(
    ("topic", "device"),
    [
        ("meters/SN-1/telemetry", (Format.native, "SN-1")),
        ("meters/SN-1/cmd/ack", (Format.native, "SN-1")),
        ("tele/plug-7/SENSOR", (Format.tasmota, "plug-7")),
        ("stat/plug-7/POWER2", (Format.tasmota, "plug-7")),
        ("shellypro3em-a1/events/rpc", (Format.shelly, "shellypro3em-a1")),
        ("shellypro3em-a1/online", (Format.shelly, "shellypro3em-a1")),
        ("zigbee2mqtt/kitchen", (Format.zigbee2mqtt, "kitchen")),
        ("zigbee2mqtt/kitchen/availability", (Format.zigbee2mqtt, "kitchen")),
        ("emon/emontx4", (Format.emonhub, "emontx4")),
        ("emon/emontx4/E1", (Format.emonhub, "emontx4")),
    ],
)
def test_a_topic_names_its_device(topic, device):
    assert device_of(topic) == device


@pytest.mark.parametrize(
    "topic",
    ["meters", "meters//telemetry", "zigbee2mqtt/bridge/state", "foo/bar", "prepaid/online", "/x"],
)
def test_topics_of_nobody_name_no_device(topic):
    assert device_of(topic) is None


def test_a_shelly_prefix_may_not_be_another_dialects_first_level():
    assert key_problem(Format.shelly, "tele")
    assert key_problem(Format.shelly, "shellyplus1pm-1") is None
    assert key_problem(Format.zigbee2mqtt, "bridge")


@pytest.mark.parametrize(
    ("fmt", "channel", "close", "topic", "payload"),
    [
        (Format.tasmota, 0, False, "cmnd/k/POWER", b"OFF"),
        (Format.tasmota, 1, True, "cmnd/k/POWER2", b"ON"),
        (Format.zigbee2mqtt, 0, False, "zigbee2mqtt/k/set", {"state": "OFF"}),
        (Format.native, 0, True, "meters/k/cmd", {"id": "c-1", "relay": "on"}),
    ],
)
def test_each_dialect_words_a_relay_command_its_own_way(fmt, channel, close, topic, payload):
    sent = relay_command(fmt, "k", channel=channel, close=close, command_id="c-1")
    assert sent.topic == topic
    assert (sent.payload if isinstance(payload, bytes) else json.loads(sent.payload)) == payload


def test_a_shelly_command_is_a_switch_set_rpc_for_the_channel():
    sent = relay_command(Format.shelly, "sp", channel=2, close=False, command_id="c-1")
    body = json.loads(sent.payload)
    assert sent.topic == "sp/rpc"
    assert (body["method"], body["params"]) == ("Switch.Set", {"id": 2, "on": False})
    assert (
        body["id"]
        == json.loads(
            relay_command(Format.shelly, "sp", channel=2, close=False, command_id="c-1").payload
        )["id"]
    )


def test_emonhub_devices_cannot_be_switched():
    with pytest.raises(NoRelay):
        relay_command(Format.emonhub, "n", channel=0, close=False, command_id="c")


@pytest.mark.parametrize("fmt", list(Format))
def test_a_device_login_reaches_only_topics_of_its_own_key(fmt):
    for _, topic in device_grants(fmt, "dev-a"):
        assert device_of(topic.removesuffix("/#")) == (fmt, "dev-a")


def test_the_backend_reads_everything_it_subscribes_to():
    reads = {topic for access, topic in backend_grants() if "read" in access}
    assert set(SUBSCRIPTIONS) <= reads
