"""Monthly tenant statements: one account's wallet over one local month, and sending them.

Every figure comes from the account's daily freeze rows (`DailyFreeze`) of the month, which tie
to the ledger day by day (invariant 8): the opening balance is the first frozen day's opening,
the closing balance the last one's closing, and in between the days' top-ups, charges, refunds
and adjustments, so opening + top-ups - charges - refunds + adjustments = closing to the cent.
The top-ups are listed from their receipts, selected by book time exactly as the freeze counts
them, so the list adds up to the top-ups figure. Consumption is the tenant's share of what the
unit's meters measured each day.

A statement of a month still running (or not yet frozen to its end) covers the frozen days so
far and says so. `monthly_statements_send` emails each month's statement once, after the
property's last daily freeze of the month, to tenants who chose email; see its docstring.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import TruncMonth
from django.utils.translation import gettext as _

from accounts.models import Account, Property
from billing.models import DailyFreeze, FreezeCursor, Receipt
from notifications.events import Event
from notifications.models import Notification
from notifications.services import notify
from prepaid.money import quantize
from tariffs.pricing import local_midnight

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
DAY = timedelta(days=1)
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class NoStatement(LookupError):
    """The account has no frozen day in that month."""


def parse_month(text: str) -> date | None:
    """The first day of a "YYYY-MM" month, or None when the text is not one."""
    found = _MONTH.match(text or "")
    return date(int(found[1]), int(found[2]), 1) if found else None


def month_label(month: date) -> str:
    return f"{month:%Y-%m}"


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def last_day(month: date) -> date:
    return next_month(month) - DAY


@dataclass(frozen=True)
class StatementDay:
    day: date
    opening_balance: Decimal
    topups: Decimal
    charges: Decimal
    refunds: Decimal
    adjustments: Decimal
    closing_balance: Decimal
    electricity: Decimal
    water: Decimal


@dataclass(frozen=True)
class StatementTopup:
    number: str
    issued_at: datetime
    amount: Decimal
    channel: str


@dataclass(frozen=True)
class MonthlyStatement:
    account_uuid: uuid.UUID
    tenant_name: str
    tenant_language: str
    unit_name: str
    property_name: str
    property_code: str
    property_address: str
    organisation_name: str
    currency: str
    time_zone: str
    month: date
    # The frozen days it covers: the whole month, or fewer for a move-in or move-out in it or
    # a month not frozen to its end yet (`complete` is then false).
    first_day: date
    last_day: date
    complete: bool
    opening_balance: Decimal
    topups: Decimal
    energy_charges: Decimal
    standing_charges: Decimal
    tax: Decimal
    refunds: Decimal
    adjustments: Decimal
    closing_balance: Decimal
    electricity: Decimal
    water: Decimal
    days: tuple[StatementDay, ...]
    topup_lines: tuple[StatementTopup, ...]

    @property
    def charges(self) -> Decimal:
        """Consumption and standing charges, tax included."""
        return self.energy_charges + self.standing_charges

    @property
    def label(self) -> str:
        return month_label(self.month)


@dataclass(frozen=True)
class SummaryRow:
    # What the row is, for pages and tests: "opening", "topups", "closing"...
    key: str
    label: str
    amount: Decimal
    total: bool = False


def summary_rows(statement: MonthlyStatement) -> list[SummaryRow]:
    """The month's movement of the wallet, signed as it moved the balance, in the active
    language: the page and the PDF both print these."""
    rows = [
        SummaryRow("opening", _("Opening balance"), statement.opening_balance, True),
        SummaryRow("topups", _("Top-ups received"), statement.topups),
        SummaryRow("energy", _("Consumption charges, tax included"), -statement.energy_charges),
        SummaryRow("standing", _("Standing charges, tax included"), -statement.standing_charges),
    ]
    if statement.refunds:
        rows.append(SummaryRow("refunds", _("Refunds"), -statement.refunds))
    if statement.adjustments:
        rows.append(
            SummaryRow("adjustments", _("Corrections and reversals"), statement.adjustments)
        )
    rows.append(SummaryRow("closing", _("Closing balance"), statement.closing_balance, True))
    return rows


def statement_months(*, account: Account) -> list[date]:
    """The months the account has frozen days in, oldest first."""
    return list(
        DailyFreeze.objects.filter(account=account, property_id=account.unit.property_id)
        .annotate(month=TruncMonth("day"))
        .values_list("month", flat=True)
        .distinct()
        .order_by("month")
    )


def _frozen_through(prop: Property) -> date | None:
    return (
        FreezeCursor.objects.filter(property=prop).values_list("frozen_through", flat=True).first()
    )


def monthly_statement(*, account: Account, month: date) -> MonthlyStatement:
    """The account's statement for the local month starting `month`, from its frozen days."""
    account = Account.objects.select_related("tenant", "unit__property__organisation").get(
        pk=account.pk
    )
    prop = account.unit.property
    currency = prop.currency
    month = month.replace(day=1)
    rows = list(
        DailyFreeze.objects.filter(
            account=account, property=prop, day__gte=month, day__lte=last_day(month)
        ).order_by("day")
    )
    if not rows:
        raise NoStatement(f"No frozen day of {month_label(month)} for {account.uuid}.")
    first, last = rows[0], rows[-1]
    frozen = _frozen_through(prop)
    closed_on = account.closed_at.astimezone(prop.zone).date() if account.closed_at else None
    end_of_account_month = min(last_day(month), closed_on) if closed_on else last_day(month)
    complete = frozen is not None and frozen >= end_of_account_month

    def total(*fields: str) -> Decimal:
        return quantize(sum((getattr(row, f) for row in rows for f in fields), ZERO), currency)

    days = tuple(
        StatementDay(
            day=row.day,
            opening_balance=quantize(row.opening_balance, currency),
            topups=quantize(row.topups, currency),
            charges=quantize(
                row.energy_net + row.energy_tax + row.standing_net + row.standing_tax, currency
            ),
            refunds=quantize(row.refunds, currency),
            adjustments=quantize(row.adjustments, currency),
            closing_balance=quantize(row.closing_balance, currency),
            electricity=row.electricity,
            water=row.water,
        )
        for row in rows
    )
    receipts = Receipt.objects.filter(
        account=account,
        transaction__created_at__gte=local_midnight(first.day, prop.zone),
        transaction__created_at__lt=local_midnight(last.day + DAY, prop.zone),
    ).order_by("issued_at", "number")
    return MonthlyStatement(
        account_uuid=account.uuid,
        tenant_name=account.tenant.name,
        tenant_language=account.tenant.preferred_language,
        unit_name=account.unit.name,
        property_name=prop.name,
        property_code=prop.code,
        property_address=prop.address,
        organisation_name=prop.organisation.name,
        currency=currency,
        time_zone=prop.time_zone,
        month=month,
        first_day=first.day,
        last_day=last.day,
        complete=complete,
        opening_balance=quantize(first.opening_balance, currency),
        topups=total("topups"),
        energy_charges=total("energy_net", "energy_tax"),
        standing_charges=total("standing_net", "standing_tax"),
        tax=total("energy_tax", "standing_tax"),
        refunds=total("refunds"),
        adjustments=total("adjustments"),
        closing_balance=quantize(last.closing_balance, currency),
        electricity=sum((row.electricity for row in rows), ZERO),
        water=sum((row.water for row in rows), ZERO),
        days=days,
        topup_lines=tuple(
            StatementTopup(
                number=f"{prop.code}-{receipt.number:08d}",
                issued_at=receipt.issued_at,
                amount=quantize(receipt.amount, currency),
                channel=receipt.channel,
            )
            for receipt in receipts
        ),
    )


# Sending at month end -----------------------------------------------------------------------------


def statement_key(*, account: Account, month: date) -> str:
    """The notification's idempotency key: one statement per account and month, ever."""
    return f"monthly-statement:{account.uuid}:{month_label(month)}"


def ended_month(frozen_through: date | None) -> date | None:
    """The latest month whose every day is frozen, given the last frozen day."""
    if frozen_through is None:
        return None
    if (frozen_through + DAY).day == 1:
        return frozen_through.replace(day=1)
    first = frozen_through.replace(day=1)
    return (first - DAY).replace(day=1)


def statement_context(*, statement: MonthlyStatement, month_start: datetime) -> dict[str, str]:
    return {
        "currency": statement.currency,
        "month_start_at": month_start.isoformat(),
        "opening_balance": str(statement.opening_balance),
        "topups": str(statement.topups),
        "charges": str(statement.charges),
        "balance": str(statement.closing_balance),
        "account_uuid": str(statement.account_uuid),
    }


def statement_recipients(*, property: Property, month: date) -> QuerySet[Account]:
    """The open accounts with frozen days in the month whose tenant chose to be told by email
    and has an address, and who were not sent this month's statement yet."""
    frozen_days = DailyFreeze.objects.filter(
        account_id=OuterRef("pk"), property=property, day__gte=month, day__lte=last_day(month)
    )
    # Through the account's notifications (an index leads with the account), not every one.
    sent = Notification.objects.filter(
        account_id=OuterRef("pk"),
        event=Event.MONTHLY_STATEMENT,
        idempotency_key__endswith=f":{month_label(month)}",
    )
    return (
        Account.objects.filter(unit__property=property, status=Account.Status.OPEN)
        .filter(Exists(frozen_days))
        .exclude(tenant__email="")
        .filter(
            Q(tenant__notification_channels__isnull=True)
            | Q(tenant__notification_channels__email=True)
        )
        .exclude(Exists(sent))
        .order_by("pk")
    )


def monthly_statements_send() -> int:
    """Email every due statement once. For each property, the due month is the latest local
    month frozen to its last day; each open account with days in it whose tenant is told by
    email gets the statement (the PDF rides on the email; the portal and SMS copies, where the
    tenant chose those channels, say it was sent). The notification's idempotency key is the
    account and month, so a second run, or two at once, sends nothing more. Returns how many
    accounts were told."""
    told = 0
    for prop in Property.objects.order_by("pk"):
        month = ended_month(_frozen_through(prop))
        if month is None:
            continue
        month_start = local_midnight(month, prop.zone)
        for account in statement_recipients(property=prop, month=month).iterator(chunk_size=500):
            statement = monthly_statement(account=account, month=month)
            notify(
                account_id=account.pk,
                event=Event.MONTHLY_STATEMENT,
                context=statement_context(statement=statement, month_start=month_start),
                idempotency_key=statement_key(account=account, month=month),
            )
            told += 1
    if told:
        logger.info("Sent %d monthly statements.", told)
    return told
