"""A loopback WeChat Pay API v3 server and correctly signed notifications, for tests and benchmarks.

Merchant requests carry `Authorization: WECHATPAY2-SHA256-RSA2048 mchid=..,nonce_str=..,
signature=..,timestamp=..,serial_no=..`, an RSA-SHA256 (PKCS#1 v1.5) signature over
"METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n" made with the merchant API key. WeChat Pay
signs answers and notifications with its platform key over "TIMESTAMP\\nNONCE\\nBODY\\n", naming
the platform certificate's serial in `Wechatpay-Serial`, and encrypts a notification's resource
with AEAD_AES_256_GCM under the APIv3 key.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import string
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from tests.payments.fakes.loopback import LoopbackServer

BEIJING = ZoneInfo("Asia/Shanghai")
AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
_ALPHANUMERIC = string.ascii_letters + string.digits
_AUTH_FIELD = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class WeChatKeys:
    # The merchant API key: it signs requests; WeChat Pay holds the certificate with this serial.
    merchant_private_key: str
    merchant_public_key: str
    merchant_serial_no: str
    # A WeChat Pay platform key: it signs answers and notifications; merchants get the certificate.
    platform_private_key: str
    platform_certificate: str
    platform_serial: str
    apiv3_key: str
    mchid: str = "1900000109"
    appid: str = "wxd678efh567hg6787"


def _private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _self_signed(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpay.com"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )


def make_keys() -> WeChatKeys:
    merchant = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    platform = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = _self_signed(platform, "Tenpay.com Root CA")
    return WeChatKeys(
        merchant_private_key=_private_pem(merchant),
        merchant_public_key=merchant.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        merchant_serial_no=secrets.token_hex(20).upper(),
        platform_private_key=_private_pem(platform),
        platform_certificate=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        platform_serial=format(certificate.serial_number, "X"),
        apiv3_key="".join(secrets.choice(_ALPHANUMERIC) for _ in range(32)),
    )


def provider_settings(keys: WeChatKeys, api_base: str) -> dict[str, Any]:
    return {
        "mchid": keys.mchid,
        "appid": keys.appid,
        "merchant_serial_no": keys.merchant_serial_no,
        "platform_certificates": {keys.platform_serial: keys.platform_certificate},
        "api_base": api_base,
    }


def provider_secrets(keys: WeChatKeys) -> dict[str, str]:
    return {"merchant_private_key": keys.merchant_private_key, "apiv3_key": keys.apiv3_key}


def _nonce() -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(32))


def rsa_sign(private_key_pem: str, message: bytes) -> str:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(public_key_pem: str, message: bytes, signature: str) -> bool:
    key = serialization.load_pem_public_key(public_key_pem.encode())
    try:
        key.verify(
            base64.b64decode(signature, validate=True),
            message,
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def platform_signature_headers(
    keys: WeChatKeys,
    body: bytes,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
    private_key: str | None = None,
) -> dict[str, str]:
    """The Wechatpay-* headers WeChat Pay puts on an answer or notification with this body.

    `private_key` signs in place of the platform key, to forge a signature.
    """
    timestamp_text = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or _nonce()
    message = f"{timestamp_text}\n{nonce}\n".encode() + body + b"\n"
    return {
        "Wechatpay-Timestamp": timestamp_text,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": rsa_sign(private_key or keys.platform_private_key, message),
        "Wechatpay-Serial": keys.platform_serial,
        "Wechatpay-Signature-Type": AUTH_SCHEME,
    }


def encrypt_resource(
    keys: WeChatKeys,
    resource: dict[str, Any],
    *,
    original_type: str = "transaction",
    associated_data: str | None = None,
    apiv3_key: str | None = None,
) -> dict[str, str]:
    """A notification's `resource` object, as WeChat Pay encrypts it."""
    associated_data = original_type if associated_data is None else associated_data
    nonce = "".join(secrets.choice(_ALPHANUMERIC) for _ in range(12))
    plaintext = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode()
    ciphertext = AESGCM((apiv3_key or keys.apiv3_key).encode()).encrypt(
        nonce.encode(), plaintext, associated_data.encode()
    )
    return {
        "original_type": original_type,
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "associated_data": associated_data,
        "nonce": nonce,
    }


def notification_envelope(
    encrypted: dict[str, str], *, event_type: str, event_id: str | None = None
) -> dict[str, Any]:
    """The JSON body of a notification around an encrypted resource."""
    return {
        "id": event_id or str(uuid.uuid4()),
        "create_time": datetime.now(BEIJING).isoformat(timespec="seconds"),
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "退款成功" if event_type.startswith("REFUND.") else "支付成功",
        "resource": encrypted,
    }


def sign_notification_body(
    keys: WeChatKeys, body: bytes, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """Any body, with the headers WeChat Pay would send it with."""
    headers = {"Content-Type": "application/json"}
    headers.update(platform_signature_headers(keys, body, timestamp=timestamp))
    return body, headers


def signed_notification(
    keys: WeChatKeys,
    resource: dict[str, Any],
    *,
    event_type: str = "TRANSACTION.SUCCESS",
    event_id: str | None = None,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A notification of `resource` (see `transaction_resource`), encrypted and signed."""
    original_type = "refund" if event_type.startswith("REFUND.") else "transaction"
    envelope = notification_envelope(
        encrypt_resource(keys, resource, original_type=original_type),
        event_type=event_type,
        event_id=event_id,
    )
    body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
    return sign_notification_body(keys, body, timestamp=timestamp)


def transaction_resource(
    keys: WeChatKeys,
    *,
    reference: str,
    total_fen: int,
    trade_state: str = "SUCCESS",
    transaction_id: str | None = None,
    currency: str = "CNY",
) -> dict[str, Any]:
    """A transaction as WeChat Pay reports it, decrypted in a notification or in a query."""
    resource: dict[str, Any] = {
        "appid": keys.appid,
        "mchid": keys.mchid,
        "out_trade_no": reference,
        "trade_type": "NATIVE",
        "trade_state": trade_state,
        "trade_state_desc": {"SUCCESS": "支付成功", "NOTPAY": "未支付"}.get(trade_state, ""),
        "attach": "",
        "amount": {"total": total_fen, "currency": currency},
    }
    # Only a payment that went through has a transaction id, payer and payment time.
    if transaction_id or trade_state in ("SUCCESS", "REFUND"):
        resource["transaction_id"] = transaction_id or "4200" + "".join(
            secrets.choice(string.digits) for _ in range(24)
        )
        resource["bank_type"] = "OTHERS"
        resource["success_time"] = datetime.now(BEIJING).isoformat(timespec="seconds")
        resource["payer"] = {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
        resource["amount"].update(payer_total=total_fen, payer_currency=currency)
    return resource


def refund_resource(
    keys: WeChatKeys,
    *,
    reference: str,
    refund_reference: str,
    refund_fen: int,
    total_fen: int,
    refund_status: str = "SUCCESS",
) -> dict[str, Any]:
    """A refund result as decrypted from a REFUND.* notification."""
    return {
        "mchid": keys.mchid,
        "out_trade_no": reference,
        "transaction_id": "4200" + "".join(secrets.choice(string.digits) for _ in range(24)),
        "out_refund_no": refund_reference,
        "refund_id": "5030" + "".join(secrets.choice(string.digits) for _ in range(25)),
        "refund_status": refund_status,
        "success_time": datetime.now(BEIJING).isoformat(timespec="seconds"),
        "user_received_account": "支付用户零钱",
        "amount": {
            "total": total_fen,
            "refund": refund_fen,
            "payer_total": total_fen,
            "payer_refund": refund_fen,
        },
    }


@dataclass(frozen=True)
class ApiRequest:
    method: str
    # The path with its query string, exactly as signed.
    path: str
    headers: dict[str, str]
    body: bytes
    endpoint: str
    authorization_valid: bool

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body) if self.body else {}

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))


def authorization_is_valid(
    keys: WeChatKeys, method: str, path: str, headers: Mapping[str, str], body: bytes
) -> bool:
    """Whether a request carries the merchant's v3 Authorization, as WeChat Pay checks it."""
    authorization = headers.get("Authorization") or ""
    scheme, _, params = authorization.partition(" ")
    fields = dict(_AUTH_FIELD.findall(params))
    if (
        scheme != AUTH_SCHEME
        or fields.get("mchid") != keys.mchid
        or fields.get("serial_no") != keys.merchant_serial_no
        or not fields.get("timestamp", "").isdigit()
        or abs(time.time() - int(fields["timestamp"])) > 300
    ):
        return False
    message = f"{method}\n{path}\n{fields['timestamp']}\n{fields.get('nonce_str', '')}\n".encode()
    return rsa_verify(keys.merchant_public_key, message + body + b"\n", fields.get("signature", ""))


_ROUTES = (
    ("POST", re.compile(r"/v3/pay/transactions/native"), "native"),
    ("POST", re.compile(r"/v3/pay/transactions/h5"), "h5"),
    ("GET", re.compile(r"/v3/pay/transactions/out-trade-no/(?P<id>[^/?]+)"), "query"),
    ("POST", re.compile(r"/v3/refund/domestic/refunds"), "refund"),
    ("GET", re.compile(r"/v3/refund/domestic/refunds/(?P<id>[^/?]+)"), "query_refund"),
)


@dataclass
class FakeWeChatPay(LoopbackServer):
    """WeChat Pay's v3 API on 127.0.0.1, answering like api.mch.weixin.qq.com.

    Orders placed through `native` or `h5` land in `orders` (NOTPAY), which `query` answers
    from; put a `transaction_resource` there to change what a query reports. Refunds land in
    `refunds` (PROCESSING), which `query_refund` answers from. `responses[endpoint]` holds
    fields laid over an endpoint's answer (endpoints: native, h5, query, refund, query_refund).
    `http_status` other than 200 answers every call with WeChat Pay's error JSON;
    `sign_with_wrong_key` signs answers with a key that is not the platform's. A request whose
    Authorization does not verify with the merchant's public key gets 401 SIGN_ERROR.
    """

    keys: WeChatKeys
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    http_status: int = 200
    sign_with_wrong_key: bool = False
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[ApiRequest] = field(default_factory=list)

    def respond(self, endpoint: str, **fields: Any) -> None:
        self.responses[endpoint] = fields

    @property
    def url(self) -> str:
        return self.origin

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    def route(self, method: str, path: str) -> tuple[str, str]:
        bare = urllib.parse.urlsplit(path).path
        for route_method, pattern, endpoint in _ROUTES:
            match = pattern.fullmatch(bare)
            if method == route_method and match:
                return endpoint, urllib.parse.unquote(match.groupdict().get("id") or "")
        return "", ""

    def answer(self, request: ApiRequest, resource_id: str) -> tuple[int, dict[str, Any]]:
        if self.http_status != 200:
            return self.http_status, {"code": "SYSTEM_ERROR", "message": "系统错误"}
        if not request.endpoint:
            return 404, {"code": "NOT_FOUND", "message": "无效的请求地址"}
        if not request.authorization_valid:
            return 401, {"code": "SIGN_ERROR", "message": "签名错误"}
        overrides = self.responses.get(request.endpoint, {})
        body = request.json
        if request.endpoint in ("native", "h5"):
            if body.get("mchid") != self.keys.mchid or body.get("appid") != self.keys.appid:
                return 400, {"code": "PARAM_ERROR", "message": "appid和mch_id不匹配"}
            self.orders.setdefault(
                body["out_trade_no"],
                transaction_resource(
                    self.keys,
                    reference=body["out_trade_no"],
                    total_fen=body["amount"]["total"],
                    trade_state="NOTPAY",
                ),
            )
            token = secrets.token_urlsafe(12)
            if request.endpoint == "native":
                return 200, {"code_url": f"weixin://wxpay/bizpayurl?pr={token}", **overrides}
            h5_url = f"https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx{token}"
            return 200, {"h5_url": h5_url, **overrides}
        if request.endpoint == "query":
            if request.query.get("mchid") != self.keys.mchid:
                return 400, {"code": "PARAM_ERROR", "message": "mchid不正确"}
            if resource_id not in self.orders:
                return 404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}
            return 200, {**self.orders[resource_id], **overrides}
        if request.endpoint == "refund":
            refund = {
                "refund_id": "5030" + "".join(secrets.choice(string.digits) for _ in range(25)),
                "out_refund_no": body["out_refund_no"],
                "transaction_id": body.get("transaction_id", ""),
                "out_trade_no": body.get("out_trade_no", ""),
                "channel": "ORIGINAL",
                "user_received_account": "支付用户零钱",
                "create_time": datetime.now(BEIJING).isoformat(timespec="seconds"),
                "status": "PROCESSING",
                "amount": {
                    "total": body["amount"]["total"],
                    "refund": body["amount"]["refund"],
                    "payer_total": body["amount"]["total"],
                    "payer_refund": body["amount"]["refund"],
                    "currency": body["amount"]["currency"],
                },
                **overrides,
            }
            # A retry with the same out_refund_no gets the refund already made.
            return 200, self.refunds.setdefault(body["out_refund_no"], refund)
        if resource_id not in self.refunds:
            return 404, {"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"}
        return 200, {**self.refunds[resource_id], **overrides}


def _handler_for(fake: FakeWeChatPay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._serve(self.rfile.read(length))

        def do_GET(self) -> None:
            self._serve(b"")

        def _serve(self, body: bytes) -> None:
            endpoint, resource_id = fake.route(self.command, self.path)
            headers = dict(self.headers.items())
            request = ApiRequest(
                method=self.command,
                path=self.path,
                headers=headers,
                body=body,
                endpoint=endpoint,
                authorization_valid=authorization_is_valid(
                    fake.keys, self.command, self.path, headers, body
                ),
            )
            fake.requests.append(request)
            status, data = fake.answer(request, resource_id)
            raw = json.dumps(data, ensure_ascii=False).encode()
            signing_key = fake.keys.merchant_private_key if fake.sign_with_wrong_key else None
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("Request-ID", str(uuid.uuid4()))
            for name, value in platform_signature_headers(
                fake.keys, raw, private_key=signing_key
            ).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            # Keep test output quiet.
            pass

    return Handler
