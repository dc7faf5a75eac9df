from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from accounts.models import Account
from billing import services
from billing.control import balance_policy_update, cutoff_evaluate
from billing.models import BalanceWarning, CutoffDecision
from billing.warnings import credit_warnings_sweep
from tests import factories

pytestmark = pytest.mark.django_db

# Friday 14:00 in Shanghai.
FRIDAY = datetime(2026, 11, 20, 6, tzinfo=UTC)
MONDAY_MIDNIGHT = datetime(2026, 11, 22, 16, tzinfo=UTC)


def _charge(account, amount: str) -> None:
    services.charges_post(
        charges=[factories.ChargeInputFactory.build(account=account, net=Decimal(amount))]
    )


def _levels(account) -> list[Decimal]:
    return list(
        BalanceWarning.objects.filter(account=account, kind="level")
        .order_by("pk")
        .values_list("level", flat=True)
    )


@pytest.fixture
def account():
    account = factories.AccountFactory()
    balance_policy_update(
        property=account.unit.property, actor=None, warning_levels=["50", "20", "10"]
    )
    factories.TopupFactory(account=account, amount=Decimal("60.00"))
    return account


def test_a_level_fires_once_as_the_balance_falls_through_it(account):
    _charge(account, "15.00")  # 60 → 45
    _charge(account, "1.00")  # 45 → 44
    assert _levels(account) == [Decimal(50)]
    warning = BalanceWarning.objects.get(account=account)
    assert warning.balance == Decimal("45.00")


def test_a_level_re_arms_only_when_the_balance_rises_above_it(account):
    _charge(account, "15.00")  # 60 → 45: warned at 50
    factories.TopupFactory(account=account, amount=Decimal("5.00"))  # 50: not above it
    _charge(account, "2.00")  # 48
    assert _levels(account) == [Decimal(50)]
    factories.TopupFactory(account=account, amount=Decimal("10.00"))  # 58: re-armed
    _charge(account, "9.00")  # 49
    assert _levels(account) == [Decimal(50), Decimal(50)]


def test_landing_exactly_on_a_level_is_falling_through_it(account):
    _charge(account, "10.00")  # 60 → 50
    assert _levels(account) == [Decimal(50)]


def test_falling_through_several_levels_at_once_warns_once_at_the_lowest(account):
    _charge(account, "55.00")  # 60 → 5
    assert _levels(account) == [Decimal(10)]


def test_a_reversed_top_up_can_fall_through_a_level(account):
    receipt = factories.TopupFactory(account=account, amount=Decimal("20.00"))  # 80
    _charge(account, "25.00")  # 55
    services.transaction_reverse(
        original=receipt.transaction, actor=None, reason="Bounced", idempotency_key="bounce"
    )  # 35
    assert _levels(account) == [Decimal(50)]


def test_a_replayed_charge_warns_once(account):
    charge = factories.ChargeInputFactory.build(account=account, net=Decimal("15.00"))
    services.charges_post(charges=[charge])
    services.charges_post(charges=[charge])
    assert _levels(account) == [Decimal(50)]


def test_a_property_without_levels_warns_nobody(account):
    balance_policy_update(property=account.unit.property, actor=None, warning_levels=[])
    _charge(account, "55.00")
    assert _levels(account) == []


def test_postpaid_accounts_get_no_balance_warnings():
    account = factories.AccountFactory(mode=Account.Mode.POSTPAID)
    _charge(account, "100.00")
    assert _levels(account) == []


# Days left and the scheduled cut-off ---------------------------------------------------------


def _spending_account(*, balance: str, warning_days=None, **policy):
    """An account that spent 12.00 a day for the two weeks before FRIDAY, left with `balance`."""
    account = factories.AccountFactory(opened_at=FRIDAY - timedelta(days=15))
    balance_policy_update(
        property=account.unit.property,
        actor=None,
        warning_levels=[],
        warning_days=warning_days,
        **policy,
    )
    factories.TopupFactory(account=account, amount=Decimal("168.00") + Decimal(balance))
    services.charges_post(
        charges=[
            services.ChargeInput(
                account=account,
                kind="energy",
                idempotency_key=f"spent:{account.pk}:{hour}",
                period_start=FRIDAY - timedelta(hours=hour + 1),
                period_end=FRIDAY - timedelta(hours=hour),
                quantity=Decimal(1),
                net=Decimal("0.50"),
                tax=Decimal(0),
            )
            for hour in range(14 * 24)
        ]
    )
    return account


def _warnings(account, kind: str):
    return list(BalanceWarning.objects.filter(account=account, kind=kind).order_by("pk"))


def test_few_days_of_credit_left_warns_once_per_top_up():
    account = _spending_account(balance="30.00", warning_days=3)  # 2.5 days
    credit_warnings_sweep(now=FRIDAY)
    credit_warnings_sweep(now=FRIDAY + timedelta(minutes=15))
    [warning] = _warnings(account, "days")
    assert warning.days_left == Decimal("2.5")
    factories.TopupFactory(account=account, amount=Decimal("1.00"))  # 2.6 days: still few
    credit_warnings_sweep(now=FRIDAY + timedelta(minutes=30))
    assert len(_warnings(account, "days")) == 2


def test_plenty_of_credit_or_no_days_level_sends_no_days_warning():
    plenty = _spending_account(balance="60.00", warning_days=3)  # 5 days
    unset = _spending_account(balance="30.00", warning_days=None)
    credit_warnings_sweep(now=FRIDAY)
    assert _warnings(plenty, "days") == []
    assert _warnings(unset, "days") == []


WEEKENDS_ONLY = {"protected_from": None, "protected_to": None, "protect_weekends": True}


def test_credit_running_out_over_the_weekend_warns_of_the_cut_off_on_monday():
    account = _spending_account(balance="12.00", **WEEKENDS_ONLY)  # out on Saturday 14:00
    credit_warnings_sweep(now=FRIDAY)
    credit_warnings_sweep(now=FRIDAY + timedelta(hours=1))
    [warning] = _warnings(account, "cutoff_scheduled")
    assert warning.cutoff_at == MONDAY_MIDNIGHT
    assert warning.balance == Decimal("12.00")


def test_credit_running_out_before_the_weekend_or_after_it_is_no_weekend_warning():
    before = _spending_account(balance="4.00", **WEEKENDS_ONLY)  # Friday 22:00
    after = _spending_account(balance="60.00", **WEEKENDS_ONLY)  # Wednesday
    credit_warnings_sweep(now=FRIDAY)
    assert _warnings(before, "cutoff_scheduled") == []
    assert _warnings(after, "cutoff_scheduled") == []


def test_a_protected_account_is_never_warned_of_a_cut_off():
    account = _spending_account(balance="12.00", **WEEKENDS_ONLY)
    Account.objects.filter(pk=account.pk).update(protected=True)
    credit_warnings_sweep(now=FRIDAY)
    assert _warnings(account, "cutoff_scheduled") == []


def test_a_cut_off_deferred_by_a_protected_period_warns_once_of_when_it_will_happen():
    account = factories.AccountFactory()
    factories.MeterFactory(unit=account.unit, has_relay=True)
    balance_policy_update(property=account.unit.property, actor=None, **WEEKENDS_ONLY)
    saturday = FRIDAY + timedelta(days=1)
    cutoff_evaluate(account_id=account.pk, now=saturday)
    cutoff_evaluate(account_id=account.pk, now=saturday + timedelta(hours=1))
    assert CutoffDecision.objects.get(account=account).outcome == "deferred_protected"
    [warning] = _warnings(account, "cutoff_scheduled")
    assert warning.cutoff_at == MONDAY_MIDNIGHT
    # The weekend sweep finds the same period: no second warning.
    credit_warnings_sweep(now=saturday)
    assert len(_warnings(account, "cutoff_scheduled")) == 1


def test_a_grace_period_warns_of_the_cut_off_at_its_end():
    account = factories.AccountFactory()
    factories.MeterFactory(unit=account.unit, has_relay=True)
    balance_policy_update(
        property=account.unit.property, actor=None, grace_minutes=120, **WEEKENDS_ONLY
    )
    decision = cutoff_evaluate(account_id=account.pk, now=FRIDAY)
    assert decision.outcome == "deferred_grace"
    [warning] = _warnings(account, "cutoff_scheduled")
    assert warning.cutoff_at == FRIDAY + timedelta(hours=2)


def test_postpaid_accounts_are_never_cut_off():
    account = factories.AccountFactory(mode=Account.Mode.POSTPAID)
    factories.MeterFactory(unit=account.unit, has_relay=True)
    _charge(account, "100.00")
    balance_policy_update(property=account.unit.property, actor=None, **WEEKENDS_ONLY)
    assert cutoff_evaluate(account_id=account.pk, now=FRIDAY) is None
