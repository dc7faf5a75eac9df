import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from meters.mqtt_client import BrokerAddress
from meters.mqtt_service import IngestService, Settings


class Command(BaseCommand):
    help = (
        "Take meter readings, device states and relay confirmations from the MQTT broker "
        "(settings.MQTT_URL) into the database, acknowledging each message only after it is "
        "stored. Runs until SIGTERM or Ctrl-C."
    )

    def add_arguments(self, parser):
        defaults = Settings()
        parser.add_argument("--client-id", default=settings.MQTT_INGEST_CLIENT_ID)
        parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
        parser.add_argument("--flush-ms", type=int, default=defaults.flush_ms)

    def handle(self, *args, client_id, batch_size, flush_ms, **options):
        if batch_size < 1 or flush_ms < 1:
            self.stderr.write("--batch-size and --flush-ms must be at least 1.")
            raise SystemExit(2)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        address = BrokerAddress.from_url(settings.MQTT_URL)
        service = IngestService(
            address, Settings(client_id=client_id, batch_size=batch_size, flush_ms=flush_ms)
        )
        self.stdout.write(f"MQTT ingest: {address.host}:{address.port} as {client_id}")
        service.run(stop)
        totals = service.totals
        self.stdout.write(
            f"Stopped: {totals.messages} messages, {totals.readings} readings, "
            f"{totals.duplicates} duplicates, {totals.rejected} rejected."
        )
