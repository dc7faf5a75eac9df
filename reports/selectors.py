"""Reads shared by the ledger reports (`reports.daily`, `reports.ledger`): set-based SQL over the
frozen days and the postings, streamed through server-side cursors, never one query per row.

Book time. Money belongs to a local day (or month) the way the daily freeze assigns it
(`billing.freeze`, docs/freeze.md): a transaction by its creation, except a standing charge, by
the end of the day it charges (its `effective_at`). The daily freeze report, the trial balance
and the credit liability all use book time, so a trial balance's change between two midnights
is exactly what the frozen days in between moved. The revenue report dates postings by their
`effective_at` instead (a charge at the end of the interval it charges, so an interval ending on
a local midnight belongs to the day and month before it).

The same SQL runs on PostgreSQL and on the SQLite demo: the few spellings that differ are in
`_Dialect`. SQLite hands numbers back as floats, which are converted to Decimal row by row; on
PostgreSQL amounts come back as Decimals already rounded to the currency (`ROUND(x, places)`),
so the rows need no work in Python.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from threading import Lock

from django.db import connection

from billing.models import Charge, LedgerAccount, LedgerTransaction
from meters.models import Meter
from prepaid.money import minor_unit
from reports.base import Filters
from tariffs.pricing import local_midnight

CHUNK = 2000
Book = LedgerAccount.Kind
TxnKind = LedgerTransaction.Kind
REGISTER_PLACES = Decimal("0.000001")
DAY = timedelta(days=1)


def places(currency: str) -> int:
    """The currency's decimal places: 2 for CNY, 0 for JPY."""
    return -minor_unit(currency).as_tuple().exponent


def zero(currency: str) -> Decimal:
    return Decimal(0).quantize(minor_unit(currency))


# Dialects -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dialect:
    postgres: bool

    def local_day(self, column: str) -> str:
        """The property's local date of an instant (`%(zone)s` is the property's zone)."""
        if self.postgres:
            return f"(({column}) AT TIME ZONE %(zone)s)::date"
        return f"django_datetime_cast_date({column}, %(zone)s, 'UTC')"

    def ordered(self, column: str) -> str:
        """Text ordered by code point, as Python compares strings: streams sorted this way can
        be merged in Python whatever the database's collation."""
        return f'{column} COLLATE "C"' if self.postgres else column

    @property
    def lines(self) -> str:
        if self.postgres:
            return "CROSS JOIN LATERAL jsonb_array_elements(c.lines) AS l(value)"
        return "JOIN json_each(c.lines) AS l"

    def line(self, name: str) -> str:
        if self.postgres:
            return f"(l.value ->> '{name}')"
        return f"json_extract(l.value, '$.{name}')"

    @property
    def line_net(self) -> str:
        if self.postgres:
            return "(l.value ->> 'net')::numeric"
        return "CAST(json_extract(l.value, '$.net') AS REAL)"

    def uuid_in_key(self, offset: int) -> str:
        """The tenancy uuid in an idempotency key from character `offset` (1-based) on, in the
        form `accounts_account.uuid` is stored in."""
        if self.postgres:
            return f"CAST(SUBSTR(t.idempotency_key, {offset}, 36) AS uuid)"
        return f"REPLACE(SUBSTR(t.idempotency_key, {offset}, 36), '-', '')"

    def window(self, offset: int, limit: int | None) -> str:
        if limit is not None:
            return f"LIMIT {int(limit)} OFFSET {int(offset)}"
        if offset:
            return f"OFFSET {int(offset)}" if self.postgres else f"LIMIT -1 OFFSET {int(offset)}"
        return ""


def _dialect() -> _Dialect:
    return _Dialect(postgres=connection.vendor == "postgresql")


def _converter(spec: str, currency: str) -> Callable[[tuple], tuple] | None:
    """Per-row conversion of SQLite's floats and ISO strings; None on PostgreSQL, whose values
    are already what the reports show. `spec` has a letter per column: m money, q quantity,
    d date, x as it is."""
    if connection.vendor == "postgresql":
        return None
    minor = minor_unit(currency)

    def number(value, exponent):
        if value is None:
            return None
        if not isinstance(value, Decimal):
            value = Decimal(repr(value))
        return value.quantize(exponent)

    def day(value):
        return date.fromisoformat(value) if isinstance(value, str) else value

    steps = {
        "m": lambda value: number(value, minor),
        "q": lambda value: number(value, REGISTER_PLACES),
        "d": day,
        "x": lambda value: value,
    }
    converters = [steps[letter] for letter in spec]
    return lambda row: tuple(convert(value) for convert, value in zip(converters, row, strict=True))


def _stream(sql: str, params: dict, convert: Callable[[tuple], tuple] | None) -> Iterator[tuple]:
    """Rows from a server-side cursor, a chunk at a time."""
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(CHUNK):
            yield from (chunk if convert is None else map(convert, chunk))


def _fetchall(sql: str, params: dict, convert: Callable[[tuple], tuple] | None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return rows if convert is None else [convert(row) for row in rows]


def _instant(moment: datetime):
    return connection.ops.adapt_datetimefield_value(moment)


def _day(value: date):
    return connection.ops.adapt_datefield_value(value)


def _accounts_filter(column: str, accounts: Sequence[int] | None, params: dict) -> str:
    """`AND column IN (...)` for a page's accounts, or nothing for every account."""
    if accounts is None:
        return ""
    names = []
    for index, account_id in enumerate(accounts):
        params[f"account{index}"] = account_id
        names.append(f"%(account{index})s")
    return f" AND {column} IN ({', '.join(names)})"


def _booked_before(end: str = "%(end)s") -> str:
    """Booked before the instant `end`: created before it, or for a standing charge, charging a
    span that ends by then."""
    return (
        f"((t.kind <> %(standing_charge)s AND t.created_at < {end})"
        f" OR (t.kind = %(standing_charge)s AND t.effective_at <= {end}))"
    )


# The daily freeze report --------------------------------------------------------------------------


@dataclass(frozen=True)
class FreezeWindow:
    """The frozen days a daily freeze report reads, and the book times they hold.

    `last` is the range's last frozen day (None: nothing frozen in the range). Every read stops
    there, so a day frozen while a report is being read changes nothing in it, and the money
    read from transactions covers exactly the frozen days: [start_at, end_at).
    """

    filters: Filters
    last: date | None
    # How many account-days are frozen in the range: with `last`, what identifies its contents.
    frozen: int = 0

    @property
    def start_at(self) -> datetime:
        return local_midnight(self.filters.start, self.filters.zone)

    @property
    def end_at(self) -> datetime:
        return local_midnight((self.last or self.filters.start) + DAY, self.filters.zone)

    def params(self) -> dict:
        prop = self.filters.property
        return {
            "property": prop.pk,
            "organisation": prop.organisation_id,
            "zone": prop.time_zone,
            "first": _day(self.filters.start),
            "last": _day(self.last or self.filters.start),
            "start": _instant(self.start_at),
            "end": _instant(self.end_at),
            "electricity": Meter.Utility.ELECTRICITY,
            "water": Meter.Utility.WATER,
            "charge": TxnKind.CHARGE,
            "energy": Charge.Kind.ENERGY,
            "topup": TxnKind.TOPUP,
            "cash": Book.CASH,
        }


def freeze_window(*, filters: Filters) -> FreezeWindow:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT MAX(day), COUNT(*) FROM billing_dailyfreeze"
            " WHERE property_id = %s AND day >= %s AND day <= %s",
            [filters.property.pk, _day(filters.start), _day(filters.end)],
        )
        last, frozen = cursor.fetchone()
    if isinstance(last, str):
        last = date.fromisoformat(last)
    return FreezeWindow(filters=filters, last=last, frozen=frozen)


# A unit's register on a frozen day: of its meter of the utility in service at the day's end
# (the latest installed, after a replacement), at the day's closing midnight, and at its opening:
# the closing register less the day's consumption, across the wrap for a meter that rolled over.
_REGISTERS = """
latest AS (
    SELECT m.unit_id, m.utility, mf.day, MAX(m.id) AS meter_id
    FROM billing_meterfreeze mf
    JOIN meters_meter m ON m.id = mf.meter_id
    WHERE mf.property_id = %(property)s AND mf.day >= %(first)s AND mf.day <= %(last)s
    GROUP BY m.unit_id, m.utility, mf.day
),
registers AS (
    SELECT lt.unit_id, lt.utility, lt.day, mf.register AS closing,
           CASE WHEN mf.register >= mf.consumption THEN mf.register - mf.consumption
                ELSE mf.register - mf.consumption + m.register_rollover
           END AS opening
    FROM latest lt
    JOIN billing_meterfreeze mf ON mf.meter_id = lt.meter_id AND mf.day = lt.day
    JOIN meters_meter m ON m.id = lt.meter_id
)"""

# unit, account, day, tenant, 3 electricity and 3 water figures, then the money: opening,
# top-ups, energy net, standing net, tax, charges, refunds, adjustments, closing.
_FREEZE_ROWS = """
WITH {registers}
SELECT u.name, f.account_id, f.day, tn.name,
       e.opening, e.closing, f.electricity, w.opening, w.closing, f.water,
       ROUND(f.opening_balance, {p}), ROUND(f.topups, {p}), ROUND(f.energy_net, {p}),
       ROUND(f.standing_net, {p}), ROUND(f.energy_tax + f.standing_tax, {p}),
       ROUND(f.energy_net + f.energy_tax + f.standing_net + f.standing_tax, {p}),
       ROUND(f.refunds, {p}), ROUND(f.adjustments, {p}), ROUND(f.closing_balance, {p})
FROM billing_dailyfreeze f
JOIN accounts_account a ON a.id = f.account_id
JOIN accounts_unit u ON u.id = a.unit_id
JOIN accounts_tenant tn ON tn.id = a.tenant_id
LEFT JOIN registers e
    ON e.unit_id = a.unit_id AND e.day = f.day AND e.utility = %(electricity)s
LEFT JOIN registers w
    ON w.unit_id = a.unit_id AND w.day = f.day AND w.utility = %(water)s
WHERE f.property_id = %(property)s AND f.day >= %(first)s AND f.day <= %(last)s
ORDER BY {unit}, f.account_id, f.day
{window}
"""


def freeze_rows(
    *, window: FreezeWindow, offset: int = 0, limit: int | None = None
) -> Iterator[tuple]:
    """The frozen days in (unit, account, day) order, the unit's name compared by code point."""
    dialect = _dialect()
    sql = _FREEZE_ROWS.format(
        registers=_REGISTERS,
        p=places(window.filters.currency),
        unit=dialect.ordered("u.name"),
        window=dialect.window(offset, limit),
    )
    convert = _converter("xxdx" + "q" * 6 + "m" * 9, window.filters.currency)
    return _stream(sql, window.params(), convert)


# Each charge transaction's exact lines, by the account, the local day of the transaction's
# creation (its book day, as the freeze has it), the time-of-use period and the tier band.
_ENERGY_LINES = """
SELECT u.name AS unit, c.account_id AS account_id, {day} AS day,
       {period} AS period, {band} AS band, ROUND(SUM({net}), {p}) AS amount
FROM billing_ledgertransaction t
JOIN billing_charge c ON c.transaction_id = t.id
JOIN accounts_account a ON a.id = c.account_id
JOIN accounts_unit u ON u.id = a.unit_id
{lines}
WHERE t.organisation_id = %(organisation)s AND t.property_id = %(property)s
  AND t.kind = %(charge)s AND c.kind = %(energy)s
  AND t.created_at >= %(start)s AND t.created_at < %(end)s{accounts}
GROUP BY u.name, c.account_id, 3, 4, 5
"""

# Each top-up's wallet posting, by the account, its book day and the channel of the book the
# money came from: cash, or the clearing account of the bank or a payment provider.
_TOPUP_CHANNELS = """
SELECT u.name AS unit, a.id AS account_id, {day} AS day,
       CASE WHEN b.kind = %(cash)s THEN %(cash)s ELSE b.channel END AS channel,
       ROUND(SUM(w.amount), {p}) AS amount
FROM billing_ledgertransaction t
JOIN billing_posting w ON w.transaction_id = t.id
JOIN accounts_account a ON a.wallet_id = w.ledger_account_id
JOIN accounts_unit u ON u.id = a.unit_id
JOIN billing_posting o ON o.transaction_id = t.id AND o.id <> w.id
JOIN billing_ledgeraccount b ON b.id = o.ledger_account_id
WHERE t.organisation_id = %(organisation)s AND t.property_id = %(property)s
  AND t.kind = %(topup)s AND t.created_at >= %(start)s AND t.created_at < %(end)s{accounts}
GROUP BY u.name, a.id, 3, 4
"""


def _energy_sql(window: FreezeWindow, params: dict, accounts: Sequence[int] | None) -> str:
    dialect = _dialect()
    return _ENERGY_LINES.format(
        day=dialect.local_day("t.created_at"),
        period=dialect.line("period"),
        band=dialect.line("band"),
        net=dialect.line_net,
        p=places(window.filters.currency),
        lines=dialect.lines,
        accounts=_accounts_filter("c.account_id", accounts, params),
    )


def _topup_sql(window: FreezeWindow, params: dict, accounts: Sequence[int] | None) -> str:
    return _TOPUP_CHANNELS.format(
        day=_dialect().local_day("t.created_at"),
        p=places(window.filters.currency),
        accounts=_accounts_filter("a.id", accounts, params),
    )


def energy_rows(*, window: FreezeWindow, accounts: Sequence[int] | None = None) -> Iterator[tuple]:
    """(unit, account, day, period, band, net) in the freeze rows' order; `accounts` limits it
    to a page's accounts."""
    params = window.params()
    ordered = _dialect().ordered("u.name")
    sql = f"{_energy_sql(window, params, accounts)} ORDER BY {ordered}, c.account_id, 3"
    return _stream(sql, params, _converter("xxdxxm", window.filters.currency))


def topup_rows(*, window: FreezeWindow, accounts: Sequence[int] | None = None) -> Iterator[tuple]:
    """(unit, account, day, channel, amount) in the freeze rows' order."""
    params = window.params()
    ordered = _dialect().ordered("u.name")
    sql = f"{_topup_sql(window, params, accounts)} ORDER BY {ordered}, a.id, 3"
    return _stream(sql, params, _converter("xxdxm", window.filters.currency))


@dataclass(frozen=True)
class Breakdown:
    """The range's energy by (period, band) and top-ups by channel, each the sum of what the
    report's rows show: the per-row rounded amounts of the account-days that are frozen."""

    energy: dict[tuple, Decimal]
    topups: dict[str, Decimal]


_BREAKDOWN = """
SELECT 'energy', g.period, g.band, SUM(g.amount)
FROM ({energy}) g WHERE {frozen}
GROUP BY g.period, g.band
UNION ALL
SELECT 'topup', g.channel, NULL, SUM(g.amount)
FROM ({topups}) g WHERE {frozen}
GROUP BY g.channel
"""
_FROZEN = """EXISTS (
    SELECT 1 FROM billing_dailyfreeze f
    WHERE f.property_id = %(property)s AND f.account_id = g.account_id AND f.day = g.day
)"""


# Frozen days never change (`billing.freeze`), so a range's breakdown, once read, holds for as
# long as the same account-days are frozen in it: kept per process for the page, the totals and
# the export that read it one after the other, for the few ranges read most recently.
_BREAKDOWNS: OrderedDict[tuple, Breakdown] = OrderedDict()
_BREAKDOWNS_KEPT = 32
_BREAKDOWNS_LOCK = Lock()


def breakdown(*, window: FreezeWindow) -> Breakdown:
    if window.last is None:
        return Breakdown(energy={}, topups={})
    key = (
        connection.settings_dict["NAME"],
        window.filters.property.pk,
        window.filters.start,
        window.last,
        window.frozen,
    )
    with _BREAKDOWNS_LOCK:
        if (found := _BREAKDOWNS.get(key)) is not None:
            _BREAKDOWNS.move_to_end(key)
            return found
    found = _breakdown(window)
    with _BREAKDOWNS_LOCK:
        _BREAKDOWNS[key] = found
        while len(_BREAKDOWNS) > _BREAKDOWNS_KEPT:
            _BREAKDOWNS.popitem(last=False)
    return found


def _breakdown(window: FreezeWindow) -> Breakdown:
    params = window.params()
    sql = _BREAKDOWN.format(
        energy=_energy_sql(window, params, None),
        topups=_topup_sql(window, params, None),
        frozen=_FROZEN,
    )
    energy, topups = {}, {}
    for what, name, band, amount in _fetchall(
        sql, params, _converter("xxxm", window.filters.currency)
    ):
        if what == "energy":
            energy[(name, band)] = amount
        else:
            topups[name] = amount
    return Breakdown(energy=energy, topups=topups)


# Per account its first and last frozen day of the range: the totals' opening balance is the
# accounts' balances opening their first day, the closing balance those closing their last.
_FREEZE_TOTALS = """
SELECT ROUND(SUM(CASE WHEN f.day = s.first_day THEN f.opening_balance ELSE 0 END), {p}),
       ROUND(SUM(f.topups), {p}), ROUND(SUM(f.energy_net), {p}), ROUND(SUM(f.standing_net), {p}),
       ROUND(SUM(f.energy_tax + f.standing_tax), {p}),
       ROUND(SUM(f.energy_net + f.energy_tax + f.standing_net + f.standing_tax), {p}),
       ROUND(SUM(f.refunds), {p}), ROUND(SUM(f.adjustments), {p}),
       ROUND(SUM(CASE WHEN f.day = s.last_day THEN f.closing_balance ELSE 0 END), {p}),
       SUM(f.electricity), SUM(f.water)
FROM billing_dailyfreeze f
JOIN (
    SELECT account_id, MIN(day) AS first_day, MAX(day) AS last_day FROM billing_dailyfreeze
    WHERE property_id = %(property)s AND day >= %(first)s AND day <= %(last)s
    GROUP BY account_id
) s ON s.account_id = f.account_id
WHERE f.property_id = %(property)s AND f.day >= %(first)s AND f.day <= %(last)s
"""


@dataclass(frozen=True)
class FreezeTotals:
    opening: Decimal
    topups: Decimal
    energy_net: Decimal
    standing_net: Decimal
    tax: Decimal
    charges: Decimal
    refunds: Decimal
    adjustments: Decimal
    closing: Decimal
    electricity: Decimal
    water: Decimal


def freeze_totals(*, window: FreezeWindow) -> FreezeTotals:
    currency = window.filters.currency
    if window.last is None:
        money = zero(currency)
        return FreezeTotals(*([money] * 9), Decimal(0), Decimal(0))
    sql = _FREEZE_TOTALS.format(p=places(currency))
    (row,) = _fetchall(sql, window.params(), _converter("m" * 9 + "qq", currency))
    money = zero(currency)
    return FreezeTotals(
        *(money if value is None else value for value in row[:9]),
        *(Decimal(0) if value is None else value for value in row[9:]),
    )


# The ledger, as of a moment -----------------------------------------------------------------------

_BALANCES = """
WITH sums AS (
    SELECT p.ledger_account_id AS id, SUM(p.amount) AS balance
    FROM billing_ledgertransaction t
    JOIN billing_posting p ON p.transaction_id = t.id
    WHERE t.property_id = %(property)s AND {booked}
    GROUP BY p.ledger_account_id
)
SELECT a.kind, a.channel, COUNT(a.id), ROUND(COALESCE(SUM(s.balance), 0), {p})
FROM billing_ledgeraccount a
LEFT JOIN sums s ON s.id = a.id
WHERE a.property_id = %(property)s AND (a.created_at < %(end)s OR s.id IS NOT NULL)
GROUP BY a.kind, a.channel
"""


def _ledger_params(*, property, end: datetime) -> dict:
    return {
        "property": property.pk,
        "end": _instant(end),
        "standing_charge": TxnKind.STANDING_CHARGE,
        "wallet": Book.WALLET,
        "deposits_held": Book.DEPOSITS_HELD,
        "refunds_payable": Book.REFUNDS_PAYABLE,
        "deposit": TxnKind.DEPOSIT,
        "refund_payout": TxnKind.REFUND_PAYOUT,
    }


@dataclass(frozen=True)
class Balance:
    kind: str
    channel: str
    # How many ledger accounts the line adds up: every wallet of the property, or one book.
    accounts: int
    # Credit positive (billing.models' sign convention).
    balance: Decimal


def ledger_balances(*, property, end: datetime) -> list[Balance]:
    """Every ledger account of the property, summed per kind and channel, from the postings
    booked before `end`: the wallets on one line."""
    sql = _BALANCES.format(booked=_booked_before(), p=places(property.currency))
    rows = _fetchall(
        sql, _ledger_params(property=property, end=end), _converter("xxxm", property.currency)
    )
    return [Balance(kind, channel, count, balance) for kind, channel, count, balance in rows]


# Each tenancy's wallet, and the deposit and refunds the property holds for it. Deposits held and
# refunds payable are the property's books; a posting to them belongs to the tenancy whose wallet
# the same transaction moves (a deposit returned at move-out, a refund held, a failed refund given
# back), whose uuid is in the transaction's key (a deposit taken at move-in: `deposit:<uuid>`), or
# whose wallet its refund was held from (a refund paid out: `...:payout` beside `...:refund` for a
# move-out, `...:hold` for a payment).
_CREDIT = """
WITH booked AS (
    SELECT t.id, t.kind, t.idempotency_key FROM billing_ledgertransaction t
    WHERE t.property_id = %(property)s AND {booked}
),
wallets AS (
    SELECT p.ledger_account_id AS wallet_id, SUM(p.amount) AS balance
    FROM booked t
    JOIN billing_posting p ON p.transaction_id = t.id
    JOIN billing_ledgeraccount b ON b.id = p.ledger_account_id
    WHERE b.kind = %(wallet)s
    GROUP BY p.ledger_account_id
),
moved AS (
    SELECT wp.ledger_account_id AS wallet_id,
           SUM(CASE WHEN b.kind = %(deposits_held)s THEN p.amount ELSE 0 END) AS deposit,
           SUM(CASE WHEN b.kind = %(refunds_payable)s THEN p.amount ELSE 0 END) AS refund
    FROM booked t
    JOIN billing_posting p ON p.transaction_id = t.id
    JOIN billing_ledgeraccount b ON b.id = p.ledger_account_id
    JOIN billing_posting wp ON wp.transaction_id = t.id
    JOIN billing_ledgeraccount wb ON wb.id = wp.ledger_account_id
    WHERE b.kind IN (%(deposits_held)s, %(refunds_payable)s) AND wb.kind = %(wallet)s
    GROUP BY wp.ledger_account_id
),
taken AS (
    SELECT {deposit_uuid} AS account_uuid, SUM(p.amount) AS deposit
    FROM booked t
    JOIN billing_posting p ON p.transaction_id = t.id
    JOIN billing_ledgeraccount b ON b.id = p.ledger_account_id
    WHERE t.kind = %(deposit)s AND b.kind = %(deposits_held)s
    GROUP BY 1
),
paid AS (
    SELECT hp.ledger_account_id AS wallet_id, SUM(p.amount) AS refund
    FROM booked t
    JOIN billing_posting p ON p.transaction_id = t.id
    JOIN billing_ledgeraccount b ON b.id = p.ledger_account_id
    JOIN billing_ledgertransaction h ON h.idempotency_key IN (
        REPLACE(t.idempotency_key, ':payout', ':refund'),
        REPLACE(t.idempotency_key, ':payout', ':hold'))
    JOIN billing_posting hp ON hp.transaction_id = h.id
    JOIN billing_ledgeraccount hb ON hb.id = hp.ledger_account_id
    WHERE t.kind = %(refund_payout)s AND b.kind = %(refunds_payable)s AND hb.kind = %(wallet)s
    GROUP BY hp.ledger_account_id
),
held AS (
    SELECT u.name AS unit, a.id AS account_id, tn.name AS tenant, a.closed_at,
           COALESCE(w.balance, 0) AS wallet,
           COALESCE(tk.deposit, 0) + COALESCE(md.deposit, 0) AS deposit,
           COALESCE(md.refund, 0) + COALESCE(pd.refund, 0) AS refund
    FROM accounts_account a
    JOIN accounts_unit u ON u.id = a.unit_id
    JOIN accounts_tenant tn ON tn.id = a.tenant_id
    LEFT JOIN wallets w ON w.wallet_id = a.wallet_id
    LEFT JOIN moved md ON md.wallet_id = a.wallet_id
    LEFT JOIN taken tk ON tk.account_uuid = a.uuid
    LEFT JOIN paid pd ON pd.wallet_id = a.wallet_id
    WHERE u.property_id = %(property)s AND a.opened_at < %(end)s
)
"""
# Tenancies open at the moment, and closed ones the property still holds money for or from.
_CREDIT_HELD = (
    "(h.closed_at IS NULL OR h.closed_at >= %(end)s"
    " OR h.wallet <> 0 OR h.deposit <> 0 OR h.refund <> 0)"
)


_CREDIT_ROWS = """
SELECT h.unit, h.tenant,
       CASE WHEN h.closed_at IS NOT NULL AND h.closed_at < %(end)s THEN 1 ELSE 0 END,
       ROUND(h.wallet, {p}), ROUND(h.deposit, {p}), ROUND(h.refund, {p})
FROM held h WHERE {held}
ORDER BY h.unit, h.account_id
{window}
"""
_CREDIT_COUNT = "SELECT COUNT(*) FROM held h WHERE {held}"
_CREDIT_TOTALS = """
SELECT ROUND(COALESCE(SUM(h.wallet), 0), {p}), ROUND(COALESCE(SUM(h.deposit), 0), {p}),
       ROUND(COALESCE(SUM(h.refund), 0), {p})
FROM held h
"""


def _credit_sql(template: str, **fragments: str) -> str:
    dialect = _dialect()
    return _CREDIT.format(
        booked=_booked_before(), deposit_uuid=dialect.uuid_in_key(9)
    ) + template.format(held=_CREDIT_HELD, **fragments)


def credit_rows(*, filters: Filters, offset: int = 0, limit: int | None = None) -> Iterator[tuple]:
    """(unit, tenant, moved out (1 or 0), wallet, deposit, refund) per tenancy as of the end of
    the range's last day, in unit order."""
    sql = _credit_sql(
        _CREDIT_ROWS,
        p=str(places(filters.currency)),
        window=_dialect().window(offset, limit),
    )
    params = _ledger_params(property=filters.property, end=filters.end_at)
    return _stream(sql, params, _converter("xxxmmm", filters.currency))


def credit_count(*, filters: Filters) -> int:
    sql = _credit_sql(_CREDIT_COUNT)
    (row,) = _fetchall(sql, _ledger_params(property=filters.property, end=filters.end_at), None)
    return row[0]


def credit_totals(*, filters: Filters) -> tuple[Decimal, Decimal, Decimal]:
    sql = _credit_sql(_CREDIT_TOTALS, p=str(places(filters.currency)))
    params = _ledger_params(property=filters.property, end=filters.end_at)
    (row,) = _fetchall(sql, params, _converter("mmm", filters.currency))
    return row


# Revenue, by month of effective_at ----------------------------------------------------------------

_REVENUE = """
SELECT {month} AS month, b.kind, ROUND(SUM(p.amount), {p})
FROM billing_ledgertransaction t
JOIN billing_posting p ON p.transaction_id = t.id
JOIN billing_ledgeraccount b ON b.id = p.ledger_account_id
WHERE t.property_id = %(property)s
  AND t.effective_at >= %(start)s AND t.effective_at <= %(end)s
  AND ((t.kind IN %(spans)s AND t.effective_at > %(start)s)
       OR (t.kind NOT IN %(spans)s AND t.effective_at < %(end)s))
  AND b.kind IN (%(energy_revenue)s, %(standing_revenue)s, %(tax_payable)s)
GROUP BY 1, 2
"""


def months(start: date, end: date) -> list[date]:
    """The first days of the local months the range touches."""
    found, month = [], start.replace(day=1)
    while month <= end:
        found.append(month)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return found


def revenue_by_month(*, filters: Filters) -> dict[tuple[int, str], Decimal]:
    """{(month index, book kind): movement} of the revenue and tax books over the range.

    A charge (energy or standing) is dated by the end of the interval it charges, which belongs
    to the interval: a posting effective at a local midnight is the day's before. Anything else
    (a reversal, an adjustment) is dated by its instant.
    """
    starts = months(filters.start, filters.end)
    bounds = [_instant(local_midnight(month, filters.zone)) for month in starts[1:]]
    params = {
        "property": filters.property.pk,
        "start": _instant(filters.start_at),
        "end": _instant(filters.end_at),
        "energy_revenue": Book.ENERGY_REVENUE,
        "standing_revenue": Book.STANDING_REVENUE,
        "tax_payable": Book.TAX_PAYABLE,
    }
    spans = (TxnKind.CHARGE, TxnKind.STANDING_CHARGE)
    names = []
    for index, kind in enumerate(spans):
        params[f"span{index}"] = kind
        names.append(f"%(span{index})s")
    spans_sql = f"({', '.join(names)})"
    for index, bound in enumerate(bounds):
        params[f"bound{index}"] = bound

    def case(operator: str) -> str:
        whens = " ".join(
            f"WHEN t.effective_at {operator} %(bound{index})s THEN {index}"
            for index in range(len(bounds))
        )
        return f"CASE {whens} ELSE {len(bounds)} END" if whens else "0"

    month = f"CASE WHEN t.kind IN {spans_sql} THEN {case('<=')} ELSE {case('<')} END"
    sql = _REVENUE.replace("%(spans)s", spans_sql).format(month=month, p=places(filters.currency))
    rows = _fetchall(sql, params, _converter("xxm", filters.currency))
    return {(int(index), kind): amount for index, kind, amount in rows}
