"""Issue #8, in a browser: a manager signs in, opens a tenancy, moves the tenant out with a final
reading entered by hand, checks the settlement statement, confirms it, and sees the refund, the
zero closing balance and the account closed.

Nothing is stubbed: the tenancy is opened and topped up through the services, the move-out runs
the real charging path on the live server."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from accounts import services as accounts
from accounts.lifecycle import move_in
from accounts.models import Account
from billing.models import LedgerAccount
from meters.models import Meter
from meters.services import readings_ingest
from prepaid.scoping import Role
from tariffs.services import tariff_create
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


@pytest.fixture
def manager(property_a1):
    """A manager of property A1 who signs in with a password."""
    user = factories.UserFactory(username="manager-e2e", password=PASSWORD)
    accounts.membership_create(
        user=user,
        organisation=property_a1.organisation,
        role=Role.MANAGER,
        actor=None,
        properties=[property_a1],
    )
    return user


@pytest.fixture
def tenancy(property_a1) -> Account:
    """A tenant who moved in an hour ago at a reading of 1000 kWh and topped up 100, on a flat
    tariff of 1.00 per kWh without tax or standing charge."""
    now = timezone.now()
    tariff_create(
        property=property_a1,
        utility="electricity",
        name="Residential",
        actor=None,
        version={"effective_from": now - timedelta(days=30), "kind": "flat", "flat_price": "1.00"},
    )
    meter = factories.MeterFactory(unit__property=property_a1, installed_at=now - timedelta(days=2))
    readings_ingest(
        meters=Meter.objects.filter(pk=meter.pk),
        rows=[
            {"serial": meter.serial, "taken_at": now - timedelta(days=2), "register": Decimal(900)}
        ],
        source="http",
    )
    account = move_in(
        unit=meter.unit,
        actor=None,
        idempotency_key="e2e-move-in",
        new_tenant={"name": "Li Wei", "phone": "", "email": "", "preferred_language": "en"},
        opening_readings={meter.pk: Decimal(1000)},
        now=now - timedelta(hours=1),
    ).account
    factories.TopupFactory(account=account, amount=Decimal(100))
    return account


def test_a_manager_moves_a_tenant_out_and_sees_the_settlement_and_the_account_closed(
    page, manager, tenancy
):
    account_url = reverse("accounts:account", args=[tenancy.uuid])
    page.goto(f"{reverse('login')}?next={account_url}")
    page.fill("input[name=username]", manager.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(account_url) + "$"))
    expect(page.locator("[data-testid=balance]")).to_have_attribute("data-amount", "100.00")

    page.click("[data-testid=move-out]")
    page.wait_for_url(re.compile(re.escape(reverse("accounts:move-out", args=[tenancy.uuid]))))
    meter = Meter.objects.get(unit=tenancy.unit)
    page.get_by_label(re.compile(f"Final reading: .*{meter.serial}")).fill("1012.5")
    page.click("[data-testid=preview-move-out]")

    # The preview: 12.5 kWh at 1.00 out of 100 leaves 87.50 to refund, nothing written yet.
    statement = page.locator("[data-testid=statement]")
    expect(statement).to_be_visible()
    expect(page.locator("[data-testid=row-energy]")).to_have_attribute("data-amount", "-12.50")
    expect(page.locator("[data-testid=row-refund]")).to_have_attribute("data-amount", "-87.50")
    assert Account.objects.get(pk=tenancy.pk).status == Account.Status.OPEN

    page.click("[data-testid=confirm-move-out]")
    page.wait_for_url(re.compile(re.escape(reverse("accounts:settlement", args=[tenancy.uuid]))))
    expect(page.locator("[data-testid=row-refund]")).to_have_attribute("data-amount", "-87.50")
    expect(page.locator("[data-testid=row-closing]")).to_have_attribute("data-amount", "0.00")
    expect(page.locator("[data-testid=consumption]")).to_have_attribute("data-quantity", "12.500")
    expect(page.locator("[data-testid=settlement-pdf]")).to_be_visible()

    page.goto(account_url)
    expect(page.locator("[data-testid=status]")).to_have_attribute("data-status", "closed")
    expect(page.locator("[data-testid=move-out]")).to_have_count(0)

    account = Account.objects.get(pk=tenancy.pk)
    assert account.status == Account.Status.CLOSED
    assert LedgerAccount.objects.get(pk=account.wallet_id).balance == 0
