"""Switching a tenancy between prepaid and postpaid, settled at the switch."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from accounts.models import Account
from billing.models import Debt, Invoice, LedgerAccount
from billing.modes import account_mode_switch
from billing.services import topup_record
from billing.verification import ledger_violations
from meters.relay import relay_command_issue
from prepaid.audit.models import AuditLog
from tests import factories
from tests.billing.bills import charge, issued_bill, postpaid_account

pytestmark = pytest.mark.django_db


def balance(account):
    return LedgerAccount.objects.get(pk=account.wallet_id).balance


def test_postpaid_to_prepaid_bills_up_to_now_and_moves_the_arrears_to_a_debt(property_a1):
    bill = issued_bill(property=property_a1, amount="80.00")
    account = bill.account
    charge(account, "20.00")
    switch = account_mode_switch(account=account, mode=Account.Mode.PREPAID, actor=None)
    account.refresh_from_db()
    bill.refresh_from_db()
    assert account.mode == Account.Mode.PREPAID
    assert switch.final_bill.kind == Invoice.Kind.FINAL
    assert switch.final_bill.amount == Decimal("20.00")
    assert switch.debt.source == Debt.Source.SWITCH_ARREARS
    assert switch.debt.amount == Decimal("100.00")
    assert balance(account) == Decimal(0)
    assert set(Invoice.objects.filter(account=account).values_list("status", flat=True)) == {
        Invoice.Status.TRANSFERRED
    }
    assert not any(ledger_violations().values())
    entry = AuditLog.objects.get(action="account.mode_switch", object_id=str(account.uuid))
    assert (entry.before["mode"], entry.after["mode"]) == ("postpaid", "prepaid")


def test_postpaid_to_prepaid_in_credit_raises_no_debt(property_a1):
    account = postpaid_account(property=property_a1)
    topup_record(
        account=account, amount=Decimal("50.00"), channel="cash", actor=None, idempotency_key="k"
    )
    switch = account_mode_switch(account=account, mode=Account.Mode.PREPAID, actor=None)
    assert switch.debt is None
    assert balance(account) == Decimal("50.00")


def test_prepaid_to_postpaid_carries_the_credit_over_and_posts_nothing(property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    topup_record(
        account=account, amount=Decimal("50.00"), channel="cash", actor=None, idempotency_key="k"
    )
    switch = account_mode_switch(account=account, mode=Account.Mode.POSTPAID, actor=None)
    assert (switch.final_bill, switch.debt) == (None, None)
    assert balance(account) == Decimal("50.00")
    assert account.wallet.postings.count() == 1


def test_a_switch_with_a_relay_command_in_flight_is_refused(property_a1):
    meter = factories.MeterFactory(unit__property=property_a1)
    account = postpaid_account(property=property_a1, unit=meter.unit)
    relay_command_issue(meter=meter, close=False, actor=None, reason="test")
    with pytest.raises(ValidationError, match="relay command"):
        account_mode_switch(account=account, mode=Account.Mode.PREPAID, actor=None)
    account.refresh_from_db()
    assert account.mode == Account.Mode.POSTPAID


def test_a_closed_tenancy_cannot_switch(property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    Account.objects.filter(pk=account.pk).update(status="closed", closed_at=account.opened_at)
    with pytest.raises(ValidationError, match="ended"):
        account_mode_switch(account=account, mode=Account.Mode.POSTPAID, actor=None)


def test_switching_to_the_mode_it_has_is_refused(property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    with pytest.raises(ValidationError):
        account_mode_switch(account=account, mode=Account.Mode.PREPAID, actor=None)
