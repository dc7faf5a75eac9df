"""The daily freeze of one property with 1,000,000 accounts, wallets and meters (issue #6).

The data is loaded set-based (INSERT ... SELECT generate_series) into one Shanghai property: every
meter read at the opening midnight of the bench day, and around its closing midnight in the ways
the freeze meets (80% read a quarter of an hour either side, so interpolated; 10% read at
midnight exactly; 10% silent since three hours before, so carried forward); 20% of the wallets
topped up days before, and on the day 10% topped up and 10% charged for energy with tax. The day
before is frozen already, as every night but a property's first.

Timed: `billing.freeze.freeze_day` for that day, committed. Baseline, in the same run: the same
writes as plain PostgreSQL INSERT ... SELECT statements (LATERAL joins, none of the service's
generality: no catch-up, standing charges, rollovers, moves in or out, or SQLite), with the
foreign keys checked as a commit checks them, in a transaction then rolled back so the service
writes the same rows. A warm-up run of the baseline
goes first, so both timed runs find the data in the cache; the checksums of their rows must match.
"""

from datetime import UTC, date, datetime, timedelta

from bench.harness import Result, bench_property, stopwatch

ACCOUNTS = 1_000_000
DAY = date(2026, 10, 6)
PREVIOUS = DAY - timedelta(days=1)
OPENED = datetime(2026, 9, 30, 16, tzinfo=UTC)  # 1 October, 00:00 in Shanghai
START = datetime(2026, 10, 5, 16, tzinfo=UTC)  # the bench day's opening midnight
END = START + timedelta(days=1)
TARGET_SECONDS = 60


def bench_daily_freeze() -> Result:
    from django.db import connection, transaction

    from billing.freeze import freeze_day

    with stopwatch() as setup:
        prop = _load(ACCOUNTS)
    with connection.cursor() as cursor:
        _baseline(cursor, prop)
        raw_seconds, raw_sums = _baseline(cursor, prop)
    with stopwatch() as ours:
        frozen = freeze_day(property=prop, day=DAY)
    assert (frozen.meters, frozen.accounts) == (ACCOUNTS, ACCOUNTS), frozen
    with transaction.atomic(), connection.cursor() as cursor:
        sums = _checksums(cursor, prop)
    assert sums == raw_sums, (sums, raw_sums)
    return Result(
        name="daily-freeze",
        unit="s",
        figure=ours["seconds"],
        baseline=raw_seconds,
        target=f"<= {TARGET_SECONDS} s",
        notes=f"{ACCOUNTS:,} accounts, wallets and meters of one property, one local day: "
        f"{frozen.meters:,} meter rows and {frozen.accounts:,} account rows written "
        f"(checksums equal to the baseline's); loading the data took {setup['seconds']:.0f} s",
    )


def _load(count: int):
    """The bench property's accounts, wallets, meters, readings, postings and its frozen
    previous day, in plain SQL: a million of each through the services would take hours."""
    from django.db import connection, transaction

    from billing.models import LedgerAccount
    from billing.services import book_account

    prop = bench_property("FRZ", "Bench freeze")
    books = {
        kind: book_account(property=prop, kind=kind).pk
        for kind in (
            LedgerAccount.Kind.CASH,
            LedgerAccount.Kind.ENERGY_REVENUE,
            LedgerAccount.Kind.TAX_PAYABLE,
        )
    }
    params = {
        "count": count,
        "property": prop.pk,
        "organisation": prop.organisation_id,
        "opened": OPENED,
        "start": START,
        "end": END,
        "previous": PREVIOUS,
        "cash": books[LedgerAccount.Kind.CASH],
        "revenue": books[LedgerAccount.Kind.ENERGY_REVENUE],
        "tax": books[LedgerAccount.Kind.TAX_PAYABLE],
    }
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in _LOAD:
            cursor.execute(statement, params)
    return prop


def _baseline(cursor, prop) -> tuple[float, tuple]:
    """The service's writes in plain SQL; rolled back, after taking the rows' checksums."""
    from django.db import transaction

    params = {
        "property": prop.pk,
        "organisation": prop.organisation_id,
        "day": DAY,
        "previous": PREVIOUS,
        "start": START,
        "end": END,
    }
    with transaction.atomic():
        with stopwatch() as elapsed:
            cursor.execute(_RAW_METERS, params)
            cursor.execute(_RAW_ACCOUNTS, params)
            cursor.execute(_RAW_CURSOR, params)
            # The foreign keys are checked at commit (deferred); the service's commit pays for
            # them, so the baseline does too, before it rolls back.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        sums = _checksums(cursor, prop)
        transaction.set_rollback(True)
    return elapsed["seconds"], sums


def _checksums(cursor, prop) -> tuple:
    cursor.execute(_CHECKSUMS, {"property": prop.pk, "day": DAY})
    return cursor.fetchone()


# Meter n is in unit n of tenant n with wallet n; its registers start at 100 + n % 5000.
_LOAD = [
    # Balanced and referentially sound by construction. PostgreSQL's per-posting balance check
    # at commit and the foreign-key triggers would add minutes to loading what is not measured;
    # the freeze itself runs with every trigger on.
    "SET LOCAL session_replication_role = replica",
    """
    INSERT INTO accounts_unit (uuid, property_id, name, kind, floor, created_at, updated_at)
    SELECT gen_random_uuid(), %(property)s, lpad(n::text, 7, '0'), 'flat', '', now(), now()
    FROM generate_series(1, %(count)s) n
    """,
    """
    INSERT INTO accounts_tenant
        (uuid, organisation_id, name, phone, email, preferred_language, created_at, updated_at)
    SELECT gen_random_uuid(), %(organisation)s, 'FRZ tenant ' || n, '', '', 'en', now(), now()
    FROM generate_series(1, %(count)s) n
    """,
    """
    INSERT INTO billing_ledgeraccount
        (uuid, organisation_id, property_id, kind, channel, currency, balance, created_at)
    SELECT gen_random_uuid(), %(organisation)s, %(property)s, 'wallet', '', 'CNY',
           CASE WHEN n %% 5 = 0 THEN 100 ELSE 0 END, now()
    FROM generate_series(1, %(count)s) n
    """,
    # Fresh tables have no statistics: without them the joins below are planned as nested
    # loops over a million rows each side.
    "ANALYZE accounts_unit, accounts_tenant, billing_ledgeraccount",
    """
    INSERT INTO accounts_account (uuid, mode, status, opened_at, protected, created_at,
                                  updated_at, wallet_id, tenant_id, unit_id)
    SELECT gen_random_uuid(), 'prepaid', 'open', %(opened)s, false, now(), now(),
           w.id, t.id, u.id
    FROM (SELECT id, row_number() OVER (ORDER BY id) n FROM accounts_unit
          WHERE property_id = %(property)s) u
    JOIN (SELECT id, row_number() OVER (ORDER BY id) n FROM accounts_tenant
          WHERE organisation_id = %(organisation)s AND name LIKE 'FRZ tenant %%') t USING (n)
    JOIN (SELECT id, row_number() OVER (ORDER BY id) n FROM billing_ledgeraccount
          WHERE property_id = %(property)s AND kind = 'wallet') w USING (n)
    """,
    """
    INSERT INTO meters_meter (uuid, organisation_id, serial, utility, unit_id, installed_at,
                              has_relay, missed_polls, mqtt_channel, mqtt_sml_key, created_at,
                              updated_at)
    SELECT gen_random_uuid(), %(organisation)s, 'FRZ-' || u.name, 'electricity', u.id,
           %(opened)s, true, 0, 0, '', now(), now()
    FROM accounts_unit u WHERE u.property_id = %(property)s
    """,
    "ANALYZE accounts_account, meters_meter",
    # The opening midnight, then around the closing one: 80% a quarter of an hour either side,
    # 10% at midnight, 10% silent since 21:00.
    """
    INSERT INTO meters_reading (meter_id, taken_at, register, source, received_at, status, reason)
    SELECT m.id, r.taken_at, 100 + u.name::int %% 5000 + r.used, 'modbus', r.taken_at,
           'accepted', ''
    FROM meters_meter m
    JOIN accounts_unit u ON u.id = m.unit_id
    CROSS JOIN LATERAL (
        VALUES (%(start)s::timestamptz, 0, true),
               (%(end)s::timestamptz - interval '15 minutes', 10 + u.name::int %% 7,
                u.name::int %% 10 < 8),
               (%(end)s::timestamptz + interval '15 minutes', 11 + u.name::int %% 7,
                u.name::int %% 10 < 8),
               (%(end)s::timestamptz, 10 + u.name::int %% 7, u.name::int %% 10 = 8),
               (%(end)s::timestamptz - interval '3 hours', 9, u.name::int %% 10 = 9)
    ) r (taken_at, used, present)
    WHERE u.property_id = %(property)s AND r.present
    """,
    # Top-ups days before; on the day, top-ups at 09:00 and energy charges at 10:00.
    """
    INSERT INTO billing_ledgertransaction (uuid, organisation_id, property_id, kind, currency,
        idempotency_key, fingerprint, effective_at, created_at, memo)
    SELECT gen_random_uuid(), %(organisation)s, %(property)s, x.kind, 'CNY',
           'bench-freeze:' || x.tag || ':' || a.wallet_id, '', x.moment, x.moment, ''
    FROM accounts_account a
    JOIN accounts_unit u ON u.id = a.unit_id
    CROSS JOIN LATERAL (
        VALUES ('topup', 'before', %(opened)s::timestamptz + interval '1 day', 0),
               ('topup', 'day', %(start)s::timestamptz + interval '9 hours', 1),
               ('charge', 'day', %(start)s::timestamptz + interval '10 hours', 2)
    ) x (kind, tag, moment, pick)
    WHERE u.property_id = %(property)s
      AND CASE WHEN x.pick = 0 THEN u.name::int %% 5 = 0 ELSE u.name::int %% 10 = x.pick END
    """,
    "ANALYZE meters_reading, billing_ledgertransaction",
    """
    INSERT INTO billing_posting (transaction_id, ledger_account_id, amount)
    SELECT t.id, e.account, e.amount
    FROM billing_ledgertransaction t
    CROSS JOIN LATERAL (SELECT split_part(t.idempotency_key, ':', 3)::bigint AS wallet) w
    CROSS JOIN LATERAL (
        VALUES (w.wallet, 100.00, 'before'), (%(cash)s, -100.00, 'before'),
               (w.wallet, 50.00, 'topup'), (%(cash)s, -50.00, 'topup'),
               (w.wallet, -11.30, 'charge'), (%(revenue)s, 10.00, 'charge'),
               (%(tax)s, 1.30, 'charge')
    ) e (account, amount, what)
    WHERE t.property_id = %(property)s AND t.idempotency_key LIKE 'bench-freeze:%%'
      AND e.what = CASE WHEN t.idempotency_key LIKE 'bench-freeze:before:%%' THEN 'before'
                        ELSE t.kind END
    """,
    "ANALYZE billing_posting",
    """
    UPDATE billing_ledgeraccount w SET balance = s.balance
    FROM (SELECT p.ledger_account_id, SUM(p.amount) AS balance FROM billing_posting p
          JOIN billing_ledgeraccount a ON a.id = p.ledger_account_id
          WHERE a.property_id = %(property)s AND a.kind = 'wallet'
          GROUP BY p.ledger_account_id) s
    WHERE w.id = s.ledger_account_id
    """,
    # The previous day, frozen: registers read at its closing midnight, balances as then.
    """
    INSERT INTO billing_meterfreeze
        (meter_id, property_id, day, register, method, estimated, consumption)
    SELECT r.meter_id, %(property)s, %(previous)s, r.register, 'actual', false, 0
    FROM meters_reading r JOIN meters_meter m ON m.id = r.meter_id
    JOIN accounts_unit u ON u.id = m.unit_id
    WHERE u.property_id = %(property)s AND r.taken_at = %(start)s
    """,
    """
    INSERT INTO billing_dailyfreeze (account_id, property_id, day, currency, opening_balance,
        topups, energy_net, energy_tax, standing_net, standing_tax, refunds, adjustments,
        closing_balance, electricity, water, month_end)
    SELECT a.id, %(property)s, %(previous)s, 'CNY', b.balance, 0, 0, 0, 0, 0, 0, 0, b.balance,
           0, 0, false
    FROM accounts_account a JOIN accounts_unit u ON u.id = a.unit_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN u.name::int %% 5 = 0 THEN 100 ELSE 0 END AS balance
    ) b
    WHERE u.property_id = %(property)s
    """,
    """
    INSERT INTO billing_freezecursor (property_id, frozen_through, updated_at)
    VALUES (%(property)s, %(previous)s, now())
    """,
    "ANALYZE billing_ledgeraccount, billing_meterfreeze, billing_dailyfreeze",
]
_RAW_METERS = """
INSERT INTO billing_meterfreeze
    (meter_id, property_id, day, register, method, estimated, consumption)
SELECT m.id, %(property)s, %(day)s, v.register, v.method, v.method <> 'actual',
       v.register - prev.register
FROM meters_meter m
JOIN accounts_unit u ON u.id = m.unit_id
JOIN billing_meterfreeze prev ON prev.meter_id = m.id AND prev.day = %(previous)s
CROSS JOIN LATERAL (
    SELECT taken_at, register FROM meters_reading
    WHERE meter_id = m.id AND taken_at <= %(end)s AND status <> 'rejected'
    ORDER BY taken_at DESC LIMIT 1
) b
LEFT JOIN LATERAL (
    SELECT taken_at, register FROM meters_reading
    WHERE meter_id = m.id AND taken_at > %(end)s AND status <> 'rejected'
    ORDER BY taken_at LIMIT 1
) n ON true
CROSS JOIN LATERAL (
    SELECT CASE WHEN b.taken_at = %(end)s THEN 'actual'
                WHEN n.taken_at IS NOT NULL THEN 'interpolated'
                ELSE 'carried_forward' END AS method,
           CASE WHEN b.taken_at = %(end)s OR n.taken_at IS NULL THEN b.register
                ELSE ROUND(b.register + (n.register - b.register)
                     * EXTRACT(EPOCH FROM (%(end)s - b.taken_at))
                     / EXTRACT(EPOCH FROM (n.taken_at - b.taken_at)), 6) END AS register
) v
WHERE u.property_id = %(property)s
"""
_RAW_ACCOUNTS = """
INSERT INTO billing_dailyfreeze (account_id, property_id, day, currency, opening_balance,
    topups, energy_net, energy_tax, standing_net, standing_tax, refunds, adjustments,
    closing_balance, electricity, water, month_end)
SELECT a.id, %(property)s, %(day)s, w.currency, prev.closing_balance,
       COALESCE(act.topups, 0), COALESCE(act.energy_net, 0), COALESCE(act.energy_tax, 0),
       0, 0, 0, 0, prev.closing_balance + COALESCE(act.moved, 0), COALESCE(f.consumption, 0),
       0, false
FROM accounts_account a
JOIN accounts_unit u ON u.id = a.unit_id
JOIN billing_ledgeraccount w ON w.id = a.wallet_id
JOIN billing_dailyfreeze prev ON prev.account_id = a.id AND prev.day = %(previous)s
LEFT JOIN (
    SELECT p.ledger_account_id AS wallet_id,
           SUM(p.amount) FILTER (WHERE t.kind = 'topup') AS topups,
           SUM(-p.amount - x.tax) FILTER (WHERE t.kind = 'charge') AS energy_net,
           SUM(x.tax) FILTER (WHERE t.kind = 'charge') AS energy_tax,
           SUM(p.amount) AS moved
    FROM billing_ledgertransaction t
    JOIN billing_posting p ON p.transaction_id = t.id
    JOIN billing_ledgeraccount pw ON pw.id = p.ledger_account_id AND pw.kind = 'wallet'
    CROSS JOIN LATERAL (
        SELECT COALESCE(SUM(q.amount), 0) AS tax FROM billing_posting q
        JOIN billing_ledgeraccount qa ON qa.id = q.ledger_account_id AND qa.kind = 'tax_payable'
        WHERE q.transaction_id = t.id
    ) x
    WHERE t.organisation_id = %(organisation)s AND t.property_id = %(property)s
      AND t.created_at >= %(start)s AND t.created_at < %(end)s
    GROUP BY p.ledger_account_id
) act ON act.wallet_id = a.wallet_id
LEFT JOIN (
    SELECT m.unit_id, mf.consumption FROM billing_meterfreeze mf
    JOIN meters_meter m ON m.id = mf.meter_id
    WHERE mf.property_id = %(property)s AND mf.day = %(day)s
) f ON f.unit_id = a.unit_id
WHERE u.property_id = %(property)s
"""
_RAW_CURSOR = """
UPDATE billing_freezecursor SET frozen_through = %(day)s, updated_at = now()
WHERE property_id = %(property)s
"""
_CHECKSUMS = """
SELECT (SELECT (count(*), sum(register), sum(consumption), count(*) FILTER (WHERE estimated))::text
        FROM billing_meterfreeze WHERE property_id = %(property)s AND day = %(day)s),
       (SELECT (count(*), sum(opening_balance), sum(topups), sum(energy_net), sum(energy_tax),
                sum(closing_balance), sum(electricity))::text
        FROM billing_dailyfreeze WHERE property_id = %(property)s AND day = %(day)s),
       (SELECT frozen_through FROM billing_freezecursor WHERE property_id = %(property)s)
"""
