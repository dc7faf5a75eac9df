"""Constraints hold in the database itself, even for writes that skip validation."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account, Property, Tenant, Unit
from billing.models import LedgerAccount
from billing.services import wallet_create
from meters.models import Meter
from tests import factories

pytestmark = pytest.mark.django_db


def refused(create):
    with pytest.raises(IntegrityError), transaction.atomic():
        create()


def test_property_codes_are_unique_within_an_organisation_only(property_a1, org_b):
    def same_code(organisation):
        return Property.objects.create(
            organisation=organisation,
            name="Other",
            code="A1",
            time_zone="UTC",
            currency="CNY",
            country="CN",
        )

    refused(lambda: same_code(property_a1.organisation))
    assert same_code(org_b).code == "A1"


def test_unit_names_are_unique_within_a_property(property_a1, property_a2):
    Unit.objects.create(property=property_a1, name="101")
    refused(lambda: Unit.objects.create(property=property_a1, name="101"))
    assert Unit.objects.create(property=property_a2, name="101")


def _raw_account(unit, tenant, **fields):
    return Account.objects.create(
        unit=unit,
        tenant=tenant,
        opened_at=fields.pop("opened_at", timezone.now()),
        wallet=wallet_create(property=unit.property),
        **fields,
    )


def test_a_unit_has_at_most_one_open_account(property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    other = factories.TenantFactory(organisation=property_a1.organisation)
    refused(lambda: _raw_account(account.unit, other))
    Account.objects.filter(pk=account.pk).update(status="closed", closed_at=timezone.now())
    assert _raw_account(account.unit, other).status == "open"


def test_a_closed_account_needs_a_closing_date_after_opening(property_a1):
    unit = factories.UnitFactory(property=property_a1)
    tenant = factories.TenantFactory(organisation=property_a1.organisation)
    now = timezone.now()
    refused(lambda: _raw_account(unit, tenant, status="closed"))
    refused(
        lambda: _raw_account(
            unit, tenant, opened_at=now, status="closed", closed_at=now - timedelta(seconds=1)
        )
    )
    refused(lambda: _raw_account(unit, tenant, status="open", closed_at=now))


def test_one_wallet_belongs_to_one_account(property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    unit = factories.UnitFactory(property=property_a1)
    refused(
        lambda: Account.objects.create(
            unit=unit, tenant=account.tenant, opened_at=timezone.now(), wallet=account.wallet
        )
    )


def test_meter_serials_are_unique_within_an_organisation_only(property_a1, property_b1):
    factories.MeterFactory(unit__property=property_a1, serial="X1")
    refused(
        lambda: Meter.objects.create(
            organisation=property_a1.organisation, serial="X1", utility="water"
        )
    )
    assert factories.MeterFactory(unit__property=property_b1, serial="X1")


def test_a_unit_has_one_meter_in_service_per_utility(property_a1):
    meter = factories.MeterFactory(unit__property=property_a1)
    organisation = property_a1.organisation

    def second(utility, serial):
        return Meter.objects.create(
            organisation=organisation,
            serial=serial,
            utility=utility,
            unit=meter.unit,
            installed_at=timezone.now(),
        )

    refused(lambda: second("electricity", "E2"))
    assert second("water", "W1")
    Meter.objects.filter(pk=meter.pk).update(removed_at=timezone.now())
    assert second("electricity", "E3")


def test_an_installed_meter_has_both_a_unit_and_a_date(property_a1):
    unit = factories.UnitFactory(property=property_a1)
    organisation = property_a1.organisation
    refused(
        lambda: Meter.objects.create(
            organisation=organisation, serial="A", utility="water", unit=unit
        )
    )
    refused(
        lambda: Meter.objects.create(
            organisation=organisation, serial="B", utility="water", installed_at=timezone.now()
        )
    )
    refused(
        lambda: Meter.objects.create(
            organisation=organisation, serial="C", utility="water", removed_at=timezone.now()
        )
    )


def test_a_login_is_one_tenant_per_organisation(org_a, org_b):
    user = factories.UserFactory()
    Tenant.objects.create(organisation=org_a, name="One", user=user)
    refused(lambda: Tenant.objects.create(organisation=org_a, name="Two", user=user))
    assert Tenant.objects.create(organisation=org_b, name="Elsewhere", user=user)


def test_only_clearing_accounts_name_a_channel(property_a1):
    refused(
        lambda: LedgerAccount.objects.create(
            organisation=property_a1.organisation,
            property=property_a1,
            kind="cash",
            channel="cash",
            currency="CNY",
        )
    )


def test_a_property_has_one_book_of_each_kind(property_a1):
    def book(kind, channel=""):
        return LedgerAccount.objects.create(
            organisation=property_a1.organisation,
            property=property_a1,
            kind=kind,
            channel=channel,
            currency="CNY",
        )

    book("cash")
    refused(lambda: book("cash"))
    book("clearing", "bank")
    book("clearing", "stripe")
    refused(lambda: book("clearing", "bank"))
    first, second = wallet_create(property=property_a1), wallet_create(property=property_a1)
    assert first.pk != second.pk
