import asyncio
import logging
import signal
import socket
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from meters.mqtt_client import BrokerAddress


class Command(BaseCommand):
    help = (
        "For `make run` on a machine without an MQTT broker: serve an embedded one (amqtt, MQTT "
        "3.1.1, anonymous, loopback only) at settings.MQTT_URL. When a broker already answers "
        "there, say so and wait, so the other processes use that one."
    )

    def handle(self, *args, **options):
        address = BrokerAddress.from_url(settings.MQTT_URL)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if _answers(address):
            self.stdout.write(f"An MQTT broker already answers at {address.host}:{address.port}.")
            stop.wait()
            return
        if address.host not in ("127.0.0.1", "localhost", "::1"):
            self.stderr.write(f"No MQTT broker answers at {address.host}:{address.port}.")
            raise SystemExit(1)
        self.stdout.write(f"Embedded MQTT broker (amqtt) at 127.0.0.1:{address.port}.")
        asyncio.run(_serve(address.port, stop))


def _answers(address: BrokerAddress) -> bool:
    try:
        with socket.create_connection((address.host, address.port), timeout=1):
            return True
    except OSError:
        return False


async def _serve(port: int, stop: threading.Event) -> None:
    from amqtt.broker import Broker

    # amqtt logs every packet at INFO.
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    try:
        while not stop.is_set():
            await asyncio.sleep(0.2)
    finally:
        await broker.shutdown()
