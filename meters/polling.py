"""Polling Modbus meters: gateways in parallel, each gateway's meters one request at a time.

One poll run loads its gateways and their meters, reads every meter over asyncio (a bounded
number of gateways at once; one connection per gateway, requests strictly sequential with the
gateway's gap), then writes everything it learnt in bulk: readings (ignoring duplicates),
meters' online state and confirmed relay state, rejected values counted per meter and reason,
and offline alarms opened or closed. A meter that does not answer costs its own timeout only.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing.tasks import charge_meters_task
from meters.alarms import alarm_clear, alarm_raise
from meters.models import Alarm, Gateway, Meter, Reading
from meters.protocols.modbus_io import (
    Connection,
    MeterRefused,
    MeterUnreachable,
    make_client,
    read_meter,
)
from meters.protocols.modbus_profile import (
    FLAG_QUANTITIES,
    DecodeError,
    Profile,
    ProfileError,
    Quantity,
    profile_from_dict,
)
from meters.rejections import meter_rejections_count

MAX_GATEWAYS_AT_ONCE = 200
REGISTER_QUANTITIES = (Quantity.import_energy, Quantity.total_energy, Quantity.water_volume)
REGISTER_PLACES = Decimal("0.000001")
# The scheduler ticks each minute; a gateway due a few seconds from now is taken on this tick.
POLL_SLACK = timedelta(seconds=5)


@dataclass
class MeterResult:
    meter_id: int
    taken_at: datetime | None = None
    values: dict = field(default_factory=dict)
    error: str = ""


@dataclass
class PollRun:
    gateways: int = 0
    meters: int = 0
    answered: int = 0
    readings: int = 0
    rejected: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Target:
    meter_id: int
    unit: int
    profile: Profile


def poll_gateways(*, gateway_ids: Sequence[int]) -> PollRun:
    started = time.perf_counter()
    gateways = list(Gateway.objects.filter(pk__in=gateway_ids, enabled=True))
    meters = list(
        Meter.objects.filter(gateway__in=gateways, removed_at__isnull=True, unit__isnull=False)
        .exclude(profile=None)
        .select_related("profile")
        .order_by("gateway_id", "modbus_unit")
    )
    profiles: dict[int, Profile | str] = {}
    plans: dict[int, list[_Target]] = {gateway.pk: [] for gateway in gateways}
    invalid: list[MeterResult] = []
    for meter in meters:
        if meter.profile_id not in profiles:
            try:
                profiles[meter.profile_id] = profile_from_dict(meter.profile.definition)
            except ProfileError as error:
                profiles[meter.profile_id] = f"invalid profile: {error}"
        profile = profiles[meter.profile_id]
        if isinstance(profile, str):
            invalid.append(MeterResult(meter.pk, error=profile))
        else:
            plans[meter.gateway_id].append(_Target(meter.pk, meter.modbus_unit, profile))
    results = asyncio.run(_poll_all(gateways, plans)) + invalid
    run = PollRun(gateways=len(gateways), meters=len(meters))
    _record(results, run)
    run.seconds = time.perf_counter() - started
    return run


async def _poll_all(gateways: list[Gateway], plans: dict[int, list[_Target]]) -> list[MeterResult]:
    limit = asyncio.Semaphore(MAX_GATEWAYS_AT_ONCE)
    batches = await asyncio.gather(
        *(
            _poll_gateway(gateway, plans[gateway.pk], limit)
            for gateway in gateways
            if plans[gateway.pk]
        )
    )
    return [result for batch in batches for result in batch]


async def _poll_gateway(
    gateway: Gateway, targets: list[_Target], limit: asyncio.Semaphore
) -> list[MeterResult]:
    async with limit:
        client = make_client(Connection.of(gateway))
        try:
            if not await client.connect():
                return [
                    MeterResult(t.meter_id, error=f"cannot connect to {gateway}") for t in targets
                ]
            results = []
            for index, target in enumerate(targets):
                if index and gateway.gap_ms:
                    await asyncio.sleep(gateway.gap_ms / 1000)
                try:
                    values = await read_meter(
                        client, target.profile, target.unit, gap_ms=gateway.gap_ms
                    )
                except MeterUnreachable as error:
                    results.append(MeterResult(target.meter_id, error=str(error) or "no answer"))
                except MeterRefused as error:
                    # It answered, so it is online; what it said is rejected.
                    results.append(MeterResult(target.meter_id, timezone.now(), error=str(error)))
                else:
                    values = _in_watts(target.profile, values)
                    results.append(MeterResult(target.meter_id, timezone.now(), values))
            return results
        finally:
            client.close()


def _in_watts(profile: Profile, values: dict) -> dict:
    """Power as the readings store it, in watts, whatever unit the meter reports."""
    power = values.get(Quantity.power)
    unit = next((p.unit for p in profile.points if p.quantity == Quantity.power), "W")
    if power is not None and not isinstance(power, DecodeError) and unit.lower() == "kw":
        return {**values, Quantity.power: power * 1000}
    return values


def _register(values: dict) -> tuple[Decimal | None, str]:
    for quantity in REGISTER_QUANTITIES:
        if quantity in values:
            value = values[quantity]
            if isinstance(value, DecodeError):
                return None, f"{quantity}: {value}"
            if value < 0:
                return None, f"{quantity}: negative register {value}"
            return value.quantize(REGISTER_PLACES), ""
    return None, "the profile reads no energy or volume register"


def _export(values: dict) -> tuple[Decimal | None, str]:
    """The export register, when the profile reads one; a problem with it is counted but does
    not cost the reading (its decode error is counted with the other points')."""
    value = values.get(Quantity.export_energy)
    if value is None or isinstance(value, DecodeError):
        return None, ""
    if value < 0:
        return None, f"{Quantity.export_energy}: negative register {value}"
    return value.quantize(REGISTER_PLACES), ""


def _flags(values: dict) -> list[str] | None:
    """The names of the meter's alarm flags that are set: a bit that is 1, a register that is
    not 0. None when none is."""
    flags = [
        str(quantity)
        for quantity in FLAG_QUANTITIES
        if (value := values.get(quantity)) is not None
        and not isinstance(value, DecodeError)
        and value
    ]
    return flags or None


def _measurement(values: dict, quantity: Quantity, scale: float = 1) -> float | None:
    value = values.get(quantity)
    if value is None or isinstance(value, DecodeError):
        return None
    return float(value) * scale


@transaction.atomic
def _record(results: list[MeterResult], run: PollRun) -> None:
    now = timezone.now()
    meters = Meter.objects.select_related("unit__property").in_bulk(
        [result.meter_id for result in results]
    )
    readings: list[Reading] = []
    rejections: Counter[tuple[int, str]] = Counter()
    relay_read: set[int] = set()
    for result in results:
        meter = meters[result.meter_id]
        if result.taken_at is None:
            meter.missed_polls += 1
            rejections[(meter.pk, f"no answer: {result.error}"[:200])] += 1
            limit = meter.unit.property.offline_after_missed_polls
            if meter.missed_polls >= limit and meter.online is not False:
                meter.online = False
                alarm_raise(
                    meter=meter,
                    kind=Alarm.Kind.OFFLINE,
                    message=f"No answer for {meter.missed_polls} polls: {result.error}",
                )
            continue
        if meter.online is False:
            alarm_clear(meter=meter, kind=Alarm.Kind.OFFLINE, note="answered again")
        meter.online, meter.missed_polls, meter.last_seen_at = True, 0, result.taken_at
        run.answered += 1
        if result.error:
            rejections[(meter.pk, result.error[:200])] += 1
            continue
        for quantity, value in result.values.items():
            if isinstance(value, DecodeError) and quantity not in REGISTER_QUANTITIES:
                rejections[(meter.pk, f"{quantity}: {value}"[:200])] += 1
        relay = result.values.get(Quantity.relay_state)
        if isinstance(relay, bool):
            meter.relay_closed = relay
            relay_read.add(meter.pk)
        register, problem = _register(result.values)
        if register is None:
            rejections[(meter.pk, problem[:200])] += 1
            continue
        export, problem = _export(result.values)
        if problem:
            rejections[(meter.pk, problem[:200])] += 1
        power = _measurement(result.values, Quantity.power)
        readings.append(
            Reading(
                meter=meter,
                taken_at=result.taken_at,
                register=register,
                power_w=power,
                voltage_v=_measurement(result.values, Quantity.voltage),
                current_a=_measurement(result.values, Quantity.current),
                relay_closed=relay if isinstance(relay, bool) else None,
                export_register=export,
                flags=_flags(result.values),
                source=Reading.Source.MODBUS,
                received_at=now,
            )
        )
    Reading.objects.bulk_create(readings, ignore_conflicts=True, batch_size=5000)
    _save_meter_states(meters.values(), relay_read, now)
    meter_rejections_count(counts=rejections, now=now)
    run.readings, run.rejected = len(readings), sum(rejections.values())
    charged = sorted({reading.meter_id for reading in readings})
    if charged:
        transaction.on_commit(lambda: charge_meters_task.delay(charged))


def _save_meter_states(meters, relay_read: set[int], now: datetime) -> None:
    """One UPDATE per distinct state rather than a CASE per meter: a poll leaves most meters
    in one of a handful of states, and last seen is the poll's end (each reading keeps its
    own moment)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for meter in meters:
        answered = meter.missed_polls == 0
        relay_known = meter.pk in relay_read
        groups[
            (meter.online, meter.missed_polls, answered, relay_known, meter.relay_closed)
        ].append(meter.pk)
    for (online, missed, answered, relay_known, relay_closed), ids in groups.items():
        changes = {"online": online, "missed_polls": missed}
        if answered:
            changes["last_seen_at"] = now
        if relay_known:
            changes.update(relay_closed=relay_closed, relay_confirmed_at=now)
        Meter.objects.filter(pk__in=ids).update(**changes)


GATEWAYS_PER_TASK = 50


@transaction.atomic
def gateways_due_claim(*, now: datetime | None = None) -> list[list[int]]:
    """The enabled gateways whose property's polling interval has passed since their last poll,
    marked as polled now and split into shards of at most GATEWAYS_PER_TASK for the workers.
    Locked rows are skipped, so two schedulers never hand out the same gateway."""
    now = now or timezone.now()
    candidates = (
        Gateway.objects.select_for_update(of=("self",), skip_locked=True)
        .filter(enabled=True)
        .values_list("pk", "last_polled_at", "property__poll_interval_minutes")
        .order_by("pk")
    )
    due = [
        pk
        for pk, last, minutes in candidates
        if last is None or now - last >= timedelta(minutes=minutes) - POLL_SLACK
    ]
    Gateway.objects.filter(pk__in=due).update(last_polled_at=now)
    return [due[i : i + GATEWAYS_PER_TASK] for i in range(0, len(due), GATEWAYS_PER_TASK)]
