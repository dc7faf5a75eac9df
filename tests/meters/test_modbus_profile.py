"""Modbus profiles: decoding, block planning, validation and the built-in profiles.

Pure: no database and no network, so it runs with `-p no:django --noconftest`.
"""

import itertools
import json
import math
import struct
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client.mixin import ModbusClientMixin

from meters.protocols.modbus_profile import (
    BIT_FUNCTIONS,
    Block,
    DataType,
    DecodeError,
    EncodeError,
    Point,
    Profile,
    ProfileError,
    Quantity,
    RelayControl,
    RelayReadback,
    RelayWrite,
    WordOrder,
    builtin_profile_names,
    decode,
    decode_block,
    decode_profile_block,
    encode,
    load_builtin_profile,
    plan_blocks,
    plan_profile,
    profile_from_dict,
    profile_to_dict,
    relay_write,
    validate_profile,
)

REGISTER_TYPES = [t for t in DataType if t is not DataType.bit]
INTEGER_TYPES = [t for t in DataType if t.is_integer]
INTEGER_RANGES = {
    DataType.u16: (0, 2**16 - 1),
    DataType.s16: (-(2**15), 2**15 - 1),
    DataType.u32: (0, 2**32 - 1),
    DataType.s32: (-(2**31), 2**31 - 1),
    DataType.u64: (0, 2**64 - 1),
    DataType.s64: (-(2**63), 2**63 - 1),
}
PYMODBUS_TYPES = {
    DataType.u16: ModbusClientMixin.DATATYPE.UINT16,
    DataType.s16: ModbusClientMixin.DATATYPE.INT16,
    DataType.u32: ModbusClientMixin.DATATYPE.UINT32,
    DataType.s32: ModbusClientMixin.DATATYPE.INT32,
    DataType.f32: ModbusClientMixin.DATATYPE.FLOAT32,
    DataType.u64: ModbusClientMixin.DATATYPE.UINT64,
    DataType.s64: ModbusClientMixin.DATATYPE.INT64,
    DataType.f64: ModbusClientMixin.DATATYPE.FLOAT64,
}


def point(
    datatype: DataType = DataType.f32,
    *,
    quantity: Quantity = Quantity.voltage,
    function: int = 4,
    address: int = 0,
    word_order: WordOrder = WordOrder.big,
    scale: str = "1",
    unit: str = "",
) -> Point:
    return Point(
        quantity=quantity,
        function=function,
        address=address,
        datatype=datatype,
        word_order=word_order,
        scale=Decimal(scale),
        unit=unit,
    )


def registers_for(datatype: DataType) -> st.SearchStrategy[list[int]]:
    size = datatype.size
    return st.lists(st.integers(0, 0xFFFF), min_size=size, max_size=size)


def is_finite_float(datatype: DataType, word_order: WordOrder, registers: list[int]) -> bool:
    words = registers[::-1] if word_order is WordOrder.little else registers
    raw = b"".join(r.to_bytes(2, "big") for r in words)
    fmt = ">f" if datatype is DataType.f32 else ">d"
    return math.isfinite(struct.unpack(fmt, raw)[0])


# --- decoding against hand-made registers ---------------------------------------------------


def test_it_decodes_sdm_voltage_as_float32_high_word_first():
    assert decode(point(), [0x4366, 0x8000]) == Decimal("230.5")


def test_it_decodes_float32_with_the_low_word_first():
    assert decode(point(word_order=WordOrder.little), [0x8000, 0x4366]) == Decimal("230.5")


def test_it_decodes_acrel_total_energy_as_uint32_hundredths():
    energy = point(DataType.u32, quantity=Quantity.total_energy, function=3, scale="0.01")
    value = decode(energy, [0x0001, 0x86A0])
    assert value == Decimal("1000.00")
    assert str(value) == "1000.00"


def test_a_float32_reading_is_the_shortest_decimal_of_that_float32():
    # 0.1 and 1234.56 are not exact in float32; the widened double would print noise.
    assert str(decode(point(), list(divmod(0x3DCCCCCD, 0x10000)))) == "0.1"
    assert str(decode(point(), list(divmod(0x449A51EC, 0x10000)))) == "1234.56"


def test_a_float32_whole_number_reads_without_an_exponent():
    assert str(decode(point(), [0x42C8, 0x0000])) == "100"


@pytest.mark.parametrize(
    ("datatype", "word_order", "registers", "scale", "expected"),
    [
        (DataType.u16, "big", [0xFFFF], "1", "65535"),
        (DataType.u16, "little", [0x1234], "1", "4660"),
        (DataType.u16, "big", [2305], "0.1", "230.5"),
        (DataType.s16, "big", [0xFFFF], "1", "-1"),
        (DataType.s16, "big", [0xFC18], "0.001", "-1.000"),
        (DataType.s16, "little", [0x8000], "1", "-32768"),
        (DataType.u32, "big", [0x0001, 0x0002], "1", "65538"),
        (DataType.u32, "little", [0x0001, 0x0002], "1", "131073"),
        (DataType.s32, "big", [0xFFFF, 0xFFFE], "1", "-2"),
        (DataType.s32, "little", [0xFFFE, 0xFFFF], "1", "-2"),
        (DataType.f32, "big", [0xBFC0, 0x0000], "1", "-1.5"),
        (DataType.f32, "little", [0x0000, 0xBFC0], "1", "-1.5"),
        (DataType.u64, "big", [0, 0, 1, 0], "1", "65536"),
        (DataType.u64, "little", [0, 1, 0, 0], "1", "65536"),
        (DataType.u64, "big", [0xFFFF] * 4, "1", str(2**64 - 1)),
        (DataType.s64, "big", [0x8000, 0, 0, 0], "1", str(-(2**63))),
        (DataType.s64, "little", [0, 0, 0, 0x8000], "1", str(-(2**63))),
        (DataType.s64, "big", [0xFFFF] * 4, "0.01", "-0.01"),
        (DataType.f64, "big", [0x406C, 0xD000, 0, 0], "1", "230.5"),
        (DataType.f64, "little", [0, 0, 0xD000, 0x406C], "1", "230.5"),
        (DataType.f64, "big", [0x3FB9, 0x9999, 0x9999, 0x999A], "1", "0.1"),
    ],
)
def test_it_decodes_every_data_type_in_both_word_orders(
    datatype, word_order, registers, scale, expected
):
    value = decode(point(datatype, word_order=WordOrder(word_order), scale=scale), registers)
    assert value == Decimal(expected)
    assert isinstance(value, Decimal)


def test_a_coil_decodes_to_a_bool():
    coil = point(DataType.bit, quantity=Quantity.relay_state, function=1)
    assert decode(coil, [True]) is True
    assert decode(coil, [0]) is False
    with pytest.raises(DecodeError, match="not a bit"):
        decode(coil, [2])


@pytest.mark.parametrize(
    ("datatype", "registers"),
    [
        (DataType.f32, [0x7FC0, 0x0000]),  # NaN
        (DataType.f32, [0x7F80, 0x0000]),  # +inf
        (DataType.f32, [0xFF80, 0x0000]),  # -inf
        (DataType.f64, [0x7FF8, 0, 0, 0]),  # NaN
        (DataType.f64, [0xFFF0, 0, 0, 0]),  # -inf
    ],
)
def test_nan_and_infinity_are_rejected(datatype, registers):
    with pytest.raises(DecodeError, match="not a finite number"):
        decode(point(datatype), registers)


@pytest.mark.parametrize(
    ("datatype", "registers", "message"),
    [
        (DataType.f32, [0x4366], "expected 2 registers, got 1"),
        (DataType.u16, [1, 2], "expected 1 register, got 2"),
        (DataType.f64, [0, 0], "expected 4 registers, got 2"),
        (DataType.u32, [], "expected 2 registers, got 0"),
    ],
)
def test_the_wrong_number_of_registers_is_rejected(datatype, registers, message):
    with pytest.raises(DecodeError, match=message):
        decode(point(datatype), registers)


@pytest.mark.parametrize("bad", [65536, -1, 1.5, "1", True, None])
def test_a_register_must_be_a_16_bit_int(bad):
    with pytest.raises(DecodeError, match="not a 16-bit register value"):
        decode(point(DataType.u32), [0, bad])


# --- encoding --------------------------------------------------------------------------------


def test_it_encodes_the_hand_made_examples():
    assert encode(point(), Decimal("230.5")) == [0x4366, 0x8000]
    assert encode(point(word_order=WordOrder.little), 230.5) == [0x8000, 0x4366]
    energy = point(DataType.u32, function=3, scale="0.01")
    assert encode(energy, Decimal("1000.00")) == [0x0001, 0x86A0]
    assert encode(point(DataType.s16, scale="0.001"), Decimal("-1")) == [0xFC18]


def test_an_integer_type_refuses_a_value_between_two_steps_of_its_scale():
    with pytest.raises(EncodeError, match="not a multiple of the scale"):
        encode(point(DataType.u16, scale="0.1"), Decimal("230.55"))


@pytest.mark.parametrize(
    ("datatype", "value"),
    [(DataType.u16, 65536), (DataType.u16, -1), (DataType.s16, 32768), (DataType.f32, 1e39)],
)
def test_a_value_out_of_range_is_refused(datatype, value):
    with pytest.raises(EncodeError, match="does not fit"):
        encode(point(datatype), value)


@pytest.mark.parametrize("value", [Decimal("NaN"), float("inf"), Decimal("-Infinity")])
def test_a_non_finite_value_is_never_encoded(value):
    with pytest.raises(EncodeError, match="not a finite number"):
        encode(point(DataType.f64), value)


@given(
    datatype=st.sampled_from(INTEGER_TYPES),
    word_order=st.sampled_from(WordOrder),
    scale=st.sampled_from(["1", "0.1", "0.01", "0.001", "10", "-1"]),
    data=st.data(),
)
def test_integers_survive_an_encode_decode_round_trip(datatype, word_order, scale, data):
    low, high = INTEGER_RANGES[datatype]
    raw = data.draw(st.integers(low, high))
    target = point(datatype, word_order=word_order, scale=scale)
    value = Decimal(raw) * Decimal(scale)
    registers = encode(target, value)
    assert len(registers) == datatype.size
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode(target, registers) == value


@given(
    datatype=st.sampled_from(REGISTER_TYPES),
    word_order=st.sampled_from(WordOrder),
    data=st.data(),
)
def test_any_finite_registers_survive_a_decode_encode_round_trip(datatype, word_order, data):
    # The strongest form of "exact": not one bit changes, negative zero and subnormals included.
    registers = data.draw(registers_for(datatype))
    if datatype.is_float and not is_finite_float(datatype, word_order, registers):
        return
    target = point(datatype, word_order=word_order)
    assert encode(target, decode(target, registers)) == registers


def as_float32(value: Decimal | float) -> bytes:
    return struct.pack(">f", float(value))


@given(value=st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_a_float32_value_comes_back_as_the_same_float32(value):
    # The decimal may differ from the float32's exact value (46888688 reads as 46888690,
    # its shortest form), but never names another float32.
    assert as_float32(decode(point(), encode(point(), value))) == as_float32(value)


@given(
    a=st.floats(allow_nan=False, allow_infinity=False, width=32),
    b=st.floats(allow_nan=False, allow_infinity=False, width=32),
)
def test_float32_readings_keep_their_order(a, b):
    # Consumption is a difference of two readings: shortening must never reorder them.
    decoded_a, decoded_b = (decode(point(), encode(point(), v)) for v in (a, b))
    assert (decoded_a < decoded_b) == (a < b)
    assert (decoded_a == decoded_b) == (a == b)


@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_a_float64_value_comes_back_as_its_repr(value):
    decoded = decode(point(DataType.f64), encode(point(DataType.f64), value))
    assert decoded == Decimal(repr(value))


@settings(max_examples=300)
@given(
    datatype=st.sampled_from(REGISTER_TYPES),
    word_order=st.sampled_from(WordOrder),
    data=st.data(),
)
def test_decoding_and_encoding_agree_with_pymodbus(datatype, word_order, data):
    registers = data.draw(registers_for(datatype))
    theirs = ModbusClientMixin.convert_from_registers(
        registers, PYMODBUS_TYPES[datatype], word_order=str(word_order)
    )
    target = point(datatype, word_order=word_order)
    if datatype.is_float and not math.isfinite(theirs):
        with pytest.raises(DecodeError):
            decode(target, registers)
        return
    ours = decode(target, registers)
    if datatype.is_float:
        fmt = ">f" if datatype is DataType.f32 else ">d"
        assert struct.pack(fmt, float(ours)) == struct.pack(fmt, theirs)
    else:
        assert ours == theirs
    assert encode(target, ours) == ModbusClientMixin.convert_to_registers(
        theirs, PYMODBUS_TYPES[datatype], word_order=str(word_order)
    )


# --- block planning --------------------------------------------------------------------------


def test_sdm120_is_read_in_few_requests_of_at_most_60_registers():
    profile = load_builtin_profile("sdm120")
    blocks = plan_profile(profile)
    assert all(block.count <= 60 for block in blocks)
    assert [(b.function, b.start, b.count) for b in blocks] == [
        (4, 0, 2),
        (4, 6, 2),
        (4, 12, 2),
        (4, 70, 6),
        (4, 342, 2),
    ]
    frequency_to_export = blocks[3]
    assert [(p.quantity, offset) for p, offset in frequency_to_export.points] == [
        (Quantity.frequency, 0),
        (Quantity.import_energy, 2),
        (Quantity.export_energy, 4),
    ]


def test_adjacent_points_share_one_request():
    points = [point(address=a, quantity=q) for a, q in zip((0, 2, 4), Quantity, strict=False)]
    assert plan_blocks(points, 60, 0) == [
        Block(4, 0, 6, ((points[0], 0), (points[1], 2), (points[2], 4)))
    ]


def test_a_span_longer_than_max_block_splits_into_two_requests():
    points = [point(address=2 * i) for i in range(31)]  # 62 adjacent registers
    blocks = plan_blocks(points, 60, 0)
    assert [(b.start, b.count, len(b.points)) for b in blocks] == [(0, 60, 30), (60, 2, 1)]


def test_different_function_codes_never_share_a_block():
    holding = point(DataType.u16, function=3, address=0)
    inputs = point(DataType.u16, function=4, address=1, quantity=Quantity.current)
    coil = point(DataType.bit, function=1, address=2, quantity=Quantity.relay_state)
    blocks = plan_blocks([inputs, coil, holding], 60, 10)
    assert [(b.function, b.start, b.count) for b in blocks] == [(1, 2, 1), (3, 0, 1), (4, 1, 1)]


@pytest.mark.parametrize(
    ("max_gap", "expected"), [(0, [(0, 1), (3, 1)]), (1, [(0, 1), (3, 1)]), (2, [(0, 4)])]
)
def test_a_gap_is_bridged_only_up_to_max_gap(max_gap, expected):
    points = [point(DataType.u16, address=0), point(DataType.u16, address=3)]
    assert [(b.start, b.count) for b in plan_blocks(points, 60, max_gap)] == expected


def test_bridging_a_gap_never_makes_a_block_longer_than_max_block():
    points = [point(DataType.u16, address=0), point(DataType.f32, address=9)]
    assert [(b.start, b.count) for b in plan_blocks(points, 10, 20)] == [(0, 1), (9, 2)]


def test_coils_and_discrete_inputs_are_limited_by_max_bits_not_max_block():
    coils = [point(DataType.bit, function=1, address=a) for a in range(100)]
    assert [(b.start, b.count) for b in plan_blocks(coils, 60, 0)] == [(0, 100)]
    assert [(b.start, b.count) for b in plan_blocks(coils, 60, 0, max_bits=64)] == [
        (0, 64),
        (64, 36),
    ]


def test_a_point_larger_than_max_block_cannot_be_planned():
    with pytest.raises(ValueError, match="more than 2"):
        plan_blocks([point(DataType.f64)], 2, 0)


def test_blocks_come_out_by_function_then_address_whatever_the_input_order():
    points = [
        point(DataType.u16, function=4, address=9),
        point(DataType.u16, function=3, address=5),
        point(DataType.u16, function=4, address=1),
        point(DataType.u16, function=3, address=0),
    ]
    blocks = plan_blocks(points, 60, 0)
    assert [(b.function, b.start) for b in blocks] == [(3, 0), (3, 5), (4, 1), (4, 9)]
    assert plan_blocks(reversed(points), 60, 0) == blocks


@st.composite
def laid_out_points(draw) -> list[Point]:
    """Points with no overlap inside a function code, like a valid profile's."""
    points = []
    for function in draw(st.sets(st.sampled_from([1, 2, 3, 4]), min_size=1)):
        address = draw(st.integers(0, 100))
        for _ in range(draw(st.integers(1, 30))):
            if function in BIT_FUNCTIONS:
                datatype = DataType.bit
            else:
                datatype = draw(st.sampled_from(REGISTER_TYPES))
            if address + datatype.size > 0x10000:
                break
            points.append(point(datatype, function=function, address=address))
            address += datatype.size + draw(st.integers(0, 6))
    return draw(st.permutations(points))


@settings(max_examples=200)
@given(
    points=laid_out_points(),
    max_block=st.integers(4, 125),
    max_gap=st.integers(0, 8),
    max_bits=st.integers(1, 40),
)
def test_planned_blocks_cover_every_point_once_within_the_limits(
    points, max_block, max_gap, max_bits
):
    blocks = plan_blocks(points, max_block, max_gap, max_bits=max_bits)
    covered = [id(p) for block in blocks for p, _ in block.points]
    assert sorted(covered) == sorted(id(p) for p in points)
    for block in blocks:
        limit = max_bits if block.function in BIT_FUNCTIONS else max_block
        assert 1 <= block.count <= limit
        for p, offset in block.points:
            assert p.function == block.function
            assert block.start + offset == p.address
            assert offset + p.size <= block.count
    for before, after in itertools.pairwise(blocks):
        assert (before.function, before.start) < (after.function, after.start)
        if before.function == after.function:
            assert before.start + before.count <= after.start  # no overlap
            limit = max_bits if before.function in BIT_FUNCTIONS else max_block
            # Never two requests where one would do: they were too far apart or too long.
            first = after.points[0][0]
            too_far = first.address > before.start + before.count + max_gap
            too_long = first.address + first.size - before.start > limit
            assert too_far or too_long


# --- decoding blocks -------------------------------------------------------------------------


def test_one_bad_value_in_a_block_does_not_lose_its_neighbours():
    voltage = point(address=0)
    current = point(address=2, quantity=Quantity.current)
    [block] = plan_blocks([voltage, current], 60, 0)
    decoded = decode_block(block, [0x4366, 0x8000, 0x7FC0, 0x0000])
    assert decoded[Quantity.voltage] == Decimal("230.5")
    assert isinstance(decoded[Quantity.current], DecodeError)


def test_a_register_answer_of_the_wrong_length_fails_every_point():
    [block] = plan_blocks([point(address=0), point(address=2, quantity=Quantity.current)], 60, 0)
    for registers in ([0x4366, 0x8000, 0], [0x4366, 0x8000, 0, 0, 0]):
        decoded = decode_block(block, registers)
        assert all(isinstance(v, DecodeError) for v in decoded.values())
        assert "expected 4 registers" in str(decoded[Quantity.voltage])


def test_a_coil_answer_padded_to_a_whole_byte_is_accepted():
    profile = load_builtin_profile("prepaid_sim_relay")
    [coil_block] = [b for b in plan_profile(profile) if b.function == 1]
    padded = [True] + [False] * 7  # pymodbus returns 8 bits for one coil
    assert decode_profile_block(profile, coil_block, padded) == {Quantity.relay_state: True}
    assert decode_profile_block(profile, coil_block, [False] * 8) == {Quantity.relay_state: False}
    assert isinstance(
        decode_profile_block(profile, coil_block, [])[Quantity.relay_state], DecodeError
    )


def test_a_register_readback_value_that_is_neither_on_nor_off_is_an_error():
    readback = RelayReadback(
        function=3, address=0x10, datatype=DataType.u16, on_value=0x55, off_value=0xAA
    )
    profile = replace(
        load_builtin_profile("sdm120"),
        relay=RelayControl(
            write_function=6, address=0x10, close_value=0x55, open_value=0xAA, readback=readback
        ),
    )
    [block] = [b for b in plan_profile(profile) if b.function == 3]
    assert decode_profile_block(profile, block, [0xAA])[Quantity.relay_state] is False
    assert isinstance(
        decode_profile_block(profile, block, [0x01])[Quantity.relay_state], DecodeError
    )


# --- relay writes ----------------------------------------------------------------------------


def test_the_simulator_relay_is_switched_with_coil_writes():
    relay = load_builtin_profile("prepaid_sim_relay").relay
    assert relay_write(relay, closed=True) == RelayWrite(5, 0, True)
    assert relay_write(relay, closed=False) == RelayWrite(5, 0, False)


def test_a_register_relay_writes_its_model_specific_values():
    single = RelayControl(
        write_function=6, address=0x57, close_value=0x1B, open_value=-1, datatype=DataType.s16
    )
    assert relay_write(single, closed=True) == RelayWrite(6, 0x57, 0x1B)
    assert relay_write(single, closed=False) == RelayWrite(6, 0x57, 0xFFFF)
    multiple = RelayControl(
        write_function=16,
        address=0x100,
        close_value=0x0001_0002,
        open_value=0,
        datatype=DataType.u32,
        word_order=WordOrder.little,
    )
    assert relay_write(multiple, closed=True) == RelayWrite(16, 0x100, [0x0002, 0x0001])
    one_register = RelayControl(write_function=16, address=0x100, close_value=1, open_value=2)
    assert relay_write(one_register, closed=False) == RelayWrite(16, 0x100, [2])


# --- validation ------------------------------------------------------------------------------


def test_validation_lists_every_problem_of_a_bad_profile():
    profile = Profile(
        name="",
        manufacturer="Acme",
        model="X",
        max_block=4,
        points=(
            point(DataType.f32, address=0),  # 0: fine, but overlapped by 1
            point(DataType.u16, address=1, quantity=Quantity.current),  # 1: overlaps 0
            point("f33", address=10, quantity=Quantity.power),  # 2: unknown type
            point(DataType.u16, function=7, address=20, quantity=Quantity.frequency),  # 3
            point(DataType.u16, function=1, address=0, quantity=Quantity.import_energy),  # 4
            point(DataType.f64, address=65533, quantity=Quantity.export_energy),  # 5
            point(DataType.u16, address=30, quantity=Quantity.voltage),  # 6: duplicate
            point(DataType.u64, function=3, address=0, quantity=Quantity.total_energy),  # 7 fits
            point(DataType.bit, function=2, address=0, quantity=Quantity.tamper, scale="0"),  # 8
            point(DataType.u16, function=3, address=40, quantity=Quantity.balance, scale="NaN"),
        ),
        relay=RelayControl(
            write_function=5,
            address=0,
            close_value=2,
            open_value=0,
            readback=RelayReadback(
                function=3, address=0, datatype=DataType.u16, on_value=1, off_value=1
            ),
        ),
    )
    problems = validate_profile(profile)
    expected = [
        "profile: name must be a non-empty string",
        "point 1 (current) overlaps point 0 (voltage)",
        "point 2 (power): unknown data type 'f33'",
        "point 3 (frequency): unknown function 7",
        "point 4 (import_energy): function 1 reads bits, so the data type must be bit",
        "point 4 (import_energy): only relay_state and the flags (tamper, cover_open, reverse) "
        "can be read as bits",
        "point 5 (export_energy): f64 at 65533 runs past address 65535",
        "point 6 (voltage)",  # in the duplicate-quantity line
        "duplicate quantity voltage: point 0 (voltage), point 6 (voltage)",
        "point 8 (tamper): scale must be a finite, non-zero Decimal",
        "point 9 (balance): scale must be a finite, non-zero Decimal",
        "relay: close_value 2 must be 0 or 1",
        "relay readback: on_value and off_value are both 1",
        "point 7 (total_energy) overlaps relay readback",
    ]
    for text in expected:
        assert any(text in problem for problem in problems), (text, problems)
    assert len(problems) == len(expected) - 1  # "point 6" is part of the duplicate line


def test_validation_names_a_point_larger_than_max_block():
    profile = Profile(
        name="p", manufacturer="m", model="m", max_block=2, points=(point(DataType.u64),)
    )
    assert validate_profile(profile) == [
        "point 0 (voltage): u64 needs 4 registers, more than max_block 2"
    ]


@pytest.mark.parametrize(
    ("relay", "problem"),
    [
        (
            RelayControl(write_function=3, address=0, close_value=1, open_value=0),
            "unknown write function 3",
        ),
        (
            RelayControl(write_function=6, address=0, close_value=None, open_value=0),
            "close_value is missing",
        ),
        (
            RelayControl(write_function=6, address=0, close_value=7, open_value=7),
            "close_value and open_value are both 7",
        ),
        (
            RelayControl(write_function=6, address=0, close_value=70000, open_value=0),
            "close_value 70000 does not fit in u16",
        ),
        (
            RelayControl(
                write_function=6, address=0, close_value=1, open_value=0, datatype=DataType.u32
            ),
            "function 6 writes one register",
        ),
        (
            RelayControl(
                write_function=16, address=0, close_value=1, open_value=0, datatype=DataType.f32
            ),
            "writes integers, not f32",
        ),
        (
            RelayControl(
                write_function=5, address=0, close_value=1, open_value=0, datatype=DataType.u16
            ),
            "function 5 writes a coil",
        ),
        (
            RelayControl(write_function=5, address=70000, close_value=1, open_value=0),
            "address must be an integer from 0 to 65535",
        ),
        (
            RelayControl(
                write_function=5,
                address=0,
                close_value=1,
                open_value=0,
                readback=RelayReadback(
                    function=1, address=0, datatype=DataType.u16, on_value=1, off_value=0
                ),
            ),
            "function 1 reads bits",
        ),
        (
            RelayControl(
                write_function=5,
                address=0,
                close_value=1,
                open_value=0,
                readback=RelayReadback(
                    function=1, address=0, datatype=DataType.bit, on_value=2, off_value=0
                ),
            ),
            "on_value 2 must be 0 or 1",
        ),
    ],
)
def test_a_relay_that_cannot_work_is_reported(relay, problem):
    profile = Profile(name="p", manufacturer="m", model="m", points=(), relay=relay)
    problems = validate_profile(profile)
    assert len(problems) == 1
    assert problem in problems[0]


def test_a_malformed_document_lists_every_problem_without_leaking_key_or_type_errors():
    data = {
        "name": "broken",
        "model": 3,
        "colour": "blue",
        "max_block": "60",
        "points": [
            {"quantity": "voltage", "function": 4, "address": "0x0000", "datatype": "f32"},
            {"quantity": "current", "address": 6, "datatype": "f32"},
            {"quantity": "power", "function": 4, "address": 12, "datatype": "f32", "scale": 0.1},
            "frequency",
            {"quantity": "volts", "function": 4, "address": 20, "datatype": "f32", "unit": "V"},
        ],
        "relay": {"write_function": 5, "address": 0, "close_value": 1},
    }
    with pytest.raises(ProfileError) as caught:
        profile_from_dict(data)
    problems = caught.value.problems
    expected = [
        "profile: unknown keys colour",
        "profile: model must be a string",
        "profile: max_block must be an integer",
        "profile: missing key 'manufacturer'",
        "point 0 (voltage): address must be an integer, got '0x0000'",
        "point 1 (current): missing key 'function'",
        "point 2 (power): scale must be a number in a string, got 0.1",
        "point 3: must be an object, got str",
        "point 4 (volts): unknown quantity 'volts'",
        "relay: missing key 'open_value'",
    ]
    for text in expected:
        assert any(text in problem for problem in problems), (text, problems)
    assert len(problems) == len(expected)
    assert isinstance(caught.value, ValueError)


def test_a_document_that_is_not_an_object_is_a_profile_error():
    with pytest.raises(ProfileError, match="must be an object, got list"):
        profile_from_dict([])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 70000)
    | st.text(max_size=6)
    | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


def containers(node: object) -> list[dict]:
    found = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(containers(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(containers(value))
    return found


@st.composite
def mutated_documents(draw) -> object:
    """A valid document with a few keys deleted, replaced by junk or added, anywhere."""
    document = profile_to_dict(load_builtin_profile("prepaid_sim_relay"))
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(containers(document)))
        action = draw(st.sampled_from(["delete", "replace", "add"]))
        if action == "add" or not target:
            target[draw(st.text(max_size=8))] = draw(json_values)
            continue
        key = draw(st.sampled_from(sorted(target)))
        if action == "delete":
            del target[key]
        else:
            target[key] = draw(json_values)
    return document


@settings(max_examples=300)
@given(document=mutated_documents() | json_values)
def test_any_document_either_loads_or_raises_profile_error(document):
    problems: list[str] = []
    try:
        profile = profile_from_dict(document)
    except ProfileError as error:  # anything else, KeyError or TypeError included, fails
        problems = error.problems
        assert problems
    else:
        assert validate_profile(profile) == []
    assert all(isinstance(problem, str) for problem in problems)


anything = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=4)
    | st.lists(st.integers(), max_size=2)
    | st.sampled_from([*DataType, *Quantity, *WordOrder, Decimal("NaN"), Decimal("0.1")])
)


def fields_of(*names: str) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(dict.fromkeys(names, anything))


@given(
    fields=fields_of("quantity", "function", "address", "datatype", "word_order", "scale", "unit"),
    relay=fields_of(
        "write_function", "address", "close_value", "open_value", "datatype", "word_order"
    ),
    readback=fields_of("function", "address", "datatype", "word_order", "on_value", "off_value"),
)
def test_validation_reports_rather_than_raises_whatever_the_fields_hold(fields, relay, readback):
    profile = Profile(
        name="p",
        manufacturer="m",
        model="m",
        points=(Point(**fields),),
        relay=RelayControl(readback=RelayReadback(**readback), **relay),
    )
    problems = validate_profile(profile)
    assert all(isinstance(problem, str) for problem in problems)


# --- built-in profiles and the JSON round trip ----------------------------------------------


def test_the_four_built_in_profiles_load_and_validate_clean():
    assert builtin_profile_names() == ["acrel_ddsy1352", "prepaid_sim_relay", "sdm120", "sdm630"]
    for name in builtin_profile_names():
        profile = load_builtin_profile(name)
        assert profile.name == name
        assert validate_profile(profile) == []


def test_an_unknown_built_in_profile_name_is_refused():
    with pytest.raises(ProfileError, match="no built-in profile"):
        load_builtin_profile("../profiles/sdm120")


def test_the_simulator_profile_describes_its_registers_and_relay():
    profile = load_builtin_profile("prepaid_sim_relay")
    assert {p.quantity: (p.function, p.address, p.datatype, p.unit) for p in profile.points} == {
        Quantity.voltage: (4, 0x0000, DataType.f32, "V"),
        Quantity.current: (4, 0x0006, DataType.f32, "A"),
        Quantity.power: (4, 0x000C, DataType.f32, "W"),
        Quantity.frequency: (4, 0x0046, DataType.f32, "Hz"),
        Quantity.import_energy: (4, 0x0048, DataType.f32, "kWh"),
        Quantity.total_energy: (4, 0x0156, DataType.f32, "kWh"),
    }
    assert profile.relay == RelayControl(
        write_function=5,
        address=0,
        close_value=1,
        open_value=0,
        readback=RelayReadback(
            function=1, address=0, datatype=DataType.bit, on_value=1, off_value=0
        ),
    )


def test_the_acrel_profile_reads_scaled_integers_from_holding_registers():
    profile = load_builtin_profile("acrel_ddsy1352")
    by_quantity = {p.quantity: p for p in profile.points}
    assert by_quantity[Quantity.total_energy].scale == Decimal("0.01")
    assert by_quantity[Quantity.power] == point(
        DataType.s16, quantity=Quantity.power, function=3, address=0x0D, scale="0.001", unit="kW"
    )
    [energy_block, *_] = plan_profile(profile)
    assert decode_block(energy_block, [0x0001, 0x86A0]) == {
        Quantity.total_energy: Decimal("1000.00")
    }


@pytest.mark.parametrize("name", ["acrel_ddsy1352", "prepaid_sim_relay", "sdm120", "sdm630"])
def test_a_built_in_profile_survives_a_json_round_trip(name):
    profile = load_builtin_profile(name)
    document = json.loads(json.dumps(profile_to_dict(profile)))
    assert profile_from_dict(document) == profile
    assert profile_to_dict(profile_from_dict(document)) == document


def test_every_field_survives_a_json_round_trip():
    profile = Profile(
        name="everything",
        manufacturer="Acme",
        model="X-1",
        notes="all the options",
        max_block=100,
        max_gap=3,
        max_bits=16,
        points=(
            point(
                DataType.s64,
                function=3,
                address=0,
                word_order=WordOrder.little,
                scale="1E+3",
                unit="Wh",
                quantity=Quantity.total_energy,
            ),
            point(DataType.bit, function=2, address=5, quantity=Quantity.tamper),
            point(
                DataType.u16,
                function=4,
                address=9,
                scale="0.0001",
                quantity=Quantity.water_volume,
                unit="m3",
            ),
        ),
        relay=RelayControl(
            write_function=16,
            address=0x200,
            close_value=0x1234_5678,
            open_value=-1,
            datatype=DataType.s32,
            word_order=WordOrder.little,
            readback=RelayReadback(
                function=3,
                address=0x200,
                datatype=DataType.s32,
                word_order=WordOrder.little,
                on_value=0x1234_5678,
                off_value=-1,
            ),
        ),
    )
    assert validate_profile(profile) == []
    document = json.loads(json.dumps(profile_to_dict(profile)))
    assert document["points"][0]["scale"] == "1E+3"
    assert profile_from_dict(document) == profile


def test_relay_values_may_be_written_as_json_booleans():
    document = profile_to_dict(load_builtin_profile("prepaid_sim_relay"))
    document["relay"]["close_value"], document["relay"]["open_value"] = True, False
    relay = profile_from_dict(document).relay
    assert (relay.close_value, relay.open_value) == (1, 0)
