"""Random interleavings of spending, top-ups, protection changes and sweeps at random moments:
supply is never cut in a protected period or for a protected account, never cut while the
balance is above the threshold, and a top-up that clears the restore threshold restores it."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.selectors import holiday_calendar
from billing import services
from billing.control import cutoff_evaluate, restore_evaluate
from billing.models import BalancePolicy, CutoffDecision, LedgerAccount
from billing.protection import protected_until
from billing.selectors import balance_policy, protected_periods
from meters.models import RelayCommand
from tests import factories

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday, 08:00 in Shanghai

steps = st.lists(
    st.one_of(
        st.tuples(st.just("spend"), st.integers(1, 3000)),
        st.tuples(st.just("top_up"), st.integers(100, 3000)),  # at least the 1.00 minimum
        st.tuples(st.just("protect"), st.booleans()),
        st.tuples(st.just("sweep"), st.integers(0, 7 * 24 * 60)),
    ),
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps, weekends=st.booleans(), grace=st.sampled_from([0, 30]))
def test_no_cut_off_when_protected_and_credit_back_restores(property_a1, steps, weekends, grace):
    BalancePolicy.objects.update_or_create(
        property=property_a1,
        defaults={"protect_weekends": weekends, "grace_minutes": grace},
    )
    account = factories.AccountFactory(unit__property=property_a1)
    meter = factories.MeterFactory(unit=account.unit, has_relay=True)
    policy = balance_policy(property=property_a1)
    book = services.book_account(property=property_a1, kind=LedgerAccount.Kind.CASH)
    zone = ZoneInfo(property_a1.time_zone)
    holidays = holiday_calendar(property=property_a1)
    for number, (action, value) in enumerate(steps):
        if action == "spend":
            wallet = LedgerAccount.objects.get(pk=account.wallet_id)
            services.transaction_post(
                property=property_a1,
                kind="adjustment",
                entries=[
                    services.Entry(wallet, -Decimal(value) / 100),
                    services.Entry(book, Decimal(value) / 100),
                ],
                idempotency_key=f"spend:{account.pk}:{number}",
            )
        elif action == "top_up":
            factories.TopupFactory(account=account, amount=Decimal(value) / 100)
            restore_evaluate(account_id=account.pk)
        elif action == "protect":
            account.protected = value
            account.save(update_fields=["protected"])
        else:
            moment = START + timedelta(minutes=value)
            decision = cutoff_evaluate(account_id=account.pk, now=moment)
            if decision is not None and decision.outcome == CutoffDecision.Outcome.CUT:
                assert not account.protected
                assert decision.balance <= policy.cutoff_threshold
                assert (
                    protected_until(
                        protected_periods(policy), at=moment, zone=zone, is_holiday=holidays
                    )
                    is None
                )
        balance = LedgerAccount.objects.get(pk=account.wallet_id).balance
        wanted = RelayCommand.objects.filter(meter=meter).order_by("-created_at").first()
        if balance > policy.restore_threshold and action == "top_up" and wanted is not None:
            assert wanted.close, "credit is back but the supply stays cut"
