"""Money-core benchmarks: charging readings, and concurrent counter top-ups.

Both print the figure beside a raw-SQL baseline that does the same writes in the same run.
"""

import multiprocessing
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bench.harness import Result, bench_property, stopwatch

METERS = 1000
READINGS_PER_METER = 96  # a day at 15 minutes
TOPUPS = 4000
CLIENTS = 8
T0 = datetime(2026, 10, 5, 16, 0, tzinfo=UTC)  # local midnight in Shanghai

TOU_TIERED = {
    "kind": "tou_tiered",
    "periods": {
        day: [
            {"name": "peak", "start": "08:00", "end": "22:00", "price": "0.617"},
            {"name": "valley", "start": "22:00", "end": "08:00", "price": "0.307"},
        ]
        for day in ("weekday", "weekend", "holiday")
    },
    "bands": [
        {"limit": "5", "price": "0"},
        {"limit": "10", "price": "0.05"},
        {"limit": None, "price": "0.30"},
    ],
    "tax_rate": "0.13",
}


def _property(code: str):
    from tariffs.services import tariff_create

    prop = bench_property(code, f"Bench {code}")
    tariff_create(
        property=prop,
        utility="electricity",
        name="ToU with tiers",
        actor=None,
        version={"effective_from": T0 - timedelta(days=30), **TOU_TIERED},
    )
    return prop


def _occupied_meters(prop, count: int):
    from accounts import services as accounts
    from meters.services import meter_register

    meters = []
    for number in range(count):
        unit = accounts.unit_create(property=prop, actor=None, name=f"{number:05d}")
        tenant = accounts.tenant_create(
            organisation=prop.organisation, actor=None, name=f"Tenant {prop.code} {number}"
        )
        accounts.account_open(
            tenant=tenant, unit=unit, actor=None, opened_at=T0 - timedelta(days=1)
        )
        meters.append(
            meter_register(
                organisation=prop.organisation,
                actor=None,
                serial=f"{prop.code}-{number:05d}",
                utility="electricity",
                unit=unit,
                installed_at=T0 - timedelta(days=1),
            )
        )
    return meters


def _readings(meters, seed: int) -> int:
    from meters.models import Reading

    rng = random.Random(seed)
    rows = []
    for meter in meters:
        register = Decimal(rng.randrange(1000, 50000)) / 10
        for step in range(READINGS_PER_METER + 1):
            rows.append(
                Reading(
                    meter=meter,
                    taken_at=T0 + timedelta(minutes=15 * step),
                    register=register,
                    source="modbus",
                )
            )
            register += Decimal(rng.randrange(0, 400)) / 1000
    Reading.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


def bench_charging() -> Result:
    from django.db import connection

    from billing.charging import charge_new_readings
    from billing.verification import ledger_violations

    ours = _occupied_meters(_property("CHG"), METERS)
    count = _readings(ours, seed=1)
    with stopwatch() as ours_time:
        run = charge_new_readings()
    assert run.accepted == count, run
    assert run.charges == METERS, run
    _assert_ledger_clean(ledger_violations())

    # The same writes in raw SQL on a second, identical set of meters: no ORM, no pricing.
    theirs = _occupied_meters(_property("RAW"), METERS)
    _readings(theirs, seed=1)
    with stopwatch() as raw_time, connection.cursor() as cursor:
        _raw_charge(cursor, [meter.pk for meter in theirs])
    figure = count / ours_time["seconds"]
    baseline = count / raw_time["seconds"]
    return Result(
        name="charging",
        unit="readings/s",
        figure=figure,
        baseline=baseline,
        target=">= 5,000 readings/s",
        notes=f"{METERS} meters x {READINGS_PER_METER} readings on ToU + tiers in "
        f"{ours_time['seconds']:.2f} s; raw SQL did the same writes in {raw_time['seconds']:.2f} s",
    )


def _raw_charge(cursor, meter_ids: list[int]) -> None:
    """Read the readings, then write what a charge run writes, in plain SQL."""
    from django.db import transaction

    with transaction.atomic():
        cursor.execute(
            "SELECT id, meter_id, taken_at, register FROM meters_reading "
            "WHERE meter_id = ANY(%s) AND status = 'new' ORDER BY meter_id, taken_at",
            [meter_ids],
        )
        rows = cursor.fetchall()
        first, last, ids = {}, {}, []
        for reading_id, meter_id, taken_at, register in rows:
            first.setdefault(meter_id, (taken_at, register))
            last[meter_id] = (taken_at, register)
            ids.append(reading_id)
        cursor.execute(
            "SELECT m.id, a.id, a.wallet_id, p.id, p.organisation_id FROM meters_meter m "
            "JOIN accounts_unit u ON u.id = m.unit_id JOIN accounts_property p ON p.id = u.property_id "
            "JOIN accounts_account a ON a.unit_id = u.id AND a.status = 'open' WHERE m.id = ANY(%s)",
            [meter_ids],
        )
        occupants = cursor.fetchall()
        prop_id, organisation_id = occupants[0][3], occupants[0][4]
        cursor.execute(
            "INSERT INTO billing_ledgeraccount (uuid, organisation_id, property_id, kind, channel, "
            "currency, balance, created_at) VALUES (%s, %s, %s, 'energy_revenue', '', 'CNY', 0, now()), "
            "(%s, %s, %s, 'tax_payable', '', 'CNY', 0, now()) RETURNING id",
            [uuid.uuid4(), organisation_id, prop_id, uuid.uuid4(), organisation_id, prop_id],
        )
        revenue, tax_book = (row[0] for row in cursor.fetchall())
        cursor.execute(
            "SELECT id FROM billing_ledgeraccount WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            [[row[2] for row in occupants]],
        )
        for meter_id, account_id, wallet_id, _, _ in occupants:
            quantity = last[meter_id][1] - first[meter_id][1]
            net = (quantity * Decimal("0.5")).quantize(Decimal("0.01"))
            tax = (net * Decimal("0.13")).quantize(Decimal("0.01"))
            cursor.execute(
                "INSERT INTO billing_ledgertransaction (uuid, organisation_id, property_id, kind, "
                "currency, idempotency_key, fingerprint, effective_at, created_at, memo) VALUES "
                "(%s, %s, %s, 'charge', 'CNY', %s, '', %s, now(), '') RETURNING id",
                [
                    uuid.uuid4(),
                    organisation_id,
                    prop_id,
                    f"raw-charge:{meter_id}",
                    last[meter_id][0],
                ],
            )
            txn = cursor.fetchone()[0]
            cursor.executemany(
                "INSERT INTO billing_posting (transaction_id, ledger_account_id, amount) "
                "VALUES (%s, %s, %s)",
                [(txn, wallet_id, -(net + tax)), (txn, revenue, net), (txn, tax_book, tax)],
            )
            cursor.execute(
                "UPDATE billing_ledgeraccount SET balance = balance - %s WHERE id = %s",
                [net + tax, wallet_id],
            )
            cursor.execute(
                "INSERT INTO billing_charge (uuid, account_id, meter_id, kind, idempotency_key, "
                "period_start, period_end, quantity, net, tax, lines, transaction_id, created_at) "
                "VALUES (%s, %s, %s, 'energy', %s, %s, %s, %s, %s, %s, '[]', %s, now())",
                [
                    uuid.uuid4(),
                    account_id,
                    meter_id,
                    f"raw-charge:{meter_id}",
                    first[meter_id][0],
                    last[meter_id][0],
                    quantity,
                    net,
                    tax,
                    txn,
                ],
            )
            cursor.execute(
                "INSERT INTO billing_chargecursor (meter_id, taken_at, register) VALUES (%s, %s, %s)",
                [meter_id, *last[meter_id]],
            )
            cursor.execute(
                "INSERT INTO billing_chargetotals (account_id, kind, exact_net, exact_tax, posted_net, "
                "posted_tax) VALUES (%s, 'energy', %s, %s, %s, %s)",
                [account_id, net, tax, net, tax],
            )
            cursor.execute(
                "INSERT INTO billing_tierusage (account_id, utility, month, quantity) "
                "VALUES (%s, 'electricity', %s, %s)",
                [account_id, first[meter_id][0].date().replace(day=1), quantity],
            )
        cursor.execute("UPDATE meters_reading SET status = 'accepted' WHERE id = ANY(%s)", [ids])


def bench_topups() -> Result:
    from django.db import connection

    from accounts.models import Account
    from billing.models import Receipt
    from billing.services import topup_record
    from billing.verification import ledger_violations

    prop = _property("TOP")
    _occupied_meters(prop, 200)
    accounts = list(
        Account.objects.filter(unit__property=prop).select_related("wallet", "unit__property")
    )
    amounts = [Decimal(random.Random(n).randrange(100, 20000)) / 100 for n in range(TOPUPS)]

    def client(worker: int) -> None:
        try:
            for n in range(worker, TOPUPS, CLIENTS):
                topup_record(
                    account=accounts[n % len(accounts)],
                    amount=amounts[n],
                    channel="cash",
                    actor=None,
                    idempotency_key=f"bench:{n}",
                )
        finally:
            connection.close()

    seconds = _in_processes(client)
    receipts = Receipt.objects.filter(property=prop)
    assert receipts.count() == TOPUPS
    assert sorted(receipts.values_list("number", flat=True)) == list(range(1, TOPUPS + 1))
    held = sum(
        account.wallet.balance
        for account in Account.objects.filter(unit__property=prop).select_related("wallet")
    )
    assert held == sum(amounts), (held, sum(amounts))
    _assert_ledger_clean(ledger_violations())

    raw_prop = _property("TRW")
    _occupied_meters(raw_prop, 200)
    wallets = list(
        Account.objects.filter(unit__property=raw_prop).values_list("wallet_id", flat=True)
    )
    cash = _raw_cash_book(raw_prop)

    def raw_client(worker: int) -> None:
        try:
            for n in range(worker, TOPUPS, CLIENTS):
                _raw_topup(raw_prop, wallets[n % len(wallets)], cash, amounts[n], f"raw-topup:{n}")
        finally:
            connection.close()

    raw_seconds = _in_processes(raw_client)
    return Result(
        name="topups",
        unit="top-ups/s",
        figure=TOPUPS / seconds,
        baseline=TOPUPS / raw_seconds,
        target=">= 500 top-ups/s, none lost or doubled",
        notes=f"{TOPUPS} top-ups from {CLIENTS} processes over 200 wallets of one property "
        f"(gapless receipts) in {seconds:.2f} s; receipts, balances and verify_ledger checked",
    )


def _in_processes(work) -> float:
    """Run `work(worker)` in CLIENTS forked processes at once, like gunicorn workers would."""
    from django.db import connections

    connections.close_all()
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=work, args=(worker,)) for worker in range(CLIENTS)]
    with stopwatch() as elapsed:
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    failed = [process.exitcode for process in processes if process.exitcode]
    assert not failed, f"{len(failed)} client(s) failed"
    return elapsed["seconds"]


def _raw_cash_book(prop) -> int:
    from billing.models import LedgerAccount
    from billing.services import book_account

    return book_account(property=prop, kind=LedgerAccount.Kind.CASH).pk


def _raw_topup(prop, wallet_id: int, cash_id: int, amount: Decimal, key: str) -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT balance FROM billing_ledgeraccount WHERE id = %s FOR UPDATE", [wallet_id]
        )
        cursor.execute(
            "INSERT INTO billing_ledgertransaction (uuid, organisation_id, property_id, kind, currency, "
            "idempotency_key, fingerprint, effective_at, created_at, memo) VALUES "
            "(%s, %s, %s, 'topup', 'CNY', %s, '', now(), now(), 'cash') RETURNING id",
            [uuid.uuid4(), prop.organisation_id, prop.pk, key],
        )
        txn = cursor.fetchone()[0]
        cursor.executemany(
            "INSERT INTO billing_posting (transaction_id, ledger_account_id, amount) VALUES (%s, %s, %s)",
            [(txn, wallet_id, amount), (txn, cash_id, -amount)],
        )
        cursor.execute(
            "UPDATE billing_ledgeraccount SET balance = balance + %s WHERE id = %s",
            [amount, wallet_id],
        )
        cursor.execute(
            "INSERT INTO audit_auditlog (uuid, organisation_id, property_id, action, object_type, object_id, "
            "object_repr, after, reason, created_at) VALUES (%s, %s, %s, 'topup.record', 'accounts.account', "
            "%s, '', '{}', '', now())",
            [uuid.uuid4(), prop.organisation_id, prop.pk, str(wallet_id)],
        )
        # Last and in one statement, as the service does, to hold the receipt sequence briefly.
        cursor.execute(
            "WITH seq AS (INSERT INTO billing_receiptsequence (property_id, last_number) VALUES (%s, 1) "
            "ON CONFLICT (property_id) DO UPDATE SET last_number = billing_receiptsequence.last_number + 1 "
            "RETURNING last_number) "
            "INSERT INTO billing_receipt (uuid, property_id, number, transaction_id, account_id, amount, "
            "currency, channel, reference, issued_at) SELECT %s, %s, seq.last_number, %s, a.id, %s, 'CNY', "
            "'cash', '', now() FROM accounts_account a, seq WHERE a.wallet_id = %s",
            [prop.pk, uuid.uuid4(), prop.pk, txn, amount, wallet_id],
        )


def _assert_ledger_clean(violations: dict[str, list[str]]) -> None:
    problems = {name: f"{len(found)}: {found[:3]}" for name, found in violations.items() if found}
    assert not problems, problems
