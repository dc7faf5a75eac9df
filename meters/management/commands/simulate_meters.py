from decimal import InvalidOperation
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from meters.simulator import PROFILE, Faults, MeterSimulator


class Command(BaseCommand):
    help = (
        f"Serve simulated meters ({PROFILE} profile) over Modbus TCP: one port per gateway, "
        "unit ids 1..K behind each. Gateways are numbered from 1 in the fault options. "
        "Stops on SIGTERM or SIGINT, saving every register and relay to the state file."
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

    def handle(self, *args, **options):
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
            simulator.run_forever(on_started=self._announce)
        except (OSError, ValueError) as error:
            # A port in use, or a state file that cannot be read.
            raise CommandError(str(error)) from error
        self.stdout.write(f"Stopped; state saved to {simulator.state_file}.")

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
