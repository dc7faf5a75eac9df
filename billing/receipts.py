"""Receipts as documents: the printable HTML page and the PDF of one numbered receipt.

Both are rendered from one `ReceiptDocument`, so they always say the same thing, in the language
asked for (a tenant's own is `receipt_language`), with amounts in the property's currency
formatted for that language's locale and times in the property's time zone. Labels go through
gettext; a language without a catalogue yet shows them in English.

The PDF uses reportlab's standard Helvetica for text its encoding holds and the built-in CID
font STSong-Light for everything else (Chinese names, whole Chinese receipts), so no font files
or system packages are needed. Nothing is stored: a receipt is rendered whenever it is asked for,
from the ledger as it stands, so a refund made since shows on the next download.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from io import BytesIO
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time, get_timezone_gmt
from django.db.models import Sum
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from reportlab.lib import colors
from reportlab.lib.pagesizes import A5
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import KeepInFrame, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from billing.debts import recovered_from_topup, recovery_transaction_id
from billing.models import Posting, Receipt
from notifications.delivery import Attachment
from notifications.texts import MONEY_LOCALES, language_for
from payments.models import PaymentIntent, Refund
from prepaid.money import Money

TEMPLATE = "receipts/receipt.html"
PDF_MIMETYPE = "application/pdf"
CJK_FONT = "STSong-Light"
# The ledger's channel codes: counter channels and payment providers.
CHANNEL_LABELS = {
    "cash": gettext_lazy("Cash at the counter"),
    "bank": gettext_lazy("Bank transfer"),
    "manual": gettext_lazy("Cash or bank transfer"),
    "wechat": gettext_lazy("WeChat Pay"),
    "alipay": gettext_lazy("Alipay"),
    "stripe": gettext_lazy("Card"),
    "sandbox": gettext_lazy("Sandbox (test payment)"),
}
_RELATED = (
    "property__organisation",
    "account__tenant",
    "account__unit",
    "transaction__reversed_by",
    "intent",
)


@dataclass(frozen=True)
class ReceiptDocument:
    """What a receipt says, in one language, ready to lay out."""

    language: str
    title: str
    number: str
    organisation: str
    property_name: str
    address_lines: tuple[str, ...]
    # (label, value), in the order printed.
    lines: tuple[tuple[str, str], ...]
    # What happened to the money since: a reversal, refunds.
    notes: tuple[str, ...]
    closing: str


def receipt_language(*, receipt: Receipt) -> str:
    """The language the receipt's tenant reads: their preferred one, if receipts are written
    in it."""
    return language_for(receipt.account.tenant.preferred_language)


def receipt_filename(*, receipt: Receipt) -> str:
    return f"receipt-{receipt.display_number()}.pdf"


def receipt_html(*, receipt: Receipt, language: str) -> str:
    """The receipt as a standalone printable HTML page (inline CSS, no external assets)."""
    document = receipt_document(receipt=receipt, language=language)
    with translation.override(document.language):
        return render_to_string(TEMPLATE, {"document": document})


def receipt_pdf(*, receipt: Receipt, language: str) -> bytes:
    """The receipt as a one-page A5 PDF."""
    return _pdf(receipt_document(receipt=receipt, language=language))


def receipt_attachments(*, context: dict, language: str) -> list[Attachment]:
    """The receipt a top-up's email carries, as a PDF in the email's language
    (`notifications.events.ATTACHMENTS`). A context without `receipt_uuid` names no receipt,
    as in messages queued before receipts were attached, and carries nothing."""
    if "receipt_uuid" not in context:
        return []
    receipt = Receipt.objects.select_related(*_RELATED).get(uuid=context["receipt_uuid"])
    return [
        Attachment(
            receipt_filename(receipt=receipt),
            receipt_pdf(receipt=receipt, language=language),
            PDF_MIMETYPE,
        )
    ]


def receipt_document(*, receipt: Receipt, language: str) -> ReceiptDocument:
    """Everything the receipt says, read fresh from the ledger and the payment."""
    receipt = Receipt.objects.select_related(*_RELATED).get(pk=receipt.pk)
    language = language_for(language)
    locale = MONEY_LOCALES[language]
    prop, account = receipt.property, receipt.account
    # Set for an online payment; a counter top-up has none behind it.
    intent = getattr(receipt, "intent", None)

    def money(amount: Decimal) -> str:
        return Money(amount, receipt.currency).format(locale)

    with translation.override(language):
        lines = [
            (_("Receipt number"), receipt.display_number()),
            (_("Issued"), _moment(receipt.issued_at, prop.time_zone, locale)),
            (_("Tenant"), account.tenant.name),
            (_("Unit"), account.unit.name),
            (_("Amount received"), money(receipt.amount)),
        ]
        recovered = recovered_from_topup(topup_id=receipt.transaction_id)
        if recovered:
            # Recovered from this very top-up (billing.debts): the tenant sees where it went.
            lines.append(
                (
                    _("Of which"),
                    _("%(debt)s went to your debt, %(energy)s to energy")
                    % {"debt": money(recovered), "energy": money(receipt.amount - recovered)},
                )
            )
        lines.append((_("Paid by"), str(CHANNEL_LABELS.get(receipt.channel, receipt.channel))))
        if receipt.reference:
            lines.append((_("Reference"), receipt.reference))
        if intent is not None and intent.transaction_id:
            lines.append((_("Provider transaction"), intent.transaction_id))
        lines.append((_("Balance after this top-up"), money(_balance_after(receipt))))
        notes = []
        reversal = getattr(receipt.transaction, "reversed_by", None)
        if reversal is not None:
            notes.append(
                _("This top-up was reversed on %(date)s; its amount was taken out of the wallet.")
                % {"date": _moment(reversal.created_at, prop.time_zone, locale)}
            )
        if intent is not None:
            notes.extend(_refund_notes(intent, money))
        return ReceiptDocument(
            language=language,
            title=_("Receipt"),
            number=receipt.display_number(),
            organisation=prop.organisation.name,
            property_name=prop.name,
            address_lines=tuple(line for line in prop.address.splitlines() if line.strip()),
            lines=tuple(lines),
            notes=tuple(notes),
            closing=_("Thank you for your payment."),
        )


def _moment(moment: datetime, time_zone: str, locale: str) -> str:
    local = moment.astimezone(ZoneInfo(time_zone))
    date = format_date(local, "long", locale=locale)
    time = format_time(local, "HH:mm", locale=locale)
    return f"{date} {time} ({time_zone}, {get_timezone_gmt(local, 'long', locale=locale)})"


def _balance_after(receipt: Receipt) -> Decimal:
    # Wallet postings are written only under the wallet's row lock, and their transaction row is
    # inserted under it too, so one wallet's transaction ids rise in the order its postings were
    # applied: the sum up to this transaction is exactly the balance the top-up left. A debt
    # recovery taken from the top-up is posted right after it under the same lock, and counts.
    last = recovery_transaction_id(topup=receipt.transaction) or receipt.transaction_id
    return Posting.objects.filter(
        ledger_account_id=receipt.account.wallet_id, transaction_id__lte=last
    ).aggregate(total=Sum("amount"))["total"]


def _refund_notes(intent: PaymentIntent, money) -> list[str]:
    totals = dict(
        intent.refunds.filter(status__in=[Refund.Status.SUCCEEDED, Refund.Status.PENDING])
        .values_list("status")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    notes = []
    refunded = totals.get(Refund.Status.SUCCEEDED)
    if refunded == intent.amount:
        notes.append(_("Refunded in full: %(amount)s.") % {"amount": money(refunded)})
    elif refunded:
        notes.append(
            _("Partly refunded: %(amount)s of %(total)s.")
            % {"amount": money(refunded), "total": money(intent.amount)}
        )
    pending = totals.get(Refund.Status.PENDING)
    if pending:
        notes.append(_("Refund in progress: %(amount)s.") % {"amount": money(pending)})
    return notes


# PDF ----------------------------------------------------------------------------------------------


@cache
def register_cjk_font() -> None:
    pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))


def _font(text: str, *, bold: bool = False) -> str:
    """Helvetica where its encoding (WinAnsi, the Latin-1 letters and a few more) holds every
    character, the CID font otherwise. The CID font has no bold."""
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return CJK_FONT
    return "Helvetica-Bold" if bold else "Helvetica"


def pdf_paragraph(text: str, *, size: float, bold: bool = False, color=colors.black) -> Paragraph:
    font = _font(text, bold=bold)
    style = ParagraphStyle(
        f"{font}-{size}",
        fontName=font,
        fontSize=size,
        leading=size * 1.3,
        textColor=color,
        # Chinese has no spaces to break lines at.
        wordWrap="CJK" if font == CJK_FONT else None,
    )
    return Paragraph(escape(text), style)


def _pdf(document: ReceiptDocument) -> bytes:
    register_cjk_font()
    buffer = BytesIO()
    margin = 12 * mm
    pdf = SimpleDocTemplate(
        buffer,
        pagesize=A5,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=margin,
        bottomMargin=margin,
        title=f"{document.title} {document.number}",
        author=document.organisation,
        lang=document.language,
        # The same receipt renders to the same bytes: no creation time or random id inside.
        invariant=True,
    )
    grey = colors.HexColor("#555555")
    header = [
        pdf_paragraph(document.organisation, size=14, bold=True),
        pdf_paragraph(document.property_name, size=10),
        *(pdf_paragraph(line, size=9, color=grey) for line in document.address_lines),
        Spacer(1, 6 * mm),
        pdf_paragraph(document.title, size=16, bold=True),
        Spacer(1, 4 * mm),
    ]
    label_width = 45 * mm
    table = Table(
        [
            [pdf_paragraph(label, size=9, color=grey), pdf_paragraph(value, size=10)]
            for label, value in document.lines
        ],
        colWidths=[label_width, pdf.width - label_width],
    )
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#cccccc")),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    notes = [
        pdf_paragraph(note, size=10, bold=True, color=colors.HexColor("#a40000"))
        for note in document.notes
    ]
    closing = [Spacer(1, 6 * mm), pdf_paragraph(document.closing, size=9, color=grey)]
    content = [*header, table, Spacer(1, 4 * mm), *notes, *closing]
    # Shrunk to fit if an address or a note runs long: a receipt is one page.
    pdf.build([KeepInFrame(pdf.width, pdf.height, content, mode="shrink")])
    return buffer.getvalue()
