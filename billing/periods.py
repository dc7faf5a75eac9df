"""Period close: an owner or an accountant closes a property's local month, and nothing more is
posted dated in it (docs/money.md, "Period close").

What a month holds. A month runs from the local midnight of its first day to that of the next
month's first day, in the property's zone. A posting is dated by its transaction's
`effective_at`, except a standing charge, whose `effective_at` is the end of the span it charges
(a day ends at the next midnight), so it belongs to the month of the instant just before.

Closing. Months close in order, each once: a month is closable when it is over in local time,
every one of its days is frozen (`billing.freeze`) and the month before it is closed (or it is
the property's first month). Closing twice is a no-op. `PeriodCursor.closed_through`, the last
day of the latest closed month, is what postings are checked against; the `ClosedPeriod` rows
are the record of who closed which month, when and why, and are append-only.

Postings. `transaction_post` refuses a posting dated in a closed month. The paths that post for
the past by nature (a late reading's charge, a standing charge, a move-out settled at a moment)
date it at the open period instead, with a reference to the closed month in the memo, and the
charge itself keeps its true period. A reversal is always dated when it is posted, with
`reverses` pointing at what it corrects.

The check is cheap. A closed month is over, so it lies before the current local month: a
posting dated in the current month (every top-up, payment and refund, dated now, and nearly every
charge) is never in a closed month and costs no query. An older date costs one indexed read of
the property's cursor, under a shared lock that the close takes for update, so a close and a
posting into the month it closes never both commit. A transaction begun in the previous month
cannot still be open when that month is closed: its last day is frozen only `FREEZE_LAG` after
the month ended, longer than any transaction that moves money stays open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Property
from billing.models import ClosedPeriod, FreezeCursor, LedgerTransaction, PeriodCursor
from prepaid.audit.services import acting_user, audit_record
from tariffs.pricing import local_midnight, local_month_start

DAY = timedelta(days=1)
# A standing charge's `effective_at` is the end of its span: the instant before it is the
# span's last, and says which month it belongs to.
INSTANT = timedelta(microseconds=1)


class PeriodError(ValidationError):
    pass


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def month_bounds(*, property: Property, month: date) -> tuple[datetime, datetime]:
    """The local midnights that open and close the month (of any of its days), in UTC."""
    first = month.replace(day=1)
    zone = property.zone
    return local_midnight(first, zone), local_midnight(next_month(first), zone)


def month_of(moment: datetime, zone: ZoneInfo) -> date:
    """The first local day of the month containing `moment`."""
    return local_month_start(moment, zone).astimezone(zone).date()


def book_moment(*, effective_at: datetime, kind: str) -> datetime:
    """The instant a posting is dated at for the close: a standing charge's span ends at its
    `effective_at`, which is already the next span's first instant."""
    if kind == LedgerTransaction.Kind.STANDING_CHARGE:
        return effective_at - INSTANT
    return effective_at


# Postings ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dated:
    """When a posting is dated, and the closed month it was moved out of, if any."""

    effective_at: datetime
    closed_month: date | None = None
    # The original date, when it was moved.
    original: datetime | None = None

    def reference(self, zone: ZoneInfo) -> str:
        """What the memo says about a posting moved out of a closed month ('' when it was not)."""
        if self.closed_month is None or self.original is None:
            return ""
        dated = self.original.astimezone(zone).isoformat(timespec="seconds")
        return f"[closed period {self.closed_month:%Y-%m}; dated {dated}]"

    def memo(self, memo: str, zone: ZoneInfo) -> str:
        return " ".join(part for part in (memo, self.reference(zone)) if part)


class PostingDates:
    """The close as postings see it, read at most once per property in a transaction.

    Use one per posting transaction: it keeps what it read (under the shared lock, held until
    commit) for the properties it was asked about.
    """

    def __init__(self, now: datetime | None = None):
        self.now = now or timezone.now()
        self._closed_until: dict[int, datetime | None] = {}

    def closed_month(self, *, property: Property, effective_at: datetime, kind: str) -> date | None:
        """The closed month a posting dated `effective_at` falls in; None when it is open."""
        moment = book_moment(effective_at=effective_at, kind=kind)
        zone = property.zone
        if moment >= local_month_start(self.now, zone):
            return None
        until = self.closed_until(property=property)
        if until is None or moment >= until:
            return None
        return month_of(moment, zone)

    def closed_until(self, *, property: Property) -> datetime | None:
        """The first instant of the property's open period; None when no month is closed."""
        if property.pk not in self._closed_until:
            closed_through = _closed_through_shared(property_id=property.pk)
            self._closed_until[property.pk] = (
                None
                if closed_through is None
                else local_midnight(closed_through + DAY, property.zone)
            )
        return self._closed_until[property.pk]

    def dated(self, *, property: Property, effective_at: datetime, kind: str) -> Dated:
        """Where a posting for the past goes: its own date while that is open, else the open
        period (now, which is always later than the first open instant)."""
        closed = self.closed_month(property=property, effective_at=effective_at, kind=kind)
        if closed is None:
            return Dated(effective_at)
        until = self.closed_until(property=property)
        return Dated(max(self.now, until), closed_month=closed, original=effective_at)


_CURSOR_SHARED_SQL = "SELECT closed_through FROM billing_periodcursor WHERE property_id = %s"


def _closed_through_shared(*, property_id: int) -> date | None:
    """The property's cursor, locked in share mode until commit (created when missing, so a
    first close cannot slip past a posting that found nothing to lock)."""
    sql = _CURSOR_SHARED_SQL
    # SQLite has no row locks; its write transactions are serial anyway.
    if connection.features.has_select_for_update:
        sql += " FOR SHARE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [property_id])
        row = cursor.fetchone()
        if row is None:
            PeriodCursor.objects.bulk_create(
                [PeriodCursor(property_id=property_id)], ignore_conflicts=True
            )
            cursor.execute(sql, [property_id])
            row = cursor.fetchone()
    value = row[0]
    if isinstance(value, str):  # SQLite hands dates back as text
        value = date.fromisoformat(value)
    return value


def closed_until(*, property: Property) -> datetime | None:
    """The first instant of the property's open period, read without a lock (for display)."""
    closed_through = (
        PeriodCursor.objects.filter(property=property)
        .values_list("closed_through", flat=True)
        .first()
    )
    if closed_through is None:
        return None
    return local_midnight(closed_through + DAY, property.zone)


# Closing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodClosed:
    closed: ClosedPeriod
    created: bool


def _month_label(month: date) -> str:
    return f"{month:%Y-%m}"


def first_month(*, property: Property) -> date:
    """The property's first month: that of the first day the freeze records for it."""
    # Imported here: the freeze posts standing charges through billing.services, which checks
    # postings against this module.
    from billing.freeze import _first_day

    return _first_day(property=property).replace(day=1)


def _lock_cursor(*, property: Property) -> PeriodCursor:
    PeriodCursor.objects.get_or_create(property=property)
    return PeriodCursor.objects.select_for_update().get(property=property)


def _frozen_through(*, property: Property) -> date | None:
    return (
        FreezeCursor.objects.filter(property=property)
        .values_list("frozen_through", flat=True)
        .first()
    )


@transaction.atomic
def period_close(
    *, property: Property, month: date, actor, note: str = "", now: datetime | None = None
) -> PeriodClosed:
    """Close the property's local month (given by any of its days) to postings, once.

    Refused for a month not over yet, one with days not frozen yet, or one whose previous month
    is still open. A month already closed is returned as it is.
    """
    now = now or timezone.now()
    month = month.replace(day=1)
    cursor = _lock_cursor(property=property)
    existing = (
        ClosedPeriod.objects.filter(property=property, month=month).select_related("closed_by")
    ).first()
    if existing is not None:
        return PeriodClosed(existing, created=False)
    label = _month_label(month)
    _start, end = month_bounds(property=property, month=month)
    last_day = next_month(month) - DAY
    if end > now:
        raise PeriodError(
            _("%(month)s is not over yet in %(zone)s: a month closes once it has ended.")
            % {"month": label, "zone": property.time_zone}
        )
    frozen_through = _frozen_through(property=property)
    if frozen_through is None or frozen_through < last_day:
        raise PeriodError(
            _("%(month)s is not frozen to its last day yet. Wait for the daily freeze.")
            % {"month": label}
        )
    expected = (
        first_month(property=property)
        if cursor.closed_through is None
        else next_month(cursor.closed_through.replace(day=1))
    )
    if month > expected:
        raise PeriodError(
            _("Close %(earlier)s first: months close in order.")
            % {"earlier": _month_label(expected)}
        )
    if month < expected:
        raise PeriodError(
            _("%(month)s is before this property's first month, %(first)s.")
            % {"month": label, "first": _month_label(expected)}
        )
    note = note.strip()[:300]
    closed = ClosedPeriod.objects.create(
        property=property, month=month, closed_at=now, closed_by=acting_user(actor), note=note
    )
    cursor.closed_through = last_day
    cursor.save(update_fields=["closed_through", "updated_at"])
    audit_record(
        organisation_id=property.organisation_id,
        property_id=property.pk,
        actor=actor,
        action="period.close",
        instance=closed,
        object_repr=f"{property.code} {label}",
        after={"month": label, "closed_through": last_day.isoformat(), "note": note},
        reason=note,
    )
    return PeriodClosed(closed, created=True)


# The periods page --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodMonth:
    """One of a property's months as the periods page shows it."""

    class State:
        CLOSED = "closed"
        CLOSABLE = "closable"
        # Over, but not frozen to its last day yet.
        NOT_FROZEN = "not_frozen"
        # Over and frozen, but an earlier month is still open.
        WAITING = "waiting"
        # Not over yet.
        RUNNING = "running"

    month: date
    last_day: date
    state: str
    closed: ClosedPeriod | None = None

    @property
    def closable(self) -> bool:
        return self.state == self.State.CLOSABLE


def property_periods(*, property: Property, now: datetime | None = None) -> list[PeriodMonth]:
    """The property's months from its first to the current one, newest first, in a constant
    number of queries."""
    now = now or timezone.now()
    zone = property.zone
    closed = {
        row.month: row
        for row in ClosedPeriod.objects.filter(property=property).select_related("closed_by")
    }
    frozen_through = _frozen_through(property=property)
    current = month_of(now, zone)
    month = min([first_month(property=property), current, *closed])
    months = []
    open_before = False
    while month <= current:
        last_day = next_month(month) - DAY
        if month in closed:
            state = PeriodMonth.State.CLOSED
        elif local_midnight(next_month(month), zone) > now:
            state = PeriodMonth.State.RUNNING
        elif frozen_through is None or frozen_through < last_day:
            state = PeriodMonth.State.NOT_FROZEN
        elif open_before:
            state = PeriodMonth.State.WAITING
        else:
            state = PeriodMonth.State.CLOSABLE
        open_before = open_before or state != PeriodMonth.State.CLOSED
        months.append(PeriodMonth(month, last_day, state, closed.get(month)))
        month = next_month(month)
    months.reverse()
    return months
