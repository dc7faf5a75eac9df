"""Reads about money that several screens and endpoints show."""

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import F
from django.utils import timezone

from accounts.models import Account, Property
from billing.forecast import days_of_credit
from billing.models import BalancePolicy, Charge
from billing.protection import ProtectedPeriods

HISTORY = timedelta(days=14)


def balance_policy(*, property: Property) -> BalancePolicy:
    """The property's policy; the defaults when it has set none."""
    try:
        return property.balance_policy
    except BalancePolicy.DoesNotExist:
        return BalancePolicy(property=property)


def protected_periods(policy: BalancePolicy) -> ProtectedPeriods:
    return ProtectedPeriods(
        daily_start=policy.protected_from,
        daily_end=policy.protected_to,
        weekends=policy.protect_weekends,
        holidays=policy.protect_holidays,
    )


def days_of_credit_left(
    *, accounts: Sequence[Account], now: datetime | None = None
) -> dict[int, Decimal | None]:
    """Each account's estimated days of credit left (None when there is too little history),
    from the last two weeks of its charges, in one query for all of them. The accounts must
    come with `wallet` and `unit__property` loaded."""
    now = now or timezone.now()
    since = now - HISTORY
    spending: dict[int, list[tuple[datetime, Decimal]]] = defaultdict(list)
    rows = (
        Charge.objects.filter(account__in=accounts, period_end__gt=since)
        .annotate(amount=F("net") + F("tax"))
        .values_list("account_id", "period_end", "amount")
    )
    for account_id, moment, amount in rows:
        spending[account_id].append((moment, amount))
    property_ids = {account.unit.property_id for account in accounts}
    policies = {
        policy.property_id: policy
        for policy in BalancePolicy.objects.filter(property_id__in=property_ids)
    }
    estimates = {}
    for account in accounts:
        prop = account.unit.property
        policy = policies.get(prop.pk) or BalancePolicy(property=prop)
        estimates[account.pk] = days_of_credit(
            balance=account.wallet.balance,
            threshold=policy.cutoff_threshold,
            spending=spending[account.pk],
            history_start=max(since, account.opened_at),
            now=now,
            zone=ZoneInfo(prop.time_zone),
        )
    return estimates
