"""The daily freeze: at each property's local midnight, every meter's register and every wallet's
balance, recorded once and never changed (docs/freeze.md).

What a day holds. A local day runs from its midnight to the next one in the property's zone
(`tariffs.pricing.local_midnight`, so a day is 23 or 25 hours long across a DST change). Money
belongs to the day of its *book time*: a ledger transaction's creation, except a standing charge,
which belongs to the day it charges (its `effective_at`, the end of the charged span), because
the freeze itself posts a day's standing charges once the day is over. A day is frozen only
FREEZE_LAG after its closing midnight, when everything booked before that midnight has committed,
so a frozen day never changes: its closing balance is the wallet's postings booked before the
midnight, and the next day opens with it.

Registers. A meter's register at midnight is the reading taken then (actual); else it is
interpolated between the last reading before and the first after (estimated); else, for a meter
that has not reported since, carried forward from its last reading (estimated). Rejected readings
do not count. The day's consumption is the register minus the previous day's frozen register,
wrapping at the meter's rollover value; a register below the previous one that is no rollover is
not trusted, exactly as charging rejects it, and the previous register is carried forward.

Each property-day is one transaction: lock the property's freeze cursor, post the day's standing
charges, write the meters' rows and then the accounts' rows in one INSERT ... SELECT each, and
move the cursor. The work is set-based, in SQL that runs on PostgreSQL and SQLite alike, so a
day of a million accounts is a few statements, not a million objects.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache

from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from accounts.models import Account, Property
from billing.charging import standing_charges_post
from billing.models import FreezeCursor, LedgerAccount, LedgerTransaction, MeterFreeze
from billing.tasks_bills import month_end_bills_task
from meters.models import Meter, Reading
from tariffs.models import TariffVersion
from tariffs.pricing import local_midnight

logger = logging.getLogger(__name__)

DAY = timedelta(days=1)
# How long after its closing midnight a day is frozen. Longer than any transaction that moves
# money can stay open (the longest billing task is killed after 10 minutes), so whatever was
# booked before the midnight has committed by then, or never will.
FREEZE_LAG = timedelta(minutes=15)


class FreezeError(ValueError):
    pass


@dataclass(frozen=True)
class FrozenDay:
    """What freezing one property-day wrote: rows and standing charges newly recorded."""

    day: date
    meters: int = 0
    accounts: int = 0
    standing_charges: int = 0


def day_bounds(*, property: Property, day: date) -> tuple[datetime, datetime]:
    """The local midnights that open and close `day` in the property's zone, in UTC."""
    zone = property.zone
    return local_midnight(day, zone), local_midnight(day + DAY, zone)


def freeze_is_due(*, property: Property, day: date, now: datetime) -> bool:
    return day_bounds(property=property, day=day)[1] + FREEZE_LAG <= now


def freeze_due(*, now: datetime | None = None) -> dict[str, int]:
    """Freeze, for every property, every local day that is over and not yet frozen, in order.

    A run that finds several days missed (no worker ran over some midnights) fills them all,
    oldest first, one transaction each, so a run cut short resumes where it stopped. A property
    another worker is freezing is left to it.
    """
    now = now or timezone.now()
    totals: Counter[str] = Counter()
    for prop in Property.objects.order_by("pk"):
        days = 0
        while (frozen := _freeze_next(property=prop, now=now)) is not None:
            days += 1
            totals.update(
                meters=frozen.meters,
                accounts=frozen.accounts,
                standing_charges=frozen.standing_charges,
            )
        if days:
            totals.update(properties=1, days=days)
    return {
        key: totals[key] for key in ("properties", "days", "meters", "accounts", "standing_charges")
    }


@transaction.atomic
def freeze_day(*, property: Property, day: date, now: datetime | None = None) -> FrozenDay:
    """Freeze one local day of a property. Idempotent: a day already frozen writes nothing.

    Days are normally frozen by `freeze_due`, in order; a day frozen out of order keeps its rows
    and the catch-up passes over it.
    """
    if not freeze_is_due(property=property, day=day, now=now or timezone.now()):
        raise FreezeError(f"{day} is not over in {property.time_zone} yet.")
    cursor = _lock_cursor(property=property, skip_locked=False)
    if cursor.frozen_through is not None and day <= cursor.frozen_through:
        return FrozenDay(day=day)
    return _freeze_locked(property=property, cursor=cursor, day=day)


@transaction.atomic
def _freeze_next(*, property: Property, now: datetime) -> FrozenDay | None:
    """Freeze the property's next day if it is due and no other worker holds the property."""
    cursor = _lock_cursor(property=property, skip_locked=True)
    if cursor is None:
        return None
    day = _next_day(property=property, cursor=cursor)
    if not freeze_is_due(property=property, day=day, now=now):
        return None
    return _freeze_locked(property=property, cursor=cursor, day=day)


def _lock_cursor(*, property: Property, skip_locked: bool) -> FreezeCursor | None:
    # The freeze cursor comes first in the lock order: only the freeze takes it, and it goes on
    # to lock wallets (standing charges) as every money movement does.
    FreezeCursor.objects.get_or_create(property=property)
    return (
        FreezeCursor.objects.select_for_update(skip_locked=skip_locked)
        .filter(property=property)
        .first()
    )


def _next_day(*, property: Property, cursor: FreezeCursor) -> date:
    if cursor.frozen_through is not None:
        return cursor.frozen_through + DAY
    return _first_day(property=property)


def _first_day(*, property: Property) -> date:
    """The local day the property's history starts: its first move-in or meter installation,
    or its creation when it has neither yet."""
    moments = [
        property.created_at,
        Account.objects.filter(unit__property=property).aggregate(first=Min("opened_at"))["first"],
        Meter.objects.filter(unit__property=property).aggregate(first=Min("installed_at"))["first"],
    ]
    return min(moment for moment in moments if moment is not None).astimezone(property.zone).date()


def _freeze_locked(*, property: Property, cursor: FreezeCursor, day: date) -> FrozenDay:
    start, end = day_bounds(property=property, day=day)
    standing = 0
    if _has_standing_charges(property=property, before=end):
        standing = standing_charges_post(property=property, day=day)
    params = _parameters(property=property, day=day, start=start, end=end)
    with connection.cursor() as db:
        for setting in _DIALECTS[connection.vendor]["prepare"]:
            db.execute(setting)
        db.execute(_statement(connection.vendor, _METERS_SQL), params)
        meters = db.rowcount
        db.execute(_statement(connection.vendor, _ACCOUNTS_SQL), params)
        accounts = db.rowcount
    if day == _next_day(property=property, cursor=cursor):
        cursor.frozen_through = day
        cursor.save(update_fields=["frozen_through", "updated_at"])
    if (day + DAY).day == 1:
        # The month is frozen to its end: its postpaid bills can be issued once this commits.
        property_id, month = property.pk, day.replace(day=1).isoformat()
        transaction.on_commit(lambda: month_end_bills_task.delay(property_id, month))
    logger.info(
        "Froze %s %s: %d meters, %d accounts, %d standing charges.",
        property.code,
        day,
        meters,
        accounts,
        standing,
    )
    return FrozenDay(day=day, meters=meters, accounts=accounts, standing_charges=standing)


def _has_standing_charges(*, property: Property, before: datetime) -> bool:
    """Whether any of the property's tariffs had a standing charge by then: without one there is
    nothing to post, and a large property's accounts need not be loaded to find that out."""
    return (
        TariffVersion.objects.filter(tariff__property=property, effective_from__lt=before)
        .exclude(standing_charge_per_day=0)
        .exists()
    )


def _parameters(*, property: Property, day: date, start: datetime, end: datetime) -> dict:
    ops = connection.ops
    Kind = LedgerTransaction.Kind
    return {
        "property": property.pk,
        "organisation": property.organisation_id,
        # A wallet is in its property's currency.
        "currency": property.currency,
        "start": ops.adapt_datetimefield_value(start),
        "end": ops.adapt_datetimefield_value(end),
        "day": ops.adapt_datefield_value(day),
        "previous_day": ops.adapt_datefield_value(day - DAY),
        "month": ops.adapt_datefield_value(day.replace(day=1)),
        "month_end": (day + DAY).day == 1,
        "rejected": Reading.Status.REJECTED,
        "actual": MeterFreeze.Method.ACTUAL,
        "interpolated": MeterFreeze.Method.INTERPOLATED,
        "carried_forward": MeterFreeze.Method.CARRIED_FORWARD,
        "electricity": Meter.Utility.ELECTRICITY,
        "water": Meter.Utility.WATER,
        "topup": Kind.TOPUP,
        "charge": Kind.CHARGE,
        "standing_charge": Kind.STANDING_CHARGE,
        "reversal": Kind.REVERSAL,
        "wallet": LedgerAccount.Kind.WALLET,
        "tax_payable": LedgerAccount.Kind.TAX_PAYABLE,
        "refunds_payable": LedgerAccount.Kind.REFUNDS_PAYABLE,
    }


# The few things PostgreSQL and SQLite spell differently. SQLite keeps timestamps as ISO text
# (which compares in time order) and has scalar MAX/MIN where PostgreSQL has GREATEST/LEAST.
# A meter's reading nearest a moment is a LATERAL join on PostgreSQL, so the plan is one index
# probe per meter whatever the statistics say, and a join on the reading's id found by a
# correlated subquery on SQLite, which has no LATERAL. On PostgreSQL a day of a large property
# hashes and sorts a million rows a statement: memory for that, for this transaction only,
# keeps them off the disk.
_DIALECTS = {
    "postgresql": {
        "greatest": "GREATEST",
        "least": "LEAST",
        "seconds": "EXTRACT(EPOCH FROM ({later} - {earlier}))",
        "reading": "LEFT JOIN LATERAL (SELECT r.taken_at, r.register {query}) {alias} ON TRUE",
        "prepare": ["SET LOCAL work_mem = '256MB'"],
    },
    "sqlite": {
        "greatest": "MAX",
        "least": "MIN",
        "seconds": "((julianday({later}) - julianday({earlier})) * 86400.0)",
        "reading": "LEFT JOIN meters_reading {alias} ON {alias}.id = (SELECT r.id {query})",
        "prepare": [],
    },
}
# A meter's last usable reading at or before a moment, and its first after it, in service.
_READING_BEFORE = """FROM meters_reading r
        WHERE r.meter_id = m.id AND r.taken_at <= {moment}
          AND r.taken_at >= m.installed_at AND r.status <> %(rejected)s{only}
        ORDER BY r.taken_at DESC LIMIT 1"""
_READING_AFTER = """FROM meters_reading r
        WHERE r.meter_id = m.id AND r.taken_at > {moment}
          AND (m.removed_at IS NULL OR r.taken_at <= m.removed_at)
          AND r.status <> %(rejected)s{only}
        ORDER BY r.taken_at LIMIT 1"""
# The opening moment only matters to a meter without a previous day's register.
_ONLY_FIRST_DAY = "\n          AND m.previous_register IS NULL"


@cache
def _statement(vendor: str, template: str) -> str:
    dialect = _DIALECTS[vendor]

    def seconds(earlier: str, later: str) -> str:
        return dialect["seconds"].format(earlier=earlier, later=later)

    def reading(query: str, alias: str, moment: str, only: str = "") -> str:
        return dialect["reading"].format(query=query.format(moment=moment, only=only), alias=alias)

    return template.format(
        greatest=dialect["greatest"],
        least=dialect["least"],
        closing_before=reading(_READING_BEFORE, "b", "m.closes"),
        closing_after=reading(_READING_AFTER, "n", "m.closes"),
        opening_before=reading(_READING_BEFORE, "ob", "m.opens", _ONLY_FIRST_DAY),
        opening_after=reading(_READING_AFTER, "oa", "m.opens", _ONLY_FIRST_DAY),
        closing_share=f"{seconds('t0', 'closes')} / {seconds('t0', 't1')}",
        opening_share=f"{seconds('ot0', 'opens')} / {seconds('ot0', 'ot1')}",
        occupied=seconds("a_open", "a_close"),
        in_service=seconds("m_open", "m_close"),
    )


# Each meter in service during the day gets its register at the day's closing moment (midnight,
# or its removal) and the day's consumption since the previous day's register. A meter without
# a previous row (its first day, or a day frozen out of order) is measured from its register at
# the day's opening moment (midnight, or its installation), or from its first reading when it
# had none then. A meter that has never reported by the closing moment gets no row. The steps
# are one pass over the meters; the registers are kept once computed (MATERIALIZED), as the
# steps after refer to them many times and would otherwise recompute them at each mention.
_METERS_SQL = """
INSERT INTO billing_meterfreeze
    (meter_id, property_id, day, register, method, estimated, consumption)
WITH meter AS (
    SELECT m.id, m.installed_at, m.removed_at, m.register_rollover AS wrap,
           {greatest}(m.installed_at, %(start)s) AS opens,
           {least}(COALESCE(m.removed_at, %(end)s), %(end)s) AS closes,
           prev.register AS previous_register
    FROM meters_meter m
    JOIN accounts_unit u ON u.id = m.unit_id
    LEFT JOIN billing_meterfreeze prev
        ON prev.meter_id = m.id AND prev.property_id = %(property)s
       AND prev.day = %(previous_day)s
    WHERE u.property_id = %(property)s
      AND m.installed_at < %(end)s
      AND (m.removed_at IS NULL OR m.removed_at > %(start)s)
),
around AS (
    SELECT m.id AS meter_id, m.wrap, m.opens, m.closes, m.previous_register,
           b.taken_at AS t0, b.register AS r0, n.taken_at AS t1, n.register AS r1,
           ob.taken_at AS ot0, ob.register AS or0, oa.taken_at AS ot1, oa.register AS or1
    FROM meter m
    {closing_before}
    {closing_after}
    {opening_before}
    {opening_after}
),
spanned AS (
    SELECT around.*,
           CASE WHEN r1 >= r0 THEN r1 - r0
                WHEN wrap IS NOT NULL AND r0 < wrap THEN wrap - r0 + r1
           END AS span,
           CASE WHEN or1 >= or0 THEN or1 - or0
                WHEN wrap IS NOT NULL AND or0 < wrap THEN wrap - or0 + or1
           END AS opening_span
    FROM around
),
valued AS MATERIALIZED (
    SELECT meter_id, wrap,
           CASE WHEN t0 = closes THEN %(actual)s
                WHEN span IS NOT NULL THEN %(interpolated)s
                ELSE %(carried_forward)s
           END AS method,
           CASE WHEN t0 = closes THEN r0
                WHEN span IS NOT NULL THEN ROUND(r0 + span * {closing_share}, 6)
                ELSE r0
           END AS reading,
           COALESCE(previous_register, CASE
               WHEN ot0 = opens THEN or0
               WHEN opening_span IS NOT NULL THEN ROUND(or0 + opening_span * {opening_share}, 6)
               WHEN ot0 IS NOT NULL THEN or0
               WHEN ot1 <= closes THEN or1
           END) AS opening
    FROM spanned
    WHERE t0 IS NOT NULL
),
wrapped AS (
    SELECT meter_id, wrap, method,
           CASE WHEN reading >= wrap THEN reading - wrap ELSE reading END AS reading,
           CASE WHEN opening >= wrap THEN opening - wrap ELSE opening END AS opening
    FROM valued
),
judged AS (
    SELECT wrapped.*,
           CASE WHEN reading < opening AND (wrap IS NULL OR opening >= wrap) THEN 1 ELSE 0
           END AS backwards
    FROM wrapped
)
SELECT meter_id, %(property)s, %(day)s,
       CASE WHEN backwards = 1 THEN opening ELSE reading END,
       CASE WHEN backwards = 1 THEN %(carried_forward)s ELSE method END,
       backwards = 1 OR method <> %(actual)s,
       CASE WHEN backwards = 1 THEN 0
            WHEN reading >= opening THEN reading - opening
            ELSE wrap - opening + reading
       END
FROM judged
WHERE NOT EXISTS (
    SELECT 1 FROM billing_meterfreeze done
    WHERE done.property_id = %(property)s AND done.day = %(day)s
      AND done.meter_id = judged.meter_id
)
"""

# Each account that occupied a unit during the day, or whose wallet moved during it, gets the
# day's money by component and its unit's metered consumption. Every wallet posting falls in
# exactly one component: top-ups; energy and standing charges, split into net and tax by the
# tax book's share of their transaction; refunds (paid out through the refunds-payable book);
# adjustments (reversals and everything else). The opening balance is the previous day's
# closing balance or, on an account's first day, its postings booked before the day.
_ACCOUNTS_SQL = """
INSERT INTO billing_dailyfreeze
    (account_id, property_id, day, currency, opening_balance, topups, energy_net, energy_tax,
     standing_net, standing_tax, refunds, adjustments, closing_balance, electricity, water,
     month_end, month_electricity, month_water)
WITH txn AS (
    SELECT id, kind FROM billing_ledgertransaction
    WHERE organisation_id = %(organisation)s AND property_id = %(property)s
      AND created_at >= %(start)s AND created_at < %(end)s AND kind <> %(standing_charge)s
    UNION ALL
    SELECT id, kind FROM billing_ledgertransaction
    WHERE property_id = %(property)s
      AND effective_at > %(start)s AND effective_at <= %(end)s AND kind = %(standing_charge)s
),
posted AS (
    SELECT p.transaction_id, txn.kind, a.kind AS account_kind, p.ledger_account_id, p.amount
    FROM txn
    JOIN billing_posting p ON p.transaction_id = txn.id
    JOIN billing_ledgeraccount a ON a.id = p.ledger_account_id
),
books AS (
    SELECT transaction_id,
           SUM(CASE WHEN account_kind = %(tax_payable)s THEN amount ELSE 0 END) AS tax,
           MAX(CASE WHEN account_kind = %(refunds_payable)s THEN 1 ELSE 0 END) AS refund
    FROM posted
    WHERE account_kind <> %(wallet)s
    GROUP BY transaction_id
),
moved AS (
    SELECT p.ledger_account_id AS wallet_id, p.kind, p.amount,
           COALESCE(b.tax, 0) AS tax,
           CASE WHEN b.refund = 1 AND p.kind NOT IN
                     (%(topup)s, %(charge)s, %(standing_charge)s, %(reversal)s)
                THEN 1 ELSE 0 END AS refund
    FROM posted p
    LEFT JOIN books b ON b.transaction_id = p.transaction_id
    WHERE p.account_kind = %(wallet)s
),
activity AS (
    SELECT wallet_id,
           SUM(CASE WHEN kind = %(topup)s THEN amount ELSE 0 END) AS topups,
           SUM(CASE WHEN kind = %(charge)s THEN -amount - tax ELSE 0 END) AS energy_net,
           SUM(CASE WHEN kind = %(charge)s THEN tax ELSE 0 END) AS energy_tax,
           SUM(CASE WHEN kind = %(standing_charge)s THEN -amount - tax ELSE 0 END)
               AS standing_net,
           SUM(CASE WHEN kind = %(standing_charge)s THEN tax ELSE 0 END) AS standing_tax,
           SUM(CASE WHEN refund = 1 THEN -amount ELSE 0 END) AS refunds,
           SUM(CASE WHEN kind IN (%(topup)s, %(charge)s, %(standing_charge)s) OR refund = 1
                    THEN 0 ELSE amount END) AS adjustments,
           SUM(amount) AS moved
    FROM moved
    GROUP BY wallet_id
),
account AS (
    SELECT a.id AS account_id,
           act.topups, act.energy_net, act.energy_tax, act.standing_net, act.standing_tax,
           act.refunds, act.adjustments, act.moved,
           COALESCE(prev.closing_balance, (
               SELECT COALESCE(SUM(p.amount), 0)
               FROM billing_posting p
               JOIN billing_ledgertransaction t ON t.id = p.transaction_id
               WHERE p.ledger_account_id = a.wallet_id
                 AND ((t.kind <> %(standing_charge)s AND t.created_at < %(start)s)
                      OR (t.kind = %(standing_charge)s AND t.effective_at <= %(start)s))
           )) AS opening
    FROM accounts_account a
    JOIN accounts_unit u ON u.id = a.unit_id
    LEFT JOIN activity act ON act.wallet_id = a.wallet_id
    LEFT JOIN billing_dailyfreeze prev
        ON prev.account_id = a.id AND prev.property_id = %(property)s
       AND prev.day = %(previous_day)s
    WHERE u.property_id = %(property)s AND a.opened_at < %(end)s
      AND (a.closed_at IS NULL OR a.closed_at > %(start)s OR act.wallet_id IS NOT NULL)
),
served AS (
    SELECT a.id AS account_id, m.utility, f.consumption, a.opened_at, a.closed_at,
           {greatest}(m.installed_at, %(start)s) AS m_open,
           {least}(COALESCE(m.removed_at, %(end)s), %(end)s) AS m_close
    FROM billing_meterfreeze f
    JOIN meters_meter m ON m.id = f.meter_id
    JOIN accounts_account a ON a.unit_id = m.unit_id
    WHERE f.property_id = %(property)s AND f.day = %(day)s
),
shared AS (
    SELECT account_id, utility, consumption, m_open, m_close,
           {greatest}(opened_at, m_open) AS a_open,
           {least}(COALESCE(closed_at, m_close), m_close) AS a_close
    FROM served
),
portion AS (
    SELECT account_id, utility,
           CASE WHEN a_open <= m_open AND a_close >= m_close THEN consumption
                ELSE ROUND(consumption * {occupied} / {in_service}, 6)
           END AS quantity
    FROM shared
    WHERE a_open < a_close
),
used AS (
    SELECT account_id,
           SUM(CASE WHEN utility = %(electricity)s THEN quantity ELSE 0 END) AS electricity,
           SUM(CASE WHEN utility = %(water)s THEN quantity ELSE 0 END) AS water
    FROM portion
    GROUP BY account_id
)
SELECT ac.account_id, %(property)s, %(day)s, %(currency)s, ac.opening,
       COALESCE(ac.topups, 0), COALESCE(ac.energy_net, 0), COALESCE(ac.energy_tax, 0),
       COALESCE(ac.standing_net, 0), COALESCE(ac.standing_tax, 0), COALESCE(ac.refunds, 0),
       COALESCE(ac.adjustments, 0), ac.opening + COALESCE(ac.moved, 0),
       COALESCE(used.electricity, 0), COALESCE(used.water, 0),
       %(month_end)s, te.quantity, tw.quantity
FROM account ac
LEFT JOIN used ON used.account_id = ac.account_id
LEFT JOIN billing_tierusage te
    ON %(month_end)s AND te.account_id = ac.account_id
   AND te.utility = %(electricity)s AND te.month = %(month)s
LEFT JOIN billing_tierusage tw
    ON %(month_end)s AND tw.account_id = ac.account_id
   AND tw.utility = %(water)s AND tw.month = %(month)s
WHERE NOT EXISTS (
    SELECT 1 FROM billing_dailyfreeze done
    WHERE done.property_id = %(property)s AND done.day = %(day)s
      AND done.account_id = ac.account_id
)
"""
