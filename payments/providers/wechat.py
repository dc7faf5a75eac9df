"""WeChat Pay API v3 (direct merchant): Native (QR code) and H5 (mobile browser) checkout.

Requests are signed with the merchant API private key; WeChat Pay signs its answers and
notifications with a platform certificate, identified by serial in `Wechatpay-Serial`, over
"timestamp\\nnonce\\nbody\\n". Notification resources are encrypted with AEAD_AES_256_GCM under
the APIv3 key. Amounts are integer fen on the wire.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from decimal import Decimal
from email.message import Message
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

# wechatpayv3's WeChatPay() downloads platform certificates when built, so sign and verify here.
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from payments.providers.base import (
    Answer,
    Checkout,
    CheckoutRequest,
    Notification,
    NotificationRejected,
    NotificationStatus,
    PaymentProvider,
    PaymentStatus,
    ProviderError,
    RefundRequest,
    RefundResult,
    RefundStatus,
    StatusReport,
)
from prepaid.money import minor_unit

DEFAULT_API_BASE = "https://api.mch.weixin.qq.com"
DEFAULT_H5_TYPE = "Wap"
AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
CURRENCY = "CNY"
APIV3_KEY_LENGTH = 32
# WeChat Pay rejects notifications older than 5 minutes itself and asks merchants to do the same.
MAX_CLOCK_SKEW_SECONDS = 300
TIMEOUT_SECONDS = 15
# WeChat Pay refuses requests without a User-Agent.
USER_AGENT = "prepaid-wechatpay/1"
# time_expire is RFC 3339 with an offset; Beijing time reads naturally in the merchant console.
BEIJING = ZoneInfo("Asia/Shanghai")
SIGNATURE_HEADERS = ("wechatpay-timestamp", "wechatpay-nonce", "wechatpay-signature")

TRADE_STATES: dict[str, PaymentStatus] = {
    "SUCCESS": "succeeded",
    # Paid, then (partly) refunded: the payment itself went through.
    "REFUND": "succeeded",
    "CLOSED": "expired",
    "REVOKED": "failed",
    "PAYERROR": "failed",
    "NOTPAY": "pending",
    "USERPAYING": "pending",
}
REFUND_STATUSES: dict[str, RefundStatus] = {
    "SUCCESS": "succeeded",
    "PROCESSING": "pending",
    "ABNORMAL": "failed",
    "CLOSED": "failed",
}


def _fen(amount: Decimal, currency: str) -> int:
    if currency != CURRENCY:
        raise ValueError(f"WeChat Pay takes {CURRENCY}, not {currency}.")
    fen = amount / minor_unit(currency)
    if fen != fen.to_integral_value():
        raise ValueError(f"{amount} {currency} is finer than a fen.")
    return int(fen)


def _major(fen: int, currency: str) -> Decimal:
    return Decimal(fen) * minor_unit(currency)


def _dumps(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class WeChatPayProvider(PaymentProvider):
    """Settings: mchid, appid, merchant_serial_no (serial of the merchant API certificate),
    platform_certificates (serial -> PEM of WeChat Pay platform certificates), api_base,
    h5_type ("Wap", "iOS" or "Android").

    Secrets: merchant_private_key (PEM of the merchant API key), apiv3_key (32 characters).
    """

    name = "wechat"

    @property
    def api_base(self) -> str:
        return (self.settings.get("api_base") or DEFAULT_API_BASE).rstrip("/")

    @property
    def mchid(self) -> str:
        return self.settings["mchid"]

    @property
    def appid(self) -> str:
        return self.settings["appid"]

    @cached_property
    def _merchant_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(
            self.secret("merchant_private_key").encode(), password=None
        )
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("The WeChat Pay merchant private key must be an RSA key.")
        return key

    @cached_property
    def _aead(self) -> AESGCM:
        key = self.secret("apiv3_key").encode()
        if len(key) != APIV3_KEY_LENGTH:
            raise ValueError(f"The WeChat Pay APIv3 key must be {APIV3_KEY_LENGTH} characters.")
        return AESGCM(key)

    @cached_property
    def _platform_keys(self) -> dict[str, rsa.RSAPublicKey]:
        keys = {}
        for serial, pem in (self.settings.get("platform_certificates") or {}).items():
            key = x509.load_pem_x509_certificate(pem.encode()).public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                raise ValueError(f"WeChat Pay platform certificate {serial} is not an RSA key.")
            keys[serial.upper()] = key
        return keys

    # Signatures ----------------------------------------------------------------------------

    def _authorization(self, method: str, path: str, body: bytes) -> str:
        nonce = secrets.token_hex(16).upper()
        timestamp = str(int(time.time()))
        message = f"{method}\n{path}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = self._merchant_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return (
            f'{AUTH_SCHEME} mchid="{self.mchid}",nonce_str="{nonce}",'
            f'signature="{base64.b64encode(signature).decode()}",timestamp="{timestamp}",'
            f'serial_no="{self.settings["merchant_serial_no"]}"'
        )

    def _signed_by_platform(
        self, *, serial: str, timestamp: str, nonce: str, signature: str, body: bytes
    ) -> bool:
        key = self._platform_keys.get(serial.upper())
        if key is None:
            return False
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
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

    # Outbound calls ------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        url = self.api_base + path
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ProviderError(f"WeChat Pay API base {self.api_base!r} is not an http(s) URL.")
        body = _dumps(payload) if payload is not None else b""
        headers = {
            "Authorization": self._authorization(method, path, body),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
            url, data=body if payload is not None else None, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
                raw, response_headers = response.read(), response.headers
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", "replace")
            raise ProviderError(f"WeChat Pay refused {method} {path}: {exc.code} {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ProviderError(f"WeChat Pay call {method} {path} failed: {exc}") from exc
        self._verify_response(raw, response_headers, what=f"{method} {path}")
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProviderError(f"WeChat Pay answered {method} {path} with no JSON.") from exc
        if not isinstance(data, dict):
            raise ProviderError(f"WeChat Pay answered {method} {path} with no JSON object.")
        return data

    def _verify_response(self, raw: bytes, headers: Message, *, what: str) -> None:
        fields = {name: headers.get(name, "") for name in (*SIGNATURE_HEADERS, "wechatpay-serial")}
        if not all(fields.values()) or not self._signed_by_platform(
            serial=fields["wechatpay-serial"],
            timestamp=fields["wechatpay-timestamp"],
            nonce=fields["wechatpay-nonce"],
            signature=fields["wechatpay-signature"],
            body=raw,
        ):
            raise ProviderError(f"WeChat Pay's answer to {what} has a bad or missing signature.")

    # Checkout ------------------------------------------------------------------------------

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        payload: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "description": request.description,
            "out_trade_no": request.reference,
            "time_expire": request.expires_at.astimezone(BEIJING).isoformat(timespec="seconds"),
            "notify_url": request.notify_url,
            "amount": {"total": _fen(request.amount, request.currency), "currency": CURRENCY},
        }
        if request.client == "mobile":
            payload["scene_info"] = {
                "payer_client_ip": request.client_ip,
                "h5_info": {"type": self.settings.get("h5_type") or DEFAULT_H5_TYPE},
            }
            answer = self._call("POST", "/v3/pay/transactions/h5", payload=payload)
            h5_url = answer.get("h5_url")
            if not isinstance(h5_url, str) or not h5_url:
                raise ProviderError(f"WeChat Pay H5 order has no h5_url: {answer}")
            # WeChat Pay knows orders by out_trade_no; it has no id of its own until payment.
            return Checkout(provider_reference=request.reference, redirect_url=h5_url)
        answer = self._call("POST", "/v3/pay/transactions/native", payload=payload)
        code_url = answer.get("code_url")
        if not isinstance(code_url, str) or not code_url:
            raise ProviderError(f"WeChat Pay Native order has no code_url: {answer}")
        return Checkout(provider_reference=request.reference, qr_code=code_url)

    # Notifications -------------------------------------------------------------------------

    def parse_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        lowered = {key.lower(): value for key, value in headers.items()}
        fields = {name: lowered.get(name, "") for name in (*SIGNATURE_HEADERS, "wechatpay-serial")}
        if not all(fields.values()):
            raise NotificationRejected("signature", "Wechatpay-* signature headers are missing.")
        serial = fields["wechatpay-serial"]
        if serial.upper() not in self._platform_keys:
            raise NotificationRejected("signature", f"Unknown platform certificate {serial}.")
        timestamp = fields["wechatpay-timestamp"]
        if not timestamp.isdigit():
            raise NotificationRejected("signature", f"Bad Wechatpay-Timestamp {timestamp!r}.")
        if abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
            raise NotificationRejected("stale", f"Wechatpay-Timestamp {timestamp}.")
        if not self._signed_by_platform(
            serial=serial,
            timestamp=timestamp,
            nonce=fields["wechatpay-nonce"],
            signature=fields["wechatpay-signature"],
            body=body,
        ):
            raise NotificationRejected("signature")
        envelope, resource = self._decrypt(body)
        event_type = envelope["event_type"]
        payload = {
            **resource,
            "id": envelope["id"],
            "event_type": event_type,
            "create_time": envelope.get("create_time", ""),
        }
        reference = resource.get("out_trade_no", "")
        if not isinstance(reference, str):
            raise NotificationRejected("malformed", "out_trade_no is not a string.")
        if not event_type.startswith("TRANSACTION."):
            # Refund results and other events: authentic, but nothing for a payment to act on.
            if "mchid" in resource and resource["mchid"] != self.mchid:
                raise NotificationRejected("merchant", f"mchid {resource['mchid']!r}.")
            return Notification(
                event_id=envelope["id"], reference=reference, status="ignored", payload=payload
            )
        if resource.get("mchid") != self.mchid or resource.get("appid") != self.appid:
            raise NotificationRejected(
                "merchant", f"mchid {resource.get('mchid')!r}, appid {resource.get('appid')!r}."
            )
        status: NotificationStatus | None = TRADE_STATES.get(str(resource.get("trade_state")))
        if status is None:
            raise NotificationRejected("malformed", f"trade_state {resource.get('trade_state')!r}.")
        try:
            amount, currency = self._amount(resource)
        except ValueError as exc:
            raise NotificationRejected("malformed", str(exc)) from exc
        if not reference or amount is None:
            raise NotificationRejected("malformed", "out_trade_no or amount is missing.")
        return Notification(
            event_id=envelope["id"],
            reference=reference,
            status=status,
            amount=amount,
            currency=currency,
            transaction_id=str(resource.get("transaction_id") or ""),
            payload=payload,
        )

    def _decrypt(self, body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            envelope = json.loads(body)
            encrypted = envelope["resource"]
            if not isinstance(envelope["id"], str) or not isinstance(envelope["event_type"], str):
                raise TypeError("id and event_type must be strings.")
            if encrypted.get("algorithm") != "AEAD_AES_256_GCM":
                raise ValueError(f"Unknown algorithm {encrypted.get('algorithm')!r}.")
            plaintext = self._aead.decrypt(
                encrypted["nonce"].encode(),
                base64.b64decode(encrypted["ciphertext"], validate=True),
                (encrypted.get("associated_data") or "").encode(),
            )
            resource = json.loads(plaintext)
        except InvalidTag as exc:
            raise NotificationRejected("malformed", "The resource does not decrypt.") from exc
        except (ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
            raise NotificationRejected("malformed", str(exc)) from exc
        if not isinstance(resource, dict):
            raise NotificationRejected("malformed", "The resource is not a JSON object.")
        return envelope, resource

    @staticmethod
    def _amount(data: Mapping[str, Any]) -> tuple[Decimal | None, str | None]:
        amount = data.get("amount")
        if amount is None:
            return None, None
        if not isinstance(amount, dict):
            raise ValueError("amount is not an object.")
        total, currency = amount.get("total"), amount.get("currency", CURRENCY)
        if not isinstance(total, int) or isinstance(total, bool) or not isinstance(currency, str):
            raise ValueError(f"amount {amount!r} has no integer total.")
        return _major(total, currency), currency

    def answer_ok(self) -> Answer:
        # WeChat Pay takes a 200 or 204 with no body as "received"; anything else is retried.
        return Answer(200, b"", "text/plain")

    def answer_error(self, rejection: NotificationRejected) -> Answer:
        body = _dumps({"code": "FAIL", "message": rejection.reason})
        return Answer(400, body, "application/json")

    # Queries and refunds -------------------------------------------------------------------

    def query(self, *, reference: str, provider_reference: str) -> StatusReport:
        path = f"/v3/pay/transactions/out-trade-no/{urllib.parse.quote(reference, safe='')}"
        answer = self._call("GET", path, query={"mchid": self.mchid})
        if answer.get("out_trade_no") != reference:
            raise ProviderError(f"WeChat Pay answered for another order: {answer}")
        status = TRADE_STATES.get(str(answer.get("trade_state")))
        if status is None:
            raise ProviderError(f"Unknown WeChat Pay trade_state {answer.get('trade_state')!r}.")
        try:
            amount, currency = self._amount(answer)
        except ValueError as exc:
            raise ProviderError(f"WeChat Pay order answer is malformed: {exc}") from exc
        return StatusReport(
            status=status,
            amount=amount,
            currency=currency,
            transaction_id=str(answer.get("transaction_id") or ""),
            payload=answer,
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        payload: dict[str, Any] = {
            "out_refund_no": request.refund_reference,
            "reason": request.reason,
            "amount": {
                "refund": _fen(request.amount, request.currency),
                "total": _fen(request.total, request.currency),
                "currency": CURRENCY,
            },
        }
        # WeChat Pay takes one of the two; its own transaction id is the unambiguous one.
        if request.transaction_id:
            payload["transaction_id"] = request.transaction_id
        else:
            payload["out_trade_no"] = request.reference
        return self._refund_result(
            self._call("POST", "/v3/refund/domestic/refunds", payload=payload)
        )

    def query_refund(self, request: RefundRequest) -> RefundResult:
        out_refund_no = urllib.parse.quote(request.refund_reference, safe="")
        return self._refund_result(
            self._call("GET", f"/v3/refund/domestic/refunds/{out_refund_no}")
        )

    @staticmethod
    def _refund_result(answer: dict[str, Any]) -> RefundResult:
        status = REFUND_STATUSES.get(str(answer.get("status")))
        if status is None:
            raise ProviderError(f"Unknown WeChat Pay refund status {answer.get('status')!r}.")
        return RefundResult(
            status=status, provider_refund_id=str(answer.get("refund_id") or ""), payload=answer
        )
