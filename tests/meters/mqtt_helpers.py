"""Running the ingest service and publishing to the real Mosquitto from tests."""

import shutil
import socket
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager

from django.conf import settings

from meters import services
from meters.models import MqttDevice
from meters.mqtt_client import BrokerAddress, make_client
from meters.mqtt_service import IngestService, Settings
from tests import factories
from tests.waiting import wait_for


def broker() -> BrokerAddress:
    return BrokerAddress.from_url(settings.MQTT_URL)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextmanager
def running_ingest(client_id: str | None = None, *, address=None, **overrides):
    """The ingest service in a thread, with a session of its own that the broker forgets soon
    after the test."""
    options = {"session_expiry_s": 120, "flush_ms": 50, **overrides}
    service = IngestService(
        address or broker(), Settings(client_id=client_id or unique("ingest"), **options)
    )
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: service.totals.connected)
        # Subscriptions are sent on connect; give the broker a moment to register them.
        time.sleep(0.3)
        yield service
    finally:
        stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the ingest service did not stop"


class Publisher:
    """A device-side client: publishes at QoS 1 and waits for the broker to have each one."""

    def __init__(self) -> None:
        self.client = make_client(unique("pub"), broker())
        self.client.connect(broker().host, broker().port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_device(property, fmt: str) -> MqttDevice:
    """A device registered through the service, with a key no other test run on the shared
    broker uses."""
    return factories.MqttDeviceFactory(property=property, format=fmt, key=unique(fmt))


def mqtt_meter(property, device: MqttDevice, *, channel: int = 0, sml_key: str = "", **kwargs):
    meter = factories.MeterFactory(unit__property=property, **kwargs)
    return services.meter_connect_mqtt(
        meter=meter, actor=None, device=device, channel=channel, sml_key=sml_key
    )


class Mosquitto:
    """A Mosquitto of the test's own on a free port, that the test may restart. It keeps no
    sessions across a restart (persistence false), like a broker that lost its disk."""

    def __init__(self, folder) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.address = BrokerAddress.from_url(f"mqtt://127.0.0.1:{self.port}")
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - the machine's mosquitto, our config
            [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._accepts)

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True
