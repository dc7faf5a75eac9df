"""The demo organisation that `make run` seeds: two properties, 40 units, a login per role,
tariffs, and a simulated week of readings, charges and top-ups.

Seeding is idempotent: every object is looked up by its natural key first and created through
the same services the product uses (so the audit log tells the story), never duplicated.
"""

import random
import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts import services as accounts
from accounts.models import Account, Membership, Organisation, Property, Tenant, Unit
from billing.charging import charge_new_readings
from billing.freeze import freeze_due
from billing.services import topup_record
from meters import services as meters
from meters.load_profile import register_series
from meters.models import Gateway, Meter, MeterProfile, Reading
from meters.mqtt_devices import mqtt_device_create
from meters.services import builtin_profiles_sync
from meters.simulator import write_state_file
from payments.models import ProviderConfig
from payments.services import provider_config_save
from prepaid.scoping import Role
from tariffs.services import tariff_create

DEMO_SLUG = "demo"
DEMO_PASSWORD = "prepaid-demo"  # noqa: S105 - printed for the demo on purpose

PROPERTIES = [
    {
        "code": "RSG",
        "name": "Riverside Garden",
        "time_zone": "Asia/Shanghai",
        "currency": "CNY",
        "country": "CN",
        "address": "88 Binjiang Avenue, Pudong, Shanghai",
        # Read each minute, so the demo's live readings move while you watch.
        "poll_interval_minutes": 1,
        "units": 24,
        "vacant": 2,
        "language": "zh-hans",
        "names": ["王伟", "李娜", "张敏", "刘洋", "陈静", "杨磊", "赵丽", "黄强", "周杰", "吴芳"],
        "phone": "+86 138 {:04d} {:04d}",
    },
    {
        "code": "KLC",
        "name": "Kilimani Court",
        "time_zone": "Africa/Nairobi",
        "currency": "KES",
        "country": "KE",
        "address": "14 Argwings Kodhek Road, Kilimani, Nairobi",
        "poll_interval_minutes": 1,
        "units": 16,
        "vacant": 2,
        "language": "en",
        "names": [
            "Amina Odhiambo",
            "Brian Mwangi",
            "Cynthia Wanjiru",
            "David Otieno",
            "Esther Njeri",
            "Felix Kiprono",
            "Grace Achieng",
            "Hassan Abdi",
        ],
        "phone": "+254 7{:02d} {:06d}",
    },
]

STAFF = [
    ("owner", Role.OWNER, None),
    ("manager", Role.MANAGER, "RSG"),
    ("accountant", Role.ACCOUNTANT, None),
]


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    what: str


def demo_logins() -> list[Login]:
    return [
        Login("owner", DEMO_PASSWORD, "owner: everything in the demo organisation"),
        Login("manager", DEMO_PASSWORD, "manager: Riverside Garden only"),
        Login("accountant", DEMO_PASSWORD, "accountant: read-only money and reports"),
        Login("tenant", DEMO_PASSWORD, "tenant: one flat's account"),
        Login("admin", DEMO_PASSWORD, "superuser: the Django admin"),
    ]


def demo_exists() -> bool:
    return Organisation.objects.filter(slug=DEMO_SLUG).exists()


@transaction.atomic
def demo_seed() -> Organisation:
    organisation = Organisation.objects.filter(slug=DEMO_SLUG).first()
    if organisation is None:
        organisation = accounts.organisation_create(name="Demo Property Management", slug=DEMO_SLUG)
    properties = {spec["code"]: _seed_property(organisation, spec) for spec in PROPERTIES}
    _seed_tariffs(properties, since=timezone.now() - timedelta(days=90))
    _seed_gateways(properties)
    _seed_mqtt_devices(properties)
    _seed_staff(organisation, properties)
    _seed_tenant_login(organisation)
    _seed_payments(organisation)
    _seed_superuser()
    return organisation


def _seed_property(organisation: Organisation, spec: dict) -> Property:
    fields = {key: spec[key] for key in accounts.PROPERTY_FIELDS if key in spec}
    prop = Property.objects.filter(organisation=organisation, code=spec["code"]).first()
    if prop is None:
        prop = accounts.property_create(organisation=organisation, actor=None, **fields)
    # A fixed seed gives every run, and every machine, the same demo.
    rng = random.Random(spec["code"])  # noqa: S311 - demo data, not security
    move_in = timezone.now() - timedelta(days=60)
    occupied = spec["units"] - spec["vacant"]
    for number in range(1, spec["units"] + 1):
        floor = (number - 1) // 4 + 1
        name = f"{floor}{(number - 1) % 4 + 1:02d}"
        unit = Unit.objects.filter(property=prop, name=name).first()
        if unit is None:
            unit = accounts.unit_create(property=prop, actor=None, name=name, floor=str(floor))
        _seed_meter(organisation, prop, unit, move_in)
        if number <= occupied:
            _seed_account(organisation, spec, unit, number, rng, move_in)
    return prop


def _seed_meter(organisation, prop: Property, unit: Unit, installed_at) -> None:
    serial = f"{prop.code}-E-{unit.name}"
    if not Meter.objects.filter(organisation=organisation, serial=serial).exists():
        meters.meter_register(
            organisation=organisation,
            actor=None,
            serial=serial,
            utility=Meter.Utility.ELECTRICITY,
            has_relay=True,
            unit=unit,
            installed_at=installed_at,
        )


def _seed_account(organisation, spec: dict, unit: Unit, number: int, rng, opened_at) -> None:
    if Account.objects.filter(unit=unit).exists():
        return
    base = spec["names"][(number - 1) % len(spec["names"])]
    name = base if number <= len(spec["names"]) else f"{base} ({unit.name})"
    tenant = Tenant.objects.filter(organisation=organisation, name=name).first()
    if tenant is None:
        tenant = accounts.tenant_create(
            organisation=organisation,
            actor=None,
            name=name,
            phone=spec["phone"].format(rng.randrange(100), rng.randrange(10_000)),
            email=f"tenant-{spec['code'].lower()}-{unit.name}@demo.example",
            preferred_language=spec["language"],
        )
    # One household on life-support equipment: never cut off automatically.
    accounts.account_open(
        tenant=tenant, unit=unit, actor=None, opened_at=opened_at, protected=number == 3
    )


def _seed_staff(organisation: Organisation, properties: dict[str, Property]) -> None:
    User = get_user_model()
    for username, role, limited_to in STAFF:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User.objects.create_user(
                username=username, email=f"{username}@demo.example", password=DEMO_PASSWORD
            )
        if not Membership.objects.filter(user=user).exists():
            accounts.membership_create(
                user=user,
                organisation=organisation,
                role=role,
                actor=None,
                properties=[properties[limited_to]] if limited_to else [],
            )


def _seed_tenant_login(organisation: Organisation) -> None:
    User = get_user_model()
    user = User.objects.filter(username="tenant").first()
    if user is None:
        user = User.objects.create_user(
            username="tenant", email="tenant@demo.example", password=DEMO_PASSWORD
        )
    tenant = Tenant.objects.filter(organisation=organisation, name="王伟").first()
    if tenant is not None and tenant.user_id is None:
        accounts.tenant_link_login(tenant=tenant, user=user, actor=None)
        # So the portal's sign-in by email works with the address the demo prints.
        accounts.tenant_update(tenant=tenant, actor=None, email=user.email)


def _seed_payments(organisation: Organisation) -> None:
    """The sandbox provider, so a tenant can recharge online in the demo with no account
    anywhere."""
    if not ProviderConfig.objects.filter(organisation=organisation, provider="sandbox").exists():
        provider_config_save(
            organisation=organisation,
            provider="sandbox",
            actor=None,
            secrets={"webhook_secret": secrets.token_urlsafe(32)},
        )


def _seed_superuser() -> None:
    User = get_user_model()
    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser(
            username="admin", email="admin@demo.example", password=DEMO_PASSWORD
        )


TARIFFS = {
    # Shanghai residential: peak and valley prices, VAT included, with tier surcharges.
    "RSG": {
        "name": "Residential peak/valley",
        "version": {
            "kind": "tou_tiered",
            "periods": {
                day: [
                    {"name": "peak", "start": "06:00", "end": "22:00", "price": "0.617"},
                    {"name": "valley", "start": "22:00", "end": "06:00", "price": "0.307"},
                ]
                for day in ("weekday", "weekend", "holiday")
            },
            "bands": [
                {"limit": "260", "price": "0"},
                {"limit": "400", "price": "0.05"},
                {"limit": None, "price": "0.30"},
            ],
            "tax_rate": "0.13",
            "prices_include_tax": True,
        },
    },
    # Nairobi domestic: a lifeline block, then the ordinary rate, a daily fixed charge and VAT.
    "KLC": {
        "name": "Domestic",
        "version": {
            "kind": "tiered",
            "bands": [{"limit": "30", "price": "12.23"}, {"limit": None, "price": "16.45"}],
            "standing_charge_per_day": "5.00",
            "tax_rate": "0.16",
        },
    },
}


def _seed_tariffs(properties: dict[str, Property], since) -> None:
    for code, spec in TARIFFS.items():
        prop = properties[code]
        if not prop.tariffs.filter(utility=Meter.Utility.ELECTRICITY).exists():
            tariff_create(
                property=prop,
                utility=Meter.Utility.ELECTRICITY,
                name=spec["name"],
                actor=None,
                version={"effective_from": since, **spec["version"]},
            )


def demo_simulate(*, days: int) -> dict[str, int]:
    """Run the demo for the last `days` days: every meter reports each 15 minutes, consumption
    is charged, every day since the tenants moved in is frozen with its standing charges, and
    tenants top up at the counter now and then.
    Re-running covers the same days without charging anything twice."""
    now = timezone.now()
    end = now - timedelta(minutes=now.minute % 15, seconds=now.second, microseconds=now.microsecond)
    start = end - timedelta(days=days)
    meters = list(
        Meter.objects.filter(organisation__slug=DEMO_SLUG, removed_at__isnull=True)
        .select_related("unit__property")
        .order_by("pk")
    )
    readings = []
    for meter in meters:
        zone = meter.unit.property.zone
        opening = Decimal(1000 + meter.pk % 97 * 37)
        for taken_at, register in register_series(meter.pk, start, end, zone, opening):
            readings.append(
                Reading(meter=meter, taken_at=taken_at, register=register, source="modbus")
            )
    Reading.objects.bulk_create(readings, ignore_conflicts=True, batch_size=5000)
    run = charge_new_readings()
    # As the daily freeze job would have done over the tenants' time in their units: each day's
    # standing charges, and every meter and wallet at each midnight. Before the top-ups, so the
    # tenants who top up enough to stay in credit do so after every day's charges.
    frozen = freeze_due(now=now)
    topups = _simulate_topups(start, days)
    return {
        "readings": len(readings),
        "charged": run.accepted,
        "standing": frozen["standing_charges"],
        "frozen_days": frozen["days"],
        "topups": topups,
    }


def _simulate_topups(start, days: int) -> int:
    """Tenants top up at the counter now and then, and most of them enough to stay in credit;
    every ninth forgets, so the demo shows the cut-off too."""
    made = 0
    accounts = Account.objects.filter(
        unit__property__organisation__slug=DEMO_SLUG, status=Account.Status.OPEN
    ).select_related("wallet", "unit__property")
    for account in accounts:
        rng = random.Random(account.pk)  # noqa: S311 - demo data, not security
        for day in range(days):
            if rng.random() < 0.25:
                made += _demo_topup(
                    account, Decimal(rng.choice([50, 100, 200, 500])), rng, start, f"{day}"
                )
        if account.pk % 9 == 0:
            continue
        account.wallet.refresh_from_db()
        short = Decimal(rng.choice([150, 250, 400])) - account.wallet.balance
        if short > 0:
            amount = (short / DEMO_TOPUP_STEP).to_integral_value(ROUND_CEILING) * DEMO_TOPUP_STEP
            made += _demo_topup(account, amount, rng, start, "catch-up")
    return made


DEMO_TOPUP_STEP = Decimal(50)


def _demo_topup(account, amount: Decimal, rng, start, label: str) -> int:
    result = topup_record(
        account=account,
        amount=amount,
        channel=rng.choice(["cash", "bank"]),
        actor=None,
        idempotency_key=f"demo:{account.pk}:{start.date()}:{label}",
    )
    return int(result.created)


# `make run` starts `manage.py simulate_meters` with these gateways on these ports: the demo's
# meters are its meters, polled every minute.
SIMULATOR_GATEWAYS = {"RSG": 1, "KLC": 2}
SIMULATOR_BASE_PORT = 15020
SIMULATOR_STATE = "simulator-state.json"
# And these meters report over MQTT instead, one device per dialect with a relay: the last
# units of the property, which `simulate_meters --mqtt` runs as devices.
MQTT_DEVICES = {"KLC": ["native", "tasmota", "shelly", "zigbee2mqtt"]}
MQTT_SIMULATOR_STATE = "mqtt-simulator-state.json"


def _seed_gateways(properties: dict[str, Property]) -> None:
    builtin_profiles_sync()
    profile = MeterProfile.objects.get(organisation__isnull=True, name="prepaid_sim_relay")
    for code, number in SIMULATOR_GATEWAYS.items():
        prop = properties[code]
        gateway = Gateway.objects.filter(property=prop, name=f"{code} simulator").first()
        if gateway is None:
            gateway = meters.gateway_create(
                property=prop,
                actor=None,
                name=f"{code} simulator",
                host="127.0.0.1",
                port=SIMULATOR_BASE_PORT + number - 1,
                timeout_ms=500,
            )
        mqtt_count = len(MQTT_DEVICES.get(code, []))
        modbus_meters = _demo_meters(prop)[: -mqtt_count or None]
        for unit_id, meter in enumerate(modbus_meters, start=1):
            if meter.gateway_id is None:
                meters.meter_connect(
                    meter=meter, actor=None, gateway=gateway, modbus_unit=unit_id, profile=profile
                )


def _seed_mqtt_devices(properties: dict[str, Property]) -> None:
    for code, formats in MQTT_DEVICES.items():
        prop = properties[code]
        for fmt, meter in zip(formats, _demo_meters(prop)[-len(formats) :], strict=True):
            if meter.mqtt_device_id is not None:
                continue
            device, _password = mqtt_device_create(
                property=prop,
                actor=None,
                name=f"{code} {meter.unit.name} {fmt}",
                format=fmt,
                key=f"demo-{code.lower()}-{meter.unit.name}",
            )
            meters.meter_connect_mqtt(meter=meter, actor=None, device=device)


def _demo_meters(prop: Property) -> list[Meter]:
    return list(
        Meter.objects.filter(unit__property=prop, removed_at__isnull=True)
        .select_related("unit")
        .order_by("unit__name")
    )


def demo_simulator_state(folder) -> int:
    """Start the simulated meters and MQTT devices where the demo's history ends, so their
    registers carry on instead of running backwards. Leaves existing state files (a running
    demo's) alone."""
    demo_meters = Meter.objects.filter(organisation__slug=DEMO_SLUG, removed_at__isnull=True)
    modbus = {
        f"{SIMULATOR_GATEWAYS[meter.unit.property.code]}:{meter.modbus_unit}": meter
        for meter in demo_meters.filter(gateway__isnull=False).select_related("unit__property")
    }
    mqtt = {
        f"mqtt:{meter.mqtt_device.format}:{meter.mqtt_device.key}:{meter.mqtt_channel}": meter
        for meter in demo_meters.filter(mqtt_device__isnull=False).select_related("mqtt_device")
    }
    return _state_file(folder / SIMULATOR_STATE, modbus) + _state_file(
        folder / MQTT_SIMULATOR_STATE, mqtt
    )


def _state_file(path, meters_by_key: dict[str, Meter]) -> int:
    if path.exists():
        return 0
    registers = {}
    for key, meter in meters_by_key.items():
        last = meter.readings.order_by("-taken_at").first()
        if last is not None:
            registers[key] = (last.register, True)
    write_state_file(path, registers)
    return len(registers)
