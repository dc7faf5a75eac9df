"""A tenancy's life from the counter: move-in, move-out with its final settlement, and swapping a
meter, each one audited step in one transaction.

- **Move-in** records each meter's opening register at the moment the account opens, so what the
  meter counted before is vacant consumption, never the tenant's. An optional deposit goes to
  deposits held (not credit), an optional first top-up to the wallet.
- **Move-out** records the final registers, charges the consumption up to them through the normal
  charging path, posts the standing charges pro-rated to the second, settles the wallet (deposit
  back, then a refund or a debt) and closes the account. `move_out_preview` runs exactly that and
  rolls it back, so the statement shown before confirming is the one the confirmation writes.
- **Meter replacement** charges the old meter up to its final reading and starts the new one at
  its opening reading (`meters.services.meter_replace`), and moves the old one's connection over.

Each step takes an idempotency key from the form that asked for it: a double submit returns
what the first one did. Lock order, as everywhere (docs/money.md): the unit or meter, then
charge cursors, then wallets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Account, Tenant, Unit
from accounts.services import Actor, account_close, account_open, tenant_create
from billing.charging import charge_meters
from billing.debts import debts_move_in
from billing.invoices import invoice_issue, invoices_settle_at_move_out
from billing.models import ChargeCursor, Invoice, LedgerAccount
from billing.services import LedgerError, topup_record
from billing.settlement import (
    SettlementStatement,
    deposit_take,
    settlement_statement,
    standing_charges_until,
    wallet_settle,
)
from meters.models import Meter, MeterProfile, Reading
from meters.protocols.modbus_io import (
    Connection,
    MeterRefused,
    MeterUnreachable,
    make_client,
    read_meter,
)
from meters.protocols.modbus_profile import DecodeError, ProfileError, Quantity, profile_from_dict
from meters.services import meter_connect, meter_connect_mqtt, meter_replace
from prepaid.audit.models import AuditLog
from prepaid.audit.services import audit_record

MOVE_IN = "account.move_in"
MOVE_OUT = "account.move_out"
METER_SWAP = "meter.swap"
# A preview's moment stays good for this long; after it the statement is shown again.
PREVIEW_VALID = timedelta(hours=1)
REGISTER_PLACES = 6
REGISTER_QUANTITIES = (Quantity.import_energy, Quantity.total_energy, Quantity.water_volume)


def reading_key(meter: Meter) -> str:
    """The name under which a meter's reading is given and its errors are reported."""
    return f"reading_{meter.uuid.hex}"


def meters_in_service(*, unit: Unit) -> list[Meter]:
    return list(
        Meter.objects.filter(unit=unit, removed_at__isnull=True)
        .select_related("unit__property")
        .order_by("utility", "serial")
    )


def _previous(*, organisation_id: int, action: str, idempotency_key: str) -> AuditLog | None:
    return (
        AuditLog.objects.filter(
            organisation_id=organisation_id,
            action=action,
            after__idempotency_key=idempotency_key,
        )
        .order_by("pk")
        .first()
    )


def _renamed(error: ValidationError, names: Mapping[str, str]) -> ValidationError:
    """A service's refusal, with its field names as this step's form calls them."""
    if not hasattr(error, "error_dict"):
        return error
    return ValidationError(
        {names.get(field, field): problems for field, problems in error.error_dict.items()}
    )


def _check_register(meter: Meter, value: Decimal | None) -> Decimal:
    if value is None:
        raise ValidationError({reading_key(meter): _("Enter this meter's reading.")})
    if not value.is_finite() or value < 0:
        raise ValidationError({reading_key(meter): _("A register reading cannot be negative.")})
    if value.as_tuple().exponent < -REGISTER_PLACES:
        raise ValidationError(
            {reading_key(meter): _("Give the reading with at most six decimal places.")}
        )
    return value


def _record_readings(
    *, meters: list[Meter], registers: Mapping[int, Decimal], moment: datetime
) -> None:
    """Each meter's register at `moment`, charged at once: consumption up to it goes to whoever
    occupied the unit until then. Refused when a meter already reported something later, or the
    reading is not plausible after the last one."""
    if not meters:
        return
    for meter in meters:
        _check_register(meter, registers.get(meter.pk))
    later = set(
        Reading.objects.filter(meter__in=meters, taken_at__gt=moment)
        .exclude(status=Reading.Status.REJECTED)
        .values_list("meter_id", flat=True)
    )
    errors: dict[str, str] = {}
    for meter in meters:
        if meter.pk in later:
            errors[reading_key(meter)] = _(
                "This meter has reported a reading since; look again and resubmit."
            )
            continue
        reading, created = Reading.objects.get_or_create(
            meter=meter,
            taken_at=moment,
            defaults={"register": registers[meter.pk], "source": Reading.Source.MANUAL},
        )
        if not created and reading.register != registers[meter.pk]:
            errors[reading_key(meter)] = _("The meter reported %(register)s at that moment.") % {
                "register": reading.register
            }
    if errors:
        raise ValidationError(errors)
    charge_meters(meter_ids=[meter.pk for meter in meters], skip_locked=False)
    for reading in Reading.objects.filter(meter__in=meters, taken_at=moment).select_related(
        "meter"
    ):
        if reading.status == Reading.Status.REJECTED:
            errors[reading_key(reading.meter)] = _(
                "The reading was refused: %(reason)s. Check it against the meter."
            ) % {"reason": reading.reason}
    if errors:
        raise ValidationError(errors)


# Move-in -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveIn:
    account: Account
    created: bool


@transaction.atomic
def move_in(
    *,
    unit: Unit,
    actor: Actor,
    idempotency_key: str,
    tenant: Tenant | None = None,
    new_tenant: Mapping[str, Any] | None = None,
    mode: str = Account.Mode.PREPAID,
    protected: bool = False,
    opening_readings: Mapping[int, Decimal] | None = None,
    deposit: Decimal | None = None,
    deposit_channel: str = "cash",
    topup: Decimal | None = None,
    topup_channel: str = "cash",
    move_debt_from: Account | None = None,
    now: datetime | None = None,
) -> MoveIn:
    """Open a tenancy: the tenant (an existing one, or `new_tenant`'s fields for a new one), the
    account, the meters' opening registers, and optionally a deposit, what the tenant still
    owes from `move_debt_from` (an earlier tenancy of theirs at this property, recovered from
    the new one's top-ups) and a first top-up."""
    prop = unit.property
    # Every move-in of the unit queues here, so a replayed key is seen once the first commits.
    Unit.objects.select_for_update().filter(pk=unit.pk).get()
    previous = _previous(
        organisation_id=prop.organisation_id, action=MOVE_IN, idempotency_key=idempotency_key
    )
    if previous is not None:
        account = Account.objects.get(uuid=previous.object_id)
        if account.unit_id != unit.pk:
            raise ValidationError(_("This form was already used for another unit."))
        return MoveIn(account, created=False)
    if (tenant is None) == (new_tenant is None):
        raise ValidationError({"tenant": _("Choose a tenant or give a new tenant's details.")})
    if Account.objects.filter(unit=unit, status=Account.Status.OPEN).exists():
        raise ValidationError(_("This unit already has an open tenancy."))
    now = now or timezone.now()
    if tenant is None:
        tenant = tenant_create(organisation=prop.organisation, actor=actor, **new_tenant)
    meters = meters_in_service(unit=unit)
    registers = opening_readings or {}
    _record_readings(meters=meters, registers=registers, moment=now)
    account = account_open(
        tenant=tenant, unit=unit, actor=actor, mode=mode, opened_at=now, protected=protected
    )
    if deposit:
        try:
            deposit_take(account=account, amount=deposit, channel=deposit_channel, actor=actor)
        except LedgerError as error:
            raise _renamed(
                error, {"amount": "deposit_amount", "channel": "deposit_channel"}
            ) from error
    if move_debt_from is not None:
        # Before the first top-up, so that top-up already recovers it.
        debts_move_in(account=account, earlier=move_debt_from, actor=actor)
    if topup:
        try:
            topup_record(
                account=account,
                amount=topup,
                channel=topup_channel,
                actor=actor,
                idempotency_key=f"move-in:{idempotency_key}:topup",
            )
        except LedgerError as error:
            raise _renamed(error, {"amount": "topup_amount", "channel": "topup_channel"}) from error
    audit_record(
        organisation_id=prop.organisation_id,
        property_id=prop.pk,
        actor=actor,
        action=MOVE_IN,
        instance=account,
        after={
            "idempotency_key": idempotency_key,
            "tenant": str(tenant.uuid),
            "mode": mode,
            "protected": protected,
            "opening_readings": {meter.serial: str(registers[meter.pk]) for meter in meters},
            "deposit": str(deposit or 0),
            "deposit_channel": deposit_channel if deposit else "",
            "topup": str(topup or 0),
            "topup_channel": topup_channel if topup else "",
            "debt_moved_from": str(move_debt_from.uuid) if move_debt_from else "",
        },
    )
    return MoveIn(account, created=True)


# Move-out ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveOut:
    account: Account
    statement: SettlementStatement
    created: bool


def _lock_cursors(meters: list[Meter]) -> None:
    ids = sorted(meter.pk for meter in meters)
    ChargeCursor.objects.bulk_create(
        [ChargeCursor(meter_id=meter_id) for meter_id in ids], ignore_conflicts=True
    )
    list(ChargeCursor.objects.select_for_update().filter(meter_id__in=ids).order_by("meter_id"))


def _untariffed(meters: list[Meter]) -> list[Meter]:
    """Meters whose final reading is still waiting for a tariff to be charged with."""
    waiting = set(
        Reading.objects.filter(meter__in=meters, status=Reading.Status.NEW).values_list(
            "meter_id", flat=True
        )
    )
    return [meter for meter in meters if meter.pk in waiting]


@transaction.atomic
def move_out(
    *,
    account: Account,
    actor: Actor,
    idempotency_key: str,
    moved_out_at: datetime,
    final_readings: Mapping[int, Decimal] | None = None,
    refund_channel: str = "cash",
    reason: str = "",
    now: datetime | None = None,
) -> MoveOut:
    """End a tenancy at `moved_out_at`: final registers, last consumption and standing charges,
    the wallet settled (deposit back, then refund or debt) and the account closed."""
    unit = account.unit
    prop = unit.property
    meters = meters_in_service(unit=unit)
    _lock_cursors(meters)
    # The wallet before the account, as account_close and every top-up lock them.
    LedgerAccount.objects.select_for_update().filter(pk=account.wallet_id).get()
    account = Account.objects.select_related("unit__property", "wallet", "tenant").get(
        pk=account.pk
    )
    if account.status != Account.Status.OPEN:
        previous = _previous(
            organisation_id=prop.organisation_id, action=MOVE_OUT, idempotency_key=idempotency_key
        )
        if previous is None or previous.object_id != str(account.uuid):
            raise ValidationError(_("This tenancy has already ended."))
        return MoveOut(account, settlement_statement(account=account), created=False)
    now = now or timezone.now()
    if not account.opened_at <= moved_out_at <= now:
        raise ValidationError(
            {"moved_out_at": _("The move-out must be after the move-in and not in the future.")}
        )
    if moved_out_at < now - PREVIEW_VALID:
        raise ValidationError(
            {"moved_out_at": _("This preview is out of date. Preview the settlement again.")}
        )
    registers = final_readings or {}
    _record_readings(meters=meters, registers=registers, moment=moved_out_at)
    if waiting := _untariffed(meters):
        raise ValidationError(
            {
                reading_key(meter): _(
                    "No tariff prices this meter's consumption yet, so it cannot be settled. "
                    "Add a tariff first."
                )
                for meter in waiting
            }
        )
    standing_charges_until(account=account, moment=moved_out_at)
    postpaid = account.mode == Account.Mode.POSTPAID
    if postpaid:
        # The last part month's bill, with everything posted so far booked before this instant.
        invoice_issue(
            account=account, period_end=timezone.now(), kind=Invoice.Kind.FINAL, actor=actor
        )
    try:
        settled = wallet_settle(
            account=account, channel=refund_channel, actor=actor, moment=moved_out_at
        )
    except LedgerError as error:
        raise _renamed(error, {"channel": "refund_channel"}) from error
    if postpaid:
        invoices_settle_at_move_out(account=account)
    account = account_close(account=account, actor=actor, closed_at=moved_out_at, reason=reason)
    audit_record(
        organisation_id=prop.organisation_id,
        property_id=prop.pk,
        actor=actor,
        action=MOVE_OUT,
        instance=account,
        after={
            "idempotency_key": idempotency_key,
            "moved_out_at": moved_out_at.isoformat(),
            "final_readings": {meter.serial: str(registers[meter.pk]) for meter in meters},
            "deposit_returned": str(settled.deposit_returned),
            "refund": str(settled.refund),
            "refund_channel": refund_channel if settled.refund else "",
            "debt": str(settled.debt),
        },
        reason=reason,
    )
    return MoveOut(account, settlement_statement(account=account), created=True)


class _Preview(Exception):
    def __init__(self, statement: SettlementStatement):
        self.statement = statement


def move_out_preview(**move: Any) -> SettlementStatement:
    """The statement `move_out(**move)` would produce, with nothing kept: the whole move-out
    runs and is rolled back, so the figures are the real ones."""
    try:
        with transaction.atomic():
            raise _Preview(move_out(**move).statement)
    except _Preview as preview:
        return preview.statement


# Reading a meter on demand ------------------------------------------------------------------------


class MeterReadFailed(Exception):
    """The meter could not be read now; the message says why, for the person at the counter."""


def _register_of(values: dict) -> Decimal:
    for quantity in REGISTER_QUANTITIES:
        if quantity in values:
            value = values[quantity]
            if isinstance(value, DecodeError) or value < 0:
                raise MeterReadFailed(
                    _("The meter's register could not be read (%(error)s).") % {"error": value}
                )
            return Decimal(value).quantize(Decimal(1).scaleb(-REGISTER_PLACES))
    raise MeterReadFailed(_("The meter's profile reads no energy or volume register."))


async def _read(meter: Meter, profile) -> dict:
    gateway = meter.gateway
    client = make_client(Connection.of(gateway))
    try:
        if not await client.connect():
            raise MeterUnreachable(f"cannot connect to {gateway.name}")
        return await read_meter(client, profile, meter.modbus_unit, gap_ms=gateway.gap_ms)
    finally:
        client.close()


def meter_read_now(*, meter: Meter) -> Reading:
    """Read a Modbus meter's register now and store it as a reading; MeterReadFailed, with the
    reason, for a meter that cannot be read on demand or does not answer."""
    if meter.gateway_id is None or meter.profile_id is None:
        raise MeterReadFailed(
            _("This meter is not read over Modbus, so it cannot be read on demand.")
        )
    if not meter.gateway.enabled:
        raise MeterReadFailed(_("This meter's gateway is switched off."))
    try:
        profile = profile_from_dict(meter.profile.definition)
    except ProfileError as error:
        raise MeterReadFailed(
            _("The meter's profile is invalid (%(error)s).") % {"error": error}
        ) from error
    try:
        values = asyncio.run(_read(meter, profile))
    except (MeterUnreachable, MeterRefused, OSError) as error:
        raise MeterReadFailed(
            _("The meter did not answer (%(error)s).") % {"error": str(error) or "timeout"}
        ) from error
    register = _register_of(values)
    reading, _created = Reading.objects.get_or_create(
        meter=meter,
        taken_at=timezone.now(),
        defaults={"register": register, "source": Reading.Source.MODBUS},
    )
    return reading


# Meter replacement -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeterSwap:
    old: Meter
    new: Meter
    created: bool


def _move_connection(*, old: Meter, new: Meter, profile: MeterProfile | None, actor) -> None:
    if old.gateway_id is not None:
        gateway, modbus_unit = old.gateway, old.modbus_unit
        # The gateway's unit id is the new meter's now; the old one keeps its profile as history.
        meter_connect(meter=old, actor=actor, gateway=None, modbus_unit=None, profile=old.profile)
        meter_connect(
            meter=new,
            actor=actor,
            gateway=gateway,
            modbus_unit=modbus_unit,
            profile=profile or old.profile,
        )
    elif old.mqtt_device_id is not None:
        device, channel, sml_key = old.mqtt_device, old.mqtt_channel, old.mqtt_sml_key
        meter_connect(meter=old, actor=actor, gateway=None, modbus_unit=None, profile=None)
        meter_connect_mqtt(meter=new, actor=actor, device=device, channel=channel, sml_key=sml_key)
    elif profile is not None:
        meter_connect(meter=new, actor=actor, gateway=None, modbus_unit=None, profile=profile)


@transaction.atomic
def meter_swap(
    *,
    meter: Meter,
    actor: Actor,
    idempotency_key: str,
    final_register: Decimal,
    new_serial: str,
    initial_register: Decimal,
    profile: MeterProfile | None = None,
    keep_connection: bool = True,
    now: datetime | None = None,
) -> MeterSwap:
    """Replace a meter in service now: the old one charged up to `final_register`, the new one
    (`new_serial`, on `profile`) measured from `initial_register`, and, with `keep_connection`,
    read where the old one was (its gateway and unit id, or its MQTT channel)."""
    meter = Meter.objects.select_for_update(of=("self",), no_key=True).get(pk=meter.pk)
    previous = _previous(
        organisation_id=meter.organisation_id, action=METER_SWAP, idempotency_key=idempotency_key
    )
    if previous is not None:
        if previous.after.get("old_meter") != str(meter.uuid):
            raise ValidationError(_("This form was already used for another meter."))
        return MeterSwap(meter, Meter.objects.get(uuid=previous.object_id), created=False)
    if meter.unit_id is None or meter.removed_at is not None:
        raise ValidationError(_("This meter is no longer in service."))
    new_serial = new_serial.strip()
    if Meter.objects.filter(organisation_id=meter.organisation_id, serial=new_serial).exists():
        raise ValidationError({"new_serial": _("A meter with this serial is already registered.")})
    for name, value in (("final_register", final_register), ("initial_register", initial_register)):
        if value < 0:
            raise ValidationError({name: _("A register reading cannot be negative.")})
    old_profile = meter.profile
    try:
        new = meter_replace(
            meter=meter,
            actor=actor,
            replaced_at=now or timezone.now(),
            final_register=final_register,
            new_serial=new_serial,
            initial_register=initial_register,
        )
    except ValidationError as error:
        raise _renamed(error, {"replaced_at": "final_register"}) from error
    meter.refresh_from_db()
    if keep_connection:
        _move_connection(old=meter, new=new, profile=profile, actor=actor)
    elif profile is not None:
        meter_connect(meter=new, actor=actor, gateway=None, modbus_unit=None, profile=profile)
    audit_record(
        organisation_id=meter.organisation_id,
        property_id=meter.unit.property_id,
        actor=actor,
        action=METER_SWAP,
        instance=new,
        after={
            "idempotency_key": idempotency_key,
            "old_meter": str(meter.uuid),
            "final_register": str(final_register),
            "initial_register": str(initial_register),
            "profile": (profile or old_profile).name if (profile or old_profile) else "",
            "kept_connection": keep_connection,
        },
    )
    return MeterSwap(meter, new, created=True)
