import base64
import json
import socket
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from payments.providers.base import (
    CheckoutRequest,
    NotificationRejected,
    ProviderError,
    RefundRequest,
)
from payments.providers.wechat import WeChatPayProvider
from tests.payments.fakes.wechat import (
    FakeWeChatPay,
    WeChatKeys,
    authorization_is_valid,
    encrypt_resource,
    make_keys,
    notification_envelope,
    platform_signature_headers,
    provider_secrets,
    provider_settings,
    refund_resource,
    sign_notification_body,
    signed_notification,
    transaction_resource,
)


@pytest.fixture(scope="module")
def keys() -> WeChatKeys:
    return make_keys()


@pytest.fixture(scope="module")
def other_keys() -> WeChatKeys:
    return make_keys()


@pytest.fixture
def wechat(keys):
    with FakeWeChatPay(keys) as fake:
        yield fake


def build_provider(keys: WeChatKeys, api_base: str, **settings) -> WeChatPayProvider:
    return WeChatPayProvider(
        provider_settings(keys, api_base) | settings, provider_secrets(keys).__getitem__
    )


@pytest.fixture
def provider(keys, wechat) -> WeChatPayProvider:
    return build_provider(keys, wechat.url)


def checkout_request(**overrides) -> CheckoutRequest:
    fields = {
        "reference": "PAY-0001",
        "amount": Decimal("50.01"),
        "currency": "CNY",
        "description": "电费充值 Unit 12",
        "return_url": "https://prepaid.example.com/pay/PAY-0001/done",
        "notify_url": "https://prepaid.example.com/payments/notify/wechat/",
        "expires_at": datetime(2025, 3, 1, 4, 30, tzinfo=UTC),
    }
    return CheckoutRequest(**(fields | overrides))


def refund_request(**overrides) -> RefundRequest:
    fields = {
        "reference": "PAY-0001",
        "transaction_id": "4200000000202503010000000001",
        "refund_reference": "REF-0001",
        "amount": Decimal("12.50"),
        "total": Decimal("50.00"),
        "currency": "CNY",
        "reason": "Account closed",
    }
    return RefundRequest(**(fields | overrides))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def rejection_reason(provider: WeChatPayProvider, body: bytes, headers: dict[str, str]) -> str:
    with pytest.raises(NotificationRejected) as caught:
        provider.parse_notification(body, headers)
    return caught.value.reason


def paid_notification(keys: WeChatKeys, **resource_changes) -> tuple[bytes, dict[str, str]]:
    resource = transaction_resource(keys, reference="PAY-0001", total_fen=5001)
    return signed_notification(keys, resource | resource_changes, event_id="EV-1")


def envelope_of(body: bytes) -> dict:
    return json.loads(body)


# Checkout


def test_desktop_checkout_places_a_native_order_and_returns_its_qr_code(provider, wechat):
    checkout = provider.create_checkout(checkout_request())

    assert checkout.provider_reference == "PAY-0001"
    assert checkout.qr_code.startswith("weixin://wxpay/bizpayurl?pr=")
    assert checkout.redirect_url == ""
    [sent] = wechat.requests
    assert sent.method == "POST"
    assert sent.path == "/v3/pay/transactions/native"
    assert sent.authorization_valid
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json == {
        "appid": "wxd678efh567hg6787",
        "mchid": "1900000109",
        "description": "电费充值 Unit 12",
        "out_trade_no": "PAY-0001",
        "time_expire": "2025-03-01T12:30:00+08:00",
        "notify_url": "https://prepaid.example.com/payments/notify/wechat/",
        "amount": {"total": 5001, "currency": "CNY"},
    }


def test_checkout_is_authorized_with_the_merchant_key_and_serial(provider, wechat, keys):
    provider.create_checkout(checkout_request())

    [sent] = wechat.requests
    scheme, _, params = sent.headers["Authorization"].partition(" ")
    assert scheme == "WECHATPAY2-SHA256-RSA2048"
    assert f'mchid="{keys.mchid}"' in params
    assert f'serial_no="{keys.merchant_serial_no}"' in params
    for name in ("nonce_str", "signature", "timestamp"):
        assert f'{name}="' in params


def test_the_fake_refuses_a_request_signed_over_another_body(provider, wechat, keys):
    provider.create_checkout(checkout_request())

    [sent] = wechat.requests
    assert not authorization_is_valid(
        keys, sent.method, sent.path, sent.headers, sent.body.replace(b"5001", b"1")
    )


def test_mobile_checkout_places_an_h5_order_and_redirects_to_its_url(provider, wechat):
    checkout = provider.create_checkout(checkout_request(client="mobile", client_ip="203.0.113.7"))

    assert checkout.provider_reference == "PAY-0001"
    assert checkout.redirect_url.startswith("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb")
    assert checkout.qr_code == ""
    [sent] = wechat.requests
    assert sent.path == "/v3/pay/transactions/h5"
    assert sent.authorization_valid
    assert sent.json["scene_info"] == {
        "payer_client_ip": "203.0.113.7",
        "h5_info": {"type": "Wap"},
    }
    assert sent.json["amount"] == {"total": 5001, "currency": "CNY"}


def test_mobile_checkout_sends_the_configured_h5_type(keys, wechat):
    provider = build_provider(keys, wechat.url, h5_type="iOS")

    provider.create_checkout(checkout_request(client="mobile"))

    assert wechat.requests[0].json["scene_info"]["h5_info"] == {"type": "iOS"}


def test_checkout_of_a_fraction_of_a_fen_is_refused_before_calling(provider, wechat):
    with pytest.raises(ValueError, match="finer than a fen"):
        provider.create_checkout(checkout_request(amount=Decimal("50.005")))

    assert wechat.requests == []


def test_checkout_in_another_currency_is_refused(provider):
    with pytest.raises(ValueError, match="CNY"):
        provider.create_checkout(checkout_request(currency="USD"))


def test_checkout_refused_by_wechat_pay_raises_provider_error(keys, wechat):
    wechat.http_status = 500

    with pytest.raises(ProviderError, match="500"):
        build_provider(keys, wechat.url).create_checkout(checkout_request())


def test_checkout_signed_with_the_wrong_merchant_key_is_refused(keys, other_keys, wechat):
    provider = WeChatPayProvider(
        provider_settings(keys, wechat.url), provider_secrets(other_keys).__getitem__
    )

    with pytest.raises(ProviderError, match="401"):
        provider.create_checkout(checkout_request())


def test_an_answer_with_a_bad_signature_raises_provider_error(provider, wechat):
    wechat.sign_with_wrong_key = True

    with pytest.raises(ProviderError, match="signature"):
        provider.create_checkout(checkout_request())


def test_an_answer_signed_by_an_unknown_certificate_raises_provider_error(keys, other_keys, wechat):
    settings = {"platform_certificates": {other_keys.platform_serial: keys.platform_certificate}}
    provider = build_provider(keys, wechat.url, **settings)

    with pytest.raises(ProviderError, match="signature"):
        provider.create_checkout(checkout_request())


def test_an_answer_without_a_code_url_raises_provider_error(provider, wechat):
    wechat.respond("native", code_url="")

    with pytest.raises(ProviderError, match="code_url"):
        provider.create_checkout(checkout_request())


def test_an_unreachable_api_raises_provider_error(keys):
    with pytest.raises(ProviderError):
        build_provider(keys, closed_port_url()).create_checkout(checkout_request())


# Notifications


def test_a_paid_notification_is_parsed(provider, keys):
    resource = transaction_resource(
        keys, reference="PAY-0001", total_fen=5001, transaction_id="4200000000202503011234567890"
    )
    body, headers = signed_notification(keys, resource, event_id="EV-1")

    notification = provider.parse_notification(body, headers)

    assert notification.event_id == "EV-1"
    assert notification.reference == "PAY-0001"
    assert notification.status == "succeeded"
    assert notification.amount == Decimal("50.01")
    assert notification.currency == "CNY"
    assert notification.transaction_id == "4200000000202503011234567890"
    assert notification.payload["trade_state"] == "SUCCESS"
    assert notification.payload["amount"]["total"] == 5001
    assert notification.payload["id"] == "EV-1"
    assert notification.payload["event_type"] == "TRANSACTION.SUCCESS"
    assert notification.payload["create_time"] == envelope_of(body)["create_time"]


def test_notification_headers_are_read_whatever_their_case(provider, keys):
    body, headers = paid_notification(keys)

    notification = provider.parse_notification(
        body, {name.lower(): value for name, value in headers.items()}
    )

    assert notification.status == "succeeded"


def test_an_amount_in_another_currency_is_reported_as_sent(provider, keys):
    resource = transaction_resource(keys, reference="PAY-0001", total_fen=700, currency="USD")
    body, headers = signed_notification(keys, resource)

    notification = provider.parse_notification(body, headers)

    assert (notification.amount, notification.currency) == (Decimal("7.00"), "USD")


@pytest.mark.parametrize(
    ("trade_state", "status"),
    [
        ("CLOSED", "expired"),
        ("PAYERROR", "failed"),
        ("NOTPAY", "pending"),
        ("USERPAYING", "pending"),
    ],
)
def test_trade_states_map_to_payment_statuses(provider, keys, trade_state, status):
    body, headers = paid_notification(keys, trade_state=trade_state)

    assert provider.parse_notification(body, headers).status == status


def test_a_refund_notification_is_ignored(provider, keys):
    resource = refund_resource(
        keys, reference="PAY-0001", refund_reference="REF-0001", refund_fen=1250, total_fen=5000
    )
    body, headers = signed_notification(
        keys, resource, event_type="REFUND.SUCCESS", event_id="EV-R"
    )

    notification = provider.parse_notification(body, headers)

    assert notification.status == "ignored"
    assert notification.event_id == "EV-R"
    assert notification.reference == "PAY-0001"
    assert notification.amount is None
    assert notification.payload["out_refund_no"] == "REF-0001"


def test_a_refund_notification_for_another_merchant_is_rejected(provider, keys):
    resource = refund_resource(
        keys, reference="PAY-0001", refund_reference="REF-0001", refund_fen=1250, total_fen=5000
    )
    body, headers = signed_notification(
        keys, resource | {"mchid": "1900000999"}, event_type="REFUND.SUCCESS"
    )

    assert rejection_reason(provider, body, headers) == "merchant"


def test_a_tampered_event_id_is_rejected(provider, keys):
    body, headers = paid_notification(keys)
    envelope = envelope_of(body) | {"id": "EV-2"}

    assert rejection_reason(provider, json.dumps(envelope).encode(), headers) == "signature"


def test_a_tampered_amount_is_rejected(provider, keys):
    # Only the APIv3 key is needed to re-encrypt; the platform signature still gives it away.
    _, headers = paid_notification(keys)
    forged, _ = paid_notification(keys, amount={"total": 1, "currency": "CNY"})

    assert rejection_reason(provider, forged, headers) == "signature"


def test_a_tampered_ciphertext_is_rejected(provider, keys):
    body, headers = paid_notification(keys)
    envelope = envelope_of(body)
    ciphertext = bytearray(base64.b64decode(envelope["resource"]["ciphertext"]))
    ciphertext[0] ^= 1
    envelope["resource"]["ciphertext"] = base64.b64encode(ciphertext).decode()

    assert rejection_reason(provider, json.dumps(envelope).encode(), headers) == "signature"


@pytest.mark.parametrize(
    ("header", "forged"),
    [
        ("Wechatpay-Timestamp", lambda value: str(int(value) - 1)),
        ("Wechatpay-Nonce", lambda value: "0" * 32),
        ("Wechatpay-Signature", lambda value: base64.b64encode(bytes(256)).decode()),
        ("Wechatpay-Signature", lambda value: "not base64!"),
    ],
)
def test_a_tampered_signature_header_is_rejected(provider, keys, header, forged):
    body, headers = paid_notification(keys)
    headers[header] = forged(headers[header])

    assert rejection_reason(provider, body, headers) == "signature"


@pytest.mark.parametrize(
    "header",
    ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial"],
)
def test_a_missing_signature_header_is_rejected(provider, keys, header):
    body, headers = paid_notification(keys)
    del headers[header]

    with pytest.raises(NotificationRejected, match="missing") as caught:
        provider.parse_notification(body, headers)
    assert caught.value.reason == "signature"


def test_an_unknown_certificate_serial_is_rejected(provider, keys):
    body, headers = paid_notification(keys)
    headers["Wechatpay-Serial"] = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"

    assert rejection_reason(provider, body, headers) == "signature"


def test_a_notification_signed_with_another_key_is_rejected(provider, keys, other_keys):
    body, _ = paid_notification(keys)
    headers = platform_signature_headers(keys, body, private_key=other_keys.platform_private_key)

    assert rejection_reason(provider, body, headers) == "signature"


def test_a_stale_notification_is_rejected(provider, keys):
    resource = transaction_resource(keys, reference="PAY-0001", total_fen=5001)
    body, headers = signed_notification(keys, resource, timestamp=int(time.time()) - 301)

    assert rejection_reason(provider, body, headers) == "stale"


def test_a_notification_from_the_future_is_rejected(provider, keys):
    resource = transaction_resource(keys, reference="PAY-0001", total_fen=5001)
    body, headers = signed_notification(keys, resource, timestamp=int(time.time()) + 301)

    assert rejection_reason(provider, body, headers) == "stale"


def test_a_notification_a_little_late_is_accepted(provider, keys):
    resource = transaction_resource(keys, reference="PAY-0001", total_fen=5001)
    body, headers = signed_notification(keys, resource, timestamp=int(time.time()) - 240)

    assert provider.parse_notification(body, headers).status == "succeeded"


@pytest.mark.parametrize(
    "changes", [{"mchid": "1900000999"}, {"appid": "wx0000000000000000"}, {"appid": None}]
)
def test_a_notification_for_another_merchant_or_app_is_rejected(provider, keys, changes):
    body, headers = paid_notification(keys, **changes)

    assert rejection_reason(provider, body, headers) == "merchant"


def test_a_signed_body_that_is_not_json_is_rejected(provider, keys):
    body, headers = sign_notification_body(keys, b"<xml>SUCCESS</xml>")

    assert rejection_reason(provider, body, headers) == "malformed"


def test_a_resource_encrypted_with_another_apiv3_key_is_rejected(provider, keys, other_keys):
    resource = transaction_resource(keys, reference="PAY-0001", total_fen=5001)
    encrypted = encrypt_resource(keys, resource, apiv3_key=other_keys.apiv3_key)
    body = json.dumps(notification_envelope(encrypted, event_type="TRANSACTION.SUCCESS"))

    assert rejection_reason(provider, *sign_notification_body(keys, body.encode())) == "malformed"


def test_a_resource_with_other_associated_data_is_rejected(provider, keys):
    encrypted = encrypt_resource(
        keys, transaction_resource(keys, reference="PAY-0001", total_fen=5001)
    )
    encrypted["associated_data"] = "refund"
    body = json.dumps(notification_envelope(encrypted, event_type="TRANSACTION.SUCCESS"))

    assert rejection_reason(provider, *sign_notification_body(keys, body.encode())) == "malformed"


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": {"total": "5001", "currency": "CNY"}},
        {"amount": {"total": 50.01, "currency": "CNY"}},
        {"amount": None},
        {"trade_state": "UNHEARD_OF"},
        {"out_trade_no": ""},
    ],
)
def test_a_resource_with_bad_fields_is_rejected(provider, keys, changes):
    body, headers = paid_notification(keys, **changes)

    assert rejection_reason(provider, body, headers) == "malformed"


def test_answer_ok_is_an_empty_200(provider):
    answer = provider.answer_ok()

    assert (answer.status, answer.body) == (200, b"")


def test_answer_error_is_a_fail_code(provider):
    answer = provider.answer_error(NotificationRejected("stale"))

    assert answer.status == 400
    assert answer.content_type == "application/json"
    assert json.loads(answer.body) == {"code": "FAIL", "message": "stale"}


# Query


@pytest.mark.parametrize(
    ("trade_state", "status"),
    [
        ("SUCCESS", "succeeded"),
        ("NOTPAY", "pending"),
        ("USERPAYING", "pending"),
        ("PAYERROR", "failed"),
        ("CLOSED", "expired"),
    ],
)
def test_query_maps_the_trade_state(provider, wechat, keys, trade_state, status):
    wechat.orders["PAY-0001"] = transaction_resource(
        keys, reference="PAY-0001", total_fen=5001, trade_state=trade_state
    )

    report = provider.query(reference="PAY-0001", provider_reference="PAY-0001")

    assert report.status == status
    assert (report.amount, report.currency) == (Decimal("50.01"), "CNY")
    assert report.payload["trade_state"] == trade_state


def test_query_sends_a_signed_get_by_out_trade_no(provider, wechat, keys):
    provider.create_checkout(checkout_request())

    report = provider.query(reference="PAY-0001", provider_reference="PAY-0001")

    assert report.status == "pending"
    assert report.transaction_id == ""
    sent = wechat.requests[-1]
    assert sent.method == "GET"
    assert sent.path == f"/v3/pay/transactions/out-trade-no/PAY-0001?mchid={keys.mchid}"
    assert sent.authorization_valid
    assert sent.body == b""


def test_query_of_a_paid_order_reports_the_transaction_id(provider, wechat, keys):
    wechat.orders["PAY-0001"] = transaction_resource(
        keys, reference="PAY-0001", total_fen=5001, transaction_id="4200000000202503019999999999"
    )

    report = provider.query(reference="PAY-0001", provider_reference="PAY-0001")

    assert report.transaction_id == "4200000000202503019999999999"


def test_query_of_an_unknown_order_raises_provider_error(provider):
    with pytest.raises(ProviderError, match="ORDER_NOT_EXIST"):
        provider.query(reference="PAY-404", provider_reference="PAY-404")


def test_query_answered_for_another_order_raises_provider_error(provider, wechat, keys):
    wechat.orders["PAY-0001"] = transaction_resource(keys, reference="PAY-0001", total_fen=1)
    wechat.respond("query", out_trade_no="PAY-0002")

    with pytest.raises(ProviderError, match="another order"):
        provider.query(reference="PAY-0001", provider_reference="PAY-0001")


def test_query_with_an_unknown_trade_state_raises_provider_error(provider, wechat, keys):
    wechat.orders["PAY-0001"] = transaction_resource(
        keys, reference="PAY-0001", total_fen=1, trade_state="UNHEARD_OF"
    )

    with pytest.raises(ProviderError, match="trade_state"):
        provider.query(reference="PAY-0001", provider_reference="PAY-0001")


def test_query_during_an_outage_raises_provider_error(provider, wechat, keys):
    wechat.orders["PAY-0001"] = transaction_resource(keys, reference="PAY-0001", total_fen=1)
    wechat.http_status = 500

    with pytest.raises(ProviderError, match="SYSTEM_ERROR"):
        provider.query(reference="PAY-0001", provider_reference="PAY-0001")


# Refunds


def test_refund_sends_the_amounts_in_fen_against_the_transaction(provider, wechat):
    result = provider.refund(refund_request())

    assert result.status == "pending"
    assert result.provider_refund_id.startswith("5030")
    [sent] = wechat.requests
    assert sent.method == "POST"
    assert sent.path == "/v3/refund/domestic/refunds"
    assert sent.authorization_valid
    assert sent.json == {
        "out_refund_no": "REF-0001",
        "reason": "Account closed",
        "amount": {"refund": 1250, "total": 5000, "currency": "CNY"},
        "transaction_id": "4200000000202503010000000001",
    }


def test_refund_without_a_transaction_id_names_the_order(provider, wechat):
    provider.refund(refund_request(transaction_id=""))

    sent = wechat.requests[0].json
    assert sent["out_trade_no"] == "PAY-0001"
    assert "transaction_id" not in sent


@pytest.mark.parametrize(
    ("wechat_status", "status"),
    [
        ("SUCCESS", "succeeded"),
        ("PROCESSING", "pending"),
        ("ABNORMAL", "failed"),
        ("CLOSED", "failed"),
    ],
)
def test_refund_statuses_map_to_ours(provider, wechat, wechat_status, status):
    wechat.respond("refund", status=wechat_status)

    assert provider.refund(refund_request()).status == status


def test_query_refund_reads_the_refund_by_out_refund_no(provider, wechat):
    made = provider.refund(refund_request())
    wechat.refunds["REF-0001"]["status"] = "SUCCESS"

    result = provider.query_refund(refund_request())

    assert result.status == "succeeded"
    assert result.provider_refund_id == made.provider_refund_id
    sent = wechat.requests[-1]
    assert (sent.method, sent.path) == ("GET", "/v3/refund/domestic/refunds/REF-0001")
    assert sent.authorization_valid


def test_query_refund_of_an_unknown_refund_raises_provider_error(provider):
    with pytest.raises(ProviderError, match="RESOURCE_NOT_EXISTS"):
        provider.query_refund(refund_request())


def test_refund_with_an_unknown_status_raises_provider_error(provider, wechat):
    wechat.respond("refund", status="UNHEARD_OF")

    with pytest.raises(ProviderError, match="refund status"):
        provider.refund(refund_request())


def test_refund_during_an_outage_raises_provider_error(provider, wechat):
    wechat.http_status = 500

    with pytest.raises(ProviderError):
        provider.refund(refund_request())


def test_refund_to_an_unreachable_api_raises_provider_error(keys):
    with pytest.raises(ProviderError):
        build_provider(keys, closed_port_url()).refund(refund_request())
