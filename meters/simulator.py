"""Simulated electricity meters behind Modbus TCP gateways, for development, tests and benchmarks.

Each gateway is one pymodbus `ModbusTcpServer` (one TCP port) serving unit ids 1..K, the way an
RS485-to-TCP gateway fronts a bus of meters. Every meter speaks the "prepaid_sim_relay" profile,
an Eastron SDM120 register map plus a relay coil:

- input registers (function 4), IEEE-754 float32, high word first: voltage 0x0000, current
  0x0006, active power 0x000C (W), frequency 0x0046, import energy 0x0048 (kWh) and total
  energy 0x0156 (kWh, the same register value). Reads of more than 60 registers are refused
  with exception 0x03, as the real meter does.
- coil 0 (functions 1 and 5): the relay, True = closed (power flows). Discrete input 0 mirrors
  it for masters that read relay status as an input.

Energy follows `meters.load_profile` for the meter's seed and zone, accumulates in real time
(times `speedup`) only while the relay is closed, and is kept as a Decimal so rounding can
never make a register run backwards. A JSON state file carries each meter's energy and relay
across restarts. Time the simulator is not running is not metered.

Faults are configured per meter (see `Faults`); requests are answered concurrently, so the
half-duplex wait of a real RS485 bus is not simulated beyond the `slow` fault.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from meters.load_profile import SLOT, power_kw

logger = logging.getLogger(__name__)

PROFILE = "prepaid_sim_relay"

VOLTAGE = 0x0000
CURRENT = 0x0006
ACTIVE_POWER = 0x000C
FREQUENCY = 0x0046
IMPORT_ENERGY = 0x0048
TOTAL_ENERGY = 0x0156
ENERGY_REGISTERS = (IMPORT_ENERGY, TOTAL_ENERGY)
# The SDM120 answers every address from voltage to export energy (0x004A), so masters can read
# neighbouring quantities in one request; addresses the simulator does not model read as 0.0.
FLOAT_BLOCK_WORDS = 0x004C
MODBUS_ADDRESS_HOLDING = 0x0014
RELAY_COIL = 0
MAX_READ_REGISTERS = 60

BIT_FUNCTIONS = frozenset({1, 2, 5, 15})
REGISTER_READS = frozenset({3, 4})
READ_INPUT_REGISTERS = 4

MAX_UNIT_ID = 247
NOMINAL_VOLTAGE = 230.0
NOMINAL_FREQUENCY = 50.0
BACKWARDS_JUMP_KWH = Decimal(100)
MICROSECONDS_PER_HOUR = 3_600_000_000
ENERGY_QUANTUM = Decimal("0.000000001")  # kWh kept internally: far below any register's digits
OPENING_KWH = (100, 5000)  # range of a fresh meter's register, so meters differ from the start
TICK_SECONDS = 0.5
STATE_VERSION = 1

MeterAddress = tuple[int, int]  # (gateway number from 1, unit id)
SavedMeter = tuple[Decimal, bool]  # (energy register in kWh, relay closed)


@dataclass(frozen=True)
class MeterFaults:
    """How one meter misbehaves."""

    dead: bool = False  # never answers
    slow_ms: int = 0  # waits this long before answering
    exceptions: bool = False  # answers every request with exception 0x04 (device failure)
    backwards: bool = False  # its second energy read, and every one after, is 100 kWh lower


@dataclass(frozen=True)
class Faults:
    """Faults for the whole simulator, by (gateway number from 1, unit id).

    `rollover_at` applies to every meter, as a register's width does to every meter of a model:
    the register wraps to 0 when it reaches that value.
    """

    dead: frozenset[MeterAddress] = frozenset()
    slow_ms: Mapping[MeterAddress, int] = field(default_factory=dict)
    exceptions: frozenset[MeterAddress] = frozenset()
    backwards: frozenset[MeterAddress] = frozenset()
    rollover_at: Decimal | None = None

    def __post_init__(self) -> None:
        if self.rollover_at is not None and self.rollover_at <= 0:
            raise ValueError("The rollover value must be above 0 kWh.")
        if any(ms < 0 for ms in self.slow_ms.values()):
            raise ValueError("A slow meter's delay cannot be negative.")

    @classmethod
    def parse(
        cls,
        *,
        dead: str = "",
        slow: str = "",
        exceptions: str = "",
        backwards: str = "",
        rollover_at: str | None = None,
    ) -> Faults:
        """Read the command-line forms: "1:3,2:7" for meters and "1:4:500" for a delay in ms."""
        delays: dict[MeterAddress, int] = {}
        for item in _items(slow):
            gateway, unit, ms = _numbers(item, 3, "--slow wants gateway:unit:ms")
            delays[(gateway, unit)] = ms
        return cls(
            dead=_addresses(dead, "--dead"),
            slow_ms=delays,
            exceptions=_addresses(exceptions, "--exceptions"),
            backwards=_addresses(backwards, "--backwards"),
            rollover_at=Decimal(rollover_at) if rollover_at else None,
        )

    def addresses(self) -> set[MeterAddress]:
        return set(self.dead) | set(self.slow_ms) | set(self.exceptions) | set(self.backwards)

    def for_meter(self, address: MeterAddress) -> MeterFaults:
        return MeterFaults(
            dead=address in self.dead,
            slow_ms=self.slow_ms.get(address, 0),
            exceptions=address in self.exceptions,
            backwards=address in self.backwards,
        )


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _numbers(item: str, count: int, usage: str) -> list[int]:
    parts = item.split(":")
    if len(parts) != count or not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"{usage}, got {item!r}.")
    return [int(part) for part in parts]


def _addresses(text: str, option: str) -> frozenset[MeterAddress]:
    pairs = (_numbers(item, 2, f"{option} wants gateway:unit") for item in _items(text))
    return frozenset((gateway, unit) for gateway, unit in pairs)


class MeteredLoad:
    """One household's supply through a meter: an energy register that follows the load
    profile, and a relay. The Modbus meters and the MQTT devices' channels both run on it."""

    def __init__(
        self,
        *,
        seed: int,
        zone: ZoneInfo,
        energy_kwh: Decimal,
        relay_closed: bool,
        rollover_at: Decimal | None,
        moment: datetime,
    ) -> None:
        self.seed = seed
        self.zone = zone
        self.rollover_at = rollover_at
        self.relay_closed = relay_closed
        self.energy_kwh = self._wrapped(energy_kwh)
        self._metered_until = moment
        self._noise = random.Random(seed)  # noqa: S311 - simulation, not security

    def resume(self, moment: datetime) -> None:
        """Start metering again from `moment`, without metering the time it was stopped."""
        self._metered_until = moment

    def advance(self, moment: datetime) -> None:
        """Add the energy used up to `moment`, slot by slot, as the profile's power is constant
        within a slot and a long step (a high speedup) may cross several."""
        if not self.relay_closed:
            self._metered_until = max(self._metered_until, moment)
            return
        while self._metered_until < moment:
            slot_end = _slot_end(self._metered_until)
            until = min(slot_end, moment)
            kw = Decimal(repr(power_kw(self.seed, self._metered_until, self.zone)))
            microseconds = (until - self._metered_until) // timedelta(microseconds=1)
            kwh = (kw * microseconds / MICROSECONDS_PER_HOUR).quantize(ENERGY_QUANTUM)
            self.energy_kwh = self._wrapped(self.energy_kwh + kwh)
            self._metered_until = until

    def switch(self, *, closed: bool, moment: datetime) -> None:
        """Open or close the relay; energy up to `moment` is metered in the old state."""
        self.advance(moment)
        self.relay_closed = closed

    def power_w(self, moment: datetime) -> float:
        if not self.relay_closed:
            return 0.0
        return power_kw(self.seed, moment, self.zone) * 1000

    def voltage_v(self) -> float:
        return NOMINAL_VOLTAGE + self._noise.uniform(-2.0, 2.0)

    def frequency_hz(self) -> float:
        return NOMINAL_FREQUENCY + self._noise.uniform(-0.05, 0.05)

    def _wrapped(self, energy: Decimal) -> Decimal:
        if self.rollover_at is not None and energy >= self.rollover_at:
            return energy % self.rollover_at
        return energy


class SimulatedMeter(MeteredLoad):
    """One household's Modbus meter: a metered load at a gateway's unit id, with its faults."""

    def __init__(
        self,
        *,
        gateway: int,
        unit_id: int,
        seed: int,
        zone: ZoneInfo,
        energy_kwh: Decimal,
        relay_closed: bool,
        faults: MeterFaults,
        rollover_at: Decimal | None,
        moment: datetime,
    ) -> None:
        super().__init__(
            seed=seed,
            zone=zone,
            energy_kwh=energy_kwh,
            relay_closed=relay_closed,
            rollover_at=rollover_at,
            moment=moment,
        )
        self.gateway = gateway
        self.unit_id = unit_id
        self.faults = faults
        self._jump_pending = faults.backwards
        self._baseline_read = False

    @property
    def address(self) -> MeterAddress:
        return (self.gateway, self.unit_id)

    def note_energy_read(self) -> None:
        """The backwards fault: the first energy read is true, the second finds the register
        100 kWh lower, and it counts on from there."""
        if not self._jump_pending:
            return
        if self._baseline_read:
            self.energy_kwh = max(self.energy_kwh - BACKWARDS_JUMP_KWH, Decimal(0))
            self._jump_pending = False
        self._baseline_read = True


def opening_register(seed: int) -> Decimal:
    """A fresh meter's energy register (kWh), different for every seed."""
    opening = random.Random(f"opening:{seed}").uniform(*OPENING_KWH)  # noqa: S311
    return Decimal(f"{opening:.3f}")


def _slot_end(moment: datetime) -> datetime:
    seconds = SLOT.total_seconds()
    return datetime.fromtimestamp((moment.timestamp() // seconds + 1) * seconds, UTC)


def _float32_words(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


def _overlaps(address: int, count: int, registers: Iterable[int]) -> bool:
    return any(address < start + 2 and start < address + count for start in registers)


class SimulatedClock:
    """Simulated time: UTC from the moment it starts, running `speedup` times as fast."""

    def __init__(self, speedup: float) -> None:
        self._speedup = speedup
        self._origin = datetime.now(UTC)
        self._started = time.monotonic()

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._started) * self._speedup
        return self._origin + timedelta(seconds=elapsed)


class _GatewayRequestHandler(ServerRequestHandler):
    """pymodbus' per-connection handler, with the meters' communication faults.

    The faults live here rather than in the SimDevice action because pymodbus answers an
    invalid address before it calls the action, so a dead meter would still answer those. The
    stock `handle_request` is replaced because it reads `self.last_pdu` again after awaiting
    the datastore: when a slow meter answers after the client gave up and sent its next
    request, the late answer would go out under that next request's transaction and unit id.
    Unit ids with no meter stay silent too, where the stock handler answers 0x04 (SimCore has
    no device 0 to fall back on and raises KeyError, which `ignore_missing_devices` does
    not cover).
    """

    server: _GatewayServer

    async def handle_request(self) -> None:
        request, addr = self.last_pdu, self.last_addr
        if request is None:
            return
        meter = self.server.meters.get(request.dev_id)
        if meter is None or meter.faults.dead:
            return  # nothing answers on the bus, so the master times out
        if meter.faults.slow_ms:
            await asyncio.sleep(meter.faults.slow_ms / 1000)
        response: ModbusPDU
        if meter.faults.exceptions:
            response = ExceptionResponse(request.function_code, ExcCodes.DEVICE_FAILURE)
        else:
            try:
                response = await request.datastore_update(self.server.context, request.dev_id)
            except Exception:
                logger.exception("Meter %s failed to answer %s", meter.address, request)
                response = ExceptionResponse(request.function_code, ExcCodes.DEVICE_FAILURE)
        response.transaction_id = request.transaction_id
        response.dev_id = request.dev_id
        self.server_send(response, addr)


class _GatewayServer(ModbusTcpServer):
    def __init__(
        self,
        devices: list[SimDevice],
        meters: dict[int, SimulatedMeter],
        address: tuple[str, int],
    ) -> None:
        super().__init__(devices, address=address)
        self.meters = meters

    def callback_new_connection(self) -> ServerRequestHandler:
        return _GatewayRequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)

    def bound_port(self) -> int:
        return self.transport.sockets[0].getsockname()[1]


def write_state_file(path: Path, registers: Mapping[str, SavedMeter]) -> None:
    """Write registers and relay states keyed "gateway:unit" to a temporary file, then rename it
    over the old one, so a crash mid-write never leaves a torn file behind. The demo writes one
    too, so the simulated meters carry on from the demo's history."""
    entries = {
        key: {"energy_kwh": str(energy), "relay_closed": closed}
        for key, (energy, closed) in registers.items()
    }
    document = {
        "version": STATE_VERSION,
        "profile": PROFILE,
        "saved_at": datetime.now(UTC).isoformat(),
        "meters": entries,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(document, stream, indent=1, sort_keys=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_state_file(path: Path) -> dict[str, SavedMeter]:
    """The registers and relays `write_state_file` wrote, or nothing if there is no file yet.

    A file that cannot be read is an error: silently starting from fresh registers would make
    every meter run backwards.
    """
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text())["meters"]
        return {
            key: (Decimal(entry["energy_kwh"]), bool(entry["relay_closed"]))
            for key, entry in entries.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as error:
        raise ValueError(f"Unreadable state file {path}: {error!r}") from error


class MeterSimulator:
    """Gateways of simulated meters, all served from one asyncio loop.

    Gateways are numbered from 1, like unit ids: gateway g listens on `ports[g - 1]`, which is
    `base_port + g - 1`, or a free port the system picks when `base_port` is 0.
    """

    def __init__(
        self,
        *,
        gateways: int = 2,
        meters_per_gateway: int = 20,
        host: str = "127.0.0.1",
        base_port: int = 15020,
        seed: int = 1,
        state_file: Path | str | None = None,
        faults: Faults | None = None,
        zone: str = "Asia/Shanghai",
        speedup: float = 1.0,
        save_interval: float = 5.0,
    ) -> None:
        if gateways < 1:
            raise ValueError("There must be at least one gateway.")
        if not 1 <= meters_per_gateway <= MAX_UNIT_ID:
            raise ValueError(f"A gateway holds 1 to {MAX_UNIT_ID} meters (unit ids 1-247).")
        if speedup <= 0:
            raise ValueError("The speedup must be above 0.")
        self.gateways = gateways
        self.meters_per_gateway = meters_per_gateway
        self.host = host
        self.base_port = base_port
        self.seed = seed
        self.state_file = Path(state_file) if state_file is not None else None
        self.faults = faults or Faults()
        self.zone = ZoneInfo(zone)
        self.speedup = speedup
        self.save_interval = save_interval
        unknown = sorted(a for a in self.faults.addresses() if not self._exists(a))
        if unknown:
            names = ", ".join(f"{g}:{u}" for g, u in unknown)
            raise ValueError(f"Faults name meters that do not exist: {names}.")
        self._meters: dict[MeterAddress, SimulatedMeter] = {}
        # Entries for meters this run does not simulate, written back so that a later, larger
        # run finds their registers where they were.
        self._other_state: dict[str, SavedMeter] = {}
        self._clock = SimulatedClock(speedup)
        self._servers: list[_GatewayServer] = []
        self._ticker: asyncio.Task[None] | None = None
        self.ports: list[int] = []

    def meter(self, gateway: int, unit_id: int) -> SimulatedMeter:
        return self._meters[(gateway, unit_id)]

    async def start(self) -> None:
        self._clock = SimulatedClock(self.speedup)
        moment = self._clock.now()
        if self._meters:
            for meter in self._meters.values():
                meter.resume(moment)
        else:
            self._create_meters(moment)
        try:
            for gateway in range(1, self.gateways + 1):
                await self._start_gateway(gateway)
        except BaseException:
            await self._close_servers()
            raise
        self._ticker = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        await self._close_servers()
        moment = self._clock.now()
        for meter in self._meters.values():
            meter.advance(moment)
        self.save_state()

    def run_forever(self, on_started: Callable[[MeterSimulator], None] | None = None) -> None:
        """Serve until SIGTERM or SIGINT, then stop and save the state."""
        asyncio.run(self._serve_until_signalled(on_started))

    def save_state(self) -> None:
        """Write every meter's register and relay: to a temporary file, then renamed over the
        old one, so a crash mid-write never leaves a torn file behind."""
        if self.state_file is None or not self._meters:
            return  # before the first start nothing is loaded, and an empty save would erase it
        registers = dict(self._other_state)
        for (gateway, unit), meter in self._meters.items():
            registers[f"{gateway}:{unit}"] = (meter.energy_kwh, meter.relay_closed)
        write_state_file(self.state_file, registers)

    def _exists(self, address: MeterAddress) -> bool:
        gateway, unit = address
        return 1 <= gateway <= self.gateways and 1 <= unit <= self.meters_per_gateway

    def _load_state(self) -> dict[str, SavedMeter]:
        if self.state_file is None:
            return {}
        return read_state_file(self.state_file)

    def _create_meters(self, moment: datetime) -> None:
        saved = self._load_state()
        for gateway in range(1, self.gateways + 1):
            for unit in range(1, self.meters_per_gateway + 1):
                seed = self.seed * 1_000_000 + gateway * 1_000 + unit
                entry = saved.pop(f"{gateway}:{unit}", None)
                if entry is None:
                    energy, closed = opening_register(seed), True
                else:
                    energy, closed = entry
                self._meters[(gateway, unit)] = SimulatedMeter(
                    gateway=gateway,
                    unit_id=unit,
                    seed=seed,
                    zone=self.zone,
                    energy_kwh=energy,
                    relay_closed=closed,
                    faults=self.faults.for_meter((gateway, unit)),
                    rollover_at=self.faults.rollover_at,
                    moment=moment,
                )
        self._other_state = saved

    async def _start_gateway(self, gateway: int) -> None:
        meters = {
            unit: self._meters[(gateway, unit)] for unit in range(1, self.meters_per_gateway + 1)
        }
        devices = [self._device(meter) for meter in meters.values()]
        port = self.base_port + gateway - 1 if self.base_port else 0
        server = _GatewayServer(devices, meters, (self.host, port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as error:  # pymodbus' only word for "could not listen"
            raise OSError(f"Gateway {gateway} cannot listen on {self.host}:{port}.") from error
        self._servers.append(server)
        self.ports.append(server.bound_port())

    def _device(self, meter: SimulatedMeter) -> SimDevice:
        # Separate blocks per register type, as the relay coil 0 and the voltage input register
        # 0 must not share storage.
        return SimDevice(
            id=meter.unit_id,
            simdata=(
                [SimData(RELAY_COIL, values=meter.relay_closed, datatype=DataType.BITS)],
                [SimData(0, values=meter.relay_closed, datatype=DataType.BITS)],
                [
                    SimData(
                        MODBUS_ADDRESS_HOLDING,
                        values=float(meter.unit_id),
                        datatype=DataType.FLOAT32,
                        readonly=True,
                    )
                ],
                [
                    SimData(0, values=[0.0] * (FLOAT_BLOCK_WORDS // 2), datatype=DataType.FLOAT32),
                    SimData(TOTAL_ENERGY, values=0.0, datatype=DataType.FLOAT32),
                ],
            ),
            action=partial(self._serve, meter),
        )

    async def _serve(
        self,
        meter: SimulatedMeter,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus' SimDevice action: bring the registers up to date before they are read, and
        obey relay writes. `registers` is the whole block, modified in place."""
        moment = self._clock.now()
        if function_code in BIT_FUNCTIONS:
            if set_values is not None:
                if address != RELAY_COIL or len(set_values) != 1:
                    return ExcCodes.ILLEGAL_ADDRESS
                meter.switch(closed=bool(set_values[0]), moment=moment)
            registers[0] = int(meter.relay_closed)  # bit 0 of the first 16 bits: coil 0
            return None
        if function_code in REGISTER_READS and count > MAX_READ_REGISTERS:
            return ExcCodes.ILLEGAL_VALUE
        if function_code == READ_INPUT_REGISTERS:
            meter.advance(moment)
            if _overlaps(address, count, ENERGY_REGISTERS):
                meter.note_energy_read()
            for register, value in self._input_values(meter, moment).items():
                offset = register - start_address
                registers[offset : offset + 2] = _float32_words(value)
        return None

    def _input_values(self, meter: SimulatedMeter, moment: datetime) -> dict[int, float]:
        voltage = meter.voltage_v()
        power = meter.power_w(moment)
        energy = float(meter.energy_kwh)
        return {
            VOLTAGE: voltage,
            CURRENT: power / voltage,
            ACTIVE_POWER: power,
            FREQUENCY: meter.frequency_hz(),
            IMPORT_ENERGY: energy,
            TOTAL_ENERGY: energy,
        }

    async def _tick(self) -> None:
        """Keep every register current between reads, and save the state now and then."""
        next_save = time.monotonic() + self.save_interval
        while True:
            await asyncio.sleep(TICK_SECONDS)
            moment = self._clock.now()
            for meter in self._meters.values():
                meter.advance(moment)
            if time.monotonic() >= next_save:
                next_save = time.monotonic() + self.save_interval
                try:
                    self.save_state()
                except OSError:
                    # Serving goes on; the next save, or the one at stop, may well succeed.
                    logger.exception("Could not save the simulator state to %s", self.state_file)

    async def _close_servers(self) -> None:
        for server in self._servers:
            await server.shutdown()
        self._servers = []
        self.ports = []

    async def _serve_until_signalled(
        self, on_started: Callable[[MeterSimulator], None] | None
    ) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await self.start()
        try:
            if on_started is not None:
                on_started(self)
            await stopping.wait()
        finally:
            await self.stop()
