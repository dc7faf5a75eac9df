"""Move-in and move-out in the ledger: deposits held, final consumption and pro-rated standing
charges, then a refund or a debt that leaves the wallet at zero, with the statement tying to the
postings and `verify_ledger` passing."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError

from accounts.lifecycle import (
    meter_swap,
    move_in,
    move_out,
    move_out_preview,
    reading_key,
)
from accounts.models import Account
from billing.freeze import freeze_due
from billing.models import Charge, DailyFreeze, LedgerAccount, LedgerTransaction, Posting
from billing.services import transaction_reverse
from billing.settlement import deposit_of, settlement_split
from billing.verification import ledger_violations
from meters.models import Meter, MeterProfile, Reading, VacantConsumption
from meters.services import gateway_create, meter_connect, readings_ingest
from prepaid.audit.models import AuditLog
from tariffs.services import tariff_create
from tests import factories

pytestmark = pytest.mark.django_db

# Midnight on Monday 5 October 2026 in Shanghai, and 06:00 on the Wednesday after: 2.25 days.
MOVE_IN = datetime(2026, 10, 4, 16, 0, tzinfo=UTC)
MOVE_OUT = datetime(2026, 10, 6, 22, 0, tzinfo=UTC)
TARIFF = {
    "kind": "flat",
    "flat_price": "1.00",
    "tax_rate": "0.13",
    "standing_charge_per_day": "2.40",
}


def with_tariff(prop, **version):
    tariff_create(
        property=prop,
        utility="electricity",
        name="Residential",
        actor=None,
        version={"effective_from": MOVE_IN - timedelta(days=400), **TARIFF, **version},
    )


def read(meter, when, register):
    readings_ingest(
        meters=Meter.objects.filter(pk=meter.pk),
        rows=[{"serial": meter.serial, "taken_at": when, "register": Decimal(register)}],
        source="http",
    )


@pytest.fixture
def meter(property_a1):
    """A meter read at 900 ten days before the move-in, on a flat tariff with a standing charge."""
    with_tariff(property_a1)
    meter = factories.MeterFactory(
        unit__property=property_a1, installed_at=MOVE_IN - timedelta(days=10)
    )
    read(meter, MOVE_IN - timedelta(days=10), "900")
    return meter


def moved_in(meter, *, topup=None, deposit=None, deposit_channel="cash", key="in"):
    with time_machine.travel(MOVE_IN, tick=False):
        return move_in(
            unit=meter.unit,
            actor=None,
            idempotency_key=key,
            new_tenant={"name": "Li Wei", "phone": "", "email": "", "preferred_language": "en"},
            opening_readings={meter.pk: Decimal(1000)},
            topup=topup,
            deposit=deposit,
            deposit_channel=deposit_channel,
        ).account


def moved_out(account, meter, final="1010", *, key="out", channel="cash", at=MOVE_OUT):
    with time_machine.travel(at, tick=False):
        return move_out(
            account=account,
            actor=None,
            idempotency_key=key,
            moved_out_at=at,
            final_readings={meter.pk: Decimal(final)},
            refund_channel=channel,
        )


def book(prop, kind, channel=""):
    return sum(
        Posting.objects.filter(
            ledger_account__property=prop,
            ledger_account__kind=kind,
            ledger_account__channel=channel,
        ).values_list("amount", flat=True),
        Decimal(0),
    )


def wallet(account):
    return LedgerAccount.objects.get(pk=account.wallet_id).balance


def clean_ledger():
    return {name: [] for name in ledger_violations()}


def test_a_tenant_in_credit_is_refunded_the_balance_less_the_final_charges(meter, property_a1):
    account = moved_in(meter, topup=Decimal(100))
    result = moved_out(account, meter)
    # 10 kWh at 1.00 + 13% = 11.30; 2.25 days at 2.40 + 13% = 6.102, posted as 6.10.
    assert result.created
    assert result.statement.refund == Decimal("82.60")
    assert wallet(account) == 0
    assert Account.objects.get(pk=account.pk).status == Account.Status.CLOSED
    assert book(property_a1, "energy_revenue") == Decimal("10.00")
    assert book(property_a1, "standing_revenue") == Decimal("5.40")
    assert book(property_a1, "tax_payable") == Decimal("2.00")
    assert book(property_a1, "refunds_payable") == 0
    # 100 in at the counter, 82.60 paid back out of it.
    assert book(property_a1, "cash") == Decimal("-17.40")
    assert ledger_violations() == clean_ledger()


def test_a_tenant_in_arrears_leaves_a_debt_with_debtors_and_a_zero_wallet(meter, property_a1):
    account = moved_in(meter)
    result = moved_out(account, meter)
    assert (result.statement.refund, result.statement.debt) == (0, Decimal("17.40"))
    assert wallet(account) == 0
    assert book(property_a1, "debtors") == Decimal("-17.40")
    debt = LedgerTransaction.objects.get(kind=LedgerTransaction.Kind.DEBT_TRANSFER)
    assert debt.effective_at == MOVE_OUT
    assert ledger_violations() == clean_ledger()


def test_a_deposit_is_held_apart_from_the_wallet_until_move_out(meter, property_a1):
    account = moved_in(meter, deposit=Decimal(50), deposit_channel="bank")
    assert wallet(account) == 0
    assert book(property_a1, "deposits_held") == Decimal(50)
    assert book(property_a1, "clearing", "bank") == Decimal(-50)
    assert deposit_of(account=account).amount == Decimal(50)
    result = moved_out(account, meter)
    # The deposit comes back into the wallet, pays the 17.40 used, and the rest is refunded.
    assert result.statement.deposit_returned == Decimal(50)
    assert result.statement.refund == Decimal("32.60")
    assert book(property_a1, "deposits_held") == 0
    assert wallet(account) == 0
    assert ledger_violations() == clean_ledger()


def test_a_deposit_smaller_than_the_arrears_leaves_the_rest_as_a_debt(meter, property_a1):
    account = moved_in(meter, deposit=Decimal(10))
    result = moved_out(account, meter)
    assert (result.statement.refund, result.statement.debt) == (0, Decimal("7.40"))
    assert book(property_a1, "debtors") == Decimal("-7.40")
    assert book(property_a1, "deposits_held") == 0


def test_the_standing_charge_is_pro_rated_to_the_move_out_moment(meter):
    account = moved_in(meter, topup=Decimal(100))
    statement = moved_out(account, meter).statement
    standing = Charge.objects.filter(account=account, kind=Charge.Kind.STANDING).order_by(
        "period_start"
    )
    assert [charge.quantity for charge in standing] == [1, 1, Decimal("0.25")]
    assert standing.last().period_end == MOVE_OUT
    assert (statement.standing_net, statement.standing_tax) == (Decimal("5.40"), Decimal("0.70"))
    assert statement.final_day_fraction == Decimal("0.25")
    # A quarter of 2.40 + 13%.
    assert statement.final_day_standing == Decimal("0.68")


def test_the_daily_freeze_after_a_move_out_charges_no_standing_charge_twice(meter):
    account = moved_in(meter, topup=Decimal(100))
    moved_out(account, meter)
    before = Charge.objects.filter(account=account).count()
    freeze_due(now=MOVE_OUT + timedelta(days=2))
    assert Charge.objects.filter(account=account).count() == before
    last_day = DailyFreeze.objects.filter(account=account).order_by("day").last()
    assert last_day.day.isoformat() == "2026-10-07"
    assert last_day.closing_balance == 0
    assert ledger_violations() == clean_ledger()


def test_consumption_before_the_opening_reading_is_vacant_not_the_tenants(meter):
    account = moved_in(meter)
    assert VacantConsumption.objects.get(meter=meter).quantity == 100
    assert not Charge.objects.filter(account=account).exists()
    opening = Reading.objects.get(meter=meter, taken_at=MOVE_IN)
    assert (opening.register, opening.source, opening.status) == (1000, "manual", "accepted")


def test_the_statement_ties_to_the_ledger_to_the_cent(meter):
    account = moved_in(meter, topup=Decimal(100), deposit=Decimal(30))
    statement = moved_out(account, meter).statement
    postings = Posting.objects.filter(ledger_account_id=account.wallet_id)
    assert statement.topups == Decimal(100)
    assert statement.charges == Decimal("17.40")
    assert statement.balance_before_settlement == Decimal("82.60")
    assert statement.due == Decimal("112.60")
    assert statement.closing_balance == sum(p.amount for p in postings) == 0
    assert (
        statement.balance_before_settlement
        + statement.deposit_returned
        - statement.refund
        + statement.debt
        == statement.closing_balance
    )
    (span,) = statement.meters
    assert (span.opening, span.final, span.consumption) == (1000, 1010, 10)
    assert [line.amount for line in statement.topup_lines] == [Decimal(100)]


def test_a_reversed_top_up_shows_as_a_correction(meter):
    account = moved_in(meter, topup=Decimal(100))
    topup = LedgerTransaction.objects.get(kind=LedgerTransaction.Kind.TOPUP)
    with time_machine.travel(MOVE_IN + timedelta(hours=1), tick=False):
        transaction_reverse(original=topup, actor=None, reason="wrong unit", idempotency_key="r")
    statement = moved_out(account, meter).statement
    assert statement.adjustments == Decimal(-100)
    assert statement.debt == Decimal("17.40")


def test_moving_out_twice_with_one_key_settles_once(meter):
    account = moved_in(meter, topup=Decimal(100))
    first = moved_out(account, meter)
    transactions = LedgerTransaction.objects.count()
    again = moved_out(account, meter)
    assert not again.created
    assert again.statement == first.statement
    assert LedgerTransaction.objects.count() == transactions


def test_moving_an_ended_tenancy_out_again_under_another_key_is_refused(meter):
    account = moved_in(meter)
    moved_out(account, meter)
    with pytest.raises(ValidationError, match="already ended"):
        moved_out(account, meter, key="another")


def test_a_move_out_preview_writes_nothing_and_shows_what_the_move_out_writes(meter):
    account = moved_in(meter, topup=Decimal(100))
    counts = [model.objects.count() for model in (LedgerTransaction, Reading, AuditLog, Charge)]
    with time_machine.travel(MOVE_OUT, tick=False):
        preview = move_out_preview(
            account=account,
            actor=None,
            idempotency_key="out",
            moved_out_at=MOVE_OUT,
            final_readings={meter.pk: Decimal(1010)},
        )
    assert [m.objects.count() for m in (LedgerTransaction, Reading, AuditLog, Charge)] == counts
    assert Account.objects.get(pk=account.pk).status == Account.Status.OPEN
    assert wallet(account) == Decimal(100)
    assert moved_out(account, meter).statement == preview


def test_a_final_reading_below_the_opening_one_is_refused_and_writes_nothing(meter):
    account = moved_in(meter, topup=Decimal(100))
    transactions = LedgerTransaction.objects.count()
    with pytest.raises(ValidationError) as refused:
        moved_out(account, meter, final="990")
    assert "register went backwards" in str(refused.value.message_dict[reading_key(meter)])
    assert LedgerTransaction.objects.count() == transactions
    assert not Reading.objects.filter(taken_at=MOVE_OUT).exists()
    assert Account.objects.get(pk=account.pk).status == Account.Status.OPEN


def test_a_meter_that_reported_after_the_moment_is_refused(meter):
    account = moved_in(meter)
    read(meter, MOVE_OUT + timedelta(minutes=5), "1011")
    with (
        pytest.raises(ValidationError) as refused,
        time_machine.travel(MOVE_OUT + timedelta(minutes=10), tick=False),
    ):
        move_out(
            account=account,
            actor=None,
            idempotency_key="out",
            moved_out_at=MOVE_OUT,
            final_readings={meter.pk: Decimal(1010)},
        )
    assert reading_key(meter) in refused.value.message_dict


def test_a_preview_more_than_an_hour_old_must_be_made_again(meter):
    account = moved_in(meter)
    with (
        pytest.raises(ValidationError) as refused,
        time_machine.travel(MOVE_OUT + timedelta(hours=2), tick=False),
    ):
        move_out(
            account=account,
            actor=None,
            idempotency_key="out",
            moved_out_at=MOVE_OUT,
            final_readings={meter.pk: Decimal(1010)},
        )
    assert "moved_out_at" in refused.value.message_dict


def test_a_meter_without_a_tariff_cannot_be_settled(property_a1):
    meter = factories.MeterFactory(unit__property=property_a1, installed_at=MOVE_IN)
    account = moved_in(meter)
    with pytest.raises(ValidationError) as refused:
        moved_out(account, meter)
    assert "No tariff" in str(refused.value.message_dict[reading_key(meter)])


def test_a_move_in_replayed_with_its_key_opens_one_tenancy(meter):
    first = moved_in(meter, topup=Decimal(20), deposit=Decimal(10))
    again = moved_in(meter, topup=Decimal(20), deposit=Decimal(10))
    assert again == first
    assert Account.objects.filter(unit=meter.unit).count() == 1
    assert LedgerTransaction.objects.filter(kind="topup").count() == 1
    assert LedgerTransaction.objects.filter(kind="deposit").count() == 1


def test_a_move_in_whose_top_up_is_refused_writes_nothing(meter):
    with pytest.raises(ValidationError) as refused:
        moved_in(meter, topup=Decimal("0.001"))
    assert "topup_amount" in refused.value.message_dict
    assert not Account.objects.exists()
    assert not Reading.objects.filter(taken_at=MOVE_IN).exists()


def test_a_swapped_meter_is_charged_to_its_final_reading_and_the_new_one_from_its_first(
    meter, property_a1, builtin_profiles
):
    gateway = gateway_create(property=property_a1, actor=None, name="gw", host="127.0.0.1")
    profile = MeterProfile.objects.filter(organisation__isnull=True).first()
    meter_connect(meter=meter, actor=None, gateway=gateway, modbus_unit=7, profile=profile)
    account = moved_in(meter, topup=Decimal(100))
    swap_at = MOVE_IN + timedelta(days=1)
    with time_machine.travel(swap_at, tick=False):
        swap = meter_swap(
            meter=meter,
            actor=None,
            idempotency_key="swap",
            final_register=Decimal(1005),
            new_serial="NEW-1",
            initial_register=Decimal(0),
        )
    read(swap.new, swap_at + timedelta(hours=2), "3")
    new = Meter.objects.get(pk=swap.new.pk)
    assert (new.gateway_id, new.modbus_unit, new.profile_id) == (gateway.pk, 7, profile.pk)
    assert Meter.objects.get(pk=meter.pk).gateway_id is None
    statement = moved_out(account, new, final="4").statement
    assert [(span.serial, span.consumption) for span in statement.meters] == [
        (meter.serial, 5),
        ("NEW-1", 4),
    ]
    assert statement.energy_net == Decimal("9.00")
    assert ledger_violations() == clean_ledger()


def test_a_swap_replayed_with_its_key_replaces_once(meter):
    account = moved_in(meter)
    assert account.status == Account.Status.OPEN
    with time_machine.travel(MOVE_IN + timedelta(hours=1), tick=False):
        first = meter_swap(
            meter=meter,
            actor=None,
            idempotency_key="swap",
            final_register=Decimal(1001),
            new_serial="NEW-2",
            initial_register=Decimal(0),
        )
        again = meter_swap(
            meter=meter,
            actor=None,
            idempotency_key="swap",
            final_register=Decimal(1001),
            new_serial="NEW-2",
            initial_register=Decimal(0),
        )
    assert not again.created
    assert again.new == first.new
    assert Meter.objects.filter(unit=meter.unit).count() == 2


@pytest.mark.parametrize(
    ("balance", "deposit", "refund", "debt"),
    [
        ("12.34", "0", "12.34", "0"),
        ("-5", "0", "0", "5"),
        ("-5", "20", "15", "0"),
        ("0", "0", "0", "0"),
    ],
)
def test_the_split_refunds_what_is_due_or_records_what_is_owed(balance, deposit, refund, debt):
    split = settlement_split(balance=Decimal(balance), deposit=Decimal(deposit))
    assert (split.refund, split.debt) == (Decimal(refund), Decimal(debt))
