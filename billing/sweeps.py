"""Finding the accounts the control loop has to decide on."""

from collections import Counter
from collections.abc import Sequence

from django.db.models import DecimalField, Exists, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Account
from billing.control import DEFERRALS, cutoff_evaluate
from billing.models import BalancePolicy, CutoffDecision, Invoice


def cutoff_sweep(*, meter_ids: Sequence[int] | None = None) -> dict[str, int]:
    """Decide on every open prepaid account at or below its property's cut-off threshold, and
    every postpaid one with a bill past due (only those of these meters' units, when given).
    Returns the count of each outcome."""
    default = BalancePolicy().cutoff_threshold
    # Postpaid accounts with a bill past its due date: `cutoff_evaluate` checks the credit
    # policy's cut-off days in the property's zone, which a query across properties cannot.
    overdue = Invoice.objects.filter(
        account=OuterRef("pk"), status=Invoice.Status.OPEN, due_on__lt=timezone.now().date()
    )
    candidates = Account.objects.filter(status=Account.Status.OPEN).annotate(
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
    due = candidates.filter(
        Q(mode=Account.Mode.PREPAID, wallet__balance__lte=F("threshold"))
        | Q(Exists(overdue), mode=Account.Mode.POSTPAID)
    ).values_list("pk", flat=True)
    outcomes: Counter[str] = Counter()
    for account_id in sorted(set(due)):
        decision = cutoff_evaluate(account_id=account_id)
        if decision is not None:
            outcomes[decision.outcome] += 1
    return dict(outcomes)
