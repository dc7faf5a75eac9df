"""Finding the accounts the control loop has to decide on."""

from collections import Counter
from collections.abc import Sequence

from django.db.models import DecimalField, F, Value
from django.db.models.functions import Coalesce

from accounts.models import Account
from billing.control import cutoff_evaluate
from billing.models import BalancePolicy


def cutoff_sweep(*, meter_ids: Sequence[int] | None = None) -> dict[str, int]:
    """Decide on every open account at or below its property's cut-off threshold (only those
    of these meters' units, when given). Returns the count of each outcome."""
    default = BalancePolicy().cutoff_threshold
    candidates = Account.objects.filter(status=Account.Status.OPEN).annotate(
        threshold=Coalesce(
            F("unit__property__balance_policy__cutoff_threshold"),
            Value(default, output_field=DecimalField()),
        )
    )
    if meter_ids is not None:
        candidates = candidates.filter(unit__meters__in=meter_ids)
    due = candidates.filter(wallet__balance__lte=F("threshold")).values_list("pk", flat=True)
    outcomes: Counter[str] = Counter()
    for account_id in sorted(set(due)):
        decision = cutoff_evaluate(account_id=account_id)
        if decision is not None:
            outcomes[decision.outcome] += 1
    return dict(outcomes)
