import json
import socket
import urllib.parse
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from payments.providers.alipay import AlipayProvider
from payments.providers.base import (
    CheckoutRequest,
    NotificationRejected,
    ProviderError,
    RefundRequest,
)
from tests.payments.fakes.alipay import (
    SHANGHAI,
    TIME_FORMAT,
    AlipayKeys,
    FakeAlipay,
    make_keys,
    notification_fields,
    provider_secrets,
    provider_settings,
    request_signature_is_valid,
    sign_notification_fields,
    signed_notification,
)


@pytest.fixture(scope="module")
def keys() -> AlipayKeys:
    return make_keys()


@pytest.fixture
def gateway(keys):
    with FakeAlipay(keys) as fake:
        yield fake


def build_provider(keys: AlipayKeys, gateway_url: str) -> AlipayProvider:
    return AlipayProvider(provider_settings(keys, gateway_url), provider_secrets(keys).__getitem__)


@pytest.fixture
def provider(keys, gateway) -> AlipayProvider:
    return build_provider(keys, gateway.url)


def checkout_request(**overrides) -> CheckoutRequest:
    fields = {
        "reference": "PAY-0001",
        "amount": Decimal("50.00"),
        "currency": "CNY",
        "description": "电费充值 Unit 12",
        "return_url": "https://prepaid.example.com/pay/PAY-0001/done",
        "notify_url": "https://prepaid.example.com/payments/notify/alipay/",
        "expires_at": datetime(2025, 3, 1, 4, 30, tzinfo=UTC),
    }
    return CheckoutRequest(**(fields | overrides))


def refund_request(**overrides) -> RefundRequest:
    fields = {
        "reference": "PAY-0001",
        "transaction_id": "2025030122001400000000000001",
        "refund_reference": "REF-0001",
        "amount": Decimal("12.50"),
        "total": Decimal("50.00"),
        "currency": "CNY",
        "reason": "Account closed",
    }
    return RefundRequest(**(fields | overrides))


def redirect_params(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))


def tampered(body: bytes, **changes: str) -> bytes:
    form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
    return urllib.parse.urlencode(form | changes).encode()


def without(body: bytes, name: str) -> bytes:
    form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
    del form[name]
    return urllib.parse.urlencode(form).encode()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/gateway.do"


def rejection_reason(provider: AlipayProvider, body: bytes, headers: dict[str, str]) -> str:
    with pytest.raises(NotificationRejected) as caught:
        provider.parse_notification(body, headers)
    return caught.value.reason


# Checkout


def test_desktop_checkout_redirects_to_a_signed_page_pay_request(provider, gateway, keys):
    checkout = provider.create_checkout(checkout_request())

    assert checkout.provider_reference == "PAY-0001"
    assert checkout.redirect_url.startswith(gateway.url + "?")
    params = redirect_params(checkout.redirect_url)
    assert request_signature_is_valid(keys, params)
    assert params["method"] == "alipay.trade.page.pay"
    assert params["app_id"] == keys.app_id
    assert params["sign_type"] == "RSA2"
    assert params["charset"] == "utf-8"
    assert params["return_url"] == "https://prepaid.example.com/pay/PAY-0001/done"
    assert params["notify_url"] == "https://prepaid.example.com/payments/notify/alipay/"
    assert redirect_biz_content(checkout.redirect_url) == {
        "out_trade_no": "PAY-0001",
        "total_amount": "50.00",
        "subject": "电费充值 Unit 12",
        "product_code": "FAST_INSTANT_TRADE_PAY",
        "time_expire": "2025-03-01 12:30:00",
    }


def redirect_biz_content(url: str) -> dict[str, str]:
    return json.loads(redirect_params(url)["biz_content"])


def test_mobile_checkout_redirects_to_wap_pay(provider, keys):
    checkout = provider.create_checkout(checkout_request(client="mobile"))

    params = redirect_params(checkout.redirect_url)
    assert request_signature_is_valid(keys, params)
    assert params["method"] == "alipay.trade.wap.pay"
    assert redirect_biz_content(checkout.redirect_url)["product_code"] == "QUICK_WAP_PAY"


def test_a_checkout_redirect_with_a_changed_amount_no_longer_verifies(provider, keys):
    params = redirect_params(provider.create_checkout(checkout_request()).redirect_url)

    params["biz_content"] = params["biz_content"].replace('"50.00"', '"0.01"')

    assert not request_signature_is_valid(keys, params)


def test_the_request_timestamp_is_beijing_time(provider):
    before = datetime.now(SHANGHAI).replace(microsecond=0, tzinfo=None)
    params = redirect_params(provider.create_checkout(checkout_request()).redirect_url)
    sent = datetime.strptime(params["timestamp"], TIME_FORMAT)

    assert before <= sent <= before + timedelta(seconds=5)


@pytest.mark.parametrize(
    ("amount", "sent"),
    [(Decimal("50"), "50.00"), (Decimal("0.1"), "0.10"), (Decimal("1234567.89"), "1234567.89")],
)
def test_the_checkout_amount_is_sent_in_yuan_with_two_decimals(provider, amount, sent):
    checkout = provider.create_checkout(checkout_request(amount=amount))

    assert redirect_biz_content(checkout.redirect_url)["total_amount"] == sent


def test_an_amount_finer_than_a_fen_is_refused(provider):
    with pytest.raises(ValueError, match="finer than a fen"):
        provider.create_checkout(checkout_request(amount=Decimal("10.005")))


def test_a_currency_other_than_yuan_is_refused(provider):
    with pytest.raises(ValueError, match="CNY"):
        provider.create_checkout(checkout_request(currency="USD"))


def test_the_gateway_defaults_to_alipays_own(keys):
    settings = provider_settings(keys, "")
    del settings["gateway"]
    provider = AlipayProvider(settings, provider_secrets(keys).__getitem__)

    checkout = provider.create_checkout(checkout_request())

    assert checkout.redirect_url.startswith("https://openapi.alipay.com/gateway.do?")


# Notifications


def test_a_valid_notification_is_parsed(provider, keys):
    body, headers = signed_notification(
        keys, reference="PAY-0001", total_amount="50.00", notify_id="N-1", trade_no="T-1"
    )

    notification = provider.parse_notification(body, headers)

    assert notification.status == "succeeded"
    assert notification.reference == "PAY-0001"
    assert notification.amount == Decimal("50.00")
    assert isinstance(notification.amount, Decimal)
    assert notification.currency == "CNY"
    assert notification.transaction_id == "T-1"
    assert notification.event_id == "N-1"
    assert notification.payload["subject"] == "电费充值"
    assert notification.payload["trade_status"] == "TRADE_SUCCESS"


@pytest.mark.parametrize(
    ("trade_status", "status"),
    [
        ("TRADE_SUCCESS", "succeeded"),
        ("TRADE_FINISHED", "succeeded"),
        ("TRADE_CLOSED", "expired"),
        ("WAIT_BUYER_PAY", "pending"),
        ("SOMETHING_NEW", "ignored"),
    ],
)
def test_the_trade_status_is_mapped(provider, keys, trade_status, status):
    body, headers = signed_notification(
        keys, reference="PAY-0001", total_amount="50.00", trade_status=trade_status
    )

    assert provider.parse_notification(body, headers).status == status


def test_a_refund_notification_is_ignored_even_when_it_closes_the_trade(provider, keys):
    fields = notification_fields(
        keys, reference="PAY-0001", total_amount="50.00", trade_status="TRADE_CLOSED"
    )
    fields |= {"refund_fee": "50.00", "gmt_refund": fields["notify_time"], "out_biz_no": "REF-1"}
    body, headers = sign_notification_fields(keys, fields)

    assert provider.parse_notification(body, headers).status == "ignored"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("total_amount", "0.01"),
        ("out_trade_no", "PAY-9999"),
        ("trade_status", "TRADE_SUCCESS"),
        ("seller_id", "2088999999999999"),
        ("notify_id", "another"),
    ],
)
def test_a_tampered_field_is_rejected_as_a_bad_signature(provider, keys, name, value):
    body, headers = signed_notification(
        keys, reference="PAY-0001", total_amount="50.00", trade_status="WAIT_BUYER_PAY"
    )

    assert rejection_reason(provider, tampered(body, **{name: value}), headers) == "signature"


def test_an_added_field_is_rejected_as_a_bad_signature(provider, keys):
    body, headers = signed_notification(keys, reference="PAY-0001", total_amount="50.00")

    assert rejection_reason(provider, tampered(body, refund_fee="1.00"), headers) == "signature"


def test_a_missing_signature_is_rejected(provider, keys):
    body, headers = signed_notification(keys, reference="PAY-0001", total_amount="50.00")

    assert rejection_reason(provider, without(body, "sign"), headers) == "signature"


def test_a_notification_signed_by_another_key_is_rejected(provider, keys):
    impostor = AlipayKeys(
        keys.app_private_key, keys.app_public_key, keys.app_private_key, keys.app_public_key
    )
    body, headers = signed_notification(impostor, reference="PAY-0001", total_amount="50.00")

    assert rejection_reason(provider, body, headers) == "signature"


def test_a_signature_that_is_not_base64_is_rejected(provider, keys):
    body, headers = signed_notification(keys, reference="PAY-0001", total_amount="50.00")

    assert rejection_reason(provider, tampered(body, sign="not*base64!"), headers) == "signature"


def test_a_notification_claiming_another_sign_type_is_rejected(provider, keys):
    body, headers = signed_notification(keys, reference="PAY-0001", total_amount="50.00")

    assert rejection_reason(provider, tampered(body, sign_type="RSA"), headers) == "signature"


@pytest.mark.parametrize("name", ["app_id", "seller_id"])
def test_a_notification_for_another_merchant_is_rejected(provider, keys, name):
    body, headers = signed_notification(
        keys, reference="PAY-0001", total_amount="50.00", **{name: "2088999999999999"}
    )

    assert rejection_reason(provider, body, headers) == "merchant"


@pytest.mark.parametrize("name", ["out_trade_no", "trade_status", "total_amount", "notify_id"])
def test_a_notification_missing_a_required_field_is_malformed(provider, keys, name):
    fields = notification_fields(keys, reference="PAY-0001", total_amount="50.00")
    del fields[name]
    body, headers = sign_notification_fields(keys, fields)

    assert rejection_reason(provider, body, headers) == "malformed"


@pytest.mark.parametrize("total_amount", ["fifty", "NaN", "Infinity"])
def test_a_notification_with_an_unreadable_amount_is_malformed(provider, keys, total_amount):
    body, headers = signed_notification(keys, reference="PAY-0001", total_amount=total_amount)

    assert rejection_reason(provider, body, headers) == "malformed"


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe not utf-8", b"no equals sign here", b'{"json": "is not a form"}'],
)
def test_a_body_that_is_not_a_form_is_malformed(provider, body):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    assert rejection_reason(provider, body, headers) == "malformed"


def test_a_repeated_field_is_malformed(provider, keys):
    body, headers = signed_notification(keys, reference="PAY-0001", total_amount="50.00")

    assert rejection_reason(provider, body + b"&total_amount=0.01", headers) == "malformed"


def test_a_resend_a_day_later_is_still_accepted(provider, keys):
    # Alipay resends for about 25 hours; a late resend is still the payment.
    fields = notification_fields(keys, reference="PAY-0001", total_amount="50.00")
    fields["notify_time"] = (datetime.now(SHANGHAI) - timedelta(hours=24)).strftime(TIME_FORMAT)
    body, headers = sign_notification_fields(keys, fields)

    assert provider.parse_notification(body, headers).status == "succeeded"


def test_the_notification_is_acknowledged_with_success(provider):
    answer = provider.answer_ok()

    assert (answer.status, answer.body, answer.content_type) == (200, b"success", "text/plain")


def test_a_rejected_notification_is_answered_with_fail(provider):
    answer = provider.answer_error(NotificationRejected("signature"))

    assert (answer.status, answer.body, answer.content_type) == (400, b"fail", "text/plain")


# Query


def test_the_query_posts_a_signed_trade_query_for_our_reference(provider, gateway, keys):
    gateway.respond("alipay.trade.query", trade_status="WAIT_BUYER_PAY", total_amount="50.00")

    provider.query(reference="PAY-0001", provider_reference="PAY-0001")

    [sent] = gateway.requests
    assert sent.http_method == "POST"
    assert sent.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert sent.signature_valid
    assert sent.method == "alipay.trade.query"
    assert sent.params["app_id"] == keys.app_id
    assert sent.params["sign_type"] == "RSA2"
    assert sent.biz_content == {"out_trade_no": "PAY-0001"}


@pytest.mark.parametrize(
    ("trade_status", "status"),
    [
        ("TRADE_SUCCESS", "succeeded"),
        ("TRADE_FINISHED", "succeeded"),
        ("TRADE_CLOSED", "expired"),
        ("WAIT_BUYER_PAY", "pending"),
    ],
)
def test_the_queried_trade_status_is_mapped(provider, gateway, trade_status, status):
    gateway.respond(
        "alipay.trade.query",
        trade_status=trade_status,
        total_amount="50.00",
        trade_no="2025030122001400000000000001",
    )

    report = provider.query(reference="PAY-0001", provider_reference="PAY-0001")

    assert report.status == status
    assert report.amount == Decimal("50.00")
    assert report.currency == "CNY"
    assert report.transaction_id == "2025030122001400000000000001"
    assert report.payload["trade_status"] == trade_status


def test_a_trade_alipay_does_not_know_yet_is_pending(provider, gateway):
    gateway.respond(
        "alipay.trade.query",
        code="40004",
        msg="Business Failed",
        sub_code="ACQ.TRADE_NOT_EXIST",
        sub_msg="交易不存在",
    )

    report = provider.query(reference="PAY-0001", provider_reference="PAY-0001")

    assert report.status == "pending"
    assert report.amount is None


def test_a_trade_status_we_do_not_know_raises_provider_error(provider, gateway):
    gateway.respond("alipay.trade.query", trade_status="TRADE_LOST", total_amount="50.00")

    with pytest.raises(ProviderError, match="TRADE_LOST"):
        provider.query(reference="PAY-0001", provider_reference="PAY-0001")


def test_a_query_the_gateway_refuses_raises_provider_error(keys, gateway):
    stranger = AlipayKeys(
        keys.app_private_key,
        keys.app_public_key,
        keys.alipay_private_key,
        keys.alipay_public_key,
        app_id="2021999999999999",
    )
    provider = build_provider(stranger, gateway.url)

    with pytest.raises(ProviderError, match=r"isv\.invalid-app-id"):
        provider.query(reference="PAY-0001", provider_reference="PAY-0001")


def test_a_query_signed_with_the_wrong_app_key_is_refused(keys, gateway):
    other = make_keys()
    wrong = AlipayKeys(
        other.app_private_key, other.app_public_key, keys.alipay_private_key, keys.alipay_public_key
    )
    provider = build_provider(wrong, gateway.url)

    with pytest.raises(ProviderError, match=r"isv\.invalid-signature"):
        provider.query(reference="PAY-0001", provider_reference="PAY-0001")
    assert not gateway.requests[0].signature_valid


def test_a_query_answer_with_a_bad_signature_raises_provider_error(provider, gateway):
    gateway.respond("alipay.trade.query", trade_status="TRADE_SUCCESS", total_amount="50.00")
    gateway.sign_with_wrong_key = True

    with pytest.raises(ProviderError, match="bad signature"):
        provider.query(reference="PAY-0001", provider_reference="PAY-0001")


def test_a_gateway_answering_500_raises_provider_error(provider, gateway):
    gateway.http_status = 500

    with pytest.raises(ProviderError):
        provider.query(reference="PAY-0001", provider_reference="PAY-0001")
    assert len(gateway.requests) == 1


def test_an_unreachable_gateway_raises_provider_error(keys):
    provider = build_provider(keys, closed_port_url())

    with pytest.raises(ProviderError, match="call failed"):
        provider.query(reference="PAY-0001", provider_reference="PAY-0001")


def test_a_gateway_that_is_not_http_is_refused(keys):
    provider = build_provider(keys, "file:///etc/passwd")

    with pytest.raises(ProviderError, match="not an http"):
        provider.query(reference="PAY-0001", provider_reference="PAY-0001")


# Refunds


def test_a_refund_sends_the_amount_and_our_references(provider, gateway):
    gateway.respond("alipay.trade.refund", fund_change="Y", refund_fee="12.50")

    result = provider.refund(refund_request())

    assert result.status == "succeeded"
    assert result.payload["refund_fee"] == "12.50"
    [sent] = gateway.requests
    assert sent.signature_valid
    assert sent.method == "alipay.trade.refund"
    assert sent.biz_content == {
        "out_trade_no": "PAY-0001",
        "refund_amount": "12.50",
        "out_request_no": "REF-0001",
        "refund_reason": "Account closed",
    }


def test_a_refund_without_fund_change_is_settled_by_the_refund_query(provider, gateway):
    gateway.respond("alipay.trade.refund", fund_change="N")
    gateway.respond(
        "alipay.trade.fastpay.refund.query", refund_status="REFUND_SUCCESS", refund_amount="12.50"
    )

    result = provider.refund(refund_request())

    assert result.status == "succeeded"
    assert [sent.method for sent in gateway.requests] == [
        "alipay.trade.refund",
        "alipay.trade.fastpay.refund.query",
    ]
    assert gateway.requests[1].biz_content == {
        "out_trade_no": "PAY-0001",
        "out_request_no": "REF-0001",
    }


def test_a_refund_the_query_does_not_confirm_is_pending(provider, gateway):
    gateway.respond("alipay.trade.refund", fund_change="N")

    assert provider.refund(refund_request()).status == "pending"


def test_a_refused_refund_is_failed_with_alipays_reason(provider, gateway):
    gateway.respond(
        "alipay.trade.refund",
        code="40004",
        msg="Business Failed",
        sub_code="ACQ.SELLER_BALANCE_NOT_ENOUGH",
        sub_msg="卖家余额不足",
    )

    result = provider.refund(refund_request())

    assert result.status == "failed"
    assert result.payload["sub_msg"] == "卖家余额不足"


def test_a_refund_whose_outcome_alipay_does_not_know_is_pending(provider, gateway):
    gateway.respond(
        "alipay.trade.refund",
        code="20000",
        msg="Service Currently Unavailable",
        sub_code="ACQ.SYSTEM_ERROR",
        sub_msg="系统错误",
    )

    assert provider.refund(refund_request()).status == "pending"


def test_the_refund_query_reports_a_completed_refund(provider, gateway):
    gateway.respond("alipay.trade.fastpay.refund.query", refund_status="REFUND_SUCCESS")

    result = provider.query_refund(refund_request())

    assert result.status == "succeeded"
    [sent] = gateway.requests
    assert sent.signature_valid
    assert sent.method == "alipay.trade.fastpay.refund.query"


def test_a_refused_refund_query_is_failed_with_alipays_reason(provider, gateway):
    gateway.respond(
        "alipay.trade.fastpay.refund.query",
        code="40004",
        msg="Business Failed",
        sub_code="ACQ.TRADE_NOT_EXIST",
        sub_msg="交易不存在",
    )

    result = provider.query_refund(refund_request())

    assert result.status == "failed"
    assert result.payload["sub_msg"] == "交易不存在"


def test_a_refund_the_gateway_answers_with_500_raises_provider_error(provider, gateway):
    gateway.http_status = 500

    with pytest.raises(ProviderError):
        provider.refund(refund_request())
