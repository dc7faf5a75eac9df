"""The export register and the meter's own alarm flags arrive with each reading over real Modbus
TCP: an SDM-style export energy register (input registers, float32) beside a tamper register
(a holding register, set when not 0) and cover-open and reverse flags on discrete inputs."""

import asyncio
import threading
from decimal import Decimal

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from meters.models import MeterRejection, Reading
from meters.polling import poll_gateways
from meters.protocols.modbus_profile import DataType as PointType
from meters.protocols.modbus_profile import Point, Quantity, encode, profile_from_dict
from meters.services import gateway_create, meter_connect, meter_profile_create
from tests import factories

pytestmark = pytest.mark.django_db
UNIT = 3

PROFILE = {
    "name": "SDM with flags",
    "manufacturer": "Test",
    "model": "Flags-1",
    "points": [
        {"quantity": "import_energy", "function": 4, "address": 72, "datatype": "f32"},
        {"quantity": "export_energy", "function": 4, "address": 74, "datatype": "f32"},
        {"quantity": "tamper", "function": 3, "address": 0, "datatype": "u16"},
        {"quantity": "cover_open", "function": 2, "address": 0, "datatype": "bit"},
        {"quantity": "reverse", "function": 2, "address": 1, "datatype": "bit"},
    ],
}


def _f32(value: float) -> list[int]:
    point = Point(quantity=Quantity.export_energy, function=4, address=0, datatype=PointType.f32)
    return encode(point, value)


class FlaggedMeter:
    """One meter on a Modbus TCP port whose registers and flags a test sets between polls."""

    def __init__(self):
        self.import_kwh, self.export_kwh = 100.0, 0.0
        self.tamper, self.cover_open, self.reverse = 0, False, False
        self.loop = asyncio.new_event_loop()

    async def action(self, function_code, start_address, address, count, registers, set_values):
        # The requested block is rewritten from the meter's state before it is answered.
        if function_code == 4:
            registers[72 - start_address : 76 - start_address] = [
                *_f32(self.import_kwh),
                *_f32(self.export_kwh),
            ]
        elif function_code == 3:
            registers[0 - start_address] = self.tamper
        elif function_code == 2:
            registers[0] = int(self.cover_open) | int(self.reverse) << 1
        return None

    def start(self) -> int:
        device = SimDevice(
            id=UNIT,
            simdata=(
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, values=[0] * 4, datatype=DataType.REGISTERS)],
                [SimData(0, values=[0] * 80, datatype=DataType.REGISTERS)],
            ),
            action=self.action,
        )
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        return asyncio.run_coroutine_threadsafe(self._listen(device), self.loop).result(10)

    async def _listen(self, device: SimDevice) -> int:
        self.server = ModbusTcpServer([device], address=("127.0.0.1", 0))
        await self.server.serve_forever(background=True)
        return self.server.transport.sockets[0].getsockname()[1]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def device():
    meter = FlaggedMeter()
    meter.port = meter.start()
    yield meter
    meter.stop()


@pytest.fixture
def meter(property_a1, device):
    profile_from_dict(PROFILE)  # the test's own profile is sound
    profile = meter_profile_create(
        organisation=property_a1.organisation, actor=None, name="Flags-1", definition=PROFILE
    )
    gateway = gateway_create(
        property=property_a1,
        actor=None,
        name="flags",
        host="127.0.0.1",
        port=device.port,
        timeout_ms=500,
        retries=0,
        gap_ms=0,
    )
    meter = factories.MeterFactory(unit__property=property_a1)
    return meter_connect(
        meter=meter, actor=None, gateway=gateway, modbus_unit=UNIT, profile=profile
    )


def _poll(meter) -> Reading:
    run = poll_gateways(gateway_ids=[meter.gateway_id])
    assert run.readings == 1
    return Reading.objects.filter(meter=meter).latest("taken_at")


def test_the_export_register_and_the_flags_that_are_set_land_on_the_reading(meter, device):
    device.export_kwh, device.cover_open = 12.5, True
    reading = _poll(meter)
    assert reading.register == Decimal("100")
    assert reading.export_register == Decimal("12.5")
    assert reading.flags == ["cover_open"]

    device.export_kwh, device.cover_open, device.reverse, device.tamper = 12.75, False, True, 3
    reading = _poll(meter)
    assert reading.export_register == Decimal("12.75")
    assert reading.flags == ["tamper", "reverse"]


def test_a_meter_with_no_flag_set_reports_none(meter, device):
    reading = _poll(meter)
    assert (reading.export_register, reading.flags) == (Decimal("0"), None)


def test_a_negative_export_register_is_counted_and_the_reading_kept(meter, device):
    device.export_kwh, device.cover_open = -4.0, True
    reading = _poll(meter)
    assert (reading.register, reading.export_register) == (Decimal("100"), None)
    assert reading.flags == ["cover_open"]
    rejection = MeterRejection.objects.get(meter=meter)
    assert (rejection.reason, rejection.count) == ("export_energy: negative register -4", 1)
