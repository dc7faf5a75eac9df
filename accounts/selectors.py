import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal

import holidays
from django.conf import settings
from django.db import models
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    FilteredRelation,
    Min,
    OuterRef,
    Prefetch,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Replace
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Account, Membership, Property, Tenant, Unit

# As a module: billing.selectors imports this one, so its names are looked up when called.
from billing import selectors as billing_selectors
from billing.models import Charge, LedgerAccount, Posting, amount_field
from meters.models import Alarm, Meter, RelayCommand, VacantConsumption
from prepaid.audit.models import AuditLog
from prepaid.scoping import Scope


def scope_for_user(*, user) -> Scope | None:
    """What a staff user may see; None for anyone who is not staff of an organisation."""
    if not user.is_authenticated:
        return None
    membership = (
        Membership.objects.select_related("organisation")
        .prefetch_related("properties")
        .filter(user=user)
        .first()
    )
    if membership is None:
        return None
    limited_to = frozenset(prop.pk for prop in membership.properties.all())
    return Scope(
        organisation=membership.organisation,
        role=membership.role,
        property_ids=limited_to or None,
    )


def property_summaries(*, scope: Scope):
    """The caller's properties with their unit, occupancy and meter counts, in one query."""
    return (
        Property.objects.for_scope(scope)
        .annotate(
            unit_count=Count("units", distinct=True),
            open_account_count=Count(
                "units__accounts",
                filter=Q(units__accounts__status=Account.Status.OPEN),
                distinct=True,
            ),
            meter_count=Count(
                "units__meters",
                filter=Q(units__meters__removed_at__isnull=True),
                distinct=True,
            ),
        )
        .order_by("name")
    )


class HolidayCalendar:
    """The property's country's public holidays (the `holidays` library) plus its own dates."""

    def __init__(self, country: str, extra_dates: Iterable[date] = ()):
        self._country = holidays.country_holidays(country) if country in _SUPPORTED else {}
        self._extra = frozenset(extra_dates)

    def __call__(self, day: date) -> bool:
        return day in self._extra or day in self._country


_SUPPORTED = frozenset(holidays.list_supported_countries())


def holiday_calendar(*, property: Property) -> HolidayCalendar:
    return HolidayCalendar(property.country, property.holidays.values_list("date", flat=True))


# The units grid, the cross-property units list and the overview's counts ---------------------


class UnitFilter(models.TextChoices):
    """What the units grid and list can be narrowed to (the overview's tiles link to these)."""

    ALL = "all", _("All units")
    OCCUPIED = "occupied", _("Occupied")
    VACANT = "vacant", _("Vacant")
    LOW = "low", _("Low credit")
    CUT_OFF = "cut_off", _("Cut off")
    OFFLINE = "offline", _("Offline")
    ONLINE = "online", _("Online")


class UnitSort(models.TextChoices):
    NAME = "name", _("Unit name")
    BALANCE = "balance", _("Lowest balance first")


class BalanceLevel(models.TextChoices):
    GOOD = "good", _("In credit")
    LOW = "low", _("Low credit")
    EMPTY = "empty", _("No credit")
    # Postpaid accounts run up a bill: their balance says nothing about running out.
    POSTPAID = "postpaid", _("Postpaid")
    VACANT = "vacant", _("Vacant")


class Supply(models.TextChoices):
    ON = "on", _("Supply on")
    OFF = "off", _("Cut off")
    PENDING = "pending", _("Switching")
    UNKNOWN = "unknown", _("Supply not known")
    NO_RELAY = "none", _("No relay")


class Connection(models.TextChoices):
    ONLINE = "online", _("Online")
    OFFLINE = "offline", _("Offline")
    UNKNOWN = "unknown", _("Not seen yet")
    NO_METER = "none", _("No meter")


# The badge colour of each state; None: the state says nothing good or bad about the unit.
TONES: dict[str, str | None] = {
    BalanceLevel.GOOD: "good",
    BalanceLevel.LOW: "warn",
    BalanceLevel.EMPTY: "bad",
    BalanceLevel.POSTPAID: "unknown",
    BalanceLevel.VACANT: None,
    Supply.ON: "good",
    Supply.OFF: "bad",
    Supply.PENDING: "warn",
    Supply.UNKNOWN: "unknown",
    Supply.NO_RELAY: None,
    Connection.ONLINE: "good",
    Connection.OFFLINE: "bad",
    Connection.UNKNOWN: "unknown",
    Connection.NO_METER: None,
}
_WORST_FIRST = ("bad", "warn", "unknown", "good")


def first_warning_level(*, property: Property) -> Decimal | None:
    """The highest of the property's warning levels: at or below it, credit is low. None when
    the property warns at no level. Load the property with `balance_policy`."""
    levels = billing_selectors.balance_policy(property=property).warning_levels
    return max((Decimal(level) for level in levels), default=None)


def scope_properties(*, scope: Scope) -> list[Property]:
    """The caller's properties with their balance policies, by name."""
    return list(Property.objects.for_scope(scope).select_related("balance_policy"))


def _active_meters():
    return Meter.objects.filter(unit=OuterRef("pk"), removed_at__isnull=True)


def _occupied() -> Q:
    return Q(tenancy__id__isnull=False)


def _low(properties: Iterable[Property]) -> Q:
    """Prepaid tenancies at or below their property's first warning level (no credit too)."""
    by_level = Q(pk__in=[])
    for prop in properties:
        level = first_warning_level(property=prop)
        if level is not None:
            by_level |= Q(property_id=prop.pk, tenancy__wallet__balance__lte=level)
    return _occupied() & Q(tenancy__mode=Account.Mode.PREPAID) & by_level


# The worst state of a unit's meters, ranked so that MIN over them is the unit's state.
CONNECTION_RANK = {Connection.OFFLINE: 0, Connection.UNKNOWN: 1, Connection.ONLINE: 2}
RELAY_OPEN, RELAY_NOT_OPEN = 0, 1


def _cut_off() -> Q:
    """Tenancies whose supply is confirmed cut off: a relay of theirs reads open."""
    return _occupied() & Q(relay_rank=RELAY_OPEN)


def _offline() -> Q:
    return Q(connection_rank=CONNECTION_RANK[Connection.OFFLINE])


def _online() -> Q:
    """Every meter of the unit answers (and it has one)."""
    return Q(connection_rank=CONNECTION_RANK[Connection.ONLINE])


def _filter_q(status: str, properties: Iterable[Property]) -> Q:
    return {
        UnitFilter.ALL: Q(),
        UnitFilter.OCCUPIED: _occupied(),
        UnitFilter.VACANT: ~_occupied(),
        UnitFilter.LOW: _low(properties),
        UnitFilter.CUT_OFF: _cut_off(),
        UnitFilter.OFFLINE: _offline(),
        UnitFilter.ONLINE: _online(),
    }[status]


def _units(*, scope: Scope, properties: Sequence[Property]):
    """Units in the scope and among `properties`, each joined to its open tenancy (at most one:
    a unique index says so), so balances and tenants come in the same row. The state of its
    meters in service is ranked over a join, grouped per unit, only when a filter asks for it:
    one pass over the meters, where a subquery per unit and state took four times as long."""
    in_service = Q(meter__id__isnull=False)
    connection = Case(
        When(meter__online=False, then=Value(CONNECTION_RANK[Connection.OFFLINE])),
        When(meter__online__isnull=True, then=Value(CONNECTION_RANK[Connection.UNKNOWN])),
        default=Value(CONNECTION_RANK[Connection.ONLINE]),
    )
    relay = Case(
        When(meter__relay_closed=False, then=Value(RELAY_OPEN)), default=Value(RELAY_NOT_OPEN)
    )
    return (
        Unit.objects.for_scope(scope)
        .filter(property__in=[prop.pk for prop in properties])
        .annotate(
            tenancy=FilteredRelation("accounts", condition=Q(accounts__status=Account.Status.OPEN)),
            meter=FilteredRelation("meters", condition=Q(meters__removed_at__isnull=True)),
        )
        .alias(
            connection_rank=Min(connection, filter=in_service),
            relay_rank=Min(relay, filter=in_service & Q(meter__has_relay=True)),
        )
    )


def _unit_ids(*, scope: Scope, properties: Sequence[Property], status: str):
    """The ids of the units a filter shows, for use in a subquery."""
    return (
        _units(scope=scope, properties=properties)
        .filter(_filter_q(status, properties))
        .values("pk")
    )


def _search_q(query: str) -> Q:
    meters = _active_meters().filter(serial__icontains=query)
    return Q(name__icontains=query) | Q(tenancy__tenant__name__icontains=query) | Q(Exists(meters))


def unit_status_counts(*, scope: Scope, properties: Sequence[Property]) -> dict[str, int]:
    """How many of the properties' units each filter shows, in one query."""
    return _units(scope=scope, properties=properties).aggregate(
        **{
            choice.value: Count("pk", filter=_filter_q(choice.value, properties) or None)
            for choice in UnitFilter
        }
    )


def unit_rows(
    *,
    scope: Scope,
    properties: Sequence[Property],
    status: str = UnitFilter.ALL,
    query: str = "",
    sort: str = UnitSort.NAME,
):
    """The properties' units as one query of plain values, filtered and ordered: page it, then
    hand the page to `unit_rows_complete`."""
    units = _units(scope=scope, properties=properties).filter(_filter_q(status, properties))
    if query:
        units = units.filter(_search_q(query))
    order = ["property__name", "name", "pk"]
    if sort == UnitSort.BALANCE:
        order = [F("balance").asc(nulls_last=True), *order]
    return units.values(
        "pk",
        "uuid",
        "name",
        "property_id",
        account_uuid=F("tenancy__uuid"),
        account_mode=F("tenancy__mode"),
        tenant_uuid=F("tenancy__tenant__uuid"),
        tenant_name=F("tenancy__tenant__name"),
        balance=F("tenancy__wallet__balance"),
    ).order_by(*order)


@dataclass(frozen=True)
class MeterCell:
    uuid: uuid.UUID
    serial: str
    utility: str
    connection: str

    @property
    def connection_label(self) -> str:
        return Connection(self.connection).label

    @property
    def connection_tone(self) -> str | None:
        return TONES[self.connection]


@dataclass(frozen=True)
class UnitRow:
    """One unit as the grid shows it: who lives there, their credit, the supply and the meters,
    each state with its word and its colour."""

    uuid: uuid.UUID
    name: str
    property: Property
    account_uuid: uuid.UUID | None
    tenant_uuid: uuid.UUID | None
    tenant_name: str | None
    balance: Decimal | None
    balance_level: str
    supply: str
    connection: str
    meters: tuple[MeterCell, ...]

    @property
    def occupied(self) -> bool:
        return self.account_uuid is not None

    @property
    def currency(self) -> str:
        return self.property.currency

    @property
    def balance_label(self) -> str:
        return BalanceLevel(self.balance_level).label

    @property
    def balance_tone(self) -> str | None:
        return TONES[self.balance_level]

    @property
    def supply_label(self) -> str:
        return Supply(self.supply).label

    @property
    def supply_tone(self) -> str | None:
        return TONES[self.supply]

    @property
    def connection_label(self) -> str:
        return Connection(self.connection).label

    @property
    def connection_tone(self) -> str | None:
        return TONES[self.connection]

    @property
    def tone(self) -> str:
        """The worst of the three states' colours: what the row is coloured."""
        tones = {self.balance_tone, self.supply_tone, self.connection_tone}
        return next((tone for tone in _WORST_FIRST if tone in tones), "unknown")


def balance_level_of(
    *, balance: Decimal | None, mode: str | None, low_level: Decimal | None
) -> str:
    if balance is None:
        return BalanceLevel.VACANT
    if mode == Account.Mode.POSTPAID:
        return BalanceLevel.POSTPAID
    if balance <= 0:
        return BalanceLevel.EMPTY
    if low_level is not None and balance <= low_level:
        return BalanceLevel.LOW
    return BalanceLevel.GOOD


def connection_of(onlines: Sequence[bool | None]) -> str:
    if not onlines:
        return Connection.NO_METER
    if False in onlines:
        return Connection.OFFLINE
    if None in onlines:
        return Connection.UNKNOWN
    return Connection.ONLINE


def supply_of(relays: Sequence[tuple[bool | None, bool]]) -> str:
    """From each switchable meter's (confirmed relay state, whether a command is on its way)."""
    if not relays:
        return Supply.NO_RELAY
    if any(pending for _closed, pending in relays):
        return Supply.PENDING
    states = {closed for closed, _pending in relays}
    if False in states:
        return Supply.OFF
    if None in states:
        return Supply.UNKNOWN
    return Supply.ON


def unit_rows_complete(
    *, scope: Scope, rows: Iterable[dict], properties: Sequence[Property]
) -> list[UnitRow]:
    """A page of `unit_rows` with each unit's meters and states, in one more query."""
    rows = list(rows)
    pending = RelayCommand.objects.filter(meter=OuterRef("pk"), state__in=RelayCommand.ACTIVE)
    meters = defaultdict(list)
    for meter in (
        Meter.objects.for_scope(scope)
        .filter(unit_id__in=[row["pk"] for row in rows], removed_at__isnull=True)
        .annotate(pending=Exists(pending))
        .values(
            "unit_id", "uuid", "serial", "utility", "online", "has_relay", "relay_closed", "pending"
        )
        .order_by("utility", "serial")
    ):
        meters[meter["unit_id"]].append(meter)
    by_id = {prop.pk: prop for prop in properties}
    levels = {prop.pk: first_warning_level(property=prop) for prop in properties}
    units = []
    for row in rows:
        mine = meters[row["pk"]]
        units.append(
            UnitRow(
                uuid=row["uuid"],
                name=row["name"],
                property=by_id[row["property_id"]],
                account_uuid=row["account_uuid"],
                tenant_uuid=row["tenant_uuid"],
                tenant_name=row["tenant_name"],
                balance=row["balance"],
                balance_level=balance_level_of(
                    balance=row["balance"],
                    mode=row["account_mode"],
                    low_level=levels[row["property_id"]],
                ),
                supply=supply_of(
                    [
                        (meter["relay_closed"], meter["pending"])
                        for meter in mine
                        if meter["has_relay"]
                    ]
                ),
                connection=connection_of([meter["online"] for meter in mine]),
                meters=tuple(
                    MeterCell(
                        uuid=meter["uuid"],
                        serial=meter["serial"],
                        utility=meter["utility"],
                        connection=connection_of([meter["online"]]),
                    )
                    for meter in mine
                ),
            )
        )
    return units


# The properties list --------------------------------------------------------------------------


def _per_property(queryset, value=None):
    """A correlated subquery of one figure per property: how many rows (or the sum `value`),
    0 when there are none."""
    value = value or Count("pk")
    grouped = queryset.order_by().values("property_id").annotate(figure=value).values("figure")
    return Coalesce(Subquery(grouped), Value(0), output_field=value.output_field)


def property_rows(*, scope: Scope, properties: Sequence[Property]) -> list[Property]:
    """The caller's properties, each with its units, tenancies, meters, offline meters, credit
    held and cut-off and low-credit tenancies counted, in one query."""
    units = Unit.objects.filter(property_id=OuterRef("pk"))

    def showing(status):
        return units.filter(pk__in=_unit_ids(scope=scope, properties=properties, status=status))

    meters = Meter.objects.for_scope(scope).filter(
        unit__property_id=OuterRef("pk"), removed_at__isnull=True
    )
    wallets = LedgerAccount.objects.for_scope(scope).filter(
        property_id=OuterRef("pk"), kind=LedgerAccount.Kind.WALLET
    )
    figures = {
        row.pop("pk"): row
        for row in Property.objects.for_scope(scope)
        .filter(pk__in=[prop.pk for prop in properties])
        .annotate(
            unit_count=_per_property(showing(UnitFilter.ALL)),
            open_account_count=_per_property(showing(UnitFilter.OCCUPIED)),
            low_count=_per_property(showing(UnitFilter.LOW)),
            cut_off_count=_per_property(showing(UnitFilter.CUT_OFF)),
            meter_count=_per_property(meters.annotate(property_id=F("unit__property_id"))),
            offline_count=_per_property(
                meters.filter(online=False).annotate(property_id=F("unit__property_id"))
            ),
            credit_held=_per_property(wallets, Sum("balance", output_field=amount_field())),
        )
        .values(
            "pk",
            "unit_count",
            "open_account_count",
            "low_count",
            "cut_off_count",
            "meter_count",
            "offline_count",
            "credit_held",
        )
    }
    for prop in properties:
        for name, value in figures[prop.pk].items():
            setattr(prop, name, value)
    return list(properties)


# The overview ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Amount:
    value: Decimal
    currency: str


@dataclass(frozen=True)
class Quantity:
    value: Decimal
    unit: str


# What the latest events say happened; other audited actions show their code.
AUDIT_ACTIONS = {
    "account.open": _("Tenant moved in"),
    "account.close": _("Tenant moved out"),
    "account.set_protected": _("Protection changed"),
    "topup.record": _("Top-up recorded"),
    "ledger.reverse": _("Transaction reversed"),
    "payment.refund": _("Refund"),
    "relay.cut_off": _("Supply cut off"),
    "relay.restore": _("Supply restored"),
    "meter.register": _("Meter registered"),
    "meter.install": _("Meter installed"),
    "meter.remove": _("Meter removed"),
    "meter.replace": _("Meter replaced"),
    "alarm.acknowledge": _("Alarm acknowledged"),
    "alarm.resolve": _("Alarm resolved"),
    "tenant.create": _("Tenant added"),
    "tenant.update": _("Tenant changed"),
    "unit.create": _("Unit added"),
    "balance_policy.update": _("Balance policy changed"),
    "tariff.create": _("Tariff added"),
    "tariff.version_add": _("Tariff version added"),
    "membership.create": _("Staff member added"),
}
ALARM_KINDS = {
    Alarm.Kind.OFFLINE: _("Meter offline"),
    Alarm.Kind.COMMAND_FAILED: _("Relay command failed"),
    Alarm.Kind.ANOMALY: _("Reading anomaly"),
    Alarm.Kind.TAMPER: _("Tamper"),
    Alarm.Kind.REJECTED_INPUT: _("Rejected input"),
}


@dataclass(frozen=True)
class Event:
    at: datetime
    zone: str
    property: Property | None
    # "audit" or "alarm"
    source: str
    entry: AuditLog | Alarm

    @property
    def title(self) -> str:
        if self.source == "alarm":
            return ALARM_KINDS.get(self.entry.kind, self.entry.kind)
        return AUDIT_ACTIONS.get(self.entry.action, self.entry.action)


@dataclass(frozen=True)
class Overview:
    meters_online: int
    meters_offline: int
    meters_unknown: int
    credit_held: list[Amount]
    revenue_today: list[Amount]
    consumption_today: list[Quantity]
    units: dict[str, int]
    open_alarms: int
    critical_alarms: int
    events: list[Event]


def _local_midnight(prop: Property, now: datetime) -> datetime:
    return datetime.combine(timezone.localtime(now, prop.zone).date(), time(0), tzinfo=prop.zone)


def _today(properties: Iterable[Property], now: datetime, *, property_field: str, moment: str) -> Q:
    """Since each property's own local midnight: properties in several time zones start their
    days at different moments."""
    today = Q(pk__in=[])
    for prop in properties:
        today |= Q(**{property_field: prop.pk, f"{moment}__gte": _local_midnight(prop, now)})
    return today


def _amounts(rows) -> list[Amount]:
    return [Amount(row["total"], row["currency"]) for row in rows if row["total"] is not None]


def overview(
    *, scope: Scope, properties: Sequence[Property], events: int = 15, now: datetime | None = None
) -> Overview:
    """The overview's figures for the properties, in a fixed number of queries."""
    now = now or timezone.now()
    property_ids = [prop.pk for prop in properties]
    meters = (
        Meter.objects.for_scope(scope)
        .filter(unit__property__in=property_ids, removed_at__isnull=True)
        .aggregate(
            answering=Count("pk", filter=Q(online=True)),
            silent=Count("pk", filter=Q(online=False)),
            unseen=Count("pk", filter=Q(online__isnull=True)),
        )
    )
    credit = (
        LedgerAccount.objects.for_scope(scope)
        .filter(property__in=property_ids, kind=LedgerAccount.Kind.WALLET)
        .values("currency")
        .annotate(total=Sum("balance"))
        .order_by("currency")
    )
    revenue_books = LedgerAccount.objects.for_scope(scope).filter(
        property__in=property_ids,
        kind__in=[LedgerAccount.Kind.ENERGY_REVENUE, LedgerAccount.Kind.STANDING_REVENUE],
    )
    # Revenue books are credited by charges (net of tax) and debited by their reversals; money
    # belongs to the day it was booked, as in the daily freeze.
    revenue = (
        Posting.objects.filter(ledger_account__in=revenue_books)
        .filter(
            _today(
                properties,
                now,
                property_field="transaction__property_id",
                moment="transaction__created_at",
            )
        )
        .values(currency=F("ledger_account__currency"))
        .annotate(total=Sum("amount"))
        .order_by("currency")
    )
    charged = (
        Charge.objects.for_scope(scope)
        .filter(kind=Charge.Kind.ENERGY, meter__isnull=False)
        .filter(
            _today(
                properties, now, property_field="account__unit__property_id", moment="period_end"
            )
        )
        .values(utility=F("meter__utility"))
        .annotate(total=Sum("quantity"))
    )
    vacant = (
        VacantConsumption.objects.filter(meter__in=Meter.objects.for_scope(scope))
        .filter(
            _today(properties, now, property_field="meter__unit__property_id", moment="period_end")
        )
        .values(utility=F("meter__utility"))
        .annotate(total=Sum("quantity"))
    )
    consumed: dict[str, Decimal] = defaultdict(Decimal)
    for row in [*charged, *vacant]:
        consumed[row["utility"]] += row["total"]
    alarms = Alarm.objects.for_scope(scope).filter(
        Q(property__in=property_ids) | Q(property__isnull=True)
    )
    open_alarms = alarms.filter(closed_at__isnull=True).aggregate(
        open=Count("pk"), critical=Count("pk", filter=Q(severity=Alarm.Severity.CRITICAL))
    )
    return Overview(
        meters_online=meters["answering"],
        meters_offline=meters["silent"],
        meters_unknown=meters["unseen"],
        credit_held=_amounts(credit),
        revenue_today=_amounts(revenue),
        consumption_today=[
            Quantity(consumed[utility], Meter.REGISTER_UNITS[utility])
            for utility in Meter.Utility.values
            if utility in consumed
        ],
        units=unit_status_counts(scope=scope, properties=properties),
        open_alarms=open_alarms["open"],
        critical_alarms=open_alarms["critical"],
        events=latest_events(scope=scope, properties=properties, alarms=alarms, limit=events),
    )


def latest_events(
    *, scope: Scope, properties: Sequence[Property], alarms, limit: int
) -> list[Event]:
    """The latest audited changes and alarms raised, newest first, in two queries."""
    by_id = {prop.pk: prop for prop in properties}
    # Organisation-wide events are shown in the time of the first property.
    fallback = properties[0].time_zone if properties else settings.TIME_ZONE
    changes = (
        AuditLog.objects.for_scope(scope)
        .filter(Q(property__in=by_id) | Q(property__isnull=True))
        .select_related("actor")[:limit]
    )
    raised = alarms.select_related("meter")[:limit]
    events = [
        Event(
            at=entry.created_at,
            zone=by_id[entry.property_id].time_zone if entry.property_id else fallback,
            property=by_id.get(entry.property_id),
            source="audit",
            entry=entry,
        )
        for entry in changes
    ] + [
        Event(
            at=alarm.opened_at,
            zone=by_id[alarm.property_id].time_zone if alarm.property_id else fallback,
            property=by_id.get(alarm.property_id),
            source="alarm",
            entry=alarm,
        )
        for alarm in raised
    ]
    events.sort(key=lambda event: event.at, reverse=True)
    return events[:limit]


# Search ---------------------------------------------------------------------------------------

SEARCH_LIMIT = 20
# What people type in phone numbers besides digits.
_PHONE_PUNCTUATION = (" ", "-", "(", ")", "+", ".")


@dataclass(frozen=True)
class SearchResults:
    tenants: list[Tenant]
    units: list[UnitRow]
    meters: list[Meter]

    def __bool__(self) -> bool:
        return bool(self.tenants or self.units or self.meters)


def _digits_only(expression):
    for mark in _PHONE_PUNCTUATION:
        expression = Replace(expression, Value(mark), Value(""))
    return expression


def search(*, scope: Scope, query: str, limit: int = SEARCH_LIMIT) -> SearchResults:
    """Tenants by name or phone, units by name and meters by serial, inside the scope: at most
    `limit` of each, in six queries."""
    properties = scope_properties(scope=scope)
    tenant_match = Q(name__icontains=query)
    digits = re.sub(r"\D", "", query)
    if digits and not re.sub(r"[\d\s()+.-]", "", query):
        tenant_match |= Q(phone_digits__contains=digits)
    open_accounts = Account.objects.for_scope(scope).filter(status=Account.Status.OPEN)
    tenants = list(
        Tenant.objects.for_scope(scope)
        .annotate(phone_digits=_digits_only(F("phone")))
        .filter(tenant_match)
        .prefetch_related(
            Prefetch(
                "accounts",
                queryset=open_accounts.select_related("unit__property").order_by("unit__name"),
                to_attr="open_accounts",
            )
        )
        .order_by("name", "pk")[:limit]
    )
    units = unit_rows_complete(
        scope=scope,
        rows=unit_rows(scope=scope, properties=properties).filter(name__icontains=query)[:limit],
        properties=properties,
    )
    tenancy = open_accounts.filter(unit_id=OuterRef("unit_id"))
    meters = list(
        Meter.objects.for_scope(scope)
        .filter(serial__icontains=query)
        .select_related("unit__property")
        .annotate(
            account_uuid=Subquery(tenancy.values("uuid")[:1]),
            tenant_name=Subquery(tenancy.values("tenant__name")[:1]),
        )
        .order_by(F("removed_at").asc(nulls_first=True), "serial")[:limit]
    )
    return SearchResults(tenants=tenants, units=units, meters=meters)
