"""The reconciliation pages in the access matrix, and the builders their tests share: provider
accounts, payments credited through the real services, and settlement files made for them."""

import uuid
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from string import Template

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from payments.models import ReconciliationItem
from payments.providers.base import Checkout, Notification, RefundResult
from payments.reconciliation.services import settlement_import_commit
from payments.services import (
    intent_create,
    notification_apply,
    provider_config_save,
    refund_conclude,
    refund_start,
)
from prepaid.scoping import Capability, Role, Scope
from tests import factories
from tests.staff_matrix import StaffUrl

FILES = Path(__file__).parent / "files"
ADMINISTER = Capability.ADMINISTER
SECRETS = {
    "stripe": {"api_key": "sk_test_reconciliation", "webhook_secret": "whsec_reconciliation"},
    "wechat": {"merchant_private_key": "unused", "apiv3_key": "0" * 32},
    "alipay": {"app_private_key": "unused"},
}


def provider_config(organisation, provider):
    return provider_config_save(
        organisation=organisation, provider=provider, actor=None, secrets=SECRETS[provider]
    )


def paid_intent(account, config, amount, *, transaction_id=""):
    """A payment credited the way a provider's notification credits it."""
    intent = intent_create(
        account=account,
        config=config,
        amount=Decimal(amount),
        actor=None,
        notify_url="http://127.0.0.1:9/unused",
        return_url="/portal/payments/{reference}/",
        open_checkout=lambda provider, request: Checkout(provider_reference=request.reference),
    )
    notification_apply(
        config=config,
        notification=Notification(
            event_id=f"evt_{intent.reference}",
            reference=intent.reference,
            status="succeeded",
            amount=intent.amount,
            currency=intent.currency,
            transaction_id=transaction_id,
        ),
        source="webhook",
    )
    intent.refresh_from_db()
    return intent


def refunded(intent, amount, *, reference, provider_refund_id="", actor=None):
    """A refund of the payment, confirmed paid out by the provider."""
    refund = refund_start(
        intent=intent, amount=Decimal(amount), reason="Moved out", actor=actor,
        idempotency_key=reference,
    )  # fmt: skip
    refund_conclude(
        refund_id=refund.pk,
        result=RefundResult(status="succeeded", provider_refund_id=provider_refund_id),
    )
    refund.refresh_from_db()
    return refund


def fixture(name, encoding="utf-8", **values) -> bytes:
    """A crafted file from tests/payments/files, with $names filled in, in its own encoding."""
    text = (FILES / name).read_bytes().decode(encoding)
    return Template(text).safe_substitute(values).encode(encoding)


def owner_scope(organisation) -> Scope:
    return Scope(organisation=organisation, role=Role.OWNER, property_ids=None)


STRIPE_HEADER = (
    "id,Type,Source,Amount,Fee,Net,Currency,Created (UTC),Available On (UTC),Description,"
    "reference (metadata)\n"
)


def stripe_line(identity, amount, reference, *, at=None, fee="0.00", kind="charge") -> str:
    at = (at or timezone.now()).astimezone(UTC)
    net = Decimal(amount) - Decimal(fee)
    return (
        f"{identity},{kind},ch_{identity},{amount},{fee},{net},cny,{at:%Y-%m-%d %H:%M:%S},"
        f"{at:%Y-%m-%d} 00:00,Payment,{reference}\n"
    )


def stripe_import(prop, *, amount_off="0.00"):
    """A Stripe file imported for a payment in `prop`, paid `amount_off` short of it."""
    config = provider_config(prop.organisation, "stripe")
    account = factories.AccountFactory(unit__property=prop)
    intent = paid_intent(account, config, "40.00", transaction_id=f"pi_{uuid.uuid4().hex}")
    amount = Decimal("40.00") - Decimal(amount_off)
    data = STRIPE_HEADER + stripe_line(f"txn_{intent.reference}", amount, intent.reference)
    settlement_import, _created = settlement_import_commit(
        scope=owner_scope(prop.organisation),
        actor=None,
        source="stripe",
        data=data.encode(),
        file_name="balance.csv",
    )
    return settlement_import


def _file(prop):
    return {"import_id": stripe_import(prop).uuid}


def _open_item(prop):
    settlement_import = stripe_import(prop, amount_off="1.00")
    item = ReconciliationItem.objects.get(
        settlement_import=settlement_import, status=ReconciliationItem.Status.AMOUNT_MISMATCH
    )
    return {"item_id": item.uuid}


def _upload(kwargs):
    return {
        "source": "stripe",
        "encoding": "auto",
        "file": SimpleUploadedFile("balance.csv", STRIPE_HEADER.encode()),
    }


STAFF_URLS = {
    "reports:reconciliation-files": StaffUrl(),
    "reports:reconciliation-upload": StaffUrl(read=ADMINISTER, post=ADMINISTER, post_data=_upload),
    "reports:reconciliation-review": StaffUrl(read=ADMINISTER),
    "reports:reconciliation-commit": StaffUrl(get=False, post=ADMINISTER, read=ADMINISTER),
    "reports:reconciliation-file": StaffUrl(kwargs=_file),
    "reports:reconciliation-rematch": StaffUrl(kwargs=_file, get=False, post=ADMINISTER),
    "reports:reconciliation-resolve": StaffUrl(
        kwargs=_open_item,
        read=ADMINISTER,
        post=ADMINISTER,
        post_data=lambda kwargs: {"note": "Checked with the provider: paid short."},
    ),
    "reports:reconciliation-settings": StaffUrl(
        post=ADMINISTER, post_data=lambda kwargs: {"source": "stripe", "fee_percent": "0.6"}
    ),
}
