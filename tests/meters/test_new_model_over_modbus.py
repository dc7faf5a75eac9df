"""A meter model the code has never seen, defined through the API only, is read and switched
over real Modbus TCP: holding registers, u32 x 0.01 kWh, and a relay set by one register
written with function code 16 and read back from another."""

import asyncio
import threading

import pytest
from django.urls import reverse
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from meters.models import MeterProfile, Reading
from meters.polling import poll_gateways
from meters.relay import relay_command_execute, relay_command_issue
from tests import factories
from tests.meters.test_profiles_api import NEVER_SEEN

pytestmark = pytest.mark.django_db
UNIT = 7
CLOSE, OPEN = 0x55AA, 0xAA55


class AcmeMeter:
    """One ACME PM-1 on a Modbus TCP port: its energy, voltage and relay."""

    def __init__(self):
        registers = [0] * 50
        registers[0:2] = [0x0001, 0xE240]  # 123456 -> 1234.56 kWh
        registers[11] = 2301  # 230.1 V
        registers[41] = 1  # relay closed
        self.registers = registers
        self.loop = asyncio.new_event_loop()

    async def action(self, function_code, start_address, address, count, registers, set_values):
        if function_code == 16 and address == 40 and set_values:
            # The meter switches and reports its new state on the read-back register.
            registers[41 - start_address] = {CLOSE: 1, OPEN: 0}.get(set_values[0], registers[41])
        return None

    def start(self) -> int:
        device = SimDevice(
            id=UNIT,
            simdata=(
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, values=self.registers, datatype=DataType.REGISTERS)],
                [SimData(0, values=[0], datatype=DataType.REGISTERS)],
            ),
            action=self.action,
        )
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        return asyncio.run_coroutine_threadsafe(self._listen(device), self.loop).result(10)

    async def _listen(self, device: SimDevice) -> int:
        # pymodbus servers are made inside their event loop.
        self.server = ModbusTcpServer([device], address=("127.0.0.1", 0))
        await self.server.serve_forever(background=True)
        return self.server.transport.sockets[0].getsockname()[1]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def acme():
    meter = AcmeMeter()
    port = meter.start()
    yield port
    meter.stop()


def test_a_profile_added_through_the_api_reads_and_switches_a_new_model(
    owner_a, property_a1, api_as, acme
):
    api = api_as(owner_a)
    profile_id = api.post(
        reverse("meter-profile-list"),
        {"name": "ACME PM-1", "definition": NEVER_SEEN},
        format="json",
    ).json()["id"]
    gateway_id = api.post(
        reverse("gateway-list"),
        {
            "property": str(property_a1.uuid),
            "name": "ACME bus",
            "host": "127.0.0.1",
            "port": acme,
            "timeout_ms": 500,
            "gap_ms": 0,
        },
        format="json",
    ).json()["id"]
    meter = factories.MeterFactory(unit__property=property_a1, has_relay=True)
    response = api.post(
        reverse("meter-connect", args=[meter.uuid]),
        {"gateway": gateway_id, "modbus_unit": UNIT, "profile": profile_id},
        format="json",
    )
    assert response.status_code == 200, response.content
    meter.refresh_from_db()

    poll_gateways(gateway_ids=[meter.gateway_id])
    reading = Reading.objects.get(meter=meter)
    assert str(reading.register) == "1234.560000"
    assert reading.voltage_v == pytest.approx(230.1)
    assert reading.relay_closed is True

    command = relay_command_issue(meter=meter, close=False, actor=owner_a, reason="new model")
    assert relay_command_execute(command_id=command.pk) == "confirmed"
    meter.refresh_from_db()
    assert meter.relay_closed is False
    assert MeterProfile.objects.get(uuid=profile_id).organisation == property_a1.organisation


def test_connect_refuses_a_gateway_without_a_unit_id(owner_a, property_a1, api_as):
    meter = factories.MeterFactory(unit__property=property_a1)
    gateway = (
        api_as(owner_a)
        .post(
            reverse("gateway-list"),
            {"property": str(property_a1.uuid), "name": "g", "host": "h"},
            format="json",
        )
        .json()["id"]
    )
    response = api_as(owner_a).post(
        reverse("meter-connect", args=[meter.uuid]),
        {"gateway": gateway, "modbus_unit": None, "profile": None},
        format="json",
    )
    assert response.status_code == 400
