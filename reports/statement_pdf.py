"""The monthly tenant statement as a PDF, in the tenant's language.

Laid out like the receipts and the settlement statement (`billing.receipts`,
`billing.settlement_pdf`): reportlab's Helvetica, with the built-in CID font STSong-Light for
Chinese, no font files needed; amounts in the property's currency written the way the language
writes money; days in the property's zone. The consumption chart is a reportlab bar chart of
each day's electricity (and water, where the unit has it). Nothing is stored: the statement is
read from the daily freeze whenever it is asked for, and the same statement renders to the same
bytes.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from io import BytesIO
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_skeleton, format_time
from django.utils import translation
from django.utils.translation import gettext as _
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import SimpleDocTemplate, Spacer, Table, TableStyle

from accounts.models import Account
from billing.receipts import CHANNEL_LABELS, pdf_paragraph, register_cjk_font
from notifications.delivery import Attachment
from notifications.texts import MONEY_LOCALES, language_for
from prepaid.money import Money
from reports.statements import MonthlyStatement, monthly_statement, summary_rows

PDF_MIMETYPE = "application/pdf"
GREY = colors.HexColor("#555555")
RULE = colors.HexColor("#cccccc")
BAR = colors.HexColor("#0b6bcb")
WATER_BAR = colors.HexColor("#2a9d8f")


def statement_filename(*, statement: MonthlyStatement) -> str:
    return f"statement-{statement.property_code}-{statement.unit_name}-{statement.label}.pdf"


def statement_language(*, statement: MonthlyStatement) -> str:
    return language_for(statement.tenant_language)


def statement_attachments(*, context: dict, language: str) -> list[Attachment]:
    """The statement a monthly statement's email carries (`notifications.events.ATTACHMENTS`):
    the account's month starting at `month_start_at`, read from the ledger as it stands when
    the email is sent. A context without `account_uuid` names no account and carries nothing."""
    if "account_uuid" not in context:
        return []
    account = Account.objects.select_related("unit__property").get(uuid=context["account_uuid"])
    start = datetime.fromisoformat(context["month_start_at"]).astimezone(account.unit.property.zone)
    statement = monthly_statement(account=account, month=start.date().replace(day=1))
    return [
        Attachment(
            statement_filename(statement=statement),
            statement_pdf(statement=statement, language=language),
            PDF_MIMETYPE,
        )
    ]


def month_name(month: date, locale: str) -> str:
    return format_skeleton("yMMMM", month, locale=locale)


def _day(day: date, locale: str) -> str:
    return format_date(day, "medium", locale=locale)


def _moment(moment: datetime, time_zone: str, locale: str) -> str:
    local = moment.astimezone(ZoneInfo(time_zone))
    time = format_time(local, "HH:mm", locale=locale)
    return f"{format_date(local, 'medium', locale=locale)} {time}"


def _quantity(value: Decimal, places: int = 3) -> str:
    return f"{value:.{places}f}"


def statement_pdf(*, statement: MonthlyStatement, language: str) -> bytes:
    """The statement on A4, in `language` (the tenant's own when it is not one we write)."""
    language = language_for(language)
    locale = MONEY_LOCALES[language]

    def money(amount: Decimal) -> str:
        return Money(amount, statement.currency).format(locale)

    with translation.override(language):
        return _pdf(statement, language, locale, money)


def _table(rows, widths, *, header: bool = False, totals=()) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0)
    style = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    if header:
        style.append(("LINEBELOW", (0, 0), (-1, 0), 0.75, colors.black))
    for index in totals:
        style.append(("LINEABOVE", (0, index), (-1, index), 0.75, colors.black))
    table.setStyle(TableStyle(style))
    return table


def consumption_chart(
    days: list[date], values: list[Decimal], *, width: float, colour=BAR
) -> Drawing:
    """One bar per day of the month, labelled with the day of the month."""
    height = 45 * mm
    drawing = Drawing(width, height)
    chart = VerticalBarChart()
    chart.x, chart.y = 12 * mm, 8 * mm
    chart.width, chart.height = width - 16 * mm, height - 12 * mm
    # reportlab draws floats; the figures printed in the tables stay exact Decimals.
    chart.data = [[float(value) for value in values]]
    chart.categoryAxis.categoryNames = [str(day.day) for day in days]
    chart.categoryAxis.labels.fontName = "Helvetica"
    chart.categoryAxis.labels.fontSize = 6
    chart.valueAxis.labels.fontName = "Helvetica"
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    chart.valueAxis.forceZero = True
    chart.bars[0].fillColor = colour
    chart.bars[0].strokeColor = None
    chart.barSpacing = 1
    drawing.add(chart)
    return drawing


def _pdf(statement: MonthlyStatement, language: str, locale: str, money) -> bytes:
    register_cjk_font()
    buffer = BytesIO()
    margin = 15 * mm
    title = _("Monthly statement")
    period = month_name(statement.month, locale)
    pdf = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=margin,
        bottomMargin=margin,
        title=f"{title} {statement.property_code} {statement.unit_name} {statement.label}",
        author=statement.organisation_name,
        lang=language,
        invariant=True,
    )
    content = [
        pdf_paragraph(statement.organisation_name, size=14, bold=True),
        pdf_paragraph(statement.property_name, size=10),
        *(
            pdf_paragraph(line, size=9, color=GREY)
            for line in statement.property_address.splitlines()
            if line.strip()
        ),
        Spacer(1, 6 * mm),
        pdf_paragraph(f"{title}: {period}", size=16, bold=True),
        Spacer(1, 4 * mm),
    ]
    label_width = 50 * mm
    facts = [
        (_("Tenant"), statement.tenant_name),
        (_("Unit"), f"{statement.property_code} {statement.unit_name}"),
        (
            _("Period"),
            _("%(first)s to %(last)s")
            % {
                "first": _day(statement.first_day, locale),
                "last": _day(statement.last_day, locale),
            },
        ),
        (_("Days in"), statement.time_zone),
    ]
    content.append(
        _table(
            [
                [pdf_paragraph(label, size=9, color=GREY), pdf_paragraph(value, size=10)]
                for label, value in facts
            ],
            [label_width, pdf.width - label_width],
        )
    )
    if not statement.complete:
        content += [
            Spacer(1, 2 * mm),
            pdf_paragraph(
                _("The month is not over yet: this statement covers the days up to %(date)s.")
                % {"date": _day(statement.last_day, locale)},
                size=9,
                bold=True,
                color=colors.HexColor("#a40000"),
            ),
        ]
    content += [Spacer(1, 5 * mm), pdf_paragraph(_("Summary"), size=12, bold=True)]
    rows = summary_rows(statement)
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
            totals=[index for index, row in enumerate(rows) if row.total][1:],
        )
    )
    if statement.tax:
        content.append(
            pdf_paragraph(
                _("The charges include %(amount)s of tax.") % {"amount": money(statement.tax)},
                size=9,
                color=GREY,
            )
        )
    days = [row.day for row in statement.days]
    charts = [
        (_("Electricity used per day (kWh)"), [row.electricity for row in statement.days], BAR)
    ]
    if statement.water:
        charts.append(
            (_("Water used per day (m³)"), [row.water for row in statement.days], WATER_BAR)
        )
    for caption, values, colour in charts:
        content += [
            Spacer(1, 5 * mm),
            pdf_paragraph(caption, size=12, bold=True),
            consumption_chart(days, values, width=pdf.width, colour=colour),
        ]
    content += [Spacer(1, 5 * mm), pdf_paragraph(_("Day by day"), size=12, bold=True)]
    header = [_("Date"), _("Electricity (kWh)")]
    if statement.water:
        header.append(_("Water (m³)"))
    header += [_("Top-ups"), _("Charges"), _("Closing balance")]
    table = [[pdf_paragraph(text, size=8, bold=True) for text in header]]
    for row in statement.days:
        cells = [_day(row.day, locale), _quantity(row.electricity)]
        if statement.water:
            cells.append(_quantity(row.water))
        cells += [money(row.topups), money(row.charges), money(row.closing_balance)]
        table.append([pdf_paragraph(cell, size=8) for cell in cells])
    totals = [_("Total"), _quantity(statement.electricity)]
    if statement.water:
        totals.append(_quantity(statement.water))
    totals += [money(statement.topups), money(statement.charges), money(statement.closing_balance)]
    table.append([pdf_paragraph(cell, size=8, bold=True) for cell in totals])
    width = pdf.width / len(header)
    content.append(_table(table, [width] * len(header), header=True, totals=[len(table) - 1]))
    if statement.topup_lines:
        content += [Spacer(1, 5 * mm), pdf_paragraph(_("Top-ups"), size=12, bold=True)]
        quarter = pdf.width / 4
        rows = [
            [
                pdf_paragraph(text, size=9, bold=True)
                for text in (_("Receipt"), _("Date"), _("Paid by"), _("Amount"))
            ]
        ]
        rows += [
            [
                pdf_paragraph(line.number, size=9),
                pdf_paragraph(_moment(line.issued_at, statement.time_zone, locale), size=9),
                pdf_paragraph(str(CHANNEL_LABELS.get(line.channel, line.channel)), size=9),
                pdf_paragraph(money(line.amount), size=9),
            ]
            for line in statement.topup_lines
        ]
        content.append(_table(rows, [quarter] * 4, header=True))
    pdf.build(content)
    return buffer.getvalue()
