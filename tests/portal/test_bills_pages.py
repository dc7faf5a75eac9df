"""The tenant's bills in the portal: the home card, the list, a bill and its PDF; another
tenant's bill is not found."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Account
from tests import factories
from tests.billing.bills import issued_bill

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant_user(db):
    return factories.UserFactory(username="li")


@pytest.fixture
def my_bill(tenant_user, property_a1):
    account = factories.AccountFactory(
        unit__property=property_a1,
        mode=Account.Mode.POSTPAID,
        opened_at=timezone.now() - timedelta(days=40),
    )
    account.tenant.user = tenant_user
    account.tenant.save()
    return issued_bill(property=property_a1, account=account, amount="80.00")


@pytest.fixture
def signed_in(client, tenant_user):
    client.force_login(tenant_user)
    return client


def test_the_home_card_shows_the_next_bill_due(signed_in, my_bill):
    response = signed_in.get(reverse("portal:bills-card", args=[my_bill.account.uuid]))
    assert response.status_code == 200
    assert 'data-testid="next-bill"' in response.text
    assert "A1-INV-000001" in response.text


def test_a_prepaid_account_without_bills_gets_no_card(signed_in, tenant_user, property_a1):
    account = factories.AccountFactory(unit__property=property_a1)
    account.tenant.user = tenant_user
    account.tenant.save()
    response = signed_in.get(reverse("portal:bills-card", args=[account.uuid]))
    assert (response.status_code, response.text) == (200, "")


def test_the_list_and_the_bill_page_show_the_bill(signed_in, my_bill):
    listing = signed_in.get(reverse("portal:bills", args=[my_bill.account.uuid]))
    assert listing.status_code == 200
    assert 'data-testid="bill-row"' in listing.text
    page = signed_in.get(reverse("portal:bill", args=[my_bill.uuid]))
    assert page.status_code == 200
    assert "A1-INV-000001" in page.text


def test_the_bill_downloads_as_a_pdf(signed_in, my_bill):
    response = signed_in.get(reverse("portal:bill-pdf", args=[my_bill.uuid]))
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")


def test_another_tenants_bill_is_not_found(signed_in, my_bill, property_a1):
    theirs = issued_bill(property=property_a1)
    assert signed_in.get(reverse("portal:bill", args=[theirs.uuid])).status_code == 404
    assert signed_in.get(reverse("portal:bill-pdf", args=[theirs.uuid])).status_code == 404


def test_the_navigation_links_a_postpaid_account_to_its_bills(signed_in, my_bill):
    account = my_bill.account
    response = signed_in.get(reverse("portal:home", args=[account.uuid]))
    assert response.status_code == 200
    bills = reverse("portal:bills", args=[account.uuid])
    assert f'<a href="{bills}" data-testid="nav-bills">Bills</a>' in response.text


def test_the_navigation_has_no_bills_link_for_a_prepaid_account_without_bills(
    signed_in, tenant_user, property_a1
):
    account = factories.AccountFactory(unit__property=property_a1)
    account.tenant.user = tenant_user
    account.tenant.save()
    response = signed_in.get(reverse("portal:home", args=[account.uuid]))
    assert response.status_code == 200
    assert 'data-testid="nav-bills"' not in response.text
    assert f'href="{reverse("portal:bills", args=[account.uuid])}"' not in response.text
