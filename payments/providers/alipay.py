"""Alipay (open platform, RSA2 public-key mode): desktop and mobile web checkout.

Checkout is a redirect to the gateway carrying a request signed with the app's private key.
Notifications and gateway answers are signed with Alipay's private key and checked against the
Alipay public key from the merchant console. Amounts are yuan strings with two decimals.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError

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
    StatusReport,
)

DEFAULT_GATEWAY = "https://openapi.alipay.com/gateway.do"
SIGN_TYPE = "RSA2"
CURRENCY = "CNY"
FEN = Decimal("0.01")
# Alipay reads every time on the wire (timestamp, time_expire, notify_time) as Beijing time.
ALIPAY_TZ = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIMEOUT_SECONDS = 15
SUCCESS_CODE = "10000"
# "Service unavailable": the outcome is unknown and Alipay asks for a retry with the same ids.
UNKNOWN_OUTCOME_CODE = "20000"

TRADE_STATUSES: dict[str, PaymentStatus] = {
    "TRADE_SUCCESS": "succeeded",
    "TRADE_FINISHED": "succeeded",
    "TRADE_CLOSED": "expired",
    "WAIT_BUYER_PAY": "pending",
}
NOTIFICATION_FIELDS = ("out_trade_no", "trade_status", "total_amount", "notify_id")
# Present only on the notifications Alipay sends after a refund of a paid trade.
REFUND_NOTIFICATION_FIELDS = ("refund_fee", "gmt_refund", "out_biz_no")


class _GatewayAliPay(AliPay):
    """The SDK client, pointed at a configurable gateway, its server calls POSTed as a form."""

    def __init__(self, *, gateway: str, **kwargs: Any):
        super().__init__(**kwargs)
        # The SDK only knows its two hard-coded gateways; tests point this at a loopback one.
        self._gateway = gateway

    def verified_sync_response(self, data: dict[str, Any], response_type: str) -> dict[str, Any]:
        # The SDK GETs the signed request inside the URL and lets urllib's errors escape; Alipay
        # documents a POSTed form, and callers need every transport failure as ProviderError.
        if urllib.parse.urlsplit(self._gateway).scheme not in ("http", "https"):
            raise ProviderError(f"Alipay gateway {self._gateway!r} is not an http(s) URL.")
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
            self._gateway,
            data=self.sign_data(data).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
                raw = response.read().decode("utf-8")
        except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
            raise ProviderError(f"Alipay gateway call failed: {exc}") from exc
        try:
            return self._verify_and_return_sync_response(raw, response_type)
        except AliPayValidationError as exc:
            raise ProviderError("Alipay gateway answer has a bad signature.") from exc
        except (AliPayException, ValueError, AttributeError, TypeError) as exc:
            # Unsigned error answers, or no JSON at all (a proxy's error page).
            raise ProviderError(f"Alipay gateway refused the call: {raw[:500]}") from exc


def _yuan(amount: Decimal) -> str:
    quantized = amount.quantize(FEN)
    if quantized != amount:
        raise ValueError(f"{amount} CNY is finer than a fen.")
    return f"{quantized:.2f}"


def _beijing(moment: datetime) -> str:
    return moment.astimezone(ALIPAY_TZ).strftime(TIME_FORMAT)


class AlipayProvider(PaymentProvider):
    """Settings: app_id, seller_id (PID, 2088...), alipay_public_key (PEM), gateway.

    Secret: app_private_key (PEM), the key whose public half is uploaded to the console.
    """

    name = "alipay"

    @property
    def gateway(self) -> str:
        return self.settings.get("gateway") or DEFAULT_GATEWAY

    @cached_property
    def _client(self) -> _GatewayAliPay:
        return _GatewayAliPay(
            gateway=self.gateway,
            appid=self.settings["app_id"],
            app_private_key_string=self.secret("app_private_key"),
            alipay_public_key_string=self.settings["alipay_public_key"],
            sign_type=SIGN_TYPE,
        )

    def _call(self, method: str, biz_content: dict[str, str]) -> dict[str, Any]:
        # The SDK stamps requests with the server's local clock; Alipay reads Beijing time.
        return self._client.server_api(method, biz_content, timestamp=_beijing(datetime.now(UTC)))

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        if request.currency != CURRENCY:
            raise ValueError(f"Alipay takes {CURRENCY}, not {request.currency}.")
        if request.client == "mobile":
            method, product_code = "alipay.trade.wap.pay", "QUICK_WAP_PAY"
        else:
            method, product_code = "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"
        biz_content = {
            "out_trade_no": request.reference,
            "total_amount": _yuan(request.amount),
            "subject": request.description,
            "product_code": product_code,
            "time_expire": _beijing(request.expires_at),
        }
        signed = self._client.client_api(
            method,
            biz_content,
            return_url=request.return_url,
            notify_url=request.notify_url,
            timestamp=_beijing(datetime.now(UTC)),
        )
        return Checkout(
            provider_reference=request.reference, redirect_url=f"{self.gateway}?{signed}"
        )

    def parse_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        try:
            pairs = urllib.parse.parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, strict_parsing=True
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise NotificationRejected("malformed", "not a UTF-8 form") from exc
        form = dict(pairs)
        if len(form) != len(pairs):
            raise NotificationRejected("malformed", "a field is repeated")

        signature = form.get("sign")
        if not signature:
            raise NotificationRejected("signature", "no sign")
        # Alipay signs the sorted fields other than sign and sign_type; verify() drops sign_type.
        unsigned = {key: value for key, value in form.items() if key != "sign"}
        try:
            verified = self._client.verify(unsigned, signature)
        except (AliPayException, ValueError) as exc:
            raise NotificationRejected("signature", "unreadable sign or sign_type") from exc
        if not verified:
            raise NotificationRejected("signature", "does not verify")

        missing = [name for name in NOTIFICATION_FIELDS if not form.get(name)]
        if missing:
            raise NotificationRejected("malformed", f"missing {', '.join(missing)}")
        try:
            amount = Decimal(form["total_amount"])
        except InvalidOperation as exc:
            raise NotificationRejected("malformed", "total_amount is not a number") from exc
        if not amount.is_finite():
            raise NotificationRejected("malformed", "total_amount is not a number")
        if form.get("app_id") != self.settings["app_id"]:
            raise NotificationRejected("merchant", "app_id is not ours")
        if form.get("seller_id") != self.settings["seller_id"]:
            raise NotificationRejected("merchant", "seller_id is not ours")
        # notify_time is deliberately not checked for age: Alipay resends for about 25 hours,
        # and a late resend of a payment is still the payment.

        status: NotificationStatus
        if any(name in form for name in REFUND_NOTIFICATION_FIELDS):
            # Refunds are followed through refund()/query_refund(); a full refund also says
            # TRADE_CLOSED, which must not read as the payment expiring.
            status = "ignored"
        else:
            status = TRADE_STATUSES.get(form["trade_status"], "ignored")
        return Notification(
            event_id=form["notify_id"],
            reference=form["out_trade_no"],
            status=status,
            amount=amount,
            currency=CURRENCY,
            transaction_id=form.get("trade_no", ""),
            payload=form,
        )

    def query(self, *, reference: str, provider_reference: str) -> StatusReport:
        response = self._call("alipay.trade.query", {"out_trade_no": reference})
        if response.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
            # Alipay creates the trade only once the payer opens the checkout page.
            return StatusReport(status="pending", payload=response)
        if response.get("code") != SUCCESS_CODE:
            raise ProviderError(
                f"Alipay trade query refused: {response.get('sub_code')} {response.get('sub_msg')}"
            )
        trade_status = response.get("trade_status")
        if trade_status not in TRADE_STATUSES:
            raise ProviderError(f"Alipay trade query gave trade_status {trade_status!r}.")
        try:
            amount = Decimal(response["total_amount"])
        except (KeyError, InvalidOperation) as exc:
            raise ProviderError("Alipay trade query gave no readable total_amount.") from exc
        return StatusReport(
            status=TRADE_STATUSES[trade_status],
            amount=amount,
            currency=CURRENCY,
            transaction_id=response.get("trade_no", ""),
            payload=response,
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        response = self._call(
            "alipay.trade.refund",
            {
                "out_trade_no": request.reference,
                "refund_amount": _yuan(request.amount),
                "out_request_no": request.refund_reference,
                "refund_reason": request.reason,
            },
        )
        if response.get("code") == SUCCESS_CODE:
            if response.get("fund_change") == "Y":
                return RefundResult(status="succeeded", payload=response)
            # "N" also answers a retry of a refund already made: only the refund query knows.
            return self.query_refund(request)
        return self._refused(response)

    def query_refund(self, request: RefundRequest) -> RefundResult:
        response = self._call(
            "alipay.trade.fastpay.refund.query",
            {"out_trade_no": request.reference, "out_request_no": request.refund_reference},
        )
        if response.get("code") == SUCCESS_CODE:
            if response.get("refund_status") == "REFUND_SUCCESS":
                return RefundResult(status="succeeded", payload=response)
            # Not refunded yet; asking again with the same out_request_no is safe.
            return RefundResult(status="pending", payload=response)
        return self._refused(response)

    @staticmethod
    def _refused(response: dict[str, Any]) -> RefundResult:
        if response.get("code") == UNKNOWN_OUTCOME_CODE or response.get("sub_code") == (
            "ACQ.SYSTEM_ERROR"
        ):
            return RefundResult(status="pending", payload=response)
        return RefundResult(status="failed", payload=response)

    def answer_ok(self) -> Answer:
        return Answer(200, b"success", "text/plain")

    def answer_error(self, rejection: NotificationRejected) -> Answer:
        # Anything but "success" makes Alipay resend; the 400 tells our own logs it was refused.
        return Answer(400, b"fail", "text/plain")
