"""Modbus meter profiles as data: which registers to read, how to decode them, how to switch
the relay.

No ORM and no network, so the poller, the simulator and the tests share one definition of
"what an SDM120 says". Values come out as `Decimal` because they end up in money: a float32
register is turned into the shortest decimal that maps back to the same float32 (230.5 V stays
230.5, a meter's 0.1 kWh stays 0.1 and does not become 0.100000001490116...).

Bits (function codes 1 and 2, coils and discrete inputs) are modelled with their own data type,
`DataType.bit`, one address unit wide, so that every point has one size measured in the units
its function code addresses: registers for 3/4, bits for 1/2.
"""

import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"

BIT_FUNCTIONS = frozenset({1, 2})  # read coils, read discrete inputs
REGISTER_FUNCTIONS = frozenset({3, 4})  # read holding registers, read input registers
READ_FUNCTIONS = BIT_FUNCTIONS | REGISTER_FUNCTIONS
WRITE_FUNCTIONS = frozenset({5, 6, 16})  # write coil, write register, write registers

# The Modbus specification's ceilings for one read request; meters often accept less, which is
# what Profile.max_block says.
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000
LAST_ADDRESS = 0xFFFF

# Arithmetic on decoded values must never round: a u64 times a scale has at most ~40 digits,
# a float64 quantized to an integer at most 309.
_EXACT_PRECISION = 400


class Quantity(StrEnum):
    import_energy = "import_energy"
    export_energy = "export_energy"
    total_energy = "total_energy"
    water_volume = "water_volume"
    voltage = "voltage"
    current = "current"
    power = "power"
    power_factor = "power_factor"
    frequency = "frequency"
    relay_state = "relay_state"
    balance = "balance"
    # The meter's own alarm flags: set when the bit is 1 or the register is not 0.
    tamper = "tamper"
    cover_open = "cover_open"
    reverse = "reverse"


class DataType(StrEnum):
    bit = "bit"
    u16 = "u16"
    s16 = "s16"
    u32 = "u32"
    s32 = "s32"
    f32 = "f32"
    u64 = "u64"
    s64 = "s64"
    f64 = "f64"

    @property
    def size(self) -> int:
        """Address units taken: bits for `bit`, 16-bit registers for the rest."""
        return _SIZES[self]

    @property
    def is_float(self) -> bool:
        return self in (DataType.f32, DataType.f64)

    @property
    def is_integer(self) -> bool:
        return self is not DataType.bit and not self.is_float


_SIZES = {
    DataType.bit: 1,
    DataType.u16: 1,
    DataType.s16: 1,
    DataType.u32: 2,
    DataType.s32: 2,
    DataType.f32: 2,
    DataType.u64: 4,
    DataType.s64: 4,
    DataType.f64: 4,
}
_STRUCT_FORMATS = {
    DataType.u16: "H",
    DataType.s16: "h",
    DataType.u32: "I",
    DataType.s32: "i",
    DataType.f32: "f",
    DataType.u64: "Q",
    DataType.s64: "q",
    DataType.f64: "d",
}


class WordOrder(StrEnum):
    """Order of the 16-bit words of a multi-register value. Bytes inside one register are
    always big-endian, as Modbus defines them."""

    big = "big"
    little = "little"


# The meter's alarm flags; a reading carries the names of those that are set.
FLAG_QUANTITIES = (Quantity.tamper, Quantity.cover_open, Quantity.reverse)
# Only on/off facts make sense as a single coil or discrete input.
BIT_QUANTITIES = frozenset({Quantity.relay_state, *FLAG_QUANTITIES})

Value = Decimal | bool
_E = TypeVar("_E", bound=StrEnum)


class ProfileError(ValueError):
    """A profile is malformed or inconsistent; `problems` lists every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class DecodeError(ValueError):
    """Registers that cannot be turned into a value for their point."""


class EncodeError(ValueError):
    """A value that cannot be written as registers for its point."""


@dataclass(frozen=True, kw_only=True)
class Point:
    """One quantity at one address: `value = raw * scale`, in `unit`."""

    quantity: Quantity
    function: int
    address: int
    datatype: DataType
    word_order: WordOrder = WordOrder.big
    scale: Decimal = Decimal(1)
    unit: str = ""

    @property
    def size(self) -> int:
        return DataType(self.datatype).size


@dataclass(frozen=True, kw_only=True)
class RelayReadback:
    """Where the relay's state is read back, and which raw values mean closed (on) and
    open (off)."""

    function: int
    address: int
    datatype: DataType
    on_value: int
    off_value: int
    word_order: WordOrder = WordOrder.big

    def as_point(self) -> Point:
        return Point(
            quantity=Quantity.relay_state,
            function=self.function,
            address=self.address,
            datatype=self.datatype,
            word_order=self.word_order,
        )

    def is_closed(self, value: Value) -> bool:
        """True when the relay is closed (supply on). A value that is neither the on nor the
        off value is an error rather than a guess: a wrong guess would hide a failed cut-off."""
        if value == self.on_value:
            return True
        if value == self.off_value:
            return False
        raise DecodeError(
            f"relay state {value} is neither on ({self.on_value}) nor off ({self.off_value})"
        )


@dataclass(frozen=True, kw_only=True)
class RelayControl:
    """How to switch the relay: close (restore supply) or open (cut off).

    `datatype` is the encoding of the written value; None means the natural one for the
    function code: a bit for 5, u16 for 6 and 16. Function 5 takes 1/0 for True/False.
    """

    write_function: int
    address: int
    close_value: int
    open_value: int
    readback: RelayReadback | None = None
    datatype: DataType | None = None
    word_order: WordOrder = WordOrder.big

    @property
    def write_datatype(self) -> DataType:
        if self.write_function == 5:
            return DataType.bit
        return DataType(self.datatype) if self.datatype is not None else DataType.u16


@dataclass(frozen=True)
class RelayWrite:
    """One write request: `value` is a bool for function 5 (pymodbus `write_coil`), an int
    for 6 (`write_register`) and a list of registers for 16 (`write_registers`)."""

    function: int
    address: int
    value: bool | int | list[int]


@dataclass(frozen=True, kw_only=True)
class Profile:
    name: str
    manufacturer: str
    model: str
    points: tuple[Point, ...]
    relay: RelayControl | None = None
    max_block: int = 60  # registers per request for function codes 3 and 4
    max_gap: int = 0  # unused address units a block may span to merge two points
    max_bits: int = MAX_BITS_PER_READ  # bits per request for function codes 1 and 2
    notes: str = ""

    @property
    def read_points(self) -> tuple[Point, ...]:
        """Everything a poll reads: the points plus the relay readback."""
        if self.relay is not None and self.relay.readback is not None:
            return (*self.points, self.relay.readback.as_point())
        return self.points


@dataclass(frozen=True)
class Block:
    """One read request; each point sits `offset` address units after `start`."""

    function: int
    start: int
    count: int
    points: tuple[tuple[Point, int], ...]


# --- decoding and encoding -------------------------------------------------------------------


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def _float32_decimal(value: float) -> Decimal:
    """The shortest decimal that maps back to the same float32. `repr` of the widened double
    would print float32 noise (0.1 -> 0.10000000149011612); nine digits always suffice."""
    packed = struct.pack(">f", value)
    for digits in range(1, 9):
        text = f"{value:.{digits}g}"
        try:
            if struct.pack(">f", float(text)) == packed:
                return Decimal(text)
        except OverflowError:  # near the float32 maximum a short form can round past it
            continue
    return Decimal(f"{value:.9g}")


def _plain(value: Decimal) -> Decimal:
    """'1E+2' and '100' are equal but only one reads well in a log or a JSON payload."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        with localcontext() as ctx:
            ctx.prec = _EXACT_PRECISION
            return value.quantize(Decimal(1))
    return value


def decode(point: Point, registers: Sequence[int | bool]) -> Value:
    """The value of `point` from exactly its registers (or its one bit)."""
    datatype = _member(DataType, point.datatype)
    if datatype is None:
        raise DecodeError(f"unknown data type {point.datatype!r}")
    values = list(registers)
    if datatype is DataType.bit:
        if len(values) != 1:
            raise DecodeError(f"expected 1 bit, got {len(values)}")
        bit = values[0]
        if not isinstance(bit, int) or bit not in (0, 1):
            raise DecodeError(f"not a bit: {bit!r}")
        return bool(bit)
    if len(values) != datatype.size:
        raise DecodeError(f"expected {_plural(datatype.size, 'register')}, got {len(values)}")
    for register in values:
        if not _is_int(register) or not 0 <= register <= 0xFFFF:
            raise DecodeError(f"not a 16-bit register value: {register!r}")
    if point.word_order == WordOrder.little:
        values.reverse()
    raw = b"".join(register.to_bytes(2, "big") for register in values)
    (number,) = struct.unpack(">" + _STRUCT_FORMATS[datatype], raw)
    if datatype.is_float:
        if not math.isfinite(number):
            raise DecodeError("not a finite number")
        base = _float32_decimal(number) if datatype is DataType.f32 else Decimal(repr(number))
        base = _plain(base)
    else:
        base = Decimal(number)
    with localcontext() as ctx:
        ctx.prec = _EXACT_PRECISION
        return base * point.scale


def encode(point: Point, value: Decimal | int | float | bool) -> list[int]:
    """The registers (or the one bit, as 0/1) that `decode` turns back into `value`.

    Integer types are exact or refuse: 230.55 V at a scale of 0.1 is an EncodeError, not
    230.5. Floats round to the nearest float32/float64, as the meter itself would.
    """
    datatype = _member(DataType, point.datatype)
    if datatype is None:
        raise EncodeError(f"unknown data type {point.datatype!r}")
    if datatype is DataType.bit:
        if value not in (0, 1):
            raise EncodeError(f"not a bit: {value!r}")
        return [int(value)]
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise EncodeError("not a finite number")
    with localcontext() as ctx:
        ctx.prec = _EXACT_PRECISION
        raw = number / point.scale
    try:
        if datatype.is_float:
            packed = struct.pack(">" + _STRUCT_FORMATS[datatype], float(raw))
        else:
            if raw != raw.to_integral_value():
                raise EncodeError(f"{value} is not a multiple of the scale {point.scale}")
            packed = struct.pack(">" + _STRUCT_FORMATS[datatype], int(raw))
    except (struct.error, OverflowError) as error:
        raise EncodeError(f"{value} does not fit in {datatype}") from error
    registers = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    if point.word_order == WordOrder.little:
        registers.reverse()
    return registers


# --- block planning --------------------------------------------------------------------------


def plan_blocks(
    points: Iterable[Point],
    max_block: int = 60,
    max_gap: int = 0,
    *,
    max_bits: int = MAX_BITS_PER_READ,
) -> list[Block]:
    """Group points into as few read requests as the limits allow.

    Points of one function code are merged while the next one starts no more than `max_gap`
    address units after the block ends and the block stays within `max_block` registers
    (`max_bits` bits for function codes 1 and 2). Sorted by function code, then address, so a
    profile always produces the same requests.
    """
    if max_block < 1 or max_bits < 1 or max_gap < 0:
        raise ValueError("max_block and max_bits must be positive and max_gap not negative")
    by_function: dict[int, list[Point]] = {}
    for point in points:
        by_function.setdefault(point.function, []).append(point)

    blocks: list[Block] = []
    for function in sorted(by_function):
        limit = max_bits if function in BIT_FUNCTIONS else max_block
        ordered = sorted(by_function[function], key=lambda p: (p.address, p.size, str(p.quantity)))
        members: list[Point] = []
        start = end = 0
        for point in ordered:
            if point.size > limit:
                raise ValueError(
                    f"{point.quantity} needs {point.size} address units, more than {limit}"
                )
            point_end = point.address + point.size
            if members and point.address <= end + max_gap and point_end - start <= limit:
                members.append(point)
                end = max(end, point_end)
                continue
            if members:
                blocks.append(_block(function, start, end, members))
            members, start, end = [point], point.address, point_end
        if members:
            blocks.append(_block(function, start, end, members))
    return blocks


def _block(function: int, start: int, end: int, members: list[Point]) -> Block:
    return Block(function, start, end - start, tuple((p, p.address - start) for p in members))


def plan_profile(profile: Profile) -> list[Block]:
    """The read requests for one poll of a meter, relay readback included."""
    return plan_blocks(
        profile.read_points, profile.max_block, profile.max_gap, max_bits=profile.max_bits
    )


def decode_block(
    block: Block, registers: Sequence[int | bool]
) -> dict[Quantity, Value | DecodeError]:
    """Every point of a block, each decoded on its own so one bad value (a NaN, say) does not
    lose its neighbours.

    Coil and discrete-input answers arrive padded to whole bytes (pymodbus returns 8 bits for
    one coil), so surplus bits are ignored; a register answer of any other length than asked
    cannot be trusted at all and fails every point.
    """
    values = list(registers)
    bits = block.function in BIT_FUNCTIONS
    if len(values) < block.count or (not bits and len(values) != block.count):
        unit = "bit" if bits else "register"
        error = DecodeError(f"expected {_plural(block.count, unit)}, got {len(values)}")
        return {point.quantity: error for point, _ in block.points}
    decoded: dict[Quantity, Value | DecodeError] = {}
    for point, offset in block.points:
        try:
            decoded[point.quantity] = decode(point, values[offset : offset + point.size])
        except DecodeError as error:
            decoded[point.quantity] = error
    return decoded


def decode_profile_block(
    profile: Profile, block: Block, registers: Sequence[int | bool]
) -> dict[Quantity, Value | DecodeError]:
    """`decode_block`, with the relay readback turned into True (closed) / False (open)."""
    decoded = decode_block(block, registers)
    readback = profile.relay.readback if profile.relay is not None else None
    raw = decoded.get(Quantity.relay_state)
    if readback is not None and raw is not None and not isinstance(raw, DecodeError):
        try:
            decoded[Quantity.relay_state] = readback.is_closed(raw)
        except DecodeError as error:
            decoded[Quantity.relay_state] = error
    return decoded


def relay_write(relay: RelayControl, *, closed: bool) -> RelayWrite:
    """The request that closes (restores) or opens (cuts off) the relay."""
    value = relay.close_value if closed else relay.open_value
    if relay.write_function == 5:
        return RelayWrite(5, relay.address, bool(value))
    target = Point(
        quantity=Quantity.relay_state,
        function=3,
        address=relay.address,
        datatype=relay.write_datatype,
        word_order=relay.word_order,
    )
    registers = encode(target, value)
    if relay.write_function == 6:
        if len(registers) != 1:
            raise EncodeError("function 6 writes exactly one register")
        return RelayWrite(6, relay.address, registers[0])
    if relay.write_function == 16:
        return RelayWrite(16, relay.address, registers)
    raise EncodeError(f"unknown write function {relay.write_function!r}")


# --- validation ------------------------------------------------------------------------------


def _member(enum: type[_E], value: object) -> _E | None:
    try:
        return enum(value)
    except (ValueError, TypeError):
        return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: object) -> str:
    return str(value) if isinstance(value, str) else repr(value)


def _point_label(index: int, point: Point) -> str:
    return f"point {index} ({_shown(point.quantity)})"


def validate_profile(profile: Profile) -> list[str]:
    """Every problem with a profile, each naming what it is about; empty when it is sound."""
    return _problems(profile, None)


def _problems(profile: Profile, indices: Sequence[int] | None) -> list[str]:
    # `indices` keeps labels pointing at positions in the source document when
    # profile_from_dict has had to leave malformed points out.
    problems: list[str] = []
    for field_name in ("name", "manufacturer", "model"):
        value = getattr(profile, field_name)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"profile: {field_name} must be a non-empty string")
    if not isinstance(profile.notes, str):
        problems.append("profile: notes must be a string")
    limits_ok = True
    for field_name, ceiling in (
        ("max_block", MAX_REGISTERS_PER_READ),
        ("max_bits", MAX_BITS_PER_READ),
    ):
        value = getattr(profile, field_name)
        if not _is_int(value) or not 1 <= value <= ceiling:
            problems.append(f"profile: {field_name} must be an integer from 1 to {ceiling}")
            limits_ok = False
    if not _is_int(profile.max_gap) or profile.max_gap < 0:
        problems.append("profile: max_gap must be a non-negative integer")

    # (label, function, start, end) of every point whose position is known.
    placed: list[tuple[str, int, int, int]] = []
    quantities: dict[str, list[str]] = {}
    points = profile.points if isinstance(profile.points, tuple | list) else ()
    if points is not profile.points:
        problems.append("profile: points must be a tuple of Point")
    for position, point in enumerate(points):
        index = indices[position] if indices is not None else position
        if not isinstance(point, Point):
            problems.append(f"point {index}: not a Point")
            continue
        label = _point_label(index, point)
        problems.extend(_point_problems(label, point, profile if limits_ok else None))
        quantities.setdefault(_shown(point.quantity), []).append(label)
        _place(placed, label, point)

    relay = profile.relay
    if relay is not None:
        if isinstance(relay, RelayControl):
            problems.extend(_relay_problems(relay))
            if isinstance(relay.readback, RelayReadback):
                quantities.setdefault(str(Quantity.relay_state), []).append("relay readback")
                _place(placed, "relay readback", relay.readback)
        else:
            problems.append("relay: not a RelayControl")

    for quantity, labels in quantities.items():
        if len(labels) > 1:
            problems.append(f"duplicate quantity {quantity}: {', '.join(labels)}")
    problems.extend(_overlaps(placed))
    return problems


def _place(
    placed: list[tuple[str, int, int, int]],
    label: str,
    point: Point | RelayReadback,
) -> None:
    datatype = _member(DataType, point.datatype)
    if (
        datatype is not None
        and _is_int(point.function)
        and point.function in READ_FUNCTIONS
        and _is_int(point.address)
        and 0 <= point.address <= LAST_ADDRESS
    ):
        start = point.address
        placed.append((label, point.function, start, start + datatype.size))


def _overlaps(placed: list[tuple[str, int, int, int]]) -> list[str]:
    problems = []
    ordered = sorted(placed, key=lambda entry: entry[1:])
    reach: tuple[str, int, int] | None = None  # label, function and end of the furthest so far
    for label, function, start, end in ordered:
        if reach is not None and reach[1] == function and start < reach[2]:
            problems.append(
                f"{label} overlaps {reach[0]} (function {function}, address {start:#06x})"
            )
        if reach is None or reach[1] != function or end > reach[2]:
            reach = (label, function, end)
    return problems


def _address_problems(label: str, address: object, datatype: DataType | None) -> list[str]:
    if not isinstance(address, int) or isinstance(address, bool) or not 0 <= address <= 0xFFFF:
        return [f"{label}: address must be an integer from 0 to 65535, got {address!r}"]
    if datatype is not None and address + datatype.size - 1 > LAST_ADDRESS:
        return [f"{label}: {datatype} at {address} runs past address 65535"]
    return []


def _function_datatype_problems(
    label: str, function: object, datatype: DataType | None
) -> list[str]:
    if not _is_int(function) or function not in READ_FUNCTIONS or datatype is None:
        return []
    if function in BIT_FUNCTIONS and datatype is not DataType.bit:
        return [f"{label}: function {function} reads bits, so the data type must be bit"]
    if function in REGISTER_FUNCTIONS and datatype is DataType.bit:
        return [f"{label}: data type bit needs function 1 or 2, not {function}"]
    return []


_FLAG_NAMES = ", ".join(FLAG_QUANTITIES)


def _point_problems(label: str, point: Point, profile: Profile | None) -> list[str]:
    problems = []
    quantity = _member(Quantity, point.quantity)
    if quantity is None:
        problems.append(f"{label}: unknown quantity {point.quantity!r}")
    if not _is_int(point.function) or point.function not in READ_FUNCTIONS:
        problems.append(f"{label}: unknown function {point.function!r} (expected 1, 2, 3 or 4)")
    datatype = _member(DataType, point.datatype)
    if datatype is None:
        problems.append(f"{label}: unknown data type {point.datatype!r}")
    if _member(WordOrder, point.word_order) is None:
        problems.append(f"{label}: unknown word order {point.word_order!r}")
    problems.extend(_function_datatype_problems(label, point.function, datatype))
    if (
        quantity is not None
        and quantity not in BIT_QUANTITIES
        and _is_int(point.function)
        and point.function in BIT_FUNCTIONS
    ):
        problems.append(
            f"{label}: only relay_state and the flags ({_FLAG_NAMES}) can be read as bits"
        )
    problems.extend(_address_problems(label, point.address, datatype))
    if profile is not None and datatype is not None and _is_int(point.function):
        if point.function in BIT_FUNCTIONS and datatype.size > profile.max_bits:
            problems.append(f"{label}: larger than max_bits {profile.max_bits}")
        if point.function in REGISTER_FUNCTIONS and datatype.size > profile.max_block:
            problems.append(
                f"{label}: {datatype} needs {datatype.size} registers, "
                f"more than max_block {profile.max_block}"
            )
    if not isinstance(point.scale, Decimal) or not point.scale.is_finite() or not point.scale:
        problems.append(f"{label}: scale must be a finite, non-zero Decimal, got {point.scale!r}")
    elif datatype is DataType.bit and point.scale != 1:
        problems.append(f"{label}: a bit cannot be scaled")
    if not isinstance(point.unit, str):
        problems.append(f"{label}: unit must be a string")
    return problems


def _value_pair_problems(
    label: str, names: tuple[str, str], values: tuple[object, object], datatype: DataType | None
) -> list[str]:
    problems = []
    for name, value in zip(names, values, strict=True):
        if value is None:
            problems.append(f"{label}: {name} is missing")
        elif not _is_int(value):
            problems.append(f"{label}: {name} must be an integer, got {value!r}")
    if problems:
        return problems
    if values[0] == values[1]:
        return [f"{label}: {names[0]} and {names[1]} are both {values[0]}"]
    if datatype is None:
        return []
    probe = Point(quantity=Quantity.relay_state, function=3, address=0, datatype=datatype)
    misfit = "must be 0 or 1" if datatype is DataType.bit else f"does not fit in {datatype}"
    for name, value in zip(names, values, strict=True):
        try:
            if isinstance(value, int):  # always, after the checks above
                encode(probe, value)
        except EncodeError:
            problems.append(f"{label}: {name} {value} {misfit}")
    return problems


def _relay_problems(relay: RelayControl) -> list[str]:
    label = "relay"
    problems = []
    function = relay.write_function
    known = _is_int(function) and function in WRITE_FUNCTIONS
    if not known:
        problems.append(f"{label}: unknown write function {function!r} (expected 5, 6 or 16)")
    datatype: DataType | None = None
    if relay.datatype is not None:
        datatype = _member(DataType, relay.datatype)
        if datatype is None:
            problems.append(f"{label}: unknown data type {relay.datatype!r}")
    if _member(WordOrder, relay.word_order) is None:
        problems.append(f"{label}: unknown word order {relay.word_order!r}")
    if known and function == 5:
        if relay.datatype is not None and datatype is not DataType.bit:
            problems.append(f"{label}: function 5 writes a coil, so the data type must be bit")
        datatype = DataType.bit
    elif known:
        datatype = datatype if relay.datatype is not None else DataType.u16
        if datatype is not None and not datatype.is_integer:
            problems.append(f"{label}: function {function} writes integers, not {datatype}")
            datatype = None
        elif datatype is not None and function == 6 and datatype.size != 1:
            problems.append(f"{label}: function 6 writes one register, {datatype} needs more")
            datatype = None
    problems.extend(_address_problems(label, relay.address, datatype if known else None))
    problems.extend(
        _value_pair_problems(
            label,
            ("close_value", "open_value"),
            (relay.close_value, relay.open_value),
            datatype if known else None,
        )
    )
    if relay.readback is not None:
        if isinstance(relay.readback, RelayReadback):
            problems.extend(_readback_problems(relay.readback))
        else:
            problems.append(f"{label}: readback is not a RelayReadback")
    return problems


def _readback_problems(readback: RelayReadback) -> list[str]:
    label = "relay readback"
    problems = []
    if not _is_int(readback.function) or readback.function not in READ_FUNCTIONS:
        problems.append(f"{label}: unknown function {readback.function!r} (expected 1, 2, 3 or 4)")
    datatype = _member(DataType, readback.datatype)
    if datatype is None:
        problems.append(f"{label}: unknown data type {readback.datatype!r}")
    elif datatype.is_float:
        problems.append(f"{label}: on/off values are compared exactly, so not {datatype}")
        datatype = None
    if _member(WordOrder, readback.word_order) is None:
        problems.append(f"{label}: unknown word order {readback.word_order!r}")
    problems.extend(_function_datatype_problems(label, readback.function, datatype))
    problems.extend(_address_problems(label, readback.address, datatype))
    problems.extend(
        _value_pair_problems(
            label, ("on_value", "off_value"), (readback.on_value, readback.off_value), datatype
        )
    )
    return problems


# --- JSON ------------------------------------------------------------------------------------

_MISSING = object()


class _Reader:
    """Reads one JSON object, noting every missing, unknown or mistyped key instead of
    raising at the first."""

    def __init__(self, label: str, data: object, problems: list[str]) -> None:
        self.label = label
        self.problems = problems
        self.ok = isinstance(data, Mapping)
        self.data: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        if not self.ok:
            problems.append(f"{label}: must be an object, got {type(data).__name__}")

    def unknown_keys(self, known: Iterable[str]) -> None:
        extra = sorted(str(key) for key in self.data if key not in set(known))
        if extra:
            self.problems.append(f"{self.label}: unknown keys {', '.join(extra)}")

    def get(self, key: str, check: str, default: object = _MISSING) -> Any:
        if key not in self.data:
            if default is _MISSING:
                self.problems.append(f"{self.label}: missing key {key!r}")
                self.ok = False
            return default
        value = self.data[key]
        if check == "int" and _is_int(value):
            return value
        if check == "str" and isinstance(value, str):
            return value
        if check == "int_or_bool" and isinstance(value, int):
            return int(value)  # function 5 relay values may be written as true/false
        if check == "decimal" and (isinstance(value, str) or _is_int(value)):
            try:
                return Decimal(value)
            except InvalidOperation:
                self.problems.append(f"{self.label}: {key} is not a number: {value!r}")
                self.ok = False
                return default
        wanted = {
            "int": "an integer",
            "str": "a string",
            "int_or_bool": "an integer",
            "decimal": "a number in a string",
        }[check]
        self.problems.append(f"{self.label}: {key} must be {wanted}, got {value!r}")
        self.ok = False
        return default

    def enum(self, key: str, enum: type[StrEnum], default: object = _MISSING) -> Any:
        # An unknown member stays a plain string so validation reports it with its context.
        value = self.get(key, "str", default)
        member = _member(enum, value)
        return member if member is not None else value


_POINT_KEYS = ("quantity", "function", "address", "datatype", "word_order", "scale", "unit")
_READBACK_KEYS = ("function", "address", "datatype", "word_order", "on_value", "off_value")
_RELAY_KEYS = (
    "write_function",
    "address",
    "close_value",
    "open_value",
    "readback",
    "datatype",
    "word_order",
)
_PROFILE_KEYS = (
    "name",
    "manufacturer",
    "model",
    "notes",
    "points",
    "relay",
    "max_block",
    "max_gap",
    "max_bits",
)


def _point_from_dict(index: int, data: object, problems: list[str]) -> Point | None:
    quantity = data.get("quantity") if isinstance(data, Mapping) else None
    label = f"point {index} ({_shown(quantity)})" if quantity is not None else f"point {index}"
    reader = _Reader(label, data, problems)
    if not reader.ok:
        return None
    reader.unknown_keys(_POINT_KEYS)
    fields = {
        "quantity": reader.enum("quantity", Quantity),
        "function": reader.get("function", "int"),
        "address": reader.get("address", "int"),
        "datatype": reader.enum("datatype", DataType),
        "word_order": reader.enum("word_order", WordOrder, WordOrder.big),
        "scale": reader.get("scale", "decimal", Decimal(1)),
        "unit": reader.get("unit", "str", ""),
    }
    return Point(**fields) if reader.ok else None


def _readback_from_dict(data: object, problems: list[str]) -> RelayReadback | None:
    reader = _Reader("relay readback", data, problems)
    if not reader.ok:
        return None
    reader.unknown_keys(_READBACK_KEYS)
    fields = {
        "function": reader.get("function", "int"),
        "address": reader.get("address", "int"),
        "datatype": reader.enum("datatype", DataType),
        "word_order": reader.enum("word_order", WordOrder, WordOrder.big),
        "on_value": reader.get("on_value", "int_or_bool"),
        "off_value": reader.get("off_value", "int_or_bool"),
    }
    return RelayReadback(**fields) if reader.ok else None


def _relay_from_dict(data: object, problems: list[str]) -> RelayControl | None:
    reader = _Reader("relay", data, problems)
    if not reader.ok:
        return None
    reader.unknown_keys(_RELAY_KEYS)
    readback_data = reader.data.get("readback")
    readback = None if readback_data is None else _readback_from_dict(readback_data, problems)
    datatype = reader.data.get("datatype")
    fields = {
        "write_function": reader.get("write_function", "int"),
        "address": reader.get("address", "int"),
        "close_value": reader.get("close_value", "int_or_bool"),
        "open_value": reader.get("open_value", "int_or_bool"),
        "datatype": None if datatype is None else reader.enum("datatype", DataType),
        "word_order": reader.enum("word_order", WordOrder, WordOrder.big),
    }
    if not reader.ok or (readback_data is not None and readback is None):
        return None
    return RelayControl(readback=readback, **fields)


def profile_from_dict(data: object) -> Profile:
    """A validated Profile from its JSON form; ProfileError lists every problem otherwise."""
    problems: list[str] = []
    reader = _Reader("profile", data, problems)
    if not reader.ok:
        raise ProfileError(problems)
    reader.unknown_keys(_PROFILE_KEYS)
    # Placeholders that pass validation stand in for unreadable top-level values, so each
    # problem is reported once, by whichever step understood it.
    fields = {
        "name": reader.get("name", "str", "?"),
        "manufacturer": reader.get("manufacturer", "str", "?"),
        "model": reader.get("model", "str", "?"),
        "notes": reader.get("notes", "str", ""),
        "max_block": reader.get("max_block", "int", 60),
        "max_gap": reader.get("max_gap", "int", 0),
        "max_bits": reader.get("max_bits", "int", MAX_BITS_PER_READ),
    }
    for key in ("name", "manufacturer", "model"):
        if key not in reader.data:
            problems.append(f"profile: missing key {key!r}")
    raw_points = reader.data.get("points", _MISSING)
    if raw_points is _MISSING:
        problems.append("profile: missing key 'points'")
        raw_points = []
    elif not isinstance(raw_points, list):
        problems.append(f"profile: points must be a list, got {type(raw_points).__name__}")
        raw_points = []
    points: list[Point] = []
    indices: list[int] = []
    for index, raw in enumerate(raw_points):
        point = _point_from_dict(index, raw, problems)
        if point is not None:
            points.append(point)
            indices.append(index)
    raw_relay = reader.data.get("relay")
    relay = None if raw_relay is None else _relay_from_dict(raw_relay, problems)
    profile = Profile(points=tuple(points), relay=relay, **fields)
    problems.extend(_problems(profile, indices))
    if problems:
        raise ProfileError(problems)
    return profile


def _readback_to_dict(readback: RelayReadback) -> dict[str, Any]:
    return {
        "function": readback.function,
        "address": readback.address,
        "datatype": str(readback.datatype),
        "word_order": str(readback.word_order),
        "on_value": readback.on_value,
        "off_value": readback.off_value,
    }


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    """The JSON form; scales are strings so no float ever stands in for a Decimal."""
    relay: dict[str, Any] | None = None
    if profile.relay is not None:
        r = profile.relay
        relay = {
            "write_function": r.write_function,
            "address": r.address,
            "close_value": r.close_value,
            "open_value": r.open_value,
            "readback": None if r.readback is None else _readback_to_dict(r.readback),
            "datatype": None if r.datatype is None else str(r.datatype),
            "word_order": str(r.word_order),
        }
    return {
        "name": profile.name,
        "manufacturer": profile.manufacturer,
        "model": profile.model,
        "notes": profile.notes,
        "max_block": profile.max_block,
        "max_gap": profile.max_gap,
        "max_bits": profile.max_bits,
        "points": [
            {
                "quantity": str(p.quantity),
                "function": p.function,
                "address": p.address,
                "datatype": str(p.datatype),
                "word_order": str(p.word_order),
                "scale": str(p.scale),
                "unit": p.unit,
            }
            for p in profile.points
        ],
        "relay": relay,
    }


def builtin_profile_names() -> list[str]:
    return sorted(path.stem for path in PROFILES_DIR.glob("*.json"))


def load_builtin_profile(name: str) -> Profile:
    """One of the profiles shipped in meters/profiles/, by file name without `.json`."""
    if name not in builtin_profile_names():  # also keeps a name from walking the file system
        raise ProfileError([f"no built-in profile {name!r}"])
    return profile_from_dict(json.loads((PROFILES_DIR / f"{name}.json").read_text("utf-8")))
