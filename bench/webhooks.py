"""Webhook notification to credited and committed (issue #7), through gunicorn.

The product's own path end to end: signed sandbox notifications are POSTed by 32 client threads
(keep-alive connections) to `/payments/webhooks/sandbox/<config>/` served by gunicorn, which
verifies each, locks its intent, credits the wallet through the ledger and numbers a receipt
before answering. One notification in ten is sent again later (a provider's retry), and must
credit nothing. Latency is from sending a request to reading its answer.

Baseline, in the same run and at the same concurrency: the raw SQL of a credit (the wallet
locked, a transaction with two postings, the balance, an audit row and a numbered receipt) from
32 threads straight to PostgreSQL, with no HTTP, no signature and no intent.

Afterwards: one receipt per intent, the wallets hold exactly what was paid, and verify_ledger
finds nothing.
"""

import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

from bench.harness import Result, bench_property, percentiles, stopwatch
from bench.money import _assert_ledger_clean, _occupied_meters, _raw_cash_book, _raw_topup

ROOT = Path(__file__).resolve().parent.parent
PROPERTIES = 8
ACCOUNTS_PER_PROPERTY = 100
INTENTS = int(os.environ.get("BENCH_WEBHOOK_INTENTS", "6000"))
REPLAY_EVERY = 10
CLIENTS = 32
PORT = 18731
# gunicorn's advice for its workers, one thread each: a Python thread waiting for the GIL while
# it holds row locks stretches every other request's wait, and processes share no GIL.
WORKERS, THREADS = 2 * (os.cpu_count() or 1) + 1, 1
# Sent before the clock starts, so each worker has its connections and lazy imports in place,
# as a server that has been up for a while does.
WARMUP = 2 * CLIENTS
TARGET = ">= 300 notifications/s, p99 <= 200 ms, no double credit"


def _gunicorn() -> subprocess.Popen:
    env = {
        **os.environ,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "prepaid.wsgi",
            "--bind", f"127.0.0.1:{PORT}", "--workers", str(WORKERS),
            "--worker-class", "gthread", "--threads", str(THREADS),
            "--keep-alive", "30", "--log-level", "warning",
            # Loaded once before forking, so no client waits for a worker to import Django.
            "--preload",
        ],
        cwd=ROOT, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("gunicorn did not start")


def _intents():
    from accounts.models import Account
    from payments.services import intent_create, provider_config_save

    props = [bench_property(f"WH{n}", f"Webhooks {n}") for n in range(PROPERTIES)]
    for prop in props:
        _occupied_meters(prop, ACCOUNTS_PER_PROPERTY)
    config = provider_config_save(
        organisation=props[0].organisation,
        provider="sandbox",
        actor=None,
        secrets={"webhook_secret": "whsec_bench"},
    )
    accounts = list(
        Account.objects.filter(unit__property__in=props).select_related("unit__property")
    )
    rng = random.Random(7)
    intents = [
        intent_create(
            account=accounts[n % len(accounts)],
            config=config,
            amount=Decimal(rng.randrange(100, 20000)) / 100,
            actor=None,
            notify_url="http://127.0.0.1/unused",
            return_url="/",
        )
        for n in range(INTENTS)
    ]
    return config, intents, props


def _requests(config, intents) -> list[tuple[bytes, dict[str, str]]]:
    from payments.sandbox import sandbox_event
    from payments.services import provider_for

    provider = provider_for(config)
    payloads = []
    for n, intent in enumerate(intents):
        intent.transaction_id = f"sbx_bench_{n}"
        body = sandbox_event(payment=intent, event_type="payment.succeeded", event_id=f"evt_{n}")
        payloads.append((body, provider.sign(body)))
    # Retries arrive later, interleaved with new notifications.
    replays = payloads[::REPLAY_EVERY]
    mixed = list(payloads)
    rng = random.Random(11)
    for replay in replays:
        mixed.insert(rng.randrange(len(payloads) // 2, len(mixed) + 1), replay)
    return mixed


def _send_all(path: str, requests) -> tuple[float, list[float], list[int]]:
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        mine, codes = [], []
        for body, headers in requests[worker::CLIENTS]:
            started = time.perf_counter()
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            mine.append((time.perf_counter() - started) * 1000)
            codes.append(response.status)
        connection.close()
        with lock:
            latencies.extend(mine)
            statuses.extend(codes)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    with stopwatch() as elapsed:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return elapsed["seconds"], latencies, statuses


def _raw_baseline(props, count: int) -> tuple[float, list[float]]:
    from django.db import connection

    from accounts.models import Account

    books = {prop.pk: _raw_cash_book(prop) for prop in props}
    wallets = list(
        Account.objects.filter(unit__property__in=props).values_list(
            "wallet_id", "unit__property_id"
        )
    )
    by_pk = {prop.pk: prop for prop in props}
    latencies: list[float] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        mine = []
        try:
            for n in range(worker, count, CLIENTS):
                wallet_id, prop_id = wallets[n % len(wallets)]
                started = time.perf_counter()
                _raw_topup(by_pk[prop_id], wallet_id, books[prop_id], Decimal("1.00"), f"raw:{n}")
                mine.append((time.perf_counter() - started) * 1000)
        finally:
            connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    with stopwatch() as elapsed:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return elapsed["seconds"], latencies


def bench_webhooks() -> Result:
    from django.db import connections
    from django.urls import reverse

    from accounts.models import Account
    from billing.models import Receipt
    from billing.verification import ledger_violations
    from payments.models import PaymentIntent, ProviderEvent, SandboxPayment

    config, intents, props = _intents()
    SandboxPayment.objects.update(status=SandboxPayment.Status.PAID)
    requests = _requests(config, intents)
    path = reverse("payments:webhook", args=["sandbox", config.uuid])
    connections.close_all()
    server = _gunicorn()
    try:
        _, _, warmup_statuses = _send_all(path, requests[:WARMUP])
        seconds, latencies, statuses = _send_all(path, requests[WARMUP:])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    statuses += warmup_statuses
    assert statuses.count(200) == len(requests), {code: statuses.count(code) for code in statuses}
    credited = PaymentIntent.objects.filter(status=PaymentIntent.Status.SUCCEEDED).count()
    receipts = Receipt.objects.filter(property__in=props).count()
    # Each payment's event recorded once, applied; replays record nothing and nothing is rejected.
    events = ProviderEvent.objects.filter(config=config).values_list("outcome", flat=True)
    applied = sum(outcome == ProviderEvent.Outcome.APPLIED for outcome in events)
    assert credited == receipts == applied == len(events) == INTENTS, (
        credited, receipts, applied, len(events)
    )  # fmt: skip
    held = sum(
        Account.objects.filter(unit__property__in=props).values_list("wallet__balance", flat=True),
        Decimal(0),
    )
    paid = sum((intent.amount for intent in intents), Decimal(0))
    assert held == paid, (held, paid)
    _assert_ledger_clean(ledger_violations())

    raw_seconds, raw_latencies = _raw_baseline(props, len(requests))
    return Result(
        name="webhooks",
        unit="notifications/s",
        figure=len(latencies) / seconds,
        baseline=len(requests) / raw_seconds,
        target=TARGET,
        percentiles=percentiles(latencies, 50, 95, 99),
        baseline_percentiles=percentiles(raw_latencies, 50, 95, 99),
        percentile_unit="ms",
        notes=f"{len(requests)} notifications ({INTENTS} payments, every {REPLAY_EVERY}th sent "
        f"again) from {CLIENTS} clients to gunicorn ({WORKERS} workers x {THREADS} threads), "
        f"the last {len(latencies)} timed, in {seconds:.2f} s; {receipts} receipts, balances and "
        "verify_ledger checked, 0 double credits",
    )
