"""The dashboard's bills pages: the property's list with filters, a bill, the tenancy card,
the mode switch and the credit policy editor."""

from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import Account
from billing.models import CreditPolicy
from tests.billing.bills import issued_bill, postpaid_account

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(client, owner_a):
    client.force_login(owner_a)
    return client


def test_the_property_list_filters_by_status(owner, property_a1, django_assert_max_num_queries):
    for _ in range(3):
        issued_bill(property=property_a1)
    url = reverse("billing:property-bills", args=[property_a1.uuid])
    with django_assert_max_num_queries(12):
        response = owner.get(url)
    assert response.text.count('data-testid="bill-row"') == 3
    assert owner.get(url, {"status": "paid"}).text.count('data-testid="bill-row"') == 0


def test_the_filters_answer_htmx_with_the_table_alone(owner, property_a1):
    issued_bill(property=property_a1)
    url = reverse("billing:property-bills", args=[property_a1.uuid])
    response = owner.get(url, {"status": "open"}, HTTP_HX_REQUEST="true")
    assert response.text.lstrip().startswith('<section class="card" id="bills"')


def test_another_organisations_bill_is_not_found(client, owner_b, property_a1):
    bill = issued_bill(property=property_a1)
    client.force_login(owner_b)
    assert client.get(reverse("billing:bill", args=[bill.uuid])).status_code == 404


def test_the_bill_page_and_pdf(owner, property_a1):
    bill = issued_bill(property=property_a1)
    page = owner.get(reverse("billing:bill", args=[bill.uuid]))
    assert page.status_code == 200
    assert 'data-testid="lines"' in page.text
    pdf = owner.get(reverse("billing:bill-pdf", args=[bill.uuid]))
    assert pdf.content.startswith(b"%PDF")


def test_the_tenancy_card_shows_the_mode_and_open_amount(owner, property_a1):
    bill = issued_bill(property=property_a1, amount="80.00")
    response = owner.get(reverse("billing:tenancy-bills", args=[bill.account.uuid]))
    assert 'data-mode="postpaid"' in response.text
    assert 'data-amount="80.00"' in response.text
    assert 'data-testid="mode-switch"' in response.text


def test_an_owner_switches_a_tenancy_to_postpaid(owner, property_a1):
    account = postpaid_account(property=property_a1)
    Account.objects.filter(pk=account.pk).update(mode=Account.Mode.PREPAID)
    response = owner.post(reverse("billing:mode-switch", args=[account.uuid]), {"mode": "postpaid"})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.mode == Account.Mode.POSTPAID


def test_a_manager_cannot_switch_modes(client, manager_a1, property_a1):
    account = postpaid_account(property=property_a1)
    client.force_login(manager_a1)
    url = reverse("billing:mode-switch", args=[account.uuid])
    assert client.post(url, {"mode": "prepaid"}).status_code == 403


def test_the_credit_policy_is_saved_with_its_reminder_days(owner, property_a1):
    response = owner.post(
        reverse("billing:credit-policy", args=[property_a1.uuid]),
        {
            "bill_due_days": "10",
            "reminder_days": "7, -3, 0",
            "late_fee": "5.00",
            "late_fee_after_days": "7",
            "overdue_cutoff_days": "",
            "recovery_percent": "25",
            "recovery_daily_cap": "20.00",
            "recovery_energy_minimum": "0",
            "emergency_credit_amount": "30.00",
            "emergency_credit_below": "5.00",
        },
    )
    assert response.status_code == 302
    policy = CreditPolicy.objects.get(property=property_a1)
    assert policy.reminder_days == [-3, 0, 7]
    assert (policy.bill_due_days, policy.overdue_cutoff_days) == (10, None)
    assert policy.recovery_daily_cap == Decimal("20.00")
    assert policy.emergency_credit_self_service is False
