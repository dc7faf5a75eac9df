"""Period close: months close in order, once, audited; nothing is posted dated in a closed month,
and what belongs to one posts in the open period with a reference to it, so the daily freeze
still ties."""

import threading
from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from billing.charging import charge_new_readings
from billing.freeze import freeze_due
from billing.models import (
    Charge,
    ClosedPeriod,
    DailyFreeze,
    LedgerAccount,
    LedgerTransaction,
    PeriodCursor,
)
from billing.periods import PeriodError, closed_until, period_close
from billing.services import (
    Entry,
    LedgerError,
    book_account,
    charges_post,
    transaction_post,
    transaction_reverse,
)
from billing.settlement import wallet_settle
from meters.models import Meter, Reading
from meters.services import readings_ingest
from prepaid.audit.models import AuditLog
from tariffs.services import tariff_create
from tests import factories
from tests.threads import run_together

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Tuesday 3 November 2026, noon in Shanghai: October is over and frozen by the time tests close it.
NOW = datetime(2026, 11, 3, 4, tzinfo=UTC)
SEP, OCT, NOV = date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)
TxnKind = LedgerTransaction.Kind
Kind = LedgerAccount.Kind


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


def local(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI).astimezone(UTC)


def occupied(prop, since: date = date(2026, 10, 28)):
    """A unit with an electricity meter and a tenancy since `since`, priced 1.00 + 13% a kWh."""
    meter = factories.MeterFactory(unit__property=prop, installed_at=local(since))
    account = factories.AccountFactory(unit=meter.unit, opened_at=local(since))
    tariff_create(
        property=prop,
        utility="electricity",
        name="Residential",
        actor=None,
        version={
            "effective_from": datetime(2025, 1, 1, tzinfo=UTC),
            "kind": "flat",
            "flat_price": "1.00",
            "tax_rate": "0.13",
        },
    )
    return meter, account


def read(meter, moment: datetime, register: str):
    readings_ingest(
        meters=Meter.objects.filter(pk=meter.pk),
        rows=[{"serial": meter.serial, "taken_at": moment, "register": Decimal(register)}],
        source=Reading.Source.HTTP,
    )


def topup(account, amount: str, moment: datetime = NOW, key: str | None = None):
    with time_machine.travel(moment, tick=False):
        extra = {"idempotency_key": key} if key else {}
        return factories.TopupFactory(account=account, amount=Decimal(amount), **extra)


def close_october(prop, actor=None):
    freeze_due(now=NOW)
    return period_close(property=prop, month=OCT, actor=actor)


def adjustment(prop, account, *, key: str, effective_at: datetime, kind: str = TxnKind.ADJUSTMENT):
    book = book_account(
        property=prop,
        kind=Kind.STANDING_REVENUE if kind == TxnKind.STANDING_CHARGE else Kind.CASH,
    )
    amount = Decimal("-5.00") if kind == TxnKind.STANDING_CHARGE else Decimal("5.00")
    return transaction_post(
        property=prop,
        kind=kind,
        entries=[Entry(account.wallet, amount), Entry(book, -amount)],
        idempotency_key=key,
        effective_at=effective_at,
    )


def wallet_balance(account) -> Decimal:
    return LedgerAccount.objects.get(pk=account.wallet_id).balance


# Postings in a closed month ----------------------------------------------------------------------


def test_a_posting_dated_in_a_closed_month_is_refused_after_the_close(property_a1):
    _, account = occupied(property_a1)
    late = local(date(2026, 10, 31), 23, 59)
    before = adjustment(property_a1, account, key="before-close", effective_at=late)
    close_october(property_a1)

    with pytest.raises(LedgerError, match="2026-10 is closed"):
        adjustment(property_a1, account, key="after-close", effective_at=late)

    assert not LedgerTransaction.objects.filter(idempotency_key="after-close").exists()
    # A retry of what was posted before the close finds it, as any replay does.
    replayed = adjustment(property_a1, account, key="before-close", effective_at=late)
    assert (replayed.transaction, replayed.created) == (before.transaction, False)
    assert wallet_balance(account) == Decimal("5.00")


def test_a_posting_at_the_open_periods_first_instant_is_accepted(property_a1):
    _, account = occupied(property_a1)
    close_october(property_a1)
    posted = adjustment(property_a1, account, key="first-instant", effective_at=local(NOV))
    assert posted.created
    assert posted.transaction.effective_at == local(NOV)
    assert closed_until(property=property_a1) == local(NOV)


def test_a_standing_charge_ending_at_the_closing_midnight_belongs_to_the_closed_month(
    property_a1,
):
    _, account = occupied(property_a1)
    close_october(property_a1)
    # Its span ends at midnight: it charges 31 October.
    with pytest.raises(LedgerError, match="2026-10 is closed"):
        adjustment(
            property_a1,
            account,
            key="standing-31-oct",
            effective_at=local(NOV),
            kind=TxnKind.STANDING_CHARGE,
        )


def test_another_propertys_close_refuses_nothing_here(property_a1, property_a2):
    occupied(property_a1)
    _, account = occupied(property_a2)
    close_october(property_a1)
    posted = adjustment(
        property_a2, account, key="a2-october", effective_at=local(date(2026, 10, 30))
    )
    assert posted.created


# What belongs to a closed month posts in the open period --------------------------------------


def test_a_late_readings_charge_lands_in_the_open_period_with_a_reference(property_a1):
    meter, account = occupied(property_a1)
    read(meter, local(date(2026, 10, 28)), "100")
    charge_new_readings()
    topup(account, "100.00")
    close_october(property_a1)
    october = {row.day: row.closing_balance for row in DailyFreeze.objects.filter(account=account)}

    # The meter was offline: its 30 October reading arrives after the close.
    read(meter, local(date(2026, 10, 30), 12), "110")
    charge_new_readings()

    charge = Charge.objects.get(account=account, kind=Charge.Kind.ENERGY)
    assert (charge.period_start, charge.period_end) == (
        local(date(2026, 10, 28)),
        local(date(2026, 10, 30), 12),
    )
    txn = charge.transaction
    assert txn.effective_at == NOW
    assert txn.memo == "[closed period 2026-10; dated 2026-10-30T12:00:00+08:00]"
    assert wallet_balance(account) == Decimal("88.70")

    # The freeze of the day it was posted holds it, and ties; the closed days did not move.
    with time_machine.travel(local(date(2026, 11, 4), 0, 20), tick=False):
        freeze_due()
    row = DailyFreeze.objects.get(account=account, day=date(2026, 11, 3))
    assert (row.energy_net, row.energy_tax) == (Decimal("10.00"), Decimal("1.30"))
    assert row.topups == Decimal("100.00")
    assert row.closing_balance == wallet_balance(account)
    assert {
        row.day: row.closing_balance
        for row in DailyFreeze.objects.filter(account=account, day__lt=date(2026, 11, 3))
    } == october


def test_a_charge_dated_in_an_open_month_keeps_its_date(property_a1):
    _, account = occupied(property_a1)
    close_october(property_a1)
    end = local(date(2026, 11, 2), 9)
    [charge] = charges_post(
        charges=[
            factories.ChargeInputFactory(
                account=account, period_start=local(date(2026, 11, 2), 8), period_end=end
            )
        ]
    )
    assert (charge.transaction.effective_at, charge.transaction.memo) == (end, "")


def test_a_standing_charge_for_a_closed_day_is_dated_at_the_open_period(property_a1):
    _, account = occupied(property_a1)
    close_october(property_a1)
    [charge] = charges_post(
        charges=[
            factories.ChargeInputFactory(
                account=account,
                kind=Charge.Kind.STANDING,
                idempotency_key="standing:late:2026-10-31",
                period_start=local(date(2026, 10, 31)),
                period_end=local(NOV),
                net=Decimal("2.40"),
            )
        ]
    )
    assert (charge.period_start, charge.period_end) == (local(date(2026, 10, 31)), local(NOV))
    assert charge.transaction.effective_at == NOW
    assert "[closed period 2026-10; dated 2026-11-01T00:00:00+08:00]" in charge.transaction.memo


def test_a_reversal_of_a_closed_month_top_up_posts_now(property_a1):
    _, account = occupied(property_a1)
    receipt = topup(account, "50.00", local(date(2026, 10, 30), 10))
    close_october(property_a1)

    posted = transaction_reverse(
        original=receipt.transaction,
        actor=None,
        reason="Entered twice",
        idempotency_key="reverse-october-topup",
    )

    reversal = posted.transaction
    assert reversal.effective_at == NOW
    assert reversal.reverses == receipt.transaction
    assert reversal.memo == "Entered twice"
    assert wallet_balance(account) == 0
    with time_machine.travel(local(date(2026, 11, 4), 0, 20), tick=False):
        freeze_due()
    row = DailyFreeze.objects.get(account=account, day=date(2026, 11, 3))
    assert (row.adjustments, row.closing_balance) == (Decimal("-50.00"), Decimal(0))
    assert DailyFreeze.objects.get(account=account, day=date(2026, 10, 31)).closing_balance == 50


def test_a_move_out_settled_at_a_closed_moment_posts_in_the_open_period(property_a1):
    _, account = occupied(property_a1)
    topup(account, "30.00")
    close_october(property_a1)

    settled = wallet_settle(
        account=account, channel="cash", actor=None, moment=local(date(2026, 10, 31), 23, 50)
    )

    assert settled.refund == Decimal("30.00")
    posted = LedgerTransaction.objects.filter(
        kind__in=[TxnKind.REFUND, TxnKind.REFUND_PAYOUT]
    ).values_list("effective_at", "memo")
    assert len(posted) == 2
    for effective_at, memo in posted:
        assert effective_at == NOW
        assert memo == (
            f"Move-out of {account.unit} [closed period 2026-10; dated 2026-10-31T23:50:00+08:00]"
        )


# Closing -----------------------------------------------------------------------------------------


def test_closing_a_month_records_who_closed_it_and_is_audited(property_a1, owner_a):
    occupied(property_a1)
    freeze_due(now=NOW)
    result = period_close(property=property_a1, month=OCT, actor=owner_a, note="Books agreed")

    assert result.created
    closed = ClosedPeriod.objects.get(property=property_a1)
    assert (closed.month, closed.closed_by, closed.closed_at, closed.note) == (
        OCT,
        owner_a,
        NOW,
        "Books agreed",
    )
    assert PeriodCursor.objects.get(property=property_a1).closed_through == date(2026, 10, 31)
    audit = AuditLog.objects.get(action="period.close")
    assert (audit.actor, audit.property_id, audit.object_id) == (
        owner_a,
        property_a1.pk,
        str(closed.uuid),
    )
    assert audit.after == {
        "month": "2026-10",
        "closed_through": "2026-10-31",
        "note": "Books agreed",
    }


def test_closing_a_month_twice_is_a_no_op(property_a1, owner_a, accountant_a):
    occupied(property_a1)
    first = close_october(property_a1, actor=owner_a)
    second = period_close(property=property_a1, month=date(2026, 10, 15), actor=accountant_a)

    assert (second.closed, second.created) == (first.closed, False)
    assert ClosedPeriod.objects.filter(property=property_a1).count() == 1
    assert AuditLog.objects.filter(action="period.close").count() == 1


def test_months_close_in_order(property_a1):
    occupied(property_a1, since=date(2026, 9, 28))
    freeze_due(now=NOW)

    with pytest.raises(PeriodError, match="Close 2026-09 first"):
        period_close(property=property_a1, month=OCT, actor=None)
    assert not ClosedPeriod.objects.exists()

    period_close(property=property_a1, month=SEP, actor=None)
    assert period_close(property=property_a1, month=OCT, actor=None).created
    assert PeriodCursor.objects.get(property=property_a1).closed_through == date(2026, 10, 31)


def test_a_month_before_the_propertys_first_cannot_be_closed(property_a1):
    occupied(property_a1)
    freeze_due(now=NOW)
    with pytest.raises(PeriodError, match="before this property's first month, 2026-10"):
        period_close(property=property_a1, month=SEP, actor=None)


def test_a_month_not_over_yet_cannot_be_closed(property_a1):
    occupied(property_a1)
    close_october(property_a1)
    with pytest.raises(PeriodError, match="2026-11 is not over yet in Asia/Shanghai"):
        period_close(property=property_a1, month=NOV, actor=None)
    assert ClosedPeriod.objects.count() == 1


def test_a_month_not_frozen_to_its_last_day_cannot_be_closed(property_a1):
    occupied(property_a1)
    # Frozen up to 30 October only.
    freeze_due(now=local(date(2026, 10, 31), 0, 20))

    with pytest.raises(PeriodError, match="2026-10 is not frozen to its last day yet"):
        period_close(property=property_a1, month=OCT, actor=None)

    freeze_due(now=NOW)
    assert period_close(property=property_a1, month=OCT, actor=None).created


def test_a_closed_month_cannot_be_edited_in_the_database(property_a1):
    occupied(property_a1)
    close_october(property_a1)
    with pytest.raises(Exception, match="append-only"):
        ClosedPeriod.objects.update(note="reopened")


@pytest.mark.django_db(transaction=True)
def test_a_posting_waiting_on_a_close_in_progress_is_refused_once_it_commits(property_a1):
    _, account = occupied(property_a1)
    freeze_due(now=NOW)
    # A posting into October before the close: the property's period cursor exists already.
    adjustment(property_a1, account, key="earlier", effective_at=local(date(2026, 10, 29)))
    closing = threading.Event()

    def work(n: int):
        if n == 0:
            with transaction.atomic():
                period_close(property=property_a1, month=OCT, actor=None)
                closing.set()
                # Still uncommitted: the posting below has to wait for this to end.
                threading.Event().wait(0.5)
            return "closed"
        closing.wait(10)
        return adjustment(
            property_a1, account, key="racing", effective_at=local(date(2026, 10, 30))
        )

    closed, posted = run_together(work, 2)
    assert closed == "closed"
    assert isinstance(posted, LedgerError)
    assert not LedgerTransaction.objects.filter(idempotency_key="racing").exists()


# Cost on the hot paths ---------------------------------------------------------------------------


def test_a_top_up_after_a_close_costs_no_extra_query(property_a1):
    _, account = occupied(property_a1)
    topup(account, "10.00", key="warm-up")
    with CaptureQueriesContext(connection) as before:
        topup(account, "10.00", key="before-close")
    close_october(property_a1)
    with CaptureQueriesContext(connection) as after:
        topup(account, "10.00", key="after-close")
    assert len(after) == len(before)
    assert not any("billing_periodcursor" in query["sql"] for query in after.captured_queries)


def test_a_charge_dated_in_the_current_month_reads_no_period(property_a1):
    _, account = occupied(property_a1)
    close_october(property_a1)
    with CaptureQueriesContext(connection) as queries:
        charges_post(charges=[factories.ChargeInputFactory(account=account)])
    assert not any("billing_periodcursor" in query["sql"] for query in queries.captured_queries)
