import json
from decimal import InvalidOperation
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from meters.models import Meter, MqttDevice
from meters.mqtt_client import BrokerAddress
from meters.mqtt_simulator import (
    DEFAULT_INTERVAL_S,
    DeviceId,
    DeviceSpec,
    MqttSimulator,
    parse_device_ids,
)
from meters.protocols.mqtt_formats import Format
from meters.simulator import PROFILE, Faults, MeterSimulator

ONLINE_WAIT_S = 10.0


class Command(BaseCommand):
    help = (
        f"Serve simulated meters ({PROFILE} profile) over Modbus TCP: one port per gateway, "
        "unit ids 1..K behind each. Gateways are numbered from 1 in the fault options. "
        "With --mqtt, also runs a simulated device for every MQTT device in the database, "
        "against MQTT_URL. Stops on SIGTERM or SIGINT, saving every register and relay to the "
        "state files."
    )

    def add_arguments(self, parser):
        parser.add_argument("--gateways", type=int, default=2)
        parser.add_argument("--meters-per-gateway", type=int, default=20)
        parser.add_argument(
            "--base-port", type=int, default=15020, help="Gateway g listens on base + g - 1."
        )
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--state-file",
            type=Path,
            default=settings.VAR_DIR / "simulator-state.json",
            help="Registers and relays, kept across restarts (default: var/simulator-state.json).",
        )
        parser.add_argument("--seed", type=int, default=1, help="Picks each household's load.")
        parser.add_argument(
            "--speedup", type=float, default=1.0, help="Simulated seconds per real second."
        )
        parser.add_argument("--dead", default="", help='Never answer, e.g. "1:3,2:7".')
        parser.add_argument("--slow", default="", help='Answer late, e.g. "1:4:500" (ms).')
        parser.add_argument("--exceptions", default="", help='Answer exception 0x04: "g:u".')
        parser.add_argument(
            "--rollover-at", default=None, help="Every energy register wraps to 0 here (kWh)."
        )
        parser.add_argument(
            "--backwards", default="", help='Energy 100 kWh lower from the 2nd read: "g:u".'
        )
        mqtt = parser.add_argument_group("MQTT devices")
        mqtt.add_argument(
            "--mqtt",
            action="store_true",
            help="Also simulate every MQTT device in the database, against MQTT_URL.",
        )
        mqtt.add_argument(
            "--mqtt-only", action="store_true", help="Simulate the MQTT devices and no gateways."
        )
        mqtt.add_argument(
            "--mqtt-interval",
            type=float,
            default=DEFAULT_INTERVAL_S,
            help="Seconds between a device's reports (with 10%% jitter).",
        )
        mqtt.add_argument(
            "--mqtt-state-file",
            type=Path,
            default=settings.VAR_DIR / "mqtt-simulator-state.json",
            help="The devices' registers and relays (default: var/mqtt-simulator-state.json).",
        )
        mqtt.add_argument(
            "--mqtt-credentials",
            type=Path,
            default=None,
            help='JSON {"<device username>": "<password>"}: those devices log in as '
            "themselves; the others use MQTT_URL's login.",
        )
        mqtt.add_argument("--mqtt-deaf", default="", help='Ignore commands: "tasmota:plug1,...".')
        mqtt.add_argument(
            "--mqtt-offline",
            default="",
            help='Drop off the network after connecting, leaving the will: "format:key,...".',
        )

    def handle(self, *args, **options):
        devices = None
        if options["mqtt"] or options["mqtt_only"]:
            devices = self._mqtt_simulator(options)
        if options["mqtt_only"]:
            try:
                devices.run_forever(on_started=self._announce_mqtt_only)
            except ValueError as error:  # a state file that cannot be read
                raise CommandError(str(error)) from error
            self.stdout.write(f"Stopped; state saved to {devices.state_file}.")
            return
        try:
            faults = Faults.parse(
                dead=options["dead"],
                slow=options["slow"],
                exceptions=options["exceptions"],
                backwards=options["backwards"],
                rollover_at=options["rollover_at"],
            )
            simulator = MeterSimulator(
                gateways=options["gateways"],
                meters_per_gateway=options["meters_per_gateway"],
                host=options["host"],
                base_port=options["base_port"],
                seed=options["seed"],
                state_file=options["state_file"],
                faults=faults,
                speedup=options["speedup"],
            )
        except (ValueError, InvalidOperation) as error:
            raise CommandError(str(error)) from error
        try:
            if devices is not None:
                devices.start()
                self._announce_mqtt(devices)
            simulator.run_forever(on_started=self._announce)
        except (OSError, ValueError) as error:
            # A port in use, or a state file that cannot be read.
            raise CommandError(str(error)) from error
        finally:
            if devices is not None:
                devices.stop()
        self.stdout.write(f"Stopped; state saved to {simulator.state_file}.")
        if devices is not None:
            self.stdout.write(f"MQTT devices' state saved to {devices.state_file}.")

    def _mqtt_simulator(self, options) -> MqttSimulator:
        try:
            deaf = parse_device_ids(options["mqtt_deaf"], "--mqtt-deaf")
            offline = parse_device_ids(options["mqtt_offline"], "--mqtt-offline")
            credentials = _credentials(options["mqtt_credentials"])
            specs, problems = mqtt_device_specs(
                interval=options["mqtt_interval"],
                credentials=credentials,
                deaf=deaf,
                offline=offline,
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
        unknown = (deaf | offline) - {spec.id for spec in specs}
        if unknown:
            raise CommandError(f"No such MQTT devices to simulate: {_device_names(unknown)}.")
        for problem in problems:
            self.stderr.write(f"Not simulated: {problem}")
        broker = BrokerAddress.from_url(settings.MQTT_URL)
        try:
            return MqttSimulator(
                specs,
                host=broker.host,
                port=broker.port,
                username=broker.username,
                password=broker.password,
                tls=broker.tls,
                seed=options["seed"],
                speedup=options["speedup"],
                state_file=options["mqtt_state_file"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from error

    def _announce_mqtt(self, devices: MqttSimulator) -> None:
        broker = BrokerAddress.from_url(settings.MQTT_URL)
        self.stdout.write(
            self.style.SUCCESS(
                f"Simulating {len(devices.devices)} MQTT devices against "
                f"{broker.host}:{broker.port}, state in {devices.state_file}"
            )
        )
        counts: dict[str, int] = {}
        for spec in devices.specs:
            counts[spec.format.value] = counts.get(spec.format.value, 0) + 1
        for fmt, count in sorted(counts.items()):
            self.stdout.write(f"  {fmt}: {count}")
        for name, ids in [
            ("deaf", {spec.id for spec in devices.specs if spec.deaf}),
            ("offline", {spec.id for spec in devices.specs if spec.offline}),
        ]:
            if ids:
                self.stdout.write(f"  {name}: {_device_names(ids)}")
        if not devices.wait_online(ONLINE_WAIT_S):
            waiting = sum(1 for d in devices.devices if not d.ready and not d.spec.offline)
            self.stderr.write(
                f"  {waiting} devices are not online after {ONLINE_WAIT_S:g} s; they keep trying."
            )
        self.stdout.flush()

    def _announce_mqtt_only(self, devices: MqttSimulator) -> None:
        self._announce_mqtt(devices)
        self.stdout.write("Stop with Ctrl-C or SIGTERM.")
        self.stdout.flush()

    def _announce(self, simulator: MeterSimulator) -> None:
        units = f"unit ids 1-{simulator.meters_per_gateway}"
        self.stdout.write(
            self.style.SUCCESS(
                f"Simulating {simulator.gateways * simulator.meters_per_gateway} meters "
                f"({PROFILE}) on {simulator.gateways} gateways, state in {simulator.state_file}"
            )
        )
        for gateway, port in enumerate(simulator.ports, start=1):
            self.stdout.write(f"  gateway {gateway}: {simulator.host}:{port}  {units}")
        faults = simulator.faults
        for name, addresses in [
            ("dead", faults.dead),
            ("exceptions", faults.exceptions),
            ("backwards", faults.backwards),
        ]:
            if addresses:
                self.stdout.write(f"  {name}: {_names(addresses)}")
        for (gateway, unit), ms in sorted(faults.slow_ms.items()):
            self.stdout.write(f"  slow: {gateway}:{unit} answers after {ms} ms")
        if faults.rollover_at is not None:
            self.stdout.write(f"  every energy register wraps to 0 at {faults.rollover_at} kWh")
        self.stdout.write("Stop with Ctrl-C or SIGTERM.")
        self.stdout.flush()


def _names(addresses) -> str:
    return ", ".join(f"{gateway}:{unit}" for gateway, unit in sorted(addresses))


def mqtt_device_specs(
    *,
    interval: float,
    credentials: dict[str, str],
    deaf: frozenset[DeviceId] = frozenset(),
    offline: frozenset[DeviceId] = frozenset(),
) -> tuple[list[DeviceSpec], list[str]]:
    """A device to simulate for every MQTT device in the database, with as many channels as its
    highest meter channel needs, and why the others cannot be simulated."""
    specs, problems = [], []
    rows = MqttDevice.objects.prefetch_related("meters").order_by("format", "key")
    for device in rows:
        fmt = Format(device.format)
        meters = [meter for meter in device.meters.all() if meter.removed_at is None]
        channels = max((meter.mqtt_channel for meter in meters), default=0) + 1
        sml_keys = [""] * channels
        for meter in meters:
            sml_keys[meter.mqtt_channel] = meter.mqtt_sml_key
        try:
            specs.append(
                DeviceSpec(
                    format=fmt,
                    key=device.key,
                    channels=channels,
                    relay=fmt != Format.emonhub and any(meter.has_relay for meter in meters),
                    water=any(meter.utility == Meter.Utility.WATER for meter in meters),
                    sml_keys=tuple(sml_keys) if any(sml_keys) else (),
                    interval=interval,
                    username=device.username if device.username in credentials else None,
                    password=credentials.get(device.username),
                    deaf=(fmt, device.key) in deaf,
                    offline=(fmt, device.key) in offline,
                )
            )
        except ValueError as error:
            problems.append(f"{fmt.value}:{device.key}: {error}")
    return specs, problems


def _credentials(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        logins = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read the credentials file {path}: {error}") from error
    if not isinstance(logins, dict) or not all(
        isinstance(name, str) and isinstance(password, str) for name, password in logins.items()
    ):
        raise ValueError(f'{path} must hold one JSON object: {{"<username>": "<password>"}}.')
    return logins


def _device_names(ids) -> str:
    return ", ".join(f"{fmt.value}:{key}" for fmt, key in sorted(ids))
