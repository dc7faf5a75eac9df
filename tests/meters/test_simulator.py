"""The meter simulator over real TCP on 127.0.0.1, read with pymodbus' own client.

Every simulator listens on ports the system picks (base_port=0), so parallel runs never collide.
pytest-asyncio is not a dependency: each test drives its coroutine with asyncio.run.
"""

import asyncio
import json
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from meters.simulator import (
    ACTIVE_POWER,
    CURRENT,
    FREQUENCY,
    IMPORT_ENERGY,
    RELAY_COIL,
    TOTAL_ENERGY,
    VOLTAGE,
    Faults,
    MeterSimulator,
)

FLOAT32 = AsyncModbusTcpClient.DATATYPE.FLOAT32


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


@asynccontextmanager
async def simulator(**options) -> AsyncIterator[MeterSimulator]:
    settings = {"gateways": 1, "meters_per_gateway": 3, "host": "127.0.0.1", "seed": 7}
    sim = MeterSimulator(base_port=0, **(settings | options))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@asynccontextmanager
async def connected(port: int, timeout: float = 2.0) -> AsyncIterator[AsyncModbusTcpClient]:
    # No retries: a request that gets no answer fails after one timeout, not four.
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0)
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


async def read_float(client: AsyncModbusTcpClient, address: int, unit: int) -> float:
    result = await client.read_input_registers(address, count=2, device_id=unit)
    assert not result.isError(), result
    return client.convert_from_registers(result.registers, FLOAT32, word_order="big")


async def read_relay(client: AsyncModbusTcpClient, unit: int) -> bool:
    result = await client.read_coils(RELAY_COIL, count=1, device_id=unit)
    assert not result.isError(), result
    return result.bits[0]


def as_float32(value: Decimal) -> float:
    """What a float32 register holds for `value`: rounding to float32 never reverses an order."""
    return struct.unpack(">f", struct.pack(">f", float(value)))[0]


def write_state(path: Path, meters: dict[str, tuple[str, bool]]) -> None:
    entries = {
        key: {"energy_kwh": kwh, "relay_closed": closed} for key, (kwh, closed) in meters.items()
    }
    path.write_text(json.dumps({"version": 1, "meters": entries}))


@pytest.fixture
def unused_port_pair() -> int:
    """Two consecutive ports nothing listens on, taken from a range the system rarely hands out."""
    for base in range(25_000 + (time.monotonic_ns() % 5_000), 31_000, 2):
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("127.0.0.1", base))
                second.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    pytest.fail("no two free consecutive ports")


def test_the_float_registers_decode_to_plausible_values():
    async def test():
        async with simulator() as sim, connected(sim.ports[0]) as client:
            volts = await read_float(client, VOLTAGE, 1)
            amps = await read_float(client, CURRENT, 1)
            watts = await read_float(client, ACTIVE_POWER, 1)
            hertz = await read_float(client, FREQUENCY, 1)
            imported = await read_float(client, IMPORT_ENERGY, 1)
            total = await read_float(client, TOTAL_ENERGY, 1)
            energy = sim.meter(1, 1).energy_kwh

        assert 225 < volts < 235
        assert 49.9 < hertz < 50.1
        assert 50 < watts < 5000
        assert amps == pytest.approx(watts / volts, rel=0.03)  # volts are sampled per read
        assert total == pytest.approx(imported, abs=0.001)
        assert imported == pytest.approx(float(energy), abs=0.01)

    run(test)


def test_energy_rises_while_the_relay_is_closed_and_stays_flat_while_it_is_open():
    async def test():
        # An hour passes every second, so even a quiet household adds ~0.05 kWh in 0.6 s.
        async with simulator(speedup=3600) as sim, connected(sim.ports[0]) as client:
            before = await read_float(client, IMPORT_ENERGY, 1)
            await asyncio.sleep(0.6)
            after = await read_float(client, IMPORT_ENERGY, 1)
            assert after > before

            await client.write_coil(RELAY_COIL, False, device_id=1)
            opened = await read_float(client, IMPORT_ENERGY, 1)
            await asyncio.sleep(0.6)
            assert await read_float(client, IMPORT_ENERGY, 1) == opened
            assert isinstance(sim.meter(1, 1).energy_kwh, Decimal)

    run(test)


def test_opening_the_relay_cuts_the_power_and_closing_it_restores_it():
    async def test():
        async with simulator() as sim, connected(sim.ports[0]) as client:
            assert await read_relay(client, 2) is True

            result = await client.write_coil(RELAY_COIL, False, device_id=2)
            assert not result.isError()
            assert await read_relay(client, 2) is False
            assert sim.meter(1, 2).relay_closed is False
            assert await read_float(client, ACTIVE_POWER, 2) == 0.0
            assert await read_float(client, CURRENT, 2) == 0.0
            assert await read_float(client, ACTIVE_POWER, 1) > 0, "its neighbour still draws"

            await client.write_coil(RELAY_COIL, True, device_id=2)
            assert await read_relay(client, 2) is True
            assert sim.meter(1, 2).relay_closed is True
            assert await read_float(client, ACTIVE_POWER, 2) > 0

    run(test)


def test_many_unit_ids_on_one_port_each_answer_with_their_own_register():
    async def test():
        async with simulator(meters_per_gateway=12) as sim, connected(sim.ports[0]) as client:
            readings = {
                unit: await read_float(client, IMPORT_ENERGY, unit) for unit in range(1, 13)
            }
            expected = {unit: float(sim.meter(1, unit).energy_kwh) for unit in range(1, 13)}

        assert len(set(readings.values())) == 12
        assert readings == pytest.approx(expected, abs=0.01)

    run(test)


def test_gateways_listen_on_consecutive_ports_from_the_base_port(unused_port_pair):
    async def test():
        sim = MeterSimulator(gateways=2, meters_per_gateway=1, base_port=unused_port_pair, seed=1)
        await sim.start()
        try:
            assert sim.ports == [unused_port_pair, unused_port_pair + 1]
            for port in sim.ports:
                async with connected(port) as client:
                    assert await read_float(client, VOLTAGE, 1) > 200
        finally:
            await sim.stop()

    run(test)


def test_a_dead_unit_times_out_while_its_neighbours_on_the_same_gateway_answer():
    async def test():
        faults = Faults(dead=frozenset({(1, 2)}))
        async with simulator(faults=faults) as sim, connected(sim.ports[0], timeout=0.4) as client:
            # Several silences in a row would make pymodbus drop the connection by default.
            client.set_max_no_responses(10)
            for _ in range(3):
                with pytest.raises(ModbusIOException):
                    await client.read_input_registers(IMPORT_ENERGY, count=2, device_id=2)
            for unit in (1, 3):
                started = time.monotonic()
                assert await read_float(client, IMPORT_ENERGY, unit) > 0
                assert time.monotonic() - started < 0.4
            # Nor does anything answer for a unit id with no meter behind the gateway.
            with pytest.raises(ModbusIOException):
                await client.read_coils(RELAY_COIL, count=1, device_id=9)

    run(test)


def test_an_exception_unit_answers_every_request_with_device_failure():
    async def test():
        faults = Faults(exceptions=frozenset({(1, 3)}))
        async with simulator(faults=faults) as sim, connected(sim.ports[0]) as client:
            read = await client.read_input_registers(IMPORT_ENERGY, count=2, device_id=3)
            write = await client.write_coil(RELAY_COIL, False, device_id=3)
            assert await read_float(client, IMPORT_ENERGY, 2) > 0
            closed = sim.meter(1, 3).relay_closed

        assert read.isError()
        assert read.exception_code == 0x04
        assert write.isError()
        assert closed is True

    run(test)


def test_a_slow_unit_answers_late_and_its_late_answer_is_never_taken_for_the_next_one():
    async def test():
        # The client gives up on unit 2 at 0.3 s and asks unit 3, which answers at 0.5 s; unit
        # 2's late answer goes out at 0.4 s, while the client waits for unit 3's own.
        faults = Faults(slow_ms={(1, 2): 400, (1, 3): 200})
        async with simulator(faults=faults) as sim, connected(sim.ports[0], timeout=0.3) as client:
            started = time.monotonic()
            assert await read_float(client, IMPORT_ENERGY, 3) > 0
            assert time.monotonic() - started >= 0.2

            with pytest.raises(ModbusIOException):
                await client.read_input_registers(IMPORT_ENERGY, count=2, device_id=2)
            third = await read_float(client, IMPORT_ENERGY, 3)
            expected = {unit: float(sim.meter(1, unit).energy_kwh) for unit in (2, 3)}

        assert third == pytest.approx(expected[3], abs=0.01)
        assert third != pytest.approx(expected[2], abs=0.01)

    run(test)


def test_reads_of_more_than_60_registers_are_refused_as_the_sdm120_does():
    async def test():
        async with simulator() as sim, connected(sim.ports[0]) as client:
            refused = await client.read_input_registers(VOLTAGE, count=61, device_id=1)
            allowed = await client.read_input_registers(VOLTAGE, count=60, device_id=1)

        assert refused.isError()
        assert refused.exception_code == 0x03
        assert not allowed.isError()

    run(test)


def test_energy_and_relay_survive_a_stop_and_start(tmp_path):
    state = tmp_path / "var" / "simulator-state.json"

    async def test():
        async with simulator(state_file=state, speedup=3600) as first:
            async with connected(first.ports[0]) as client:
                await client.write_coil(RELAY_COIL, False, device_id=2)
            await asyncio.sleep(0.6)
        at_stop = {unit: first.meter(1, unit).energy_kwh for unit in (1, 2, 3)}

        async with simulator(state_file=state, speedup=3600) as second:
            at_start = {unit: second.meter(1, unit).energy_kwh for unit in (1, 2, 3)}
            async with connected(second.ports[0]) as client:
                assert await read_relay(client, 2) is False
                assert await read_relay(client, 1) is True
                register = await read_float(client, IMPORT_ENERGY, 1)

        assert all(at_start[unit] >= at_stop[unit] for unit in at_stop)
        assert register >= as_float32(at_stop[1])
        assert list(state.parent.iterdir()) == [state], "no temporary file is left behind"

    run(test)


def test_the_state_file_is_saved_while_running_not_only_at_stop(tmp_path):
    state = tmp_path / "simulator-state.json"

    async def test():
        async with simulator(state_file=state, speedup=3600, save_interval=0.1):
            await asyncio.sleep(0.8)
            saved = json.loads(state.read_text())["meters"]

        assert set(saved) == {"1:1", "1:2", "1:3"}
        assert Decimal(saved["1:1"]["energy_kwh"]) > 0

    run(test)


def test_an_unreadable_state_file_stops_the_start_rather_than_resetting_registers(tmp_path):
    state = tmp_path / "simulator-state.json"
    state.write_text('{"meters": {"1:1": {"energy_kwh": "many"}}}')

    async def test():
        sim = MeterSimulator(gateways=1, meters_per_gateway=1, base_port=0, state_file=state)
        with pytest.raises(ValueError, match="Unreadable state file"):
            await sim.start()

    run(test)


def test_the_energy_register_wraps_to_zero_at_the_rollover_value(tmp_path):
    state = tmp_path / "simulator-state.json"
    write_state(state, {"1:1": ("99.9", True)})

    async def test():
        # Ten hours a second: at least ~0.5 kWh in 0.5 s, enough to pass 100 kWh.
        faults = Faults(rollover_at=Decimal(100))
        async with (
            simulator(state_file=state, faults=faults, speedup=36_000) as sim,
            connected(sim.ports[0]) as client,
        ):
            await asyncio.sleep(0.5)
            wrapped = await read_float(client, IMPORT_ENERGY, 1)
            others = [await read_float(client, IMPORT_ENERGY, unit) for unit in (2, 3)]

        assert 0 <= wrapped < 99.9
        assert all(0 <= energy < 100 for energy in others), "fresh registers start wrapped"

    run(test)


def test_a_backwards_meter_reports_100_kwh_less_once_and_counts_on_from_there():
    async def test():
        faults = Faults(backwards=frozenset({(1, 1)}))
        async with simulator(faults=faults) as sim, connected(sim.ports[0]) as client:
            first = await read_float(client, IMPORT_ENERGY, 1)
            second = await read_float(client, IMPORT_ENERGY, 1)
            third = await read_float(client, TOTAL_ENERGY, 1)
            neighbour = [await read_float(client, IMPORT_ENERGY, 2) for _ in range(3)]
            energy = sim.meter(1, 1).energy_kwh

        assert second == pytest.approx(first - 100, abs=0.01)
        assert second <= third < first
        assert third == pytest.approx(float(energy), abs=0.01)
        assert neighbour == sorted(neighbour)

    run(test)


def test_fault_options_name_meters_by_gateway_and_unit_and_unknown_meters_are_refused():
    faults = Faults.parse(dead="1:3, 2:7", slow="1:4:500", exceptions="2:1", rollover_at="99999")

    assert faults.dead == {(1, 3), (2, 7)}
    assert faults.for_meter((1, 4)).slow_ms == 500
    assert faults.for_meter((2, 1)).exceptions is True
    assert faults.rollover_at == Decimal(99999)
    with pytest.raises(ValueError, match="gateway:unit:ms"):
        Faults.parse(slow="1:4")
    with pytest.raises(ValueError, match="do not exist: 3:1"):
        MeterSimulator(gateways=2, meters_per_gateway=20, faults=Faults.parse(dead="3:1"))


def test_a_gateway_serves_at_most_the_247_unit_ids_modbus_allows():
    with pytest.raises(ValueError, match="1 to 247 meters"):
        MeterSimulator(gateways=1, meters_per_gateway=248)
