"""Modbus benchmarks: polling throughput, the poller's memory, and relay command latency.

The meters are the project's simulator, run as a separate process on loopback so it does not
share the poller's CPU time slice. Baselines are raw pymodbus loops doing the same requests.
"""

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from bench.harness import Result, bench_property, stopwatch

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def simulator(gateways: int, per_gateway: int, base_port: int):
    state = Path(tempfile.mkdtemp()) / "state.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "simulate_meters",
            "--gateways",
            str(gateways),
            "--meters-per-gateway",
            str(per_gateway),
            "--base-port",
            str(base_port),
            "--state-file",
            str(state),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        for port in range(base_port, base_port + gateways):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("the simulator did not start") from None
                    time.sleep(0.2)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def _fleet(gateways: int, per_gateway: int, base_port: int, code: str):
    """Gateways and meters pointing at the simulator, made in bulk (the services' audit rows
    are not what is measured here)."""
    from django.utils import timezone

    from accounts.models import Unit
    from meters.models import Gateway, Meter, MeterProfile
    from meters.services import builtin_profiles_sync

    builtin_profiles_sync()
    profile = MeterProfile.objects.get(organisation__isnull=True, name="prepaid_sim_relay")
    prop = bench_property(code, f"Modbus {code}")
    organisation = prop.organisation
    now = timezone.now()
    made = Gateway.objects.bulk_create(
        Gateway(
            organisation=organisation,
            property=prop,
            name=f"{code}-{g}",
            host="127.0.0.1",
            port=base_port + g,
            timeout_ms=1000,
            retries=0,
            gap_ms=0,
        )
        for g in range(gateways)
    )
    units = Unit.objects.bulk_create(
        Unit(property=prop, name=f"{g}-{u}") for g in range(gateways) for u in range(per_gateway)
    )
    Meter.objects.bulk_create(
        Meter(
            organisation=organisation,
            serial=f"{code}-{unit.name}",
            utility="electricity",
            unit=unit,
            installed_at=now,
            has_relay=True,
            gateway=made[index // per_gateway],
            modbus_unit=index % per_gateway + 1,
            profile=profile,
        )
        for index, unit in enumerate(units)
    )
    return [gateway.pk for gateway in made]


async def _raw_poll(gateways: int, per_gateway: int, base_port: int) -> None:
    """The same requests as a poll, straight through pymodbus: no decoding, no database."""
    from pymodbus.client import AsyncModbusTcpClient

    from meters.protocols.modbus_profile import load_builtin_profile, plan_profile

    blocks = plan_profile(load_builtin_profile("prepaid_sim_relay"))

    async def one_gateway(port: int) -> None:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
        await client.connect()
        readers = {
            1: client.read_coils,
            3: client.read_holding_registers,
            4: client.read_input_registers,
        }
        for unit in range(1, per_gateway + 1):
            for block in blocks:
                await readers[block.function](block.start, count=block.count, device_id=unit)
        client.close()

    await asyncio.gather(*(one_gateway(base_port + g) for g in range(gateways)))


def bench_polling() -> Result:
    from meters.models import Reading
    from meters.polling import poll_gateways

    gateways, per_gateway, base_port = 100, 20, 16000
    ids = _fleet(gateways, per_gateway, base_port, "PLL")
    with simulator(gateways, per_gateway, base_port):
        asyncio.run(_raw_poll(gateways, per_gateway, base_port))  # warm both sides up
        with stopwatch() as raw:
            asyncio.run(_raw_poll(gateways, per_gateway, base_port))
        with stopwatch() as ours:
            run = poll_gateways(gateway_ids=ids)
    meters = gateways * per_gateway
    assert run.readings == meters, run
    assert Reading.objects.filter(meter__gateway_id__in=ids).count() == meters
    return Result(
        name="polling",
        unit="meters/s",
        figure=meters / ours["seconds"],
        baseline=meters / raw["seconds"],
        target=">= 1,000 meters/s and ratio >= 0.5",
        notes=f"{gateways} gateways x {per_gateway} meters, 6 requests each, decoded and written "
        f"in {ours['seconds']:.2f} s; the raw pymodbus loop took {raw['seconds']:.2f} s",
    )


POLL_IN_A_FRESH_PROCESS = """
import resource, sys, django
django.setup()
from meters.polling import poll_gateways
run = poll_gateways(gateway_ids=[int(x) for x in sys.argv[1].split(",")])
print(run.readings, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_poller_memory() -> Result:
    gateways, per_gateway, base_port = 100, 100, 17000
    ids = _fleet(gateways, per_gateway, base_port, "MEM")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "prepaid.settings"}
    with simulator(gateways, per_gateway, base_port):
        baseline = subprocess.run(
            [
                sys.executable,
                "-c",
                "import resource, django; django.setup(); "
                "import meters.polling; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        polled = subprocess.run(
            [sys.executable, "-c", POLL_IN_A_FRESH_PROCESS, ",".join(map(str, ids))],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    readings, peak_kb = map(int, polled.stdout.split()[-2:])
    assert readings == gateways * per_gateway, polled.stdout
    idle_mb = int(baseline.stdout.split()[-1]) / 1024
    return Result(
        name="poller memory",
        unit="MB peak RSS",
        figure=peak_kb / 1024,
        baseline=idle_mb,
        target="<= 300 MB while polling 10,000 meters",
        notes=f"{readings} meters polled in one process; the baseline is the same process with "
        "Django and the poller loaded, before polling",
    )


def bench_command_latency() -> Result:
    from meters.models import Meter
    from meters.protocols.modbus_io import Connection, make_client
    from meters.relay import relay_command_execute, relay_command_issue

    commands, base_port = 200, 18000
    _fleet(1, 20, base_port, "CMD")
    meters = list(Meter.objects.filter(serial__startswith="CMD-").order_by("modbus_unit"))
    latencies, raw_latencies = [], []
    with simulator(1, 20, base_port):
        for n in range(commands):
            meter = meters[n % len(meters)]
            started = time.perf_counter()
            command = relay_command_issue(
                meter=meter, close=n % 40 >= 20, actor=None, reason=f"bench {uuid.uuid4()}"
            )
            assert relay_command_execute(command_id=command.pk) == "confirmed"
            latencies.append(time.perf_counter() - started)

        async def raw() -> None:
            client = make_client(Connection(framer="tcp", host="127.0.0.1", port=base_port))
            await client.connect()
            for n in range(commands):
                started = time.perf_counter()
                await client.write_coil(0, n % 2 == 0, device_id=n % 20 + 1)
                await client.read_coils(0, count=1, device_id=n % 20 + 1)
                raw_latencies.append(time.perf_counter() - started)
            client.close()

        asyncio.run(raw())
    p50, p95 = (statistics.quantiles(latencies, n=100)[i] * 1000 for i in (49, 94))
    raw_p95 = statistics.quantiles(raw_latencies, n=100)[94] * 1000
    return Result(
        name="command latency",
        unit="ms p95",
        figure=p95,
        baseline=raw_p95,
        target="p95 <= 300 ms",
        notes=f"p50 {p50:.1f} ms, p95 {p95:.1f} ms over {commands} commands issued and "
        f"confirmed by read-back; a raw write and read-back: p95 {raw_p95:.1f} ms",
    )
