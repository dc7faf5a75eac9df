"""A postpaid bill as a document: what it says in one language, and its PDF.

Laid out like the receipts (`billing.receipts`): reportlab's Helvetica, with the built-in CID
font STSong-Light for Chinese; amounts in the property's currency written the way the language
writes money; days in the property's zone. Nothing is stored: the bill is rendered from its row
whenever it is asked for, and the same bill renders to the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from io import BytesIO

from babel.dates import format_date
from django.utils import translation
from django.utils.translation import gettext as _
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import SimpleDocTemplate, Spacer, Table, TableStyle

from billing.invoices import earlier_open, invoice_display_number
from billing.models import Invoice
from billing.periods import INSTANT
from billing.receipts import pdf_paragraph, register_cjk_font
from notifications.delivery import Attachment
from notifications.texts import MONEY_LOCALES, language_for
from prepaid.money import Money

PDF_MIMETYPE = "application/pdf"
GREY = colors.HexColor("#555555")
RULE = colors.HexColor("#cccccc")
_RELATED = ("property__organisation", "account__tenant", "account__unit")


@dataclass(frozen=True)
class InvoiceDocument:
    language: str
    title: str
    number: str
    organisation: str
    property_name: str
    address_lines: tuple[str, ...]
    # (label, value), in the order printed.
    facts: tuple[tuple[str, str], ...]
    # Header, then (label, quantity, price, net, tax) per line.
    lines_header: tuple[str, ...]
    lines: tuple[tuple[str, str, str, str, str], ...]
    summary: tuple[tuple[str, str], ...]
    closing: str


def invoice_language(*, invoice: Invoice) -> str:
    return language_for(invoice.language)


def invoice_filename(*, invoice: Invoice) -> str:
    return f"bill-{invoice_display_number(invoice)}.pdf"


def invoice_document(*, invoice: Invoice, language: str) -> InvoiceDocument:
    """Everything the bill says, in `language`."""
    invoice = Invoice.objects.select_related(*_RELATED).get(pk=invoice.pk)
    language = language_for(language)
    locale = MONEY_LOCALES[language]
    prop, account = invoice.property, invoice.account
    zone = prop.zone

    def money(amount: Decimal) -> str:
        return Money(amount, invoice.currency).format(locale)

    def day(moment) -> str:
        return format_date(moment, "long", locale=locale)

    before = earlier_open(invoice=invoice)
    with translation.override(language):
        # The period ends at an instant (a midnight, for a monthly bill): its last day is the
        # one holding the instant before.
        last_day = (invoice.period_end - INSTANT).astimezone(zone).date()
        facts = (
            (_("Bill number"), invoice_display_number(invoice)),
            (
                _("Period"),
                f"{day(invoice.period_start.astimezone(zone).date())} — {day(last_day)}",
            ),
            (_("Issued"), day(invoice.issued_at.astimezone(zone).date())),
            (_("Due by"), day(invoice.due_on)),
            (_("Tenant"), account.tenant.name),
            (_("Unit"), account.unit.name),
        )
        tax = sum((Decimal(line["tax"]) for line in invoice.lines), Decimal(0))
        summary = [
            (_("Previous balance"), money(invoice.previous_balance)),
            (_("Payments"), money(invoice.payments)),
            (_("Charges"), money(-invoice.charges)),
            (_("of which tax"), money(tax)),
            (_("Adjustments and refunds"), money(invoice.adjustments)),
            (_("Balance at the end of the period"), money(invoice.closing_balance)),
            (_("This bill asks for"), money(invoice.amount)),
        ]
        if before:
            summary.append((_("Earlier bills still open"), money(before)))
        summary.append((_("Paid so far"), money(invoice.paid)))
        summary.append((_("Amount due"), money(before + invoice.amount - invoice.paid)))
        return InvoiceDocument(
            language=language,
            title=_("Final bill") if invoice.kind == Invoice.Kind.FINAL else _("Bill"),
            number=invoice_display_number(invoice),
            organisation=prop.organisation.name,
            property_name=prop.name,
            address_lines=tuple(line for line in prop.address.splitlines() if line.strip()),
            facts=facts,
            lines_header=(_("Charge"), _("Quantity"), _("Price"), _("Net"), _("Tax")),
            lines=tuple(
                (
                    line["label"],
                    f"{line['quantity']} {line['unit']}".strip(),
                    line["price"],
                    money(Decimal(line["net"])),
                    money(Decimal(line["tax"])),
                )
                for line in invoice.lines
            ),
            summary=tuple(summary),
            closing=_("Pay at the counter or online in the tenant portal. Thank you."),
        )


def invoice_pdf(*, invoice: Invoice, language: str) -> bytes:
    """The bill as an A4 PDF."""
    document = invoice_document(invoice=invoice, language=language)
    register_cjk_font()
    buffer = BytesIO()
    margin = 15 * mm
    pdf = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=margin,
        bottomMargin=margin,
        title=f"{document.title} {document.number}",
        author=document.organisation,
        lang=document.language,
        invariant=True,
    )
    style = TableStyle(
        [
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
            ("TOPPADDING", (0, 0), (-1, -1), 3),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
        ]
    )

    def pairs(rows) -> Table:
        width = 60 * mm
        table = Table(
            [
                [pdf_paragraph(label, size=9, color=GREY), pdf_paragraph(value, size=10)]
                for label, value in rows
            ],
            colWidths=[width, pdf.width - width],
        )
        table.setStyle(style)
        return table

    lines = Table(
        [
            [pdf_paragraph(text, size=9, bold=True) for text in document.lines_header],
            *([pdf_paragraph(text, size=9) for text in line] for line in document.lines),
        ],
        colWidths=[pdf.width * share for share in (0.36, 0.18, 0.14, 0.16, 0.16)],
    )
    lines.setStyle(style)
    content = [
        pdf_paragraph(document.organisation, size=14, bold=True),
        pdf_paragraph(document.property_name, size=10),
        *(pdf_paragraph(line, size=9, color=GREY) for line in document.address_lines),
        Spacer(1, 6 * mm),
        pdf_paragraph(document.title, size=16, bold=True),
        Spacer(1, 4 * mm),
        pairs(document.facts),
        Spacer(1, 6 * mm),
        lines,
        Spacer(1, 6 * mm),
        pairs(document.summary),
        Spacer(1, 6 * mm),
        pdf_paragraph(document.closing, size=9, color=GREY),
    ]
    pdf.build(content)
    return buffer.getvalue()


def invoice_attachments(*, context: dict, language: str) -> list[Attachment]:
    """The bill a bill-issued email carries (`notifications.events.ATTACHMENTS`), in the
    email's language. A context without `invoice_uuid` names no bill and carries nothing."""
    if "invoice_uuid" not in context:
        return []
    invoice = Invoice.objects.select_related("property").get(uuid=context["invoice_uuid"])
    return [
        Attachment(
            invoice_filename(invoice=invoice),
            invoice_pdf(invoice=invoice, language=language),
            PDF_MIMETYPE,
        )
    ]
