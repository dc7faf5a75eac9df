"""The move-out settlement statement as lines of text and as a PDF.

`statement_rows` and `statement_notes` say, in the active language, what the statement shows;
the staff page (templates/accounts/settlement.html) and the PDF both print them, so the two
always agree. The PDF is laid out like a receipt (`billing.receipts`): reportlab's Helvetica,
with the built-in CID font STSong-Light for Chinese, no font files needed. Nothing is stored:
the statement is read from the ledger whenever it is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from io import BytesIO
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from django.utils import translation
from django.utils.translation import gettext as _
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import SimpleDocTemplate, Spacer, Table, TableStyle

from billing.receipts import CHANNEL_LABELS, pdf_paragraph, register_cjk_font
from billing.settlement import SettlementStatement
from notifications.texts import MONEY_LOCALES, language_for
from prepaid.money import Money

PDF_MIMETYPE = "application/pdf"


@dataclass(frozen=True)
class Row:
    # What the row is, for pages and tests to find it by: "topups", "refund", "closing"...
    key: str
    label: str
    amount: Decimal
    # A running total (bold, ruled above) rather than a movement.
    total: bool = False


def _channel(code: str) -> str:
    return str(CHANNEL_LABELS.get(code, code))


def statement_rows(statement: SettlementStatement) -> list[Row]:
    """Each movement of the wallet from move-in to zero, signed as it moved the balance."""
    rows = [
        Row("topups", _("Top-ups received"), statement.topups),
        Row("energy", _("Consumption charges, before tax"), -statement.energy_net),
        Row("standing", _("Standing charges, before tax"), -statement.standing_net),
        Row("tax", _("Tax on charges"), -statement.tax),
    ]
    if statement.refunds:
        rows.append(Row("refunds", _("Refunds during the tenancy"), -statement.refunds))
    if statement.adjustments:
        rows.append(Row("adjustments", _("Corrections and reversals"), statement.adjustments))
    rows.append(
        Row("before", _("Balance before settlement"), statement.balance_before_settlement, True)
    )
    if statement.deposit_returned:
        rows.append(Row("deposit", _("Deposit returned"), statement.deposit_returned))
    if statement.due >= 0:
        rows.append(Row("due", _("Due to the tenant"), statement.due, True))
    else:
        rows.append(Row("due", _("Owed by the tenant"), statement.due, True))
    if statement.refund:
        label = _("Refund paid: %(channel)s") % {"channel": _channel(statement.refund_channel)}
        rows.append(Row("refund", label, -statement.refund))
    if statement.debt:
        rows.append(Row("debt", _("Debt carried to debtors, to be recovered"), statement.debt))
    rows.append(Row("closing", _("Closing balance"), statement.closing_balance, True))
    return rows


def statement_notes(statement: SettlementStatement, money) -> list[str]:
    """Sentences under the figures: the part day, the deposit, what the tenant does next."""
    notes = []
    if statement.final_day_fraction is not None:
        notes.append(
            _(
                "Standing charges include the last, part day: %(fraction)s of a day, "
                "%(amount)s before rounding."
            )
            % {
                "fraction": f"{statement.final_day_fraction.quantize(Decimal('0.0001')):f}",
                "amount": money(statement.final_day_standing),
            }
        )
    if statement.deposit:
        notes.append(
            _("A deposit of %(amount)s was paid at move-in (%(channel)s).")
            % {"amount": money(statement.deposit), "channel": _channel(statement.deposit_channel)}
        )
    if statement.refund:
        notes.append(
            _("%(amount)s is paid back to the tenant.") % {"amount": money(statement.refund)}
        )
    if statement.debt:
        notes.append(
            _("The tenant owes %(amount)s, recorded as a debt.") % {"amount": money(statement.debt)}
        )
    return notes


def settlement_filename(*, statement: SettlementStatement) -> str:
    return (
        f"settlement-{statement.property_code}-{statement.unit_name}-{statement.account_uuid}.pdf"
    )


def _moment(moment: datetime | None, time_zone: str, locale: str) -> str:
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(time_zone))
    return (
        f"{format_date(local, 'long', locale=locale)} {format_time(local, 'HH:mm', locale=locale)}"
    )


def _register(value: Decimal | None, unit: str) -> str:
    return "" if value is None else f"{value.normalize():f} {unit}"


def settlement_pdf(*, statement: SettlementStatement, language: str) -> bytes:
    """The statement on A4, in `language`."""
    language = language_for(language)
    locale = MONEY_LOCALES[language]

    def money(amount: Decimal) -> str:
        return Money(amount, statement.currency).format(locale)

    with translation.override(language):
        return _pdf(statement, language, locale, money)


def _table(rows, widths, *, header: bool = False, totals=()) -> Table:
    table = Table(rows, colWidths=widths)
    style = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#cccccc")),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        style.append(("LINEBELOW", (0, 0), (-1, 0), 0.75, colors.black))
    for index in totals:
        style.append(("LINEABOVE", (0, index), (-1, index), 0.75, colors.black))
    table.setStyle(TableStyle(style))
    return table


def _pdf(statement: SettlementStatement, language: str, locale: str, money) -> bytes:
    register_cjk_font()
    buffer = BytesIO()
    margin = 15 * mm
    title = _("Move-out settlement statement")
    pdf = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=margin,
        bottomMargin=margin,
        title=f"{title} {statement.property_code} {statement.unit_name}",
        author=statement.organisation_name,
        lang=language,
        # The same statement renders to the same bytes.
        invariant=True,
    )
    grey = colors.HexColor("#555555")
    zone = statement.time_zone
    content = [
        pdf_paragraph(statement.organisation_name, size=14, bold=True),
        pdf_paragraph(statement.property_name, size=10),
        *(
            pdf_paragraph(line, size=9, color=grey)
            for line in statement.property_address.splitlines()
            if line.strip()
        ),
        Spacer(1, 6 * mm),
        pdf_paragraph(title, size=16, bold=True),
        Spacer(1, 4 * mm),
    ]
    label_width = 50 * mm
    facts = [
        (_("Tenant"), statement.tenant_name),
        (_("Unit"), f"{statement.property_code} {statement.unit_name}"),
        (_("Moved in"), _moment(statement.opened_at, zone, locale)),
        (_("Moved out"), _moment(statement.closed_at, zone, locale)),
        (_("Times in"), zone),
    ]
    content.append(
        _table(
            [
                [pdf_paragraph(label, size=9, color=grey), pdf_paragraph(value, size=10)]
                for label, value in facts
            ],
            [label_width, pdf.width - label_width],
        )
    )
    if statement.meters:
        content += [Spacer(1, 5 * mm), pdf_paragraph(_("Meter readings"), size=12, bold=True)]
        quarter = pdf.width / 4
        header = [_("Meter"), _("Opening reading"), _("Final reading"), _("Consumption")]
        rows = [[pdf_paragraph(text, size=9, bold=True) for text in header]]
        for span in statement.meters:
            name = span.serial
            if span.replaced:
                name = _("%(serial)s (replaced)") % {"serial": span.serial}
            rows.append(
                [
                    pdf_paragraph(name, size=10),
                    pdf_paragraph(_register(span.opening, span.register_unit), size=10),
                    pdf_paragraph(_register(span.final, span.register_unit), size=10),
                    pdf_paragraph(_register(span.consumption, span.register_unit), size=10),
                ]
            )
        content.append(_table(rows, [quarter] * 4, header=True))
    content += [Spacer(1, 5 * mm), pdf_paragraph(_("Settlement"), size=12, bold=True)]
    rows = statement_rows(statement)
    amount_width = 45 * mm
    content.append(
        _table(
            [
                [
                    pdf_paragraph(row.label, size=10, bold=row.total),
                    pdf_paragraph(money(row.amount), size=10, bold=row.total),
                ]
                for row in rows
            ],
            [pdf.width - amount_width, amount_width],
            totals=[index for index, row in enumerate(rows) if row.total],
        )
    )
    content.append(Spacer(1, 4 * mm))
    content += [pdf_paragraph(note, size=9) for note in statement_notes(statement, money)]
    if statement.topup_lines:
        content += [Spacer(1, 5 * mm), pdf_paragraph(_("Top-ups"), size=12, bold=True)]
        third = pdf.width / 3
        rows = [
            [
                pdf_paragraph(_("Receipt"), size=9, bold=True),
                pdf_paragraph(_("Date"), size=9, bold=True),
                pdf_paragraph(_("Amount"), size=9, bold=True),
            ]
        ]
        rows += [
            [
                pdf_paragraph(line.number, size=9),
                pdf_paragraph(_moment(line.issued_at, zone, locale), size=9),
                pdf_paragraph(money(line.amount), size=9),
            ]
            for line in statement.topup_lines
        ]
        content.append(_table(rows, [third] * 3, header=True))
    pdf.build(content)
    return buffer.getvalue()
