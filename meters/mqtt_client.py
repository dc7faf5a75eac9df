"""Connections to the MQTT broker named by settings.MQTT_URL, with paho-mqtt 2.x and MQTT v5."""

import os
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from django.conf import settings

PUBLISH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> "BrokerAddress":
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


def make_client(
    client_id: str, address: BrokerAddress, *, protocol: int = mqtt.MQTTv5, **kwargs
) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kwargs
    )
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set()
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


class PublishFailed(Exception):
    pass


class Publisher:
    """One long-lived connection per process for sending commands: a restore must not wait for
    a TCP and MQTT handshake. Publishes at QoS 1 and returns once the broker has the message."""

    def __init__(self, address: BrokerAddress, client_id: str) -> None:
        self._connected = threading.Event()
        # Publishing at QoS 1 needs nothing from MQTT 5, and 3.1.1 works with every broker,
        # the embedded demo one included.
        self._client = make_client(client_id, address, protocol=mqtt.MQTTv311)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *args: self._connected.clear()
        self._client.connect_async(address.host, address.port, keepalive=30)
        self._client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self._connected.set()

    def publish(self, topic: str, payload: bytes, *, timeout: float = PUBLISH_TIMEOUT_S) -> None:
        if not self._connected.wait(timeout):
            raise PublishFailed(f"no connection to the MQTT broker within {timeout:g} s")
        info = self._client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as error:
            raise PublishFailed(f"the broker did not take the message: {error}") from error
        if not info.is_published():
            raise PublishFailed(f"the broker did not acknowledge within {timeout:g} s")


_lock = threading.Lock()
_publisher: Publisher | None = None


def publisher() -> Publisher:
    """This process's command publisher, connected on first use."""
    global _publisher
    with _lock:
        if _publisher is None:
            _publisher = Publisher(
                BrokerAddress.from_url(settings.MQTT_URL), client_id=f"prepaid-cmd-{os.getpid()}"
            )
        return _publisher
