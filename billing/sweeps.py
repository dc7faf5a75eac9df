"""Finding the accounts the control loop has to decide on."""

from collections import Counter
from collections.abc import Sequence

from django.db.models import DecimalField, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Account
from billing.control import DEFERRALS, cutoff_evaluate
from billing.models import BalancePolicy, CutoffDecision


def cutoff_sweep(*, meter_ids: Sequence[int] | None = None) -> dict[str, int]:
    """Decide on every open account at or below its property's cut-off threshold (only those
    of these meters' units, when given). Returns the count of each outcome."""
    default = BalancePolicy().cutoff_threshold
    candidates = Account.objects.filter(
        status=Account.Status.OPEN, mode=Account.Mode.PREPAID
    ).annotate(
        threshold=Coalesce(
            F("unit__property__balance_policy__cutoff_threshold"),
            Value(default, output_field=DecimalField()),
        )
    )
    if meter_ids is not None:
        candidates = candidates.filter(unit__meters__in=meter_ids)
    # An account deferred until later (a night, a weekend, a grace period) is left alone until
    # then: at scale most accounts out of credit at night are, and re-deciding each of them
    # every minute would be the sweep's whole cost.
    latest = CutoffDecision.objects.filter(account=OuterRef("pk")).order_by("-decided_at", "-id")
    candidates = candidates.annotate(
        last_outcome=Subquery(latest.values("outcome")[:1]),
        last_until=Subquery(latest.values("until")[:1]),
    ).filter(
        Q(last_outcome__isnull=True)
        | ~Q(last_outcome__in=DEFERRALS)
        | Q(last_until__isnull=True)
        | Q(last_until__lte=timezone.now())
    )
    due = candidates.filter(wallet__balance__lte=F("threshold")).values_list("pk", flat=True)
    outcomes: Counter[str] = Counter()
    for account_id in sorted(set(due)):
        decision = cutoff_evaluate(account_id=account_id)
        if decision is not None:
            outcomes[decision.outcome] += 1
    return dict(outcomes)
