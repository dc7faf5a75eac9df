"""The counter top-up page and its receipt: who may take money, what is refused, and that a
form submitted twice credits once."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.services import account_close
from billing.control import cutoff_evaluate
from billing.models import LedgerAccount, Receipt
from billing.tasks import restore_supply
from meters.models import RelayCommand
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db

# Wednesday 18 November 2026, noon in Shanghai: outside the default protected hours.
NOON = datetime(2026, 11, 18, 4, tzinfo=UTC)


def _url(account):
    return reverse("billing:topup", kwargs={"account_id": account.uuid})


def _form(**fields):
    data = {"amount": "50.00", "channel": "cash", "idempotency_key": str(uuid.uuid4())}
    data.update(fields)
    return data


def _balance(account):
    return LedgerAccount.objects.get(pk=account.wallet_id).balance


@pytest.mark.parametrize("username", ["owner_a", "manager_a1"])
def test_owners_and_managers_see_the_tenancy_and_a_form_with_a_fresh_key(
    username, request, client, account
):
    client.force_login(request.getfixturevalue(username))
    first, second = client.get(_url(account)), client.get(_url(account))
    assert first.status_code == 200
    body = first.content.decode()
    assert account.tenant.name in body
    assert account.unit.name in body
    assert 'data-testid="record-topup"' in body
    keys = {page.context["form"]["idempotency_key"].value() for page in (first, second)}
    assert len(keys) == 2


def test_an_accountant_sees_the_tenancy_without_a_form_and_cannot_take_money(
    client, accountant_a, account
):
    client.force_login(accountant_a)
    page = client.get(_url(account))
    assert page.status_code == 200
    assert page.context["form"] is None
    assert 'data-testid="record-topup"' not in page.content.decode()
    assert 'data-testid="read-only"' in page.content.decode()
    assert client.post(_url(account), _form()).status_code == 403
    assert _balance(account) == 0


def test_a_top_up_credits_the_wallet_and_leads_to_its_receipt(client, manager_a1, account):
    client.force_login(manager_a1)
    response = client.post(_url(account), _form(amount="50.00"))
    receipt = Receipt.objects.get(account=account)
    assert response.status_code == 302
    assert response["Location"] == reverse("billing:receipt", kwargs={"receipt_id": receipt.uuid})
    assert (receipt.amount, receipt.channel, receipt.reference) == (Decimal(50), "cash", "")
    assert _balance(account) == Decimal(50)
    audit = AuditLog.objects.get(action="topup.record", object_id=str(account.uuid))
    assert audit.actor == manager_a1


def test_the_same_form_submitted_twice_credits_once_and_prints_one_receipt(
    client, owner_a, account
):
    client.force_login(owner_a)
    data = _form(amount="30.00")
    first = client.post(_url(account), data)
    second = client.post(_url(account), data)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert Receipt.objects.filter(account=account).count() == 1
    assert _balance(account) == Decimal(30)
    page = client.get(second["Location"])
    assert "recorded before" in page.content.decode()


def test_a_key_reused_for_another_amount_is_refused(client, owner_a, account):
    client.force_login(owner_a)
    data = _form(amount="30.00")
    client.post(_url(account), data)
    response = client.post(_url(account), {**data, "amount": "40.00"})
    assert response.status_code == 400
    assert response.context["form"].has_error("idempotency_key")
    assert _balance(account) == Decimal(30)


def test_a_form_without_its_key_is_refused(client, owner_a, account):
    client.force_login(owner_a)
    response = client.post(_url(account), _form(idempotency_key=""))
    assert response.status_code == 400
    assert "Reload the page" in response.content.decode()
    assert not Receipt.objects.exists()


def test_a_bank_transfer_keeps_its_reference_and_cash_carries_none(client, owner_a, account):
    client.force_login(owner_a)
    client.post(_url(account), _form(amount="10.00", channel="bank", reference=" TX-991 "))
    client.post(_url(account), _form(amount="20.00", channel="cash", reference="ignored"))
    rows = Receipt.objects.filter(account=account).order_by("number")
    assert [(row.channel, row.reference) for row in rows] == [("bank", "TX-991"), ("cash", "")]


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", "more than zero"),
        ("-5", "more than zero"),
        ("0.001", "whole CNY minor units"),
        ("0.50", "smallest top-up"),
        ("600", "largest top-up"),
        ("abc", "as a number"),
        ("", "Enter an amount"),
    ],
)
def test_amounts_outside_the_rules_are_refused_beside_the_amount(
    amount, message, client, owner_a, account
):
    factories.TopupLimitsFactory(
        property=account.unit.property, minimum=Decimal(1), maximum=Decimal(500)
    )
    client.force_login(owner_a)
    response = client.post(_url(account), _form(amount=amount))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert message in " ".join(errors["amount"])
    assert not Receipt.objects.exists()


def test_a_top_up_may_not_lift_the_wallet_above_its_limit(client, owner_a, account):
    factories.TopupLimitsFactory(property=account.unit.property, max_balance=Decimal(100))
    factories.TopupFactory(account=account, amount=Decimal(80))
    client.force_login(owner_a)
    response = client.post(_url(account), _form(amount="30"))
    assert response.status_code == 400
    assert "at most" in " ".join(response.context["form"].errors["amount"])
    assert _balance(account) == Decimal(80)


def test_a_closed_account_shows_no_form_and_refuses_a_top_up(client, owner_a, account):
    account_close(account=account, actor=None)
    client.force_login(owner_a)
    page = client.get(_url(account))
    assert page.context["form"] is None
    assert 'data-testid="closed"' in page.content.decode()
    response = client.post(_url(account), _form())
    assert response.status_code == 400
    assert "open accounts only" in " ".join(response.context["form"].non_field_errors())
    assert not Receipt.objects.exists()


def test_the_receipt_page_shows_the_printable_receipt_with_print_and_pdf(
    client, manager_a1, account
):
    client.force_login(manager_a1)
    response = client.post(_url(account), _form(amount="50.00"))
    page = client.get(response["Location"])
    body = page.content.decode()
    receipt = Receipt.objects.get()
    assert page.status_code == 200
    assert 'data-testid="receipt-document"' in body
    assert receipt.display_number() in body
    assert account.tenant.name in body
    assert "data-print" in body
    assert "js/billing.js" in body
    assert reverse("billing:receipt-pdf", kwargs={"receipt_id": receipt.uuid}) in body
    # No inline script: the Print button is wired by the static file.
    assert "<script>" not in body
    assert "onclick" not in body


def test_the_receipt_is_printed_in_the_language_asked_for(client, owner_a, account):
    receipt = factories.TopupFactory(account=account)
    client.force_login(owner_a)
    url = reverse("billing:receipt", kwargs={"receipt_id": receipt.uuid})
    english = client.get(url).context["document"]
    chinese = client.get(url, {"language": "zh-hans"}).context["document"]
    assert (english.language, chinese.language) == ("en", "zh-hans")
    assert english.title != chinese.title


def test_the_receipt_downloads_as_a_pdf(client, accountant_a, account):
    receipt = factories.TopupFactory(account=account)
    client.force_login(accountant_a)
    url = reverse("billing:receipt-pdf", kwargs={"receipt_id": receipt.uuid})
    response = client.get(url, {"language": "zh-hans"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Language"] == "zh-hans"
    assert receipt.display_number() in response["Content-Disposition"]
    assert response.content.startswith(b"%PDF")


def test_a_top_up_that_brings_credit_back_shows_the_supply_restoring(
    client, owner_a, account, monkeypatch, django_capture_on_commit_callbacks
):
    meter = factories.MeterFactory(unit=account.unit, has_relay=True)
    cutoff_evaluate(account_id=account.pk, now=NOON)
    # The worker's side, in-process: the task runs as soon as the top-up commits.
    ran = []
    monkeypatch.setattr(restore_supply, "delay", lambda account_id: ran.append(account_id))
    client.force_login(owner_a)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url(account), _form(amount="20.00"))
    assert ran == [account.pk]
    restore_supply(account.pk)
    command = RelayCommand.objects.get(meter=meter, state__in=RelayCommand.ACTIVE)
    assert command.close is True
    page = client.get(response["Location"])
    assert 'data-supply="restoring"' in page.content.decode()
    partial = client.get(response["Location"], HTTP_HX_REQUEST="true")
    body = partial.content.decode()
    assert 'hx-trigger="every 5s"' in body
    assert "side-nav" not in body


def test_the_supply_stops_polling_once_it_is_settled(client, owner_a, account):
    factories.MeterFactory(unit=account.unit, has_relay=True)
    receipt = factories.TopupFactory(account=account)
    client.force_login(owner_a)
    url = reverse("billing:receipt", kwargs={"receipt_id": receipt.uuid})
    body = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-supply="unknown"' in body
    assert "hx-trigger" not in body


@pytest.mark.parametrize("utilities", [["electricity"], ["electricity", "water"]])
def test_the_top_up_page_takes_the_same_number_of_queries_whatever_the_meters(
    utilities, client, owner_a, account, django_assert_max_num_queries
):
    for utility in utilities:
        factories.MeterFactory(unit=account.unit, utility=utility, has_relay=True)
    client.force_login(owner_a)
    client.get(_url(account))
    with django_assert_max_num_queries(12):
        response = client.get(_url(account))
    assert response.status_code == 200
