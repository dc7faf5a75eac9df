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
        parser.add_argument(
            "--batch-size",
            type=int,
            default=defaults.batch_size,
            help="The most messages stored in one transaction.",
        )
        parser.add_argument(
            "--flush-ms",
            type=int,
            default=defaults.flush_ms,
            help="The longest a batch collects messages, from its first.",
        )
        parser.add_argument(
            "--quiet-ms",
            type=int,
            default=defaults.quiet_ms,
            help="A batch is stored once no message has come for this long.",
        )

    def handle(self, *args, client_id, batch_size, flush_ms, quiet_ms, **options):
        if batch_size < 1 or flush_ms < 1 or quiet_ms < 1:
            self.stderr.write("--batch-size, --flush-ms and --quiet-ms must be at least 1.")
            raise SystemExit(2)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        address = BrokerAddress.from_url(settings.MQTT_URL)
        service = IngestService(
            address,
            Settings(
                client_id=client_id, batch_size=batch_size, flush_ms=flush_ms, quiet_ms=quiet_ms
            ),
        )
        self.stdout.write(f"MQTT ingest: {address.host}:{address.port} as {client_id}")
        service.run(stop)
        totals = service.totals
        self.stdout.write(
            f"Stopped: {totals.messages} messages in {totals.batches} batches, "
            f"{totals.readings} readings, {totals.duplicates} duplicates, "
            f"{totals.rejected} rejected."
        )
