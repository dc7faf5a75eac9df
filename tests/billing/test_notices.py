from decimal import Decimal

import pytest

from accounts.services import account_close
from billing import services
from billing.models import BalanceWarning
from billing.notices import relay_switch_notify, topup_notify, warning_notify
from meters.relay import Outcome, relay_command_claim, relay_command_issue, relay_command_record
from notifications.models import Notification
from tests import factories

pytestmark = pytest.mark.django_db


def _told(account, event: str) -> list[Notification]:
    return list(Notification.objects.filter(account=account, event=event).order_by("channel"))


def test_a_top_up_tells_the_tenant_its_receipt_number_and_new_balance():
    account = factories.AccountFactory()
    receipt = factories.TopupFactory(account=account, amount=Decimal("30.00"))
    topup_notify(receipt_id=receipt.pk, balance="30.00")
    told = _told(account, "topup_received")
    assert [n.channel for n in told] == ["email", "portal", "sms"]
    for notification in told:
        assert receipt.display_number() in notification.body
        assert "30.00" in notification.body


def test_a_warning_told_twice_is_told_once():
    account = factories.AccountFactory()
    factories.TopupFactory(account=account, amount=Decimal("60.00"))
    services.charges_post(
        charges=[factories.ChargeInputFactory.build(account=account, net=Decimal("15.00"))]
    )
    warning = BalanceWarning.objects.get(account=account)
    first = warning_notify(warning_id=warning.pk)
    again = warning_notify(warning_id=warning.pk)
    assert {n.pk for n in first} == {n.pk for n in again}
    assert len(_told(account, "balance_low")) == 3


def test_a_confirmed_cut_off_tells_the_tenant_of_the_unit():
    account = factories.AccountFactory()
    meter = factories.MeterFactory(unit=account.unit, has_relay=True)
    command = relay_command_issue(meter=meter, close=False, actor=None, reason="No credit")
    relay_command_claim(command_id=command.pk)
    relay_command_record(command_id=command.pk, outcome=Outcome(observed_closed=False))
    relay_switch_notify(command_id=command.pk)
    [portal] = [n for n in _told(account, "cutoff_done") if n.channel == "portal"]
    assert meter.serial in portal.body


def test_a_switch_in_a_vacant_unit_or_after_a_move_out_tells_nobody():
    account = factories.AccountFactory()
    meter = factories.MeterFactory(unit=account.unit, has_relay=True)
    receipt = factories.TopupFactory(account=account, amount=Decimal("5.00"))
    services.transaction_reverse(
        original=receipt.transaction, actor=None, reason="Refunded", idempotency_key="refund"
    )
    account_close(account=account, actor=None)
    command = relay_command_issue(meter=meter, close=False, actor=None, reason="Vacant")
    assert relay_switch_notify(command_id=command.pk) == []
    assert topup_notify(receipt_id=receipt.pk, balance="5.00") == []
