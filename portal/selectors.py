"""What the portal shows a tenant. Every read starts from the signed-in login's own tenancies,
so another tenant's account, payment or receipt is simply not found."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate, TruncHour, TruncMonth
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts.models import Account, Tenant
from accounts.selectors import holiday_calendar
from billing.models import (
    BalanceWarning,
    Charge,
    CutoffDecision,
    DailyFreeze,
    LedgerAccount,
    Receipt,
    TierUsage,
)
from billing.selectors import balance_policy, credit_forecasts
from meters.models import Meter, RelayCommand
from notifications.models import Notification
from notifications.selectors import portal_messages
from payments.models import (
    AutoTopup,
    AutoTopupAttempt,
    PaymentIntent,
    Provider,
    ProviderConfig,
)
from reports.carbon import emissions_kg
from tariffs.explain import TariffNow, tariff_now
from tariffs.models import Tariff
from tariffs.pricing import TariffError
from tariffs.selectors import tariff_schedule

# How long after a payment the return page keeps watching for the supply to come back.
SETTLING = timedelta(minutes=2)
# Amounts offered on the recharge page, in the property's currency.
PRESETS = (Decimal(20), Decimal(50), Decimal(100), Decimal(200))


def portal_accounts(*, user) -> QuerySet[Account]:
    """Every account, at any landlord, of the tenants this login stands for: open ones first."""
    return (
        Account.objects.filter(tenant__user=user)
        .select_related("unit__property__organisation", "wallet", "tenant")
        .order_by("status", "-opened_at")
    )


def portal_tenants(*, user) -> list[Tenant]:
    """The tenancies this login stands for, one per landlord."""
    return list(
        Tenant.objects.filter(user=user).select_related("organisation").order_by("created_at")
    )


def portal_account(*, user, account_uuid) -> Account:
    return get_object_or_404(portal_accounts(user=user), uuid=account_uuid)


class RelayState(StrEnum):
    ON = "on"
    OFF = "off"
    PENDING = "pending"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class LiveState:
    balance: Decimal
    currency: str
    days_left: Decimal | None
    # When the credit runs out at the recent pace; None when not known or not within a year.
    runs_out_at: datetime | None
    # None when the unit has no meter with a relay or valve.
    relay: RelayState | None
    cut_off: bool
    online: bool | None
    read_at: datetime | None


def _active_meters(account: Account) -> list[Meter]:
    # Kept on the account for the rest of the request: a page asks about them several times.
    if not hasattr(account, "_portal_meters"):
        account._portal_meters = list(
            Meter.objects.filter(unit_id=account.unit_id, removed_at__isnull=True)
        )
    return account._portal_meters


def _relay_state(meters: list[Meter]) -> RelayState | None:
    switched = [meter for meter in meters if meter.has_relay]
    if not switched:
        return None
    pending = RelayCommand.objects.filter(
        meter__in=switched, state__in=[RelayCommand.State.QUEUED, RelayCommand.State.SENT]
    ).exists()
    if pending:
        return RelayState.PENDING
    states = {meter.relay_closed for meter in switched}
    if False in states:
        return RelayState.OFF
    if None in states:
        return RelayState.UNKNOWN
    return RelayState.ON


def live_state(*, account: Account, now: datetime | None = None) -> LiveState:
    """Balance, days of credit left and when it runs out, and the supply, read fresh (the page
    polls this)."""
    wallet = LedgerAccount.objects.get(pk=account.wallet_id)
    account.wallet = wallet
    meters = _active_meters(account)
    decision = (
        CutoffDecision.objects.filter(account=account).values_list("outcome", flat=True).first()
    )
    onlines = {meter.online for meter in meters}
    seen = [meter.last_seen_at for meter in meters if meter.last_seen_at]
    forecast = credit_forecasts(accounts=[account], now=now)[account.pk]
    return LiveState(
        balance=wallet.balance,
        currency=wallet.currency,
        days_left=None if forecast is None else forecast.days,
        runs_out_at=None if forecast is None else forecast.runs_out_at,
        relay=_relay_state(meters),
        cut_off=decision == CutoffDecision.Outcome.CUT,
        online=None if not meters else (False not in onlines and None not in onlines),
        read_at=max(seen) if seen else None,
    )


@dataclass(frozen=True)
class TariffLine:
    utility: str
    unit: str
    name: str
    now: TariffNow


def tariffs_now(*, account: Account, now: datetime | None = None) -> list[TariffLine]:
    """The tariff of each utility the unit is metered for, as it stands now."""
    now = now or timezone.now()
    prop = account.unit.property
    utilities = {meter.utility for meter in _active_meters(account)}
    tariffs = Tariff.objects.filter(property=prop, utility__in=utilities).prefetch_related(
        "versions"
    )
    month = now.astimezone(prop.zone).date().replace(day=1)
    used = dict(
        TierUsage.objects.filter(account=account, month=month).values_list("utility", "quantity")
    )
    calendar = holiday_calendar(property=prop)
    lines = []
    for tariff in tariffs:
        try:
            explained = tariff_now(
                tariff_schedule(tariff=tariff, calendar=calendar),
                moment=now,
                month_to_date=used.get(tariff.utility, Decimal(0)),
            )
        except TariffError:
            # No version in force yet: nothing to explain.
            continue
        lines.append(
            TariffLine(
                utility=tariff.utility,
                unit=Meter.REGISTER_UNITS[tariff.utility],
                name=tariff.name,
                now=explained,
            )
        )
    return lines


@dataclass(frozen=True)
class Warning:
    kind: str
    level: Decimal | None = None
    days_left: Decimal | None = None
    cutoff_at: datetime | None = None


def warnings_for(
    *, account: Account, live: LiveState, now: datetime | None = None
) -> list[Warning]:
    """The one thing the tenant should act on now, if any: the most urgent first."""
    now = now or timezone.now()
    policy = balance_policy(property=account.unit.property)
    if live.cut_off or live.relay == RelayState.OFF:
        return [Warning("cut_off")]
    if live.balance <= policy.cutoff_threshold:
        return [Warning("at_cutoff")]
    scheduled = (
        BalanceWarning.objects.filter(
            account=account, kind=BalanceWarning.Kind.CUTOFF_SCHEDULED, cutoff_at__gt=now
        )
        .order_by("-created_at")
        .first()
    )
    if scheduled is not None:
        return [Warning("cutoff_scheduled", cutoff_at=scheduled.cutoff_at)]
    crossed = [Decimal(level) for level in policy.warning_levels if live.balance <= Decimal(level)]
    if crossed:
        return [Warning("low", level=min(crossed))]
    days = policy.warning_days
    if days is not None and live.days_left is not None and live.days_left <= days:
        return [Warning("days", days_left=live.days_left)]
    return []


class RunOutDay(StrEnum):
    TODAY = "today"
    TOMORROW = "tomorrow"
    # Within the next week: the weekday names it.
    WEEKDAY = "weekday"
    LATER = "later"


@dataclass(frozen=True)
class RunOut:
    """When the credit runs out, as the home page says it: to the nearest hour, in the
    property's time (`zone`), and how far off that day is."""

    at: datetime
    zone: str
    day: RunOutDay


def run_out(*, account: Account, live: LiveState, now: datetime | None = None) -> RunOut | None:
    """When the credit runs out at the recent pace; None when there is too little history to
    tell, when it has run out already (the warnings say so) or not within a year."""
    if live.runs_out_at is None or not live.days_left:
        return None
    now = now or timezone.now()
    zone = account.unit.property.zone
    rounded = (live.runs_out_at + timedelta(minutes=30)).astimezone(zone)
    at = rounded.replace(minute=0, second=0, microsecond=0)
    days = (at.date() - now.astimezone(zone).date()).days
    if days <= 0:
        day = RunOutDay.TODAY
    elif days == 1:
        day = RunOutDay.TOMORROW
    elif days < 7:
        day = RunOutDay.WEEKDAY
    else:
        day = RunOutDay.LATER
    return RunOut(at=at, zone=account.unit.property.time_zone, day=day)


def unread_messages(*, user, limit: int = 5) -> list[Notification]:
    return list(portal_messages(tenant_user=user).filter(read_at__isnull=True)[:limit])


class UsagePeriod(StrEnum):
    DAY = "day"
    MONTH = "month"
    YEAR = "year"


@dataclass(frozen=True)
class Bucket:
    start: datetime | date
    quantity: Decimal
    cost: Decimal
    carbon_kg: Decimal | None
    # Bar height as a share of the tallest bar, 0 to 100.
    height: Decimal

    @property
    def top(self) -> Decimal:
        return 100 - self.height


@dataclass(frozen=True)
class Usage:
    period: UsagePeriod
    utility: str
    unit: str
    currency: str
    buckets: list[Bucket]
    quantity: Decimal
    cost: Decimal
    carbon_kg: Decimal | None
    carbon_factor: Decimal | None


def _bucket_starts(period: UsagePeriod, now_local: datetime) -> list[datetime | date]:
    today = now_local.date()
    if period == UsagePeriod.DAY:
        # Hourly, yesterday and today.
        midnight = now_local.replace(hour=0, minute=0, second=0, microsecond=0)
        first = midnight - timedelta(days=1)
        return [first + timedelta(hours=hour) for hour in range(48)]
    if period == UsagePeriod.MONTH:
        return [today - timedelta(days=offset) for offset in range(29, -1, -1)]
    months = []
    year, month = today.year, today.month
    for _ in range(12):
        months.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months[::-1]


def usage(
    *, account: Account, period: UsagePeriod, utility: str, now: datetime | None = None
) -> Usage:
    """Consumption and its cost per hour, day or month, in the property's local time. Charges
    count in the bucket where they start; standing charges are a cost of the day, not of use."""
    now = now or timezone.now()
    prop = account.unit.property
    zone = prop.zone
    starts = _bucket_starts(period, now.astimezone(zone))
    trunc = {
        UsagePeriod.DAY: TruncHour,
        UsagePeriod.MONTH: TruncDate,
        UsagePeriod.YEAR: TruncMonth,
    }[period]
    first = starts[0]
    since = first if isinstance(first, datetime) else _local_start(first, zone)
    rows = (
        Charge.objects.filter(account=account, period_start__gte=since)
        .filter(Q(kind=Charge.Kind.ENERGY, meter__utility=utility) | Q(kind=Charge.Kind.STANDING))
        .annotate(bucket=trunc("period_start", tzinfo=zone))
        .values("bucket")
        .annotate(
            quantity=Sum("quantity", filter=Q(kind=Charge.Kind.ENERGY)),
            cost=Sum(F("net") + F("tax")),
        )
    )
    found: dict[object, tuple[Decimal, Decimal]] = {}
    for row in rows:
        key = row["bucket"]
        if isinstance(key, datetime):
            key = key.astimezone(zone).replace(tzinfo=None)
        if period == UsagePeriod.YEAR and isinstance(key, datetime):
            key = key.date()
        found[key] = (Decimal(row["quantity"] or 0), Decimal(row["cost"] or 0))
    factor = prop.carbon_kg_per_kwh if utility == Meter.Utility.ELECTRICITY else None
    raw = []
    for start in starts:
        key = start.replace(tzinfo=None) if isinstance(start, datetime) else start
        quantity, cost = found.get(key, (Decimal(0), Decimal(0)))
        raw.append((start, quantity, cost))
    tallest = max((quantity for _, quantity, _ in raw), default=Decimal(0))
    buckets = [
        Bucket(
            start=start,
            quantity=quantity,
            cost=cost,
            carbon_kg=None if factor is None else quantity * factor,
            height=(quantity * 100 / tallest) if tallest else Decimal(0),
        )
        for start, quantity, cost in raw
    ]
    total = sum((bucket.quantity for bucket in buckets), Decimal(0))
    return Usage(
        period=period,
        utility=utility,
        unit=Meter.REGISTER_UNITS[utility],
        currency=prop.currency,
        buckets=buckets,
        quantity=total,
        cost=sum((bucket.cost for bucket in buckets), Decimal(0)),
        carbon_kg=None if factor is None else total * factor,
        carbon_factor=factor,
    )


@dataclass(frozen=True)
class CarbonMonth:
    # The first day of the local month.
    month: date
    current: bool
    kwh: Decimal
    kg: Decimal


@dataclass(frozen=True)
class Carbon:
    factor: Decimal
    months: list[CarbonMonth]


def carbon_by_month(*, account: Account, now: datetime | None = None) -> Carbon | None:
    """The account's estimated emissions in this local month so far and in each of the months
    before it, up to a year, since the account opened: the electricity charged for (counted in
    the month its reading interval starts, like the usage chart) times the property's grid
    factor, exact and then rounded to 0.01 kg. Newest first; one query. None when the unit has
    no electricity meter."""
    if Meter.Utility.ELECTRICITY not in metered_utilities(account=account):
        return None
    now = now or timezone.now()
    prop = account.unit.property
    zone = prop.zone
    this_month = now.astimezone(zone).date().replace(day=1)
    opened = account.opened_at.astimezone(zone).date().replace(day=1)
    months = [
        month for month in _bucket_starts(UsagePeriod.YEAR, now.astimezone(zone)) if month >= opened
    ]
    rows = (
        Charge.objects.filter(
            account=account,
            kind=Charge.Kind.ENERGY,
            meter__utility=Meter.Utility.ELECTRICITY,
            period_start__gte=_local_start(months[0], zone),
        )
        .annotate(month=TruncMonth("period_start", tzinfo=zone))
        .values("month")
        .annotate(kwh=Sum("quantity"))
        .order_by()
    )
    used = {row["month"].astimezone(zone).date(): row["kwh"] for row in rows}
    factor = prop.carbon_kg_per_kwh
    return Carbon(
        factor=factor,
        months=[
            CarbonMonth(
                month=month,
                current=month == this_month,
                kwh=used.get(month, Decimal(0)),
                kg=emissions_kg(used.get(month, Decimal(0)), factor),
            )
            for month in reversed(months)
        ],
    )


def _local_start(day: date, zone) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def metered_utilities(*, account: Account) -> list[str]:
    present = {meter.utility for meter in _active_meters(account)}
    return [utility for utility in Meter.Utility.values if utility in present]


# Recharge ----------------------------------------------------------------------------------------


class PayChannel(StrEnum):
    """How the tenant pays; each channel is served by one or more providers."""

    WECHAT = "wechat"
    ALIPAY = "alipay"
    CARD = "card"
    SANDBOX = "sandbox"


CHANNEL_PROVIDERS: dict[PayChannel, tuple[str, ...]] = {
    PayChannel.WECHAT: (Provider.WECHAT,),
    PayChannel.ALIPAY: (Provider.ALIPAY,),
    PayChannel.CARD: (Provider.STRIPE,),
    PayChannel.SANDBOX: (Provider.SANDBOX,),
}


def online_configs(*, account: Account) -> list[ProviderConfig]:
    """The landlord's enabled online payment providers."""
    return list(
        ProviderConfig.objects.filter(
            organisation_id=account.unit.property.organisation_id, enabled=True
        )
        .exclude(provider=Provider.MANUAL)
        .order_by("provider")
    )


def channels_for(configs: list[ProviderConfig]) -> dict[PayChannel, list[ProviderConfig]]:
    offered: dict[PayChannel, list[ProviderConfig]] = {}
    for channel, providers in CHANNEL_PROVIDERS.items():
        serving = [config for config in configs if config.provider in providers]
        if serving:
            offered[channel] = serving
    return offered


def autotopup_of(*, account: Account) -> AutoTopup | None:
    return AutoTopup.objects.select_related("config").filter(account=account).first()


def autotopup_attempts(*, topup: AutoTopup, limit: int = 10) -> list[AutoTopupAttempt]:
    return list(topup.attempts.order_by("-created_at")[:limit])


def portal_intent(*, user, reference: str) -> PaymentIntent:
    return get_object_or_404(
        PaymentIntent.objects.select_related("account__unit__property", "receipt"),
        reference=reference,
        account__tenant__user=user,
    )


# History -----------------------------------------------------------------------------------------


def receipts_of(*, account: Account) -> QuerySet[Receipt]:
    return (
        Receipt.objects.filter(account=account)
        .select_related("property")
        .order_by("-issued_at", "-number")
    )


def portal_receipt(*, user, receipt_uuid) -> Receipt:
    return get_object_or_404(
        Receipt.objects.select_related("property", "account__unit", "account__tenant"),
        uuid=receipt_uuid,
        account__tenant__user=user,
    )


def open_payments_of(*, account: Account) -> QuerySet[PaymentIntent]:
    """Online payments not (yet) credited: waiting, failed or expired, the last 30 days'."""
    return PaymentIntent.objects.filter(
        account=account,
        receipt__isnull=True,
        created_at__gte=timezone.now() - timedelta(days=30),
    ).order_by("-created_at")[:10]


def days_of(*, account: Account) -> QuerySet[DailyFreeze]:
    """The account's frozen days, newest first, with each day's charges summed."""
    return (
        DailyFreeze.objects.filter(account=account)
        .annotate(charges=F("energy_net") + F("energy_tax") + F("standing_net") + F("standing_tax"))
        .order_by("-day")
    )
