"""A loopback Alipay gateway and correctly signed Alipay notifications, for tests and benchmarks.

Signing here uses `cryptography` directly, not the SDK the provider uses, so the two check each
other. Alipay's RSA2 is RSASSA-PKCS1-v1_5 with SHA-256 over "k=v&k=v" of the sorted fields,
base64-encoded: requests sign everything but `sign`; notifications leave out `sign` and
`sign_type`; gateway answers sign the JSON text of their `*_response` object as sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.payments.fakes.loopback import LoopbackServer

SHANGHAI = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass(frozen=True)
class AlipayKeys:
    # The merchant app's pair: it signs requests; its public half is uploaded to Alipay.
    app_private_key: str
    app_public_key: str
    # Alipay's pair: it signs notifications and answers; the public half is in the console.
    alipay_private_key: str
    alipay_public_key: str
    app_id: str = "2021000000000001"
    seller_id: str = "2088000000000001"


def _key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private.decode(), public.decode()


def make_keys() -> AlipayKeys:
    app_private, app_public = _key_pair()
    alipay_private, alipay_public = _key_pair()
    return AlipayKeys(app_private, app_public, alipay_private, alipay_public)


def provider_settings(keys: AlipayKeys, gateway: str) -> dict[str, str]:
    return {
        "app_id": keys.app_id,
        "seller_id": keys.seller_id,
        "alipay_public_key": keys.alipay_public_key,
        "gateway": gateway,
    }


def provider_secrets(keys: AlipayKeys) -> dict[str, str]:
    return {"app_private_key": keys.app_private_key}


def rsa2_sign(private_key_pem: str, message: str) -> str:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    signature = key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def rsa2_verify(public_key_pem: str, message: str, signature: str) -> bool:
    key = serialization.load_pem_public_key(public_key_pem.encode())
    try:
        key.verify(
            base64.b64decode(signature, validate=True),
            message.encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def signing_string(fields: Mapping[str, str], *, leave_out: tuple[str, ...]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k not in leave_out)


def request_signature_is_valid(keys: AlipayKeys, params: Mapping[str, str]) -> bool:
    """Whether a gateway request (or checkout redirect query) is signed by the app's key."""
    signature = params.get("sign", "")
    message = signing_string(params, leave_out=("sign",))
    return bool(signature) and rsa2_verify(keys.app_public_key, message, signature)


def notification_fields(
    keys: AlipayKeys,
    *,
    reference: str,
    total_amount: str,
    trade_status: str = "TRADE_SUCCESS",
    notify_id: str | None = None,
    trade_no: str | None = None,
    app_id: str | None = None,
    seller_id: str | None = None,
) -> dict[str, str]:
    """The fields of a trade_status_sync notification as Alipay sends them, before signing."""
    now = datetime.now(SHANGHAI)
    app_id = app_id or keys.app_id
    return {
        "gmt_create": (now - timedelta(minutes=1)).strftime(TIME_FORMAT),
        "gmt_payment": now.strftime(TIME_FORMAT),
        "notify_time": now.strftime(TIME_FORMAT),
        "charset": "utf-8",
        "version": "1.0",
        "sign_type": "RSA2",
        "notify_type": "trade_status_sync",
        "notify_id": notify_id or secrets.token_hex(16),
        "app_id": app_id,
        "auth_app_id": app_id,
        "seller_id": seller_id or keys.seller_id,
        "out_trade_no": reference,
        "trade_no": trade_no or "2025" + secrets.token_hex(12),
        "trade_status": trade_status,
        "total_amount": total_amount,
        "receipt_amount": total_amount,
        "invoice_amount": total_amount,
        "buyer_pay_amount": total_amount,
        "point_amount": "0.00",
        "fund_bill_list": json.dumps([{"amount": total_amount, "fundChannel": "ALIPAYACCOUNT"}]),
        "subject": "电费充值",
        "buyer_id": "2088102177846880",
        "buyer_logon_id": "pay***@example.com",
    }


def sign_notification_fields(
    keys: AlipayKeys, fields: Mapping[str, str]
) -> tuple[bytes, dict[str, str]]:
    """Sign any fields with Alipay's key, as a notification body with its headers."""
    message = signing_string(fields, leave_out=("sign", "sign_type"))
    signed = {**fields, "sign": rsa2_sign(keys.alipay_private_key, message)}
    return urllib.parse.urlencode(signed).encode(), dict(FORM_HEADERS)


def signed_notification(
    keys: AlipayKeys,
    *,
    reference: str,
    total_amount: str,
    trade_status: str = "TRADE_SUCCESS",
    notify_id: str | None = None,
    trade_no: str | None = None,
    app_id: str | None = None,
    seller_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    fields = notification_fields(
        keys,
        reference=reference,
        total_amount=total_amount,
        trade_status=trade_status,
        notify_id=notify_id,
        trade_no=trade_no,
        app_id=app_id,
        seller_id=seller_id,
    )
    return sign_notification_fields(keys, fields)


@dataclass(frozen=True)
class GatewayRequest:
    http_method: str
    headers: dict[str, str]
    params: dict[str, str]
    signature_valid: bool

    @property
    def method(self) -> str:
        return self.params.get("method", "")

    @property
    def biz_content(self) -> dict[str, Any]:
        return json.loads(self.params.get("biz_content") or "{}")


@dataclass
class FakeAlipay(LoopbackServer):
    """The Alipay gateway on 127.0.0.1, answering server API calls like openapi.alipay.com.

    `responses[method]` holds the fields of that method's `*_response` object (code 10000 and
    the request's out_trade_no / out_request_no are filled in unless given); `http_status`
    other than 200 answers with a bare error page; `sign_with_wrong_key` signs answers with a
    key that is not Alipay's.
    """

    keys: AlipayKeys
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    http_status: int = 200
    sign_with_wrong_key: bool = False
    requests: list[GatewayRequest] = field(default_factory=list)

    def respond(self, method: str, **fields: Any) -> None:
        self.responses[method] = fields

    @property
    def url(self) -> str:
        return f"{self.origin}/gateway.do"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    def answer(self, params: dict[str, str], signature_valid: bool) -> bytes:
        method = params.get("method", "")
        response_key = method.replace(".", "_") + "_response"
        if not signature_valid:
            fields: dict[str, Any] = {
                "code": "40002",
                "msg": "Invalid Arguments",
                "sub_code": "isv.invalid-signature",
                "sub_msg": "验签出错",
            }
        elif params.get("app_id") != self.keys.app_id:
            fields = {
                "code": "40002",
                "msg": "Invalid Arguments",
                "sub_code": "isv.invalid-app-id",
                "sub_msg": "无效的AppID参数",
            }
        else:
            fields = self._success_fields(params) | self.responses.get(method, {})
        inner = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        signing_key = self.keys.alipay_private_key
        if self.sign_with_wrong_key:
            signing_key = self.keys.app_private_key
        sign = rsa2_sign(signing_key, inner)
        return f'{{"{response_key}":{inner},"sign":"{sign}"}}'.encode()

    @staticmethod
    def _success_fields(params: dict[str, str]) -> dict[str, Any]:
        biz_content = json.loads(params.get("biz_content") or "{}")
        echoed = {k: biz_content[k] for k in ("out_trade_no", "out_request_no") if k in biz_content}
        return {"code": "10000", "msg": "Success", **echoed}


def _handler_for(fake: FakeAlipay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._serve(self.rfile.read(length).decode("utf-8"))

        def do_GET(self) -> None:
            self._serve("")

        def _serve(self, form: str) -> None:
            query = urllib.parse.urlsplit(self.path).query
            params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
            params.update(urllib.parse.parse_qsl(form, keep_blank_values=True))
            signature_valid = request_signature_is_valid(fake.keys, params)
            fake.requests.append(
                GatewayRequest(self.command, dict(self.headers.items()), params, signature_valid)
            )
            if fake.http_status != 200:
                body = b"<html><body>Internal Server Error</body></html>"
                content_type = "text/html"
                self.send_response(fake.http_status)
            else:
                body = fake.answer(params, signature_valid)
                content_type = "text/html;charset=utf-8"
                self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Keep test output quiet.
            pass

    return Handler
