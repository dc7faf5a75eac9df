"""Talking Modbus to meters with pymodbus' async client: reading a profile, switching a relay.

No ORM: callers pass connection settings and profiles. One client is one connection, and a
connection carries one request at a time; the gap between requests gives slow RS485 buses time
to settle. A meter that does not answer raises `MeterUnreachable` for that meter only: the
connection stays up for its neighbours behind the same gateway.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from meters.protocols.modbus_profile import (
    Block,
    DecodeError,
    Profile,
    Quantity,
    Value,
    decode_profile_block,
    plan_profile,
    relay_write,
)

# Unanswered requests in a row before pymodbus drops the connection: high, because one dead
# meter behind a gateway must not cut its neighbours off.
MAX_NO_RESPONSES = 1000


class MeterUnreachable(Exception):
    """The meter timed out, or the connection failed."""


class MeterRefused(Exception):
    """The meter answered with a Modbus exception."""


@dataclass(frozen=True)
class Connection:
    framer: str  # "tcp", "rtu_over_tcp" or "serial"
    host: str = ""
    port: int = 502
    serial_port: str = ""
    baudrate: int = 9600
    timeout_ms: int = 1000
    retries: int = 1
    gap_ms: int = 20

    @classmethod
    def of(cls, gateway) -> Connection:
        """The connection settings of a gateway (any object with these attributes)."""
        return cls(**{name: getattr(gateway, name) for name in cls.__dataclass_fields__})


def make_client(connection: Connection):
    timeout = connection.timeout_ms / 1000
    if connection.framer == "serial":
        client = AsyncModbusSerialClient(
            connection.serial_port,
            framer=FramerType.RTU,
            baudrate=connection.baudrate,
            timeout=timeout,
            retries=connection.retries,
        )
    else:
        framer = FramerType.RTU if connection.framer == "rtu_over_tcp" else FramerType.SOCKET
        client = AsyncModbusTcpClient(
            connection.host,
            port=connection.port,
            framer=framer,
            timeout=timeout,
            retries=connection.retries,
        )
    client.set_max_no_responses(MAX_NO_RESPONSES)
    return client


async def _read_block(client, block: Block, unit: int):
    reader = {
        1: client.read_coils,
        2: client.read_discrete_inputs,
        3: client.read_holding_registers,
        4: client.read_input_registers,
    }[block.function]
    try:
        result = await reader(block.start, count=block.count, device_id=unit)
    except ModbusException as error:
        raise MeterUnreachable(str(error) or type(error).__name__) from error
    if result.isError():
        raise MeterRefused(f"exception response {getattr(result, 'exception_code', '?')}")
    return result.bits if block.function in (1, 2) else result.registers


async def read_meter(
    client, profile: Profile, unit: int, *, gap_ms: int = 0
) -> dict[Quantity, Value | DecodeError]:
    """Every point of the profile: one request per block, never one per point."""
    values: dict[Quantity, Value | DecodeError] = {}
    for index, block in enumerate(plan_profile(profile)):
        if index and gap_ms:
            await asyncio.sleep(gap_ms / 1000)
        values.update(decode_profile_block(profile, block, await _read_block(client, block, unit)))
    return values


async def read_relay(client, profile: Profile, unit: int) -> bool:
    """The relay's state as the meter reports it: True when closed (supply on)."""
    readback = profile.relay.readback if profile.relay else None
    if readback is None:
        raise MeterRefused("the profile says nowhere to read the relay back")
    [block] = [
        b
        for b in plan_profile(profile)
        if any(p.quantity == Quantity.relay_state for p, _ in b.points)
    ]
    state = decode_profile_block(profile, block, await _read_block(client, block, unit))[
        Quantity.relay_state
    ]
    if isinstance(state, DecodeError):
        raise MeterRefused(str(state))
    return bool(state)


async def switch_relay(
    client, profile: Profile, unit: int, *, closed: bool, gap_ms: int = 0
) -> bool:
    """Write the relay, then read it back; returns what the meter reports afterwards."""
    if profile.relay is None:
        raise MeterRefused("the profile has no relay")
    request = relay_write(profile.relay, closed=closed)
    writer = {
        5: client.write_coil,
        6: client.write_register,
        16: client.write_registers,
    }[request.function]
    try:
        result = await writer(request.address, request.value, device_id=unit)
    except ModbusException as error:
        raise MeterUnreachable(str(error) or type(error).__name__) from error
    if result.isError():
        raise MeterRefused(f"exception response {getattr(result, 'exception_code', '?')}")
    if gap_ms:
        await asyncio.sleep(gap_ms / 1000)
    return await read_relay(client, profile, unit)
