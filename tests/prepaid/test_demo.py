import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command

from accounts.models import Account, Membership, Organisation, Property, Tenant, Unit
from billing.models import Charge, DailyFreeze, LedgerAccount, LedgerTransaction, Receipt
from meters.models import Meter, Reading
from prepaid.audit.models import AuditLog

pytestmark = pytest.mark.django_db

MODELS = [Organisation, Property, Unit, Tenant, Account, Meter, Membership, AuditLog]


def counts():
    return {model.__name__: model.objects.count() for model in MODELS} | {
        "User": get_user_model().objects.count()
    }


def test_seeding_twice_creates_nothing_the_second_time(capsys):
    call_command("seed_demo")
    first = counts()
    call_command("seed_demo")
    assert counts() == first
    assert "owner       prepaid-demo" in capsys.readouterr().out


def test_the_demo_has_two_properties_in_different_zones_and_currencies():
    call_command("seed_demo")
    properties = {(p.time_zone, p.currency) for p in Property.objects.all()}
    assert properties == {("Asia/Shanghai", "CNY"), ("Africa/Nairobi", "KES")}
    assert Unit.objects.count() == 40
    assert Meter.objects.filter(unit__isnull=False).count() == 40
    assert Account.objects.filter(status="open").count() == 36
    assert {m.user.username: m.role for m in Membership.objects.select_related("user")} == {
        "owner": "owner",
        "manager": "manager",
        "accountant": "accountant",
    }
    manager = Membership.objects.get(user__username="manager")
    assert [p.code for p in manager.properties.all()] == ["RSG"]
    assert Tenant.objects.get(user__username="tenant").accounts.count() == 1


def test_if_empty_leaves_a_database_with_other_data_alone(org_a, capsys):
    call_command("seed_demo", "--if-empty")
    assert not Organisation.objects.filter(slug="demo").exists()
    assert "not seeded" in capsys.readouterr().out


@time_machine.travel(datetime(2026, 11, 20, 10, 7, tzinfo=UTC), tick=False)
def test_a_simulated_demo_week_leaves_the_ledger_consistent_and_reruns_change_nothing(
    capsys, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    call_command("seed_demo")
    call_command("simulate_demo", "--days", "7")
    charged = Reading.objects.filter(status="accepted").count()
    assert charged >= 40 * 7 * 96
    # Every day since the tenants moved in, 60 days ago, is frozen with its standing charges.
    assert DailyFreeze.objects.count() >= 36 * 59
    # Only KLC's tariff has a daily fixed charge: one for each of its frozen account-days.
    assert Charge.objects.filter(kind="standing").count() == (
        DailyFreeze.objects.filter(property__code="KLC").count()
    )
    # Only the tenants who forget to top up (every ninth) run out of credit.
    assert LedgerAccount.objects.filter(kind="wallet", balance__lte=0).count() <= 36 // 9
    transactions = LedgerTransaction.objects.count()
    call_command("verify_ledger")
    call_command("simulate_demo", "--days", "7")
    assert LedgerTransaction.objects.count() == transactions
    call_command("verify_ledger")
    assert "The ledger is consistent." in capsys.readouterr().out


def test_the_simulated_meters_carry_on_from_the_demo_history(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("seed_demo")
    call_command("simulate_demo", "--days", "1")
    state = json.loads((tmp_path / "simulator-state.json").read_text())["meters"]
    assert len(state) == 36
    meter = Meter.objects.get(serial="RSG-E-101")
    last = meter.readings.order_by("-taken_at").first()
    assert (meter.gateway.port, meter.modbus_unit) == (15020, 1)
    assert Decimal(state["1:1"]["energy_kwh"]) == last.register
    mqtt_state = json.loads((tmp_path / "mqtt-simulator-state.json").read_text())["meters"]
    plug = Meter.objects.select_related("mqtt_device").get(serial="KLC-E-403")
    assert (plug.gateway, plug.mqtt_device.format) == (None, "shelly")
    assert len(mqtt_state) == 4
    last = plug.readings.order_by("-taken_at").first()
    key = f"mqtt:shelly:{plug.mqtt_device.key}:0"
    assert Decimal(mqtt_state[key]["energy_kwh"]) == last.register


def test_most_demo_tenants_stay_in_credit_and_a_few_forget(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("seed_demo")
    call_command("simulate_demo", "--days", "3")
    accounts = Account.objects.filter(status="open").select_related("wallet")
    in_credit = [account for account in accounts if account.wallet.balance > 0]
    forgetful = {account.pk for account in accounts if account.pk % 9 == 0}
    assert len(in_credit) >= len(accounts) - len(forgetful)
    caught_up = set(
        Receipt.objects.filter(transaction__idempotency_key__endswith=":catch-up").values_list(
            "account_id", flat=True
        )
    )
    assert caught_up
    assert not caught_up & forgetful
