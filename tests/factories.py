"""Factories build data through the real services wherever a service exists."""

from datetime import timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts import services as accounts
from accounts.models import Account, Organisation, Property, Tenant, Unit
from billing.models import Receipt, TopupLimits
from billing.services import ChargeInput, topup_record
from meters import services as meters
from meters.models import Meter, MqttDevice
from meters.mqtt_devices import mqtt_device_create


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.test")
    password = factory.django.Password("correct horse battery staple")


class ServiceFactory(factory.Factory):
    """A factory whose objects come from a service function instead of Model.objects.create."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return cls.service(actor=None, **kwargs)

    @classmethod
    def _build(cls, model_class, *args, **kwargs):
        raise TypeError(f"{cls.__name__} creates through a service; use create().")


class OrganisationFactory(ServiceFactory):
    class Meta:
        model = Organisation

    name = factory.Sequence(lambda n: f"Organisation {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")
    service = staticmethod(accounts.organisation_create)


class PropertyFactory(ServiceFactory):
    class Meta:
        model = Property

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Property {n}")
    code = factory.Sequence(lambda n: f"P{n}")
    time_zone = "Asia/Shanghai"
    currency = "CNY"
    country = "CN"
    address = "1 Test Road"
    service = staticmethod(accounts.property_create)


class UnitFactory(ServiceFactory):
    class Meta:
        model = Unit

    property = factory.SubFactory(PropertyFactory)
    name = factory.Sequence(lambda n: f"U{n:03d}")
    service = staticmethod(accounts.unit_create)


class TenantFactory(ServiceFactory):
    class Meta:
        model = Tenant

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Tenant {n}")
    phone = factory.Sequence(lambda n: f"+86 138 0000 {n:04d}")
    email = factory.Sequence(lambda n: f"tenant{n}@example.test")
    service = staticmethod(accounts.tenant_create)


class AccountFactory(ServiceFactory):
    class Meta:
        model = Account

    unit = factory.SubFactory(UnitFactory)
    tenant = factory.SubFactory(
        TenantFactory, organisation=factory.SelfAttribute("..unit.property.organisation")
    )
    opened_at = factory.LazyFunction(timezone.now)
    service = staticmethod(accounts.account_open)


class MeterFactory(ServiceFactory):
    class Meta:
        model = Meter

    unit = factory.SubFactory(UnitFactory)
    organisation = factory.SelfAttribute("unit.property.organisation")
    serial = factory.Sequence(lambda n: f"SN{n:06d}")
    utility = Meter.Utility.ELECTRICITY
    has_relay = True
    installed_at = factory.LazyFunction(timezone.now)
    service = staticmethod(meters.meter_register)


# Billing -----------------------------------------------------------------------------------------


class TopupLimitsFactory(factory.django.DjangoModelFactory):
    """A property's top-up limits; there is no service for them, they are plain settings."""

    class Meta:
        model = TopupLimits

    property = factory.SubFactory(PropertyFactory)


class TopupFactory(ServiceFactory):
    """A counter top-up through `billing.services.topup_record`; yields its receipt."""

    class Meta:
        model = Receipt

    account = factory.SubFactory(AccountFactory)
    amount = factory.LazyFunction(lambda: Decimal("100.00"))
    channel = "cash"
    idempotency_key = factory.Sequence(lambda n: f"topup-{n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return topup_record(actor=None, **kwargs).receipt


class ChargeInputFactory(factory.Factory):
    """An exact charge as the pricing engine hands it to `billing.services.charges_post`."""

    class Meta:
        model = ChargeInput

    account = factory.SubFactory(AccountFactory)
    kind = "energy"
    idempotency_key = factory.Sequence(lambda n: f"charge-{n}")
    period_start = factory.LazyFunction(timezone.now)
    period_end = factory.LazyAttribute(lambda charge: charge.period_start + timedelta(minutes=15))
    quantity = factory.LazyFunction(lambda: Decimal(1))
    net = factory.LazyFunction(lambda: Decimal("1.00"))
    tax = factory.LazyFunction(lambda: Decimal(0))


# MQTT --------------------------------------------------------------------------------------------


class MqttDeviceFactory(ServiceFactory):
    """A device with a broker login through `meters.mqtt_devices.mqtt_device_create`. Its
    password is dropped; call the service directly when a test needs to log in."""

    class Meta:
        model = MqttDevice

    property = factory.SubFactory(PropertyFactory)
    name = factory.Sequence(lambda n: f"Device {n}")
    format = MqttDevice.Format.NATIVE
    key = factory.Sequence(lambda n: f"MQ{n:06d}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        device, _password = mqtt_device_create(actor=None, **kwargs)
        return device


# Notifications -----------------------------------------------------------------------------------


class NotificationFactory(factory.django.DjangoModelFactory):
    """Notifications of one event through `notifications.services.notify`, one per channel the
    tenant is told on; yields the first (email, when the tenant has an address)."""

    class Meta:
        model = "notifications.Notification"

    account = factory.SubFactory(AccountFactory)
    event = "topup_received"
    context = factory.LazyFunction(
        lambda: {
            "amount": "100.00",
            "currency": "CNY",
            "receipt": "P1-00000001",
            "balance": "100.00",
        }
    )
    idempotency_key = factory.Sequence(lambda n: f"notification-{n}")

    @classmethod
    def _create(cls, model_class, *args, account, **kwargs):
        from notifications.services import notify

        return notify(account_id=account.pk, **kwargs)[0]

    @classmethod
    def _build(cls, model_class, *args, **kwargs):
        raise TypeError(f"{cls.__name__} creates through a service; use create().")


# Daily freeze ------------------------------------------------------------------------------------


def _days_ago(days: int):
    return factory.LazyFunction(lambda: timezone.now() - timedelta(days=days))


def _local_day_before_yesterday(prop):
    return (timezone.now() - timedelta(days=2)).astimezone(prop.zone).date()


class DailyFreezeFactory(ServiceFactory):
    """An account's frozen day through `billing.freeze.freeze_day`: by default the account
    opened three days ago and the day is the day before yesterday, local time."""

    class Meta:
        model = "billing.DailyFreeze"

    account = factory.SubFactory(AccountFactory, opened_at=_days_ago(3))
    day = factory.LazyAttribute(lambda row: _local_day_before_yesterday(row.account.unit.property))

    @classmethod
    def _create(cls, model_class, *args, account, day):
        from billing.freeze import freeze_day
        from billing.models import DailyFreeze

        freeze_day(property=account.unit.property, day=day)
        return DailyFreeze.objects.get(account=account, day=day)


class MeterFreezeFactory(ServiceFactory):
    """A meter's frozen day through `billing.freeze.freeze_day`: by default the meter was
    installed three days ago, reading 0 then, and the day is the day before yesterday."""

    class Meta:
        model = "billing.MeterFreeze"

    meter = factory.SubFactory(MeterFactory, installed_at=_days_ago(3))
    day = factory.LazyAttribute(lambda row: _local_day_before_yesterday(row.meter.unit.property))

    @classmethod
    def _create(cls, model_class, *args, meter, day):
        from billing.freeze import freeze_day
        from billing.models import MeterFreeze

        meters.readings_ingest(
            meters=Meter.objects.filter(pk=meter.pk),
            rows=[{"serial": meter.serial, "taken_at": meter.installed_at, "register": Decimal(0)}],
            source="manual",
        )
        freeze_day(property=meter.unit.property, day=day)
        return MeterFreeze.objects.get(meter=meter, day=day)
