"""Receipts as documents: HTML and PDF, in the tenant's language and the property's currency and
time zone, telling what became of the money since; and their download by staff."""

from datetime import UTC, datetime
from decimal import Decimal
from io import BytesIO

import pytest
import time_machine
from django.urls import reverse
from pypdf import PdfReader

from billing import services
from billing.receipts import receipt_filename, receipt_html, receipt_language, receipt_pdf
from payments.models import SandboxPayment
from payments.providers.base import Notification
from payments.services import (
    intent_create,
    notification_apply,
    provider_config_save,
    refund_start,
    refund_submit,
)
from tests import factories

pytestmark = pytest.mark.django_db

# 06:30 UTC is 14:30 in Shanghai, where the test properties are.
ISSUED = datetime(2026, 11, 18, 6, 30, tzinfo=UTC)


@pytest.fixture
def account(property_a1):
    return factories.AccountFactory(
        unit__property=property_a1, unit__name="12-03", tenant__name="Ada Lovelace"
    )


def _topup(account, amount="50.00", channel="cash", **kwargs):
    with time_machine.travel(ISSUED, tick=False):
        return factories.TopupFactory(
            account=account, amount=Decimal(amount), channel=channel, **kwargs
        )


def _pdf_text(pdf: bytes) -> str:
    reader = PdfReader(BytesIO(pdf))
    assert len(reader.pages) == 1
    return reader.pages[0].extract_text()


def _pdf_fonts(pdf: bytes) -> set[str]:
    page = PdfReader(BytesIO(pdf)).pages[0]
    return {font["/BaseFont"] for font in page["/Resources"]["/Font"].values()}


def _paid_online(account, amount="50.00"):
    config = provider_config_save(
        organisation=account.unit.property.organisation,
        provider="sandbox",
        actor=None,
        secrets={"webhook_secret": "whsec_receipts"},
    )
    intent = intent_create(
        account=account,
        config=config,
        amount=Decimal(amount),
        actor=None,
        notify_url="http://127.0.0.1:9/unused",
        return_url="/",
    )
    SandboxPayment.objects.filter(reference=intent.reference).update(
        status=SandboxPayment.Status.PAID, transaction_id="sbx_4200"
    )
    with time_machine.travel(ISSUED, tick=False):
        notification_apply(
            config=config,
            notification=Notification(
                event_id=f"evt_{intent.reference}",
                reference=intent.reference,
                status="succeeded",
                amount=intent.amount,
                currency=intent.currency,
                transaction_id="sbx_4200",
            ),
            source="webhook",
        )
    intent.refresh_from_db()
    return intent


class TestHtml:
    def test_it_holds_the_number_amount_local_time_and_channel(self, account):
        receipt = _topup(account)
        html = receipt_html(receipt=receipt, language="en")
        assert html.startswith("<!doctype html>")
        assert '<html lang="en">' in html
        assert "A1-00000001" in html
        assert "CN¥50.00" in html
        assert "November 18, 2026 14:30 (Asia/Shanghai, GMT+08:00)" in html
        assert "Cash at the counter" in html

    def test_it_names_who_issued_it_and_whom_for(self, account):
        html = receipt_html(receipt=_topup(account), language="en")
        for text in ("Org A", "A One", "1 Test Road", "Ada Lovelace", "12-03"):
            assert text in html

    def test_it_needs_nothing_from_outside_the_page(self, account):
        html = receipt_html(receipt=_topup(account), language="en")
        assert "<style>" in html
        assert "http" not in html
        assert "<link" not in html
        assert "<script" not in html

    def test_a_tenant_who_reads_chinese_gets_a_chinese_receipt(self, property_a1):
        account = factories.AccountFactory(
            unit__property=property_a1, tenant__preferred_language="zh-hans"
        )
        receipt = _topup(account)
        language = receipt_language(receipt=receipt)
        html = receipt_html(receipt=receipt, language=language)
        assert language == "zh-hans"
        assert '<html lang="zh-hans">' in html
        assert "¥50.00" in html
        assert "CN¥" not in html
        assert "2026年11月18日 14:30" in html

    def test_a_language_receipts_are_not_written_in_falls_back_to_english(self, account):
        html = receipt_html(receipt=_topup(account), language="fr")
        assert '<html lang="en">' in html

    def test_it_shows_the_balance_the_top_up_left_not_todays(self, account):
        _topup(account, "40.00")
        services.charges_post(
            charges=[factories.ChargeInputFactory.build(account=account, net=Decimal("15.00"))]
        )
        receipt = _topup(account, "30.00")
        _topup(account, "5.00")
        html = receipt_html(receipt=receipt, language="en")
        assert "Balance after this top-up</th><td>CN¥55.00</td>" in html

    def test_a_bank_transfer_shows_its_reference(self, account):
        receipt = _topup(account, channel="bank", reference="BOC 7741")
        html = receipt_html(receipt=receipt, language="en")
        assert "Bank transfer" in html
        assert "BOC 7741" in html

    def test_tenant_names_are_escaped(self, property_a1):
        account = factories.AccountFactory(
            unit__property=property_a1, tenant__name="<b>Bobby</b> & Co"
        )
        html = receipt_html(receipt=_topup(account), language="en")
        assert "&lt;b&gt;Bobby&lt;/b&gt; &amp; Co" in html

    def test_a_reversed_top_up_says_so(self, account):
        receipt = _topup(account)
        services.transaction_reverse(
            original=receipt.transaction, actor=None, reason="Wrong unit", idempotency_key="r1"
        )
        assert "This top-up was reversed on" in receipt_html(receipt=receipt, language="en")


class TestOnlinePayments:
    def test_it_names_the_provider_and_its_transaction(self, account):
        intent = _paid_online(account)
        html = receipt_html(receipt=intent.receipt, language="en")
        assert "Sandbox (test payment)" in html
        assert intent.reference in html
        assert "sbx_4200" in html
        assert "refund" not in html.lower()

    def test_a_partly_refunded_payment_shows_how_much(self, account):
        intent = _paid_online(account)
        refund = refund_start(intent=intent, amount=Decimal("20.00"), reason="x", actor=None)
        assert "Refund in progress: CN¥20.00." in receipt_html(
            receipt=intent.receipt, language="en"
        )
        refund_submit(refund_id=refund.pk)
        html = receipt_html(receipt=intent.receipt, language="en")
        assert "Partly refunded: CN¥20.00 of CN¥50.00." in html
        assert "in progress" not in html

    def test_a_fully_refunded_payment_says_so(self, account):
        intent = _paid_online(account)
        refund = refund_start(intent=intent, amount=Decimal("50.00"), reason="x", actor=None)
        refund_submit(refund_id=refund.pk)
        text = _pdf_text(receipt_pdf(receipt=intent.receipt, language="en"))
        assert "Refunded in full: CN¥50.00." in text


class TestPdf:
    def test_it_is_a_one_page_pdf_with_the_number_and_amount(self, account):
        pdf = receipt_pdf(receipt=_topup(account), language="en")
        assert pdf.startswith(b"%PDF-")
        text = _pdf_text(pdf)
        assert "A1-00000001" in text
        assert "CN¥50.00" in text
        assert "14:30" in text

    def test_latin_text_needs_no_cid_font(self, account):
        assert _pdf_fonts(receipt_pdf(receipt=_topup(account), language="en")) == {
            "/Helvetica",
            "/Helvetica-Bold",
        }

    def test_a_chinese_name_is_set_in_the_cid_font(self, property_a1):
        account = factories.AccountFactory(unit__property=property_a1, tenant__name="王小明")
        pdf = receipt_pdf(receipt=_topup(account), language="en")
        assert "/STSong-Light" in _pdf_fonts(pdf)
        assert "王小明" in _pdf_text(pdf)

    def test_a_whole_chinese_receipt_renders(self, property_a1):
        account = factories.AccountFactory(
            unit__property=property_a1, tenant__preferred_language="zh-hans"
        )
        pdf = receipt_pdf(receipt=_topup(account), language="zh-hans")
        text = _pdf_text(pdf)
        assert "/STSong-Light" in _pdf_fonts(pdf)
        assert "2026年11月18日" in text
        assert "¥50.00" in text

    def test_the_same_receipt_renders_to_the_same_bytes(self, account):
        receipt = _topup(account)
        assert receipt_pdf(receipt=receipt, language="en") == receipt_pdf(
            receipt=receipt, language="en"
        )

    def test_its_file_is_named_for_the_receipt(self, account):
        assert receipt_filename(receipt=_topup(account)) == "receipt-A1-00000001.pdf"


class TestDownload:
    def test_staff_download_the_pdf_in_the_tenants_language(self, api_as, owner_a, property_a1):
        account = factories.AccountFactory(
            unit__property=property_a1, tenant__preferred_language="zh-hans"
        )
        receipt = _topup(account)
        response = api_as(owner_a).get(reverse("topup-pdf", args=[receipt.uuid]))
        assert response.status_code == 200
        assert response["Content-Type"] == "application/pdf"
        assert response["Content-Disposition"] == 'attachment; filename="receipt-A1-00000001.pdf"'
        assert response["Content-Language"] == "zh-hans"
        assert "¥50.00" in _pdf_text(response.content)

    def test_staff_may_ask_for_another_language(self, api_as, owner_a, property_a1):
        account = factories.AccountFactory(
            unit__property=property_a1, tenant__preferred_language="zh-hans"
        )
        receipt = _topup(account)
        url = reverse("topup-html", args=[receipt.uuid])
        response = api_as(owner_a).get(url, {"language": "en"}, HTTP_ACCEPT="text/html")
        assert response.status_code == 200
        assert response["Content-Type"] == "text/html; charset=utf-8"
        assert '<html lang="en">' in response.content.decode()

    def test_a_language_receipts_are_not_written_in_is_refused(self, api_as, owner_a, account):
        receipt = _topup(account)
        response = api_as(owner_a).get(reverse("topup-pdf", args=[receipt.uuid]), {"language": "x"})
        assert response.status_code == 400
        assert "language" in response.json()

    def test_another_organisations_receipt_is_not_found(self, api_as, owner_b, account):
        receipt = _topup(account)
        response = api_as(owner_b).get(
            reverse("topup-pdf", args=[receipt.uuid]), HTTP_ACCEPT="application/pdf"
        )
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
