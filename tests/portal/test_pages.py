"""The portal's pages, as a tenant uses them, against the real database."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import Receipt
from billing.services import charges_post
from meters.models import Meter
from meters.relay import relay_command_issue
from payments.models import PaymentIntent, SandboxPayment
from payments.services import notification_receive, provider_config_save, provider_for
from prepaid.audit.models import AuditLog
from tariffs.services import tariff_create
from tests import factories
from tests.payments.conftest import sandbox_event
from tests.payments.fakes import wechat as fake_wechat

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant_user(db):
    return factories.UserFactory(username="wang")


@pytest.fixture
def mine(tenant_user, property_a1):
    account = factories.AccountFactory(
        unit__property=property_a1, opened_at=timezone.now() - timedelta(days=3)
    )
    account.tenant.user = tenant_user
    account.tenant.email = "wang@example.test"
    account.tenant.save()
    return account


@pytest.fixture
def meter(mine):
    meter = factories.MeterFactory(unit=mine.unit, installed_at=mine.opened_at)
    Meter.objects.filter(pk=meter.pk).update(
        relay_closed=True, online=True, last_seen_at=timezone.now()
    )
    return meter


@pytest.fixture
def theirs(property_a1):
    other = factories.AccountFactory(unit__property=property_a1)
    other.tenant.user = factories.UserFactory(username="li")
    other.tenant.save()
    return other


@pytest.fixture
def signed_in(client, tenant_user):
    client.force_login(tenant_user)
    return client


@pytest.fixture
def sandbox(org_a):
    return provider_config_save(
        organisation=org_a, provider="sandbox", actor=None, secrets={"webhook_secret": "whsec_t"}
    )


def _url(name, *args):
    return reverse(f"portal:{name}", args=args)


def test_a_tenant_with_one_open_account_lands_on_its_home(signed_in, mine):
    response = signed_in.get(_url("index"))
    assert response.status_code == 302
    assert response["Location"] == _url("home", mine.uuid)


def test_a_tenant_of_two_landlords_chooses_between_their_accounts(
    signed_in, mine, tenant_user, property_b1
):
    elsewhere = factories.AccountFactory(unit__property=property_b1)
    elsewhere.tenant.user = tenant_user
    elsewhere.tenant.save()
    response = signed_in.get(_url("index"))
    assert response.status_code == 200
    assert set(response.context["accounts"]) == {mine, elsewhere}


def test_anonymous_visitors_are_sent_to_the_portal_sign_in(client, mine):
    response = client.get(_url("home", mine.uuid))
    assert response.status_code == 302
    assert response["Location"].startswith(_url("sign-in"))


def test_a_staff_login_is_refused(client, owner_a, mine):
    client.force_login(owner_a)
    assert client.get(_url("home", mine.uuid)).status_code == 403


@pytest.mark.parametrize("page", ["home", "usage", "recharge", "history"])
def test_another_tenants_account_is_not_found(signed_in, mine, theirs, page):
    assert signed_in.get(_url(page, theirs.uuid)).status_code == 404


def test_home_shows_balance_days_left_and_the_supply(signed_in, mine, meter):
    factories.TopupFactory(account=mine, amount=Decimal("80.00"))
    response = signed_in.get(_url("home", mine.uuid))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="balance" data-amount="80.00"' in body
    assert 'data-testid="relay" data-state="on"' in body
    assert "¥80.00" in body


def test_a_pending_relay_command_shows_as_switching(signed_in, mine, meter):
    relay_command_issue(meter=meter, close=False, reason="test", actor=None)
    response = signed_in.get(_url("home", mine.uuid))
    assert response.context["live"].relay == "pending"


def test_the_live_part_alone_is_sent_to_htmx(signed_in, mine, meter):
    response = signed_in.get(_url("home", mine.uuid) + "?part=live", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<section class="live card"')
    assert "<html" not in body
    assert 'hx-trigger="every 20s"' in body


def test_a_cut_off_tenant_is_told_why_and_how_to_get_power_back(signed_in, mine, meter):
    Meter.objects.filter(pk=meter.pk).update(relay_closed=False)
    response = signed_in.get(_url("home", mine.uuid))
    [warning] = response.context["warnings"]
    assert warning.kind == "cut_off"
    assert b'data-kind="cut_off"' in response.content


def test_a_balance_under_a_warning_level_is_shown_as_low(signed_in, mine, meter):
    factories.TopupFactory(account=mine, amount=Decimal("15.00"))
    [warning] = signed_in.get(_url("home", mine.uuid)).context["warnings"]
    # The default levels are 50, 20 and 10: 15 is under 20.
    assert (warning.kind, warning.level) == ("low", Decimal(20))


def test_home_explains_the_tariff_in_force(signed_in, mine, meter, property_a1):
    tariff_create(
        property=property_a1,
        utility="electricity",
        name="Residential",
        actor=None,
        version={
            "effective_from": mine.opened_at,
            "kind": "flat",
            "flat_price": "0.5",
            "tax_rate": "0.13",
            "standing_charge_per_day": "1",
        },
    )
    response = signed_in.get(_url("home", mine.uuid))
    body = response.content.decode()
    # 0.5 plus 13% tax, to the tenth of a cent a unit price needs.
    assert "Now: CN¥0.565 per kWh." in body
    assert "Includes tax at 13%." in body
    assert "standing charge of CN¥1.13 a day" in body


def _charge(account, meter, start, quantity, cost):
    return factories.ChargeInputFactory.build(
        account=account,
        meter_id=meter.pk,
        period_start=start,
        period_end=start + timedelta(minutes=15),
        quantity=Decimal(quantity),
        net=Decimal(cost),
    )


def test_the_chart_buckets_consumption_by_local_hour_with_cost_and_carbon(
    signed_in, mine, meter, property_a1
):
    zone = property_a1.zone
    today = timezone.now().astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    charges_post(
        charges=[
            _charge(mine, meter, today + timedelta(hours=8), "1.5", "0.75"),
            _charge(mine, meter, today + timedelta(hours=8, minutes=30), "0.5", "0.25"),
            _charge(mine, meter, today - timedelta(hours=1), "2", "1.00"),
        ]
    )
    response = signed_in.get(_url("usage", mine.uuid) + "?period=day")
    usage = response.context["usage"]
    by_hour = {bucket.start: bucket for bucket in usage.buckets}
    eight = by_hour[today + timedelta(hours=8)]
    assert (eight.quantity, eight.cost) == (Decimal(2), Decimal("1.00"))
    assert by_hour[today - timedelta(hours=1)].quantity == Decimal(2)
    assert usage.quantity == Decimal(4)
    assert usage.carbon_kg == Decimal(4) * property_a1.carbon_kg_per_kwh
    assert len(usage.buckets) == 48
    assert eight.height == 100


def test_the_chart_by_month_counts_days_in_local_time(signed_in, mine, meter, property_a1):
    zone = property_a1.zone
    # 23:50 local yesterday is the same UTC date as today 07:50 in Shanghai; it stays yesterday.
    yesterday = (timezone.now().astimezone(zone) - timedelta(days=1)).replace(
        hour=23, minute=50, second=0, microsecond=0
    )
    charges_post(charges=[_charge(mine, meter, yesterday, "3", "1.50")])
    usage = signed_in.get(_url("usage", mine.uuid) + "?period=month").context["usage"]
    [day] = [bucket for bucket in usage.buckets if bucket.quantity]
    assert day.start == yesterday.date()
    assert len(usage.buckets) == 30


def test_a_chart_part_for_htmx_is_the_chart_alone(signed_in, mine, meter):
    response = signed_in.get(_url("usage", mine.uuid) + "?period=year", HTTP_HX_REQUEST="true")
    assert response.content.decode().lstrip().startswith('<section class="card chart"')
    assert len(response.context["usage"].buckets) == 12


def test_an_unknown_chart_period_or_utility_is_not_found(signed_in, mine, meter):
    assert signed_in.get(_url("usage", mine.uuid) + "?period=week").status_code == 404
    assert signed_in.get(_url("usage", mine.uuid) + "?utility=gas").status_code == 404


# Recharge ----------------------------------------------------------------------------------------


def _recharge(client, account, **data):
    return client.post(_url("recharge", account.uuid), data)


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", "more than zero"),
        ("-5", "more than zero"),
        ("abc", "as a number"),
        ("12.345", "to the cent"),
    ],
)
def test_a_bad_amount_gets_a_clear_error_and_starts_nothing(
    signed_in, mine, sandbox, amount, message
):
    response = _recharge(signed_in, mine, amount=amount)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not PaymentIntent.objects.exists()


def test_an_amount_above_the_property_limit_is_refused_with_the_limit(
    signed_in, mine, sandbox, property_a1
):
    factories.TopupLimitsFactory(property=property_a1, maximum=Decimal("500.00"))
    response = _recharge(signed_in, mine, amount="600")
    assert response.context["form"].errors["amount"]
    assert response.context["step"] == "amount"
    assert not PaymentIntent.objects.exists()


def test_a_preset_counts_even_with_the_custom_field_posted_empty(signed_in, mine, sandbox):
    response = _recharge(signed_in, mine, preset="50.00", amount="")
    assert (response.context["step"], response.context["amount"]) == ("channel", Decimal(50))


def test_recharge_goes_amount_then_channel_then_confirm(signed_in, mine, sandbox):
    assert _recharge(signed_in, mine, amount="50").context["step"] == "channel"
    step = _recharge(signed_in, mine, amount="50", channel="sandbox")
    assert step.context["step"] == "confirm"
    assert step.context["config"] == sandbox
    assert 'data-testid="pay"' in step.content.decode()
    assert not PaymentIntent.objects.exists()


def test_a_channel_the_landlord_does_not_offer_is_refused(signed_in, mine, sandbox):
    response = _recharge(signed_in, mine, amount="50", channel="wechat")
    assert "Choose one of the ways to pay shown." in response.content.decode()


def test_paying_opens_the_sandbox_page_with_our_webhook_and_return_page(signed_in, mine, sandbox):
    response = signed_in.post(
        _url("recharge", mine.uuid),
        {"amount": "50", "channel": "sandbox", "provider": str(sandbox.uuid), "pay": "1"},
        HTTP_HX_REQUEST="true",
    )
    intent = PaymentIntent.objects.get()
    assert response["HX-Redirect"] == intent.redirect_url
    assert intent.redirect_url.endswith(reverse("payments:sandbox-page", args=[intent.reference]))
    assert (intent.amount, intent.account, intent.status) == (Decimal(50), mine, "pending")
    assert intent.return_url == f"http://testserver{_url('payment', intent.reference)}"
    webhook = reverse("payments:webhook", args=["sandbox", sandbox.uuid])
    assert SandboxPayment.objects.get().notify_url == f"http://testserver{webhook}"


def test_the_webhook_address_comes_from_the_public_url_when_set(signed_in, mine, sandbox, settings):
    settings.PAYMENTS_PUBLIC_URL = "https://pay.example.test/"
    _recharge(signed_in, mine, amount="50", channel="sandbox", provider=str(sandbox.uuid), pay="1")
    payment = SandboxPayment.objects.get()
    webhook = reverse("payments:webhook", args=["sandbox", sandbox.uuid])
    assert payment.notify_url == f"https://pay.example.test{webhook}"


def _pay(client, account, config) -> PaymentIntent:
    _recharge(client, account, amount="50", channel="sandbox", provider=str(config.uuid), pay="1")
    return PaymentIntent.objects.get()


def _succeed(intent, config):
    body = sandbox_event(intent)
    notification_receive(config=config, body=body, headers=provider_for(config).sign(body))


def test_the_return_page_keeps_asking_while_the_payment_is_pending(signed_in, mine, sandbox):
    intent = _pay(signed_in, mine, sandbox)
    response = signed_in.get(_url("payment", intent.reference))
    body = response.content.decode()
    assert 'data-testid="payment-status" data-status="pending"' in body
    assert 'hx-trigger="every 2s"' in body


def test_the_return_page_shows_the_credit_and_receipt_once_paid(signed_in, mine, sandbox, meter):
    intent = _pay(signed_in, mine, sandbox)
    _succeed(intent, sandbox)
    response = signed_in.get(_url("payment", intent.reference), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    receipt = Receipt.objects.get(account=mine)
    assert 'data-status="succeeded"' in body
    assert 'data-amount="50.00"' in body
    assert _url("receipt-pdf", receipt.uuid) in body
    # Paid, and the supply is on: nothing left to wait for.
    assert "hx-trigger" not in body


def test_another_tenants_payment_is_not_found(signed_in, client, mine, theirs, sandbox):
    intent = _pay(signed_in, mine, sandbox)
    client.force_login(theirs.tenant.user)
    assert client.get(_url("payment", intent.reference)).status_code == 404


# History and receipts ----------------------------------------------------------------------------


def test_history_lists_receipts_with_downloads(signed_in, mine):
    receipt = factories.TopupFactory(account=mine, amount=Decimal("30.00"))
    response = signed_in.get(_url("history", mine.uuid))
    body = response.content.decode()
    assert receipt.display_number() in body
    assert _url("receipt-pdf", receipt.uuid) in body


def test_history_by_day_shows_frozen_days(signed_in, mine):
    day = factories.DailyFreezeFactory(account=mine)
    response = signed_in.get(_url("history", mine.uuid) + "?tab=days")
    assert [row.pk for row in response.context["page"]] == [day.pk]


def test_a_receipt_downloads_as_pdf_for_its_tenant_only(signed_in, client, mine, theirs):
    receipt = factories.TopupFactory(account=mine, amount=Decimal("30.00"))
    response = signed_in.get(_url("receipt-pdf", receipt.uuid))
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert signed_in.get(_url("receipt", receipt.uuid)).status_code == 200
    client.force_login(theirs.tenant.user)
    assert client.get(_url("receipt-pdf", receipt.uuid)).status_code == 404
    assert client.get(_url("receipt", receipt.uuid)).status_code == 404


# Settings ----------------------------------------------------------------------------------------


def test_choosing_a_language_applies_to_every_tenancy_and_the_pages(
    signed_in, mine, tenant_user, property_b1
):
    elsewhere = factories.AccountFactory(unit__property=property_b1)
    elsewhere.tenant.user = tenant_user
    elsewhere.tenant.save()
    response = signed_in.post(_url("settings"), {"action": "language", "language": "zh-hans"})
    assert response.status_code == 302
    assert response.cookies["django_language"].value == "zh-hans"
    mine.tenant.refresh_from_db()
    elsewhere.tenant.refresh_from_db()
    assert (mine.tenant.preferred_language, elsewhere.tenant.preferred_language) == (
        "zh-hans",
        "zh-hans",
    )
    assert AuditLog.objects.filter(action="tenant.update").count() == 2


def test_notification_channels_are_saved_per_tenancy(signed_in, mine):
    prefix = str(mine.tenant.uuid)
    response = signed_in.post(
        _url("settings"), {"action": "channels", f"{prefix}-email": "on", f"{prefix}-portal": "on"}
    )
    assert response.status_code == 302
    preference = mine.tenant.notification_channels
    assert (preference.email, preference.sms, preference.portal) == (True, False, True)


def test_changing_the_password_needs_the_old_one_and_is_audited(signed_in, tenant_user, mine):
    wrong = signed_in.post(
        _url("settings"),
        {
            "action": "password",
            "old_password": "not it",
            "new_password1": "a much better passphrase",
            "new_password2": "a much better passphrase",
        },
    )
    assert wrong.status_code == 200
    assert wrong.context["password_form"].errors["old_password"]
    right = signed_in.post(
        _url("settings"),
        {
            "action": "password",
            "old_password": "correct horse battery staple",
            "new_password1": "a much better passphrase",
            "new_password2": "a much better passphrase",
        },
    )
    assert right.status_code == 302
    tenant_user.refresh_from_db()
    assert tenant_user.check_password("a much better passphrase")
    assert AuditLog.objects.filter(action="portal.password_change").exists()
    # Still signed in after the change.
    assert signed_in.get(_url("settings")).status_code == 200


def test_home_costs_the_same_queries_however_much_history_there_is(
    signed_in, mine, meter, property_a1, django_assert_max_num_queries
):
    start = timezone.now() - timedelta(days=2)
    charges_post(
        charges=[
            _charge(mine, meter, start + timedelta(minutes=15 * step), "0.1", "0.05")
            for step in range(150)
        ]
    )
    for _ in range(3):
        factories.TopupFactory(account=mine, amount=Decimal("10.00"))
    # Session and user, then the account, live state, warnings, tariffs and the chart.
    with django_assert_max_num_queries(17):
        signed_in.get(_url("home", mine.uuid))


@pytest.fixture
def wechat(org_a):
    keys = fake_wechat.make_keys()
    with fake_wechat.FakeWeChatPay(keys) as fake:
        yield provider_config_save(
            organisation=org_a,
            provider="wechat",
            actor=None,
            settings=fake_wechat.provider_settings(keys, fake.url),
            secrets=fake_wechat.provider_secrets(keys),
        )


def test_wechat_pay_on_a_desktop_shows_a_qr_code_to_scan(signed_in, mine, wechat):
    response = signed_in.post(
        _url("recharge", mine.uuid),
        {"amount": "50", "channel": "wechat", "provider": str(wechat.uuid), "pay": "1"},
        HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Chrome/150.0",
    )
    intent = PaymentIntent.objects.get()
    assert response["Location"] == _url("payment", intent.reference)
    page = signed_in.get(response["Location"]).content.decode()
    assert intent.qr_code.startswith("weixin://")
    assert '<svg width="' in page
    assert "Scan with WeChat" in page


def test_wechat_pay_on_a_phone_goes_to_the_h5_page(signed_in, mine, wechat):
    response = signed_in.post(
        _url("recharge", mine.uuid),
        {"amount": "50", "channel": "wechat", "provider": str(wechat.uuid), "pay": "1"},
        HTTP_USER_AGENT="Mozilla/5.0 (iPhone; CPU iPhone OS 18_0) Mobile/15E148",
    )
    intent = PaymentIntent.objects.get()
    assert intent.client == "mobile"
    assert response["Location"] == intent.redirect_url
