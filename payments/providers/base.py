"""What every payment provider does, in the provider's own terms translated to ours.

A provider is built from its organisation's configuration: public `settings` and a `secret`
callable that returns a secret in the clear. It never touches the database; the services in
`payments.services` decide what a checkout, notification or refund means for the ledger.

Amounts cross this boundary as Decimal in the currency's major unit (50.00 CNY), whatever the
provider uses on the wire (fen for WeChat Pay, minor units for Stripe, yuan strings for Alipay).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

PaymentStatus = Literal["pending", "succeeded", "failed", "expired"]
RefundStatus = Literal["pending", "succeeded", "failed"]
# What a notification says happened; "ignored" covers events we are sent but do not act on.
NotificationStatus = Literal["pending", "succeeded", "failed", "expired", "ignored"]


class ProviderError(Exception):
    """An outbound call failed: the provider is unreachable, or refused the request."""


class NotificationRejected(Exception):
    """A notification that must not be acted on. `reason` is a short code that is counted."""

    REASONS = ("signature", "stale", "malformed", "merchant", "unknown_intent", "amount")

    def __init__(self, reason: str, detail: str = ""):
        if reason not in self.REASONS:
            raise ValueError(f"Unknown rejection reason {reason!r}.")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CheckoutRequest:
    # Our reference for the payment (the provider's out_trade_no / client_reference_id).
    reference: str
    amount: Decimal
    currency: str
    description: str
    return_url: str
    notify_url: str
    expires_at: datetime
    # "mobile" asks for the provider's phone flow (WeChat H5, Alipay wap), else desktop/QR.
    client: Literal["desktop", "mobile"] = "desktop"
    client_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class Checkout:
    # The provider's id for this checkout (Stripe session id, WeChat prepay/trade no), or "".
    provider_reference: str
    # Where to send the payer, or "" when they pay by scanning `qr_code`.
    redirect_url: str = ""
    qr_code: str = ""


@dataclass(frozen=True)
class Notification:
    # Unique per provider account: a replay carries the same id.
    event_id: str
    reference: str
    status: NotificationStatus
    amount: Decimal | None = None
    currency: str | None = None
    # The provider's id for the money movement (charge, transaction_id, trade_no).
    transaction_id: str = ""
    # What was received, decoded (decrypted for WeChat Pay), for the intent's record.
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusReport:
    status: PaymentStatus
    amount: Decimal | None = None
    currency: str | None = None
    transaction_id: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundRequest:
    reference: str
    transaction_id: str
    # Our id for the refund (out_refund_no); the provider deduplicates retries on it.
    refund_reference: str
    amount: Decimal
    # What the payment was for in all: WeChat Pay requires it beside the refund amount.
    total: Decimal
    currency: str
    reason: str


@dataclass(frozen=True)
class RefundResult:
    status: RefundStatus
    provider_refund_id: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """The HTTP answer a provider expects to a notification."""

    status: int
    body: bytes
    content_type: str


class PaymentProvider(abc.ABC):
    name: ClassVar[str]
    # Whether the payer leaves our site for the provider (False for manual).
    online: ClassVar[bool] = True

    def __init__(self, settings: Mapping[str, Any], secret: Callable[[str], str]):
        self.settings = settings
        self.secret = secret

    @abc.abstractmethod
    def create_checkout(self, request: CheckoutRequest) -> Checkout: ...

    @abc.abstractmethod
    def parse_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        """Verify and decode a notification, or raise NotificationRejected."""

    @abc.abstractmethod
    def query(self, *, reference: str, provider_reference: str) -> StatusReport: ...

    @abc.abstractmethod
    def refund(self, request: RefundRequest) -> RefundResult: ...

    @abc.abstractmethod
    def query_refund(self, request: RefundRequest) -> RefundResult: ...

    def answer_ok(self) -> Answer:
        return Answer(200, b'{"received": true}', "application/json")

    def answer_error(self, rejection: NotificationRejected) -> Answer:
        return Answer(400, b'{"error": "%s"}' % rejection.reason.encode(), "application/json")
