from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, OuterRef, Prefetch, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Account, Property
from accounts.selectors import HolidayCalendar
from billing.models import Charge
from meters.models import Meter, Reading
from prepaid.money import minor_unit
from prepaid.scoping import Scope
from tariffs import pricing
from tariffs.explain import TariffNow, tariff_now
from tariffs.models import Tariff, TariffVersion
from tariffs.stored import stored_pricing_version
from tariffs.whatif import (
    AccountComparison,
    Amounts,
    Comparison,
    MeterHistory,
    Tenancy,
    what_if,
)


def tariff_schedule(*, tariff: Tariff, calendar: HolidayCalendar) -> pricing.Schedule:
    """Everything the pricing engine needs to price this tariff's consumption at any moment."""
    versions = tuple(stored_pricing_version(version) for version in tariff.versions.all())
    return pricing.Schedule(versions=versions, tz=tariff.property.zone, is_holiday=calendar)


def plain_decimal(value: Decimal | None) -> str:
    """A stored decimal as a person types it: 1.000000 as "1", 0.565000 as "0.565"."""
    if value is None:
        return ""
    return format(Decimal(value).normalize(), "f")


def prefetched_calendar(prop: Property) -> HolidayCalendar:
    """The property's holiday calendar from its prefetched `holidays`, without a query."""
    return HolidayCalendar(prop.country, [holiday.date for holiday in prop.holidays.all()])


# The tariff list and detail ---------------------------------------------------------------------


@dataclass(frozen=True)
class VersionsInTime:
    past: list[TariffVersion]
    current: TariffVersion | None
    upcoming: list[TariffVersion]


def versions_in_time(versions: list[TariffVersion], now: datetime) -> VersionsInTime:
    """A tariff's versions (in effective order) split around `now`."""
    started = [version for version in versions if version.effective_from <= now]
    return VersionsInTime(
        past=started[:-1],
        current=started[-1] if started else None,
        upcoming=[version for version in versions if version.effective_from > now],
    )


@dataclass(frozen=True)
class VersionView:
    version: TariffVersion
    summary: "VersionSummary"
    # "past", "current" or "upcoming".
    state: str


@dataclass(frozen=True)
class TariffRow:
    tariff: Tariff
    unit: str
    # Every version in effective order, each with its summary and state.
    timeline: list[VersionView]
    current: VersionView | None
    upcoming: list[VersionView]
    # The price now, as the portal tells tenants; None before the first version starts.
    now: TariffNow | None
    unit_count: int
    account_count: int


@dataclass(frozen=True)
class PropertyTariffs:
    property: Property
    rows: list[TariffRow]
    # Utilities the property has no tariff for yet.
    missing: list[str]


def _metered_counts(tariffs):
    """Annotate each tariff with the units metered for its utility now and their open accounts."""
    meters = Meter.objects.filter(
        unit__property=OuterRef("property"), utility=OuterRef("utility"), removed_at__isnull=True
    )
    units = (
        meters.values("utility").annotate(count=Count("unit", distinct=True)).values("count")[:1]
    )
    accounts = (
        Account.objects.filter(
            unit__property=OuterRef("property"),
            status=Account.Status.OPEN,
            unit__meters__utility=OuterRef("utility"),
            unit__meters__removed_at__isnull=True,
        )
        .values("unit__property")
        .annotate(count=Count("pk", distinct=True))
        .values("count")[:1]
    )
    return tariffs.annotate(
        unit_count=Coalesce(Subquery(units), 0), account_count=Coalesce(Subquery(accounts), 0)
    )


def _row(tariff: Tariff, calendar: HolidayCalendar, now: datetime) -> TariffRow:
    versions = list(tariff.versions.all())
    explained = None
    if versions and versions[0].effective_from <= now:
        schedule = pricing.Schedule(
            versions=tuple(stored_pricing_version(version) for version in versions),
            tz=tariff.property.zone,
            is_holiday=calendar,
        )
        explained = tariff_now(schedule, moment=now, month_to_date=Decimal(0))
    split = versions_in_time(versions, now)
    timeline = [
        VersionView(
            version=version,
            summary=version_summary(version),
            state="current"
            if version == split.current
            else "upcoming"
            if version in split.upcoming
            else "past",
        )
        for version in versions
    ]
    return TariffRow(
        tariff=tariff,
        unit=Meter.REGISTER_UNITS[tariff.utility],
        timeline=timeline,
        current=next((view for view in timeline if view.state == "current"), None),
        upcoming=[view for view in timeline if view.state == "upcoming"],
        now=explained,
        unit_count=tariff.unit_count,
        account_count=tariff.account_count,
    )


def _ordered_versions() -> Prefetch:
    return Prefetch(
        "versions",
        queryset=TariffVersion.objects.select_related("created_by").order_by("effective_from"),
    )


@dataclass(frozen=True)
class BandSummary:
    # Monthly consumption the band starts above ("0" for the first) and ends at (None: no end),
    # written as people write them: "100", not "100.000000".
    above: str
    up_to: str | None
    price: Decimal


@dataclass(frozen=True)
class PeriodSummary:
    name: str
    start: str
    end: str
    price: Decimal


@dataclass(frozen=True)
class DaySummary:
    # A day type, or "all" when every day type has the same periods.
    day_type: str
    periods: list[PeriodSummary]


@dataclass(frozen=True)
class VersionSummary:
    """A stored version's prices, shaped for saying them in plain words."""

    kind: str
    flat_price: Decimal | None
    bands: list[BandSummary]
    days: list[DaySummary]
    standing_charge_per_day: Decimal
    tax_rate: Decimal
    prices_include_tax: bool


def version_summary(version: TariffVersion) -> VersionSummary:
    bands, above = [], "0"
    for band in version.bands:
        limit = None if band["limit"] is None else plain_decimal(Decimal(band["limit"]))
        bands.append(BandSummary(above=above, up_to=limit, price=Decimal(band["price"])))
        above = limit if limit is not None else above
    tables = {
        day_type: [
            PeriodSummary(
                name=period["name"],
                start=period["start"],
                end=period["end"],
                price=Decimal(period["price"]),
            )
            for period in version.periods.get(day_type, [])
        ]
        for day_type in pricing.DayType
        if version.periods.get(day_type)
    }
    if len(tables) == len(pricing.DayType) and len({repr(t) for t in tables.values()}) == 1:
        days = [DaySummary(day_type="all", periods=next(iter(tables.values())))]
    else:
        days = [DaySummary(day_type=str(key), periods=value) for key, value in tables.items()]
    return VersionSummary(
        kind=version.kind,
        flat_price=version.flat_price,
        bands=bands,
        days=days,
        standing_charge_per_day=version.standing_charge_per_day,
        tax_rate=version.tax_rate,
        prices_include_tax=version.prices_include_tax,
    )


def tariffs_by_property(*, scope: Scope, now: datetime | None = None) -> list[PropertyTariffs]:
    """Every property in scope with its tariffs (one per utility), each with its versions split
    around now, the price now and how many units and open accounts it serves. Four queries,
    however many properties and tariffs."""
    now = now or timezone.now()
    tariffs = _metered_counts(Tariff.objects.for_scope(scope)).prefetch_related(_ordered_versions())
    properties = (
        Property.objects.for_scope(scope)
        .prefetch_related("holidays", Prefetch("tariffs", queryset=tariffs.order_by("utility")))
        .order_by("name")
    )
    groups = []
    for prop in properties:
        calendar = prefetched_calendar(prop)
        rows = []
        for tariff in prop.tariffs.all():
            tariff.property = prop
            rows.append(_row(tariff, calendar, now))
        have = {row.tariff.utility for row in rows}
        missing = [utility for utility in Meter.Utility.values if utility not in have]
        groups.append(PropertyTariffs(property=prop, rows=rows, missing=missing))
    return groups


def tariff_for_page(*, scope: Scope, tariff_id) -> Tariff:
    """A tariff in scope with its property, holidays and versions; DoesNotExist outside it."""
    return (
        _metered_counts(Tariff.objects.for_scope(scope))
        .select_related("property")
        .prefetch_related(_ordered_versions(), "property__holidays")
        .get(uuid=tariff_id)
    )


def tariff_row(*, tariff: Tariff, now: datetime | None = None) -> TariffRow:
    """The list's row for one tariff fetched with `tariff_for_page`."""
    return _row(tariff, prefetched_calendar(tariff.property), now or timezone.now())


@dataclass(frozen=True)
class Consumer:
    """A unit metered for the tariff's utility now, with its open account if it has one."""

    unit_name: str
    unit_uuid: object
    meter_serial: str
    account: Account | None


def tariff_consumers(*, scope: Scope, tariff: Tariff) -> list[Consumer]:
    """The units whose meters the tariff prices now, and who occupies them. Two queries."""
    meters = (
        Meter.objects.for_scope(scope)
        .filter(unit__property=tariff.property_id, utility=tariff.utility, removed_at__isnull=True)
        .select_related("unit")
        .order_by("unit__name")
    )
    meters = list(meters)
    accounts = {
        account.unit_id: account
        for account in Account.objects.for_scope(scope)
        .filter(unit__in=[meter.unit_id for meter in meters], status=Account.Status.OPEN)
        .select_related("tenant")
    }
    return [
        Consumer(
            unit_name=meter.unit.name,
            unit_uuid=meter.unit.uuid,
            meter_serial=meter.serial,
            account=accounts.get(meter.unit_id),
        )
        for meter in meters
    ]


# What if ----------------------------------------------------------------------------------------


def past_months(*, prop: Property, now: datetime | None = None, count: int = 12) -> list[date]:
    """The first days of the property's last `count` complete local months, latest first."""
    now = now or timezone.now()
    month = now.astimezone(prop.zone).date().replace(day=1)
    months = []
    for _ in range(count):
        month = (month - timedelta(days=1)).replace(day=1)
        months.append(month)
    return months


def month_bounds(*, prop: Property, month: date) -> tuple[datetime, datetime]:
    """The instants (UTC) the property's local month starts and ends."""
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return (
        pricing.local_midnight(month, prop.zone),
        pricing.local_midnight(following, prop.zone),
    )


@dataclass(frozen=True)
class WhatIfInputs:
    accounts: dict[int, Account]
    tenancies: list[Tenancy]
    meters: list[MeterHistory]
    actual: dict[int, Amounts]


def what_if_inputs(
    *, scope: Scope, tariff: Tariff, month_start: datetime, month_end: datetime
) -> WhatIfInputs:
    """What `tariffs.whatif.what_if` prices and compares, for the tariff's property and utility
    over [month_start, month_end). Five queries whatever the number of accounts and readings:
    accounts, meters, readings, and the actual charges (whole ones summed in the database, those
    straddling the month's edges with their lines)."""
    accounts = {
        account.pk: account
        for account in Account.objects.for_scope(scope)
        .filter(unit__property=tariff.property_id, opened_at__lt=month_end)
        .exclude(closed_at__lte=month_start)
        .select_related("tenant", "unit")
        .order_by("unit__name", "opened_at")
    }
    tenancies = [
        Tenancy(
            account_id=account.pk,
            unit_id=account.unit_id,
            opened_at=account.opened_at,
            closed_at=account.closed_at,
        )
        for account in accounts.values()
    ]
    meter_rows = list(
        Meter.objects.for_scope(scope)
        .filter(
            unit__property=tariff.property_id, utility=tariff.utility, installed_at__lt=month_end
        )
        .exclude(removed_at__lte=month_start)
        .values_list("pk", "unit_id", "installed_at", "removed_at", "register_rollover")
    )
    readings = _readings(
        meter_ids=[row[0] for row in meter_rows], month_start=month_start, month_end=month_end
    )
    meters = [
        MeterHistory(
            meter_id=pk,
            unit_id=unit_id,
            installed_at=installed_at,
            removed_at=removed_at,
            rollover=rollover,
            readings=tuple(readings.get(pk, ())),
        )
        for pk, unit_id, installed_at, removed_at, rollover in meter_rows
    ]
    actual = _actual(
        scope=scope,
        tariff=tariff,
        account_ids=list(accounts),
        month_start=month_start,
        month_end=month_end,
    )
    return WhatIfInputs(accounts=accounts, tenancies=tenancies, meters=meters, actual=actual)


def _readings(
    *, meter_ids: list[int], month_start: datetime, month_end: datetime
) -> dict[int, list[tuple[datetime, Decimal]]]:
    """Accepted readings of the month, with the last one before it and the first one after it
    for each meter, in one query."""
    accepted = Reading.objects.filter(meter_id__in=meter_ids, status=Reading.Status.ACCEPTED)
    # Per meter, a subquery on (meter, taken_at): portable (the demo runs on SQLite) and indexed.
    mine = accepted.filter(meter_id=OuterRef("pk"))
    edges = Meter.objects.filter(pk__in=meter_ids).annotate(
        last_before=Subquery(
            mine.filter(taken_at__lt=month_start).order_by("-taken_at").values("pk")[:1]
        ),
        first_after=Subquery(
            mine.filter(taken_at__gt=month_end).order_by("taken_at").values("pk")[:1]
        ),
    )
    last_before = edges.values("last_before")
    first_after = edges.values("first_after")
    rows = (
        accepted.filter(
            Q(taken_at__gte=month_start, taken_at__lte=month_end)
            | Q(pk__in=last_before)
            | Q(pk__in=first_after)
        )
        .order_by("meter_id", "taken_at")
        .values_list("meter_id", "taken_at", "register")
    )
    readings: dict[int, list[tuple[datetime, Decimal]]] = {}
    for meter_id, taken_at, register in rows:
        readings.setdefault(meter_id, []).append((taken_at, register))
    return readings


def _actual(
    *,
    scope: Scope,
    tariff: Tariff,
    account_ids: list[int],
    month_start: datetime,
    month_end: datetime,
) -> dict[int, Amounts]:
    """What was charged for the tariff's utility over the month, by account. Energy charges are
    the utility's meters'; standing charges carry the utility in their idempotency key."""
    charges = Charge.objects.for_scope(scope).filter(
        Q(kind=Charge.Kind.ENERGY, meter__utility=tariff.utility)
        | Q(kind=Charge.Kind.STANDING, idempotency_key__contains=f":{tariff.utility}:"),
        account_id__in=account_ids,
        period_end__gt=month_start,
        period_start__lt=month_end,
    )
    inside = Q(period_start__gte=month_start, period_end__lte=month_end)
    parts: dict[int, dict[str, Decimal]] = {}

    def add(account_id: int, kind: str, quantity: Decimal, net: Decimal, tax: Decimal) -> None:
        sums = parts.setdefault(account_id, dict.fromkeys(_AMOUNT_FIELDS, Decimal(0)))
        if kind == Charge.Kind.ENERGY:
            sums["quantity"] += quantity
        sums[f"{kind}_net"] += net
        sums[f"{kind}_tax"] += tax

    for row in (
        charges.filter(inside)
        .values("account_id", "kind")
        .annotate(quantity=Sum("quantity"), net=Sum("net"), tax=Sum("tax"))
        .order_by()
    ):
        add(row["account_id"], row["kind"], row["quantity"], row["net"], row["tax"])
    for account_id, kind, lines in charges.exclude(inside).values_list(
        "account_id", "kind", "lines"
    ):
        for line in lines:
            if month_start <= datetime.fromisoformat(line["start"]) < month_end:
                add(
                    account_id,
                    kind,
                    Decimal(line["quantity"]),
                    Decimal(line["net"]),
                    Decimal(line["tax"]),
                )
    return {account_id: Amounts(**sums) for account_id, sums in parts.items()}


_AMOUNT_FIELDS = ("quantity", "energy_net", "energy_tax", "standing_net", "standing_tax")


@dataclass(frozen=True)
class WhatIfRow:
    account: Account
    comparison: AccountComparison


@dataclass(frozen=True)
class WhatIfReport:
    month: date
    currency: str
    unit: str
    rows: list[WhatIfRow]
    total: Comparison


def tariff_what_if(
    *, scope: Scope, tariff: Tariff, version: pricing.TariffVersion, month: date
) -> WhatIfReport:
    """What `version` would have charged each account of the tariff's property for its utility
    over the local `month`, beside what was charged. Reads only; a constant number of queries
    (the tariff's property and holidays are expected prefetched, see `tariff_for_page`)."""
    prop = tariff.property
    month_start, month_end = month_bounds(prop=prop, month=month)
    inputs = what_if_inputs(
        scope=scope, tariff=tariff, month_start=month_start, month_end=month_end
    )
    result = what_if(
        version=version,
        tz=prop.zone,
        is_holiday=prefetched_calendar(prop),
        month_start=month_start,
        month_end=month_end,
        meters=inputs.meters,
        tenancies=inputs.tenancies,
        actual=inputs.actual,
        minor_unit=minor_unit(prop.currency),
    )
    return WhatIfReport(
        month=month,
        currency=prop.currency,
        unit=Meter.REGISTER_UNITS[tariff.utility],
        rows=[
            WhatIfRow(account=inputs.accounts[row.account_id], comparison=row)
            for row in result.accounts
            if row.account_id in inputs.accounts
        ],
        total=result.total,
    )
