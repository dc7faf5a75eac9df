"""Cash or bank transfer at the counter: no checkout and no notifications.

Staff record these through the counter top-up (`billing.services.topup_record`), so this
provider only answers that an online flow does not exist, in the interface's terms.
"""

from __future__ import annotations

from collections.abc import Mapping

from payments.providers.base import (
    Checkout,
    CheckoutRequest,
    Notification,
    NotificationRejected,
    PaymentProvider,
    ProviderError,
    RefundRequest,
    RefundResult,
    StatusReport,
)

COUNTER_ONLY = "Cash and bank transfers are recorded at the counter, not paid online."


class ManualProvider(PaymentProvider):
    name = "manual"
    online = False

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        raise ProviderError(COUNTER_ONLY)

    def parse_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        raise NotificationRejected("signature", "the counter sends no notifications")

    def query(self, *, reference: str, provider_reference: str) -> StatusReport:
        raise ProviderError(COUNTER_ONLY)

    def refund(self, request: RefundRequest) -> RefundResult:
        raise ProviderError(COUNTER_ONLY)

    def query_refund(self, request: RefundRequest) -> RefundResult:
        raise ProviderError(COUNTER_ONLY)
