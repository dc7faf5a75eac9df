import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from accounts import services
from accounts.models import Account
from billing.models import LedgerAccount
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db


def test_move_in_opens_an_account_with_an_empty_wallet_in_the_propertys_currency(property_a1):
    unit = factories.UnitFactory(property=property_a1)
    tenant = factories.TenantFactory(organisation=property_a1.organisation)
    account = services.account_open(tenant=tenant, unit=unit, actor=None)
    assert account.status == Account.Status.OPEN
    assert account.wallet.kind == LedgerAccount.Kind.WALLET
    assert (account.wallet.currency, account.wallet.balance) == ("CNY", Decimal(0))
    row = AuditLog.objects.get(action="account.open", object_id=str(account.uuid))
    assert row.property == property_a1
    assert row.after["unit"] == str(unit.uuid)


def test_move_in_refuses_an_occupied_unit(property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    newcomer = factories.TenantFactory(organisation=property_a1.organisation)
    with pytest.raises(ValidationError, match="already has an open account"):
        services.account_open(tenant=newcomer, unit=account.unit, actor=None)


def test_move_in_refuses_a_tenant_of_another_organisation(property_a1, org_b):
    unit = factories.UnitFactory(property=property_a1)
    foreigner = factories.TenantFactory(organisation=org_b)
    with pytest.raises(ValidationError, match="another organisation"):
        services.account_open(tenant=foreigner, unit=unit, actor=None)


def test_move_out_closes_the_account_and_frees_the_unit(property_a1, owner_a):
    account = factories.AccountFactory(unit__property=property_a1)
    services.account_close(account=account, actor=owner_a, reason="lease ended")
    account.refresh_from_db()
    assert account.status == Account.Status.CLOSED
    assert account.closed_at is not None
    row = AuditLog.objects.get(action="account.close")
    assert (row.actor, row.reason, row.after["status"]) == (owner_a, "lease ended", "closed")
    successor = factories.TenantFactory(organisation=property_a1.organisation)
    assert services.account_open(tenant=successor, unit=account.unit, actor=None)


def test_move_out_refuses_an_unsettled_wallet(property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    LedgerAccount.objects.filter(pk=account.wallet_id).update(balance=Decimal("12.50"))
    with pytest.raises(ValidationError, match="Settle the wallet"):
        services.account_close(account=account, actor=None)


def test_move_out_cannot_predate_move_in(property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    with pytest.raises(ValidationError):
        services.account_close(
            account=account, actor=None, closed_at=account.opened_at - timedelta(days=1)
        )


def test_protecting_an_account_needs_a_reason_and_is_audited(property_a1, owner_a):
    account = factories.AccountFactory(unit__property=property_a1)
    with pytest.raises(ValidationError):
        services.account_set_protected(account=account, protected=True, actor=owner_a, reason=" ")
    services.account_set_protected(
        account=account, protected=True, actor=owner_a, reason="home dialysis"
    )
    row = AuditLog.objects.get(action="account.set_protected")
    assert (row.before, row.after, row.reason) == (
        {"protected": False},
        {"protected": True},
        "home dialysis",
    )


def test_property_validation_names_the_bad_fields(org_a):
    with pytest.raises(ValidationError) as error:
        services.property_create(
            organisation=org_a,
            actor=None,
            name="Bad",
            code="BAD",
            time_zone="Mars/Olympus",
            currency="XYZ",
            country="china",
        )
    assert set(error.value.message_dict) == {"time_zone", "currency", "country"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_move_ins_to_one_unit_let_exactly_one_win(property_a1):
    unit = factories.UnitFactory(property=property_a1)
    tenants = [factories.TenantFactory(organisation=property_a1.organisation) for _ in range(8)]
    barrier = threading.Barrier(len(tenants))
    outcomes = []

    def move_in(tenant):
        barrier.wait()
        try:
            services.account_open(tenant=tenant, unit=unit, actor=None, opened_at=timezone.now())
            outcomes.append("opened")
        except ValidationError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=move_in, args=(tenant,)) for tenant in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["opened"] + ["refused"] * 7
    assert Account.objects.filter(unit=unit, status="open").count() == 1
    assert LedgerAccount.objects.filter(kind="wallet", property=property_a1).count() == 1
