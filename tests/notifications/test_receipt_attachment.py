"""A top-up's email carries its receipt as a PDF, rendered when it is sent; SMS carry nothing."""

from decimal import Decimal
from io import BytesIO

import pytest
from django.core.exceptions import ValidationError
from pypdf import PdfReader

from billing.notices import topup_notify
from billing.receipts import receipt_filename
from notifications.delivery import Attachment, deliver
from notifications.models import Notification
from notifications.services import notification_send, notify
from tests import factories

pytestmark = pytest.mark.django_db

Status = Notification.Status


def _told(receipt) -> dict[str, Notification]:
    notifications = topup_notify(receipt_id=receipt.pk, balance=str(receipt.amount))
    return {notification.channel: notification for notification in notifications}


def test_a_counter_top_ups_email_carries_its_receipt_pdf(tenant_account, mailoutbox):
    receipt = factories.TopupFactory(account=tenant_account, amount=Decimal("50.00"))
    email = _told(receipt)["email"]
    assert email.context["receipt_uuid"] == str(receipt.uuid)
    assert notification_send(notification_id=email.pk) == Status.SENT
    [message] = mailoutbox
    [(filename, content, mimetype)] = message.attachments
    assert (filename, mimetype) == (receipt_filename(receipt=receipt), "application/pdf")
    assert filename == "receipt-A1-00000001.pdf"
    text = PdfReader(BytesIO(content)).pages[0].extract_text()
    assert "A1-00000001" in text
    assert "CN¥50.00" in text


def test_the_receipt_is_in_the_language_of_the_email(property_a1, mailoutbox):
    account = factories.AccountFactory(
        unit__property=property_a1, tenant__preferred_language="zh-hans"
    )
    email = _told(factories.TopupFactory(account=account, amount=Decimal("50.00")))["email"]
    notification_send(notification_id=email.pk)
    [(_, content, _)] = mailoutbox[0].attachments
    text = PdfReader(BytesIO(content)).pages[0].extract_text()
    assert "¥50.00" in text
    assert "CN¥" not in text


def test_the_sms_of_the_same_top_up_carries_nothing(tenant_account, sms_outbox, mailoutbox):
    receipt = factories.TopupFactory(account=tenant_account, amount=Decimal("50.00"))
    sms = _told(receipt)["sms"]
    assert notification_send(notification_id=sms.pk) == Status.SENT
    assert sms_outbox == [("+8613800138000", sms.body)]
    assert mailoutbox == []


def test_an_email_whose_context_names_no_receipt_is_sent_without_one(tenant_account, mailoutbox):
    context = {"amount": "50.00", "currency": "CNY", "receipt": "A1-00000007", "balance": "50.00"}
    [email] = [
        n
        for n in notify(
            account_id=tenant_account.pk,
            event="topup_received",
            context=context,
            idempotency_key="topup:legacy",
        )
        if n.channel == "email"
    ]
    assert notification_send(notification_id=email.pk) == Status.SENT
    assert mailoutbox[0].attachments == []


def test_other_events_carry_no_attachment(tenant_account, mailoutbox):
    context = {"balance": "5.00", "currency": "CNY", "meter": "SN1"}
    [email] = [
        n
        for n in notify(
            account_id=tenant_account.pk,
            event="cutoff_done",
            context=context,
            idempotency_key="relay:1",
        )
        if n.channel == "email"
    ]
    notification_send(notification_id=email.pk)
    assert mailoutbox[0].attachments == []


def test_a_receipt_uuid_that_is_not_one_is_refused(tenant_account):
    context = {
        "amount": "50.00",
        "currency": "CNY",
        "receipt": "A1-00000007",
        "balance": "50.00",
        "receipt_uuid": "A1-00000007",
    }
    with pytest.raises(ValidationError, match="not a UUID"):
        notify(
            account_id=tenant_account.pk,
            event="topup_received",
            context=context,
            idempotency_key="topup:bad",
        )


def test_sms_cannot_be_handed_an_attachment():
    with pytest.raises(ValueError, match="carries no attachments"):
        deliver(
            channel="sms",
            recipient="+8613800138000",
            subject="",
            body="hi",
            attachments=[Attachment("receipt.pdf", b"%PDF-", "application/pdf")],
        )
