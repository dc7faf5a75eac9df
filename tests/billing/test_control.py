"""Cutting supply off when credit runs out, never when protected, and restoring it when credit
is back."""

from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from celery.signals import before_task_publish
from django.utils import timezone

from accounts.models import PropertyHoliday
from billing.control import cutoff_evaluate, restore_evaluate
from billing.models import BalancePolicy, CutoffDecision
from billing.sweeps import cutoff_sweep
from billing.tasks import charge_meters_task
from meters.models import Reading, RelayCommand
from tariffs.services import tariff_create
from tests import factories

pytestmark = pytest.mark.django_db

Outcome = CutoffDecision.Outcome
# Wednesday 18 November 2026 in Shanghai (UTC+8).
NOON = datetime(2026, 11, 18, 4, tzinfo=UTC)
NIGHT = datetime(2026, 11, 18, 15, tzinfo=UTC)  # 23:00 local


@pytest.fixture
def meter(account):
    return factories.MeterFactory(unit=account.unit, has_relay=True)


def _policy(prop, **fields):
    return BalancePolicy.objects.create(property=prop, **fields)


def _command(meter):
    return RelayCommand.objects.filter(meter=meter).order_by("-created_at").first()


def test_an_account_out_of_credit_is_cut_off_by_day(account, meter):
    decision = cutoff_evaluate(account_id=account.pk, now=NOON)
    assert (decision.outcome, decision.balance) == (Outcome.CUT, Decimal(0))
    command = _command(meter)
    assert (command.close, command.state, decision.command) == (False, "queued", command)


def test_at_night_the_cut_off_waits_for_eight_in_the_morning(account, meter):
    decision = cutoff_evaluate(account_id=account.pk, now=NIGHT)
    assert (decision.outcome, decision.until) == (
        Outcome.DEFERRED_PROTECTED,
        datetime(2026, 11, 19, 0, tzinfo=UTC),
    )
    assert _command(meter) is None
    assert cutoff_evaluate(account_id=account.pk, now=NIGHT + timedelta(hours=1)) is None
    later = cutoff_evaluate(account_id=account.pk, now=decision.until)
    assert later.outcome == Outcome.CUT


def test_a_property_holiday_protects_the_whole_day(account, meter, property_a1):
    PropertyHoliday.objects.create(property=property_a1, date=NOON.date(), name="Staff day")
    decision = cutoff_evaluate(account_id=account.pk, now=NOON)
    assert decision.outcome == Outcome.DEFERRED_PROTECTED


def test_a_protected_account_is_never_cut_and_says_so_once(account, meter):
    account.protected = True
    account.save(update_fields=["protected"])
    assert cutoff_evaluate(account_id=account.pk, now=NOON).outcome == (
        Outcome.SKIPPED_PROTECTED_ACCOUNT
    )
    assert cutoff_evaluate(account_id=account.pk, now=NOON) is None
    assert _command(meter) is None


def test_grace_delays_the_cut_off(account, meter, property_a1):
    _policy(property_a1, grace_minutes=30, protected_from=None, protected_to=None)
    first = cutoff_evaluate(account_id=account.pk, now=NOON)
    assert (first.outcome, first.until) == (Outcome.DEFERRED_GRACE, NOON + timedelta(minutes=30))
    assert cutoff_evaluate(account_id=account.pk, now=NOON + timedelta(minutes=29)) is None
    assert cutoff_evaluate(account_id=account.pk, now=first.until).outcome == Outcome.CUT


def test_a_top_up_before_the_decision_wins(account, meter, property_a1):
    _policy(property_a1, grace_minutes=30)
    cutoff_evaluate(account_id=account.pk, now=NOON)
    factories.TopupFactory(account=account, amount=Decimal("20.00"))
    decision = cutoff_evaluate(account_id=account.pk, now=NOON + timedelta(hours=1))
    assert decision.outcome == Outcome.SKIPPED_RECOVERED
    assert _command(meter) is None


def test_emergency_credit_lets_the_balance_go_below_zero_first(account, meter, property_a1):
    _policy(property_a1, cutoff_threshold=Decimal("-20"), restore_threshold=Decimal("0"))
    assert cutoff_evaluate(account_id=account.pk, now=NOON) is None


def test_a_meter_already_being_cut_is_not_cut_again(account, meter):
    cutoff_evaluate(account_id=account.pk, now=NOON)
    assert cutoff_evaluate(account_id=account.pk, now=NOON) is None
    assert RelayCommand.objects.filter(meter=meter).count() == 1


def test_credit_back_above_the_threshold_restores_the_supply(account, meter):
    cutoff_evaluate(account_id=account.pk, now=NOON)
    cut = _command(meter)
    factories.TopupFactory(account=account, amount=Decimal("20.00"))
    decision = restore_evaluate(account_id=account.pk)
    restore = _command(meter)
    assert (decision.outcome, restore.close, decision.command) == (Outcome.RESTORED, True, restore)
    cut.refresh_from_db()
    assert cut.state == "superseded"


def test_nothing_is_restored_for_a_meter_that_was_never_cut(account, meter):
    factories.TopupFactory(account=account, amount=Decimal("20.00"))
    assert restore_evaluate(account_id=account.pk) is None
    assert _command(meter) is None


@contextmanager
def published_tasks():
    """The tasks sent to the real broker meanwhile, as (name, queue, args)."""
    sent = []

    def record(sender=None, headers=None, routing_key=None, **kwargs):
        sent.append((sender, routing_key, headers["argsrepr"]))

    before_task_publish.connect(record, weak=False)
    try:
        yield sent
    finally:
        before_task_publish.disconnect(record)


def test_a_top_up_that_clears_the_restore_threshold_enqueues_the_restore_at_commit(
    account, meter, django_capture_on_commit_callbacks
):
    with published_tasks() as sent, django_capture_on_commit_callbacks(execute=True):
        factories.TopupFactory(account=account, amount=Decimal("20.00"))
    restores = [task for task in sent if task[0] == "billing.tasks.restore_supply"]
    assert restores == [("billing.tasks.restore_supply", "commands", f"({account.pk},)")]
    with published_tasks() as sent, django_capture_on_commit_callbacks(execute=True):
        factories.TopupFactory(account=account, amount=Decimal("5.00"))
    assert [task[0] for task in sent] == ["billing.tasks.notify_topup"]


def test_every_top_up_tells_the_tenant_through_the_notify_queue(
    account, django_capture_on_commit_callbacks
):
    with published_tasks() as sent, django_capture_on_commit_callbacks(execute=True):
        receipt = factories.TopupFactory(account=account, amount=Decimal("20.00"))
    notices = [task for task in sent if task[0] == "billing.tasks.notify_topup"]
    assert notices == [("billing.tasks.notify_topup", "notify", f"({receipt.pk}, '20.0000')")]


def test_a_charge_run_that_exhausts_the_credit_checks_for_a_cut_off_at_once(property_a1):
    account = factories.AccountFactory(
        unit__property=property_a1, opened_at=timezone.now() - timedelta(days=1)
    )
    _policy(property_a1, protected_from=None, protected_to=None, protect_holidays=False)
    tariff_create(
        property=property_a1,
        utility="electricity",
        name="Flat",
        actor=None,
        version={
            "effective_from": account.opened_at,
            "kind": "flat",
            "flat_price": "1",
        },
    )
    meter = factories.MeterFactory(unit=account.unit, installed_at=account.opened_at)
    factories.TopupFactory(account=account, amount=Decimal("1.00"))
    for hours, register in ((3, "10"), (2, "12")):
        Reading.objects.create(
            meter=meter,
            taken_at=timezone.now() - timedelta(hours=hours),
            register=Decimal(register),
            source=Reading.Source.HTTP,
        )
    result = charge_meters_task(meter_ids=[meter.pk])
    assert (result["charges"], result[Outcome.CUT]) == (1, 1)
    assert _command(meter).close is False


def test_the_sweep_decides_only_for_accounts_out_of_credit(property_a1, account, meter):
    funded = factories.AccountFactory(unit__property=property_a1)
    factories.MeterFactory(unit=funded.unit, has_relay=True)
    factories.TopupFactory(account=funded, amount=Decimal("50.00"))
    _policy(property_a1, protected_from=time(0), protected_to=time(0), protect_holidays=False)
    assert cutoff_sweep() == {Outcome.CUT: 1}
    assert not CutoffDecision.objects.filter(account=funded).exists()


def test_the_sweep_leaves_an_account_deferred_until_later_alone(property_a1, account, meter):
    _policy(property_a1, grace_minutes=60, protected_from=None, protected_to=None)
    assert cutoff_sweep() == {Outcome.DEFERRED_GRACE: 1}
    assert cutoff_sweep() == {}
    assert CutoffDecision.objects.filter(account=account).count() == 1
