"""The units grid of a property with 2,000 units (issue #8): server time of the staff page.

One Shanghai property of the "Bench" organisation, loaded set-based (INSERT ... SELECT
generate_series): 2,000 units, 1,900 of them occupied by a tenant with an account and a wallet,
and an electricity meter with a relay in every unit. The mix the grid colours: a tenth of the
tenancies without credit and cut off, a tenth low, one meter in 25 offline, one in 50 never
seen, one in 100 with a cut-off command still on its way. Wallet balances are written directly:
the grid reads them and nothing else of the ledger.

Timed: REQUESTS requests of the grid page (`accounts:units`, the first of its 200-row pages,
whose filter counts cover all 2,000 units) by the owner, through Django's test client, so the
whole request is measured (middleware, session, scope, queries, template) and no network. Also
timed, for the notes: the htmx poll of the grid partial, and the page filtered to low credit and
searched. Baseline, in the same run: one raw SQL statement through the same connection that
fetches the same page's columns (unit, tenancy, tenant, balance, each meter's states and whether
a command is pending).
"""

import time

from bench.harness import Result, bench_property, percentiles

UNITS = 2_000
REQUESTS = 50
WARMUP = 5
TARGET_P95_MS = 300


def bench_units_grid() -> Result:
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from accounts.views.units import UNITS_PER_PAGE

    prop, user = _load()
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    url = reverse("accounts:units", args=[prop.uuid])

    def timed(**extra) -> list[float]:
        samples = []
        for index in range(WARMUP + REQUESTS):
            started = time.perf_counter()
            response = client.get(url, **extra)
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, response.status_code
            if index >= WARMUP:
                samples.append(elapsed)
        return samples

    queries = []
    # Counted at the cursor: the request's start empties Django's own query log.
    with connection.execute_wrapper(_counted(queries)):
        response = client.get(url)
    html = response.content.decode()
    rows = html.count('<tr class="status-')
    assert rows == UNITS_PER_PAGE, rows
    assert f'data-testid="count-all">{UNITS}<' in html
    page = timed()
    poll = timed(headers={"HX-Request": "true"})
    filtered = timed(query_params={"status": "low", "q": "U1"})
    baseline = _baseline(prop, UNITS_PER_PAGE)
    page_spread = percentiles(page, 50, 95, 99)
    poll_p95 = percentiles(poll, 95)["p95"]
    filtered_p95 = percentiles(filtered, 95)["p95"]
    return Result(
        name="units-grid",
        unit="ms p95",
        figure=page_spread["p95"],
        baseline=percentiles(baseline, 95)["p95"],
        target=f"p95 <= {TARGET_P95_MS} ms",
        percentiles=page_spread,
        baseline_percentiles=percentiles(baseline, 50, 95, 99),
        percentile_unit="ms",
        notes=f"{UNITS:,} units, {rows} rows a page, {len(queries)} queries a "
        f"request (session and sign-in included), {REQUESTS} requests after {WARMUP} warm-ups; "
        f"the htmx poll of the grid p95 {poll_p95:.1f} ms, filtered to low credit and searched "
        f"p95 {filtered_p95:.1f} ms; baseline: the page's rows in one raw SQL statement",
    )


def _counted(queries: list[str]):
    def wrapper(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    return wrapper


def _baseline(prop, limit: int) -> list[float]:
    from django.db import connection

    samples = []
    with connection.cursor() as cursor:
        for index in range(WARMUP + REQUESTS):
            started = time.perf_counter()
            cursor.execute(_RAW_PAGE, {"property": prop.pk, "limit": limit})
            fetched = cursor.fetchall()
            elapsed = (time.perf_counter() - started) * 1000
            assert len(fetched) == limit, len(fetched)
            if index >= WARMUP:
                samples.append(elapsed)
    return samples


def _load():
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from accounts.services import membership_create
    from prepaid.scoping import Role

    prop = bench_property("GRID", "Bench units grid")
    user = get_user_model().objects.create_user(username="bench-grid-owner")
    membership_create(user=user, organisation=prop.organisation, role=Role.OWNER, actor=None)
    params = {"count": UNITS, "property": prop.pk, "organisation": prop.organisation_id}
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in _LOAD:
            cursor.execute(statement, params)
    return prop, user


# Unit n is "U" and n in four digits; every twentieth is vacant. Tenancy n has tenant n and
# wallet n, in the order of the occupied units.
_LOAD = [
    """
    INSERT INTO accounts_unit (uuid, property_id, name, kind, floor, created_at, updated_at)
    SELECT gen_random_uuid(), %(property)s, 'U' || lpad(n::text, 4, '0'), 'flat', '', now(), now()
    FROM generate_series(1, %(count)s) n
    """,
    """
    INSERT INTO accounts_tenant
        (uuid, organisation_id, name, phone, email, preferred_language, created_at, updated_at)
    SELECT gen_random_uuid(), %(organisation)s, 'Grid tenant ' || n,
           '+86 138 ' || lpad(n::text, 8, '0'), '', 'en', now(), now()
    FROM generate_series(1, %(count)s) n WHERE n %% 20 <> 0
    """,
    """
    INSERT INTO billing_ledgeraccount
        (uuid, organisation_id, property_id, kind, channel, currency, balance, created_at)
    SELECT gen_random_uuid(), %(organisation)s, %(property)s, 'wallet', '', 'CNY',
           CASE WHEN n %% 10 = 0 THEN 0 WHEN n %% 10 = 1 THEN 20 ELSE 100 + n %% 300 END, now()
    FROM generate_series(1, %(count)s) n WHERE n %% 20 <> 0
    """,
    "ANALYZE accounts_unit, accounts_tenant, billing_ledgeraccount",
    """
    INSERT INTO accounts_account (uuid, mode, status, opened_at, protected, created_at,
                                  updated_at, wallet_id, tenant_id, unit_id)
    SELECT gen_random_uuid(), 'prepaid', 'open', now(), false, now(), now(), w.id, t.id, u.id
    FROM (SELECT id, row_number() OVER (ORDER BY id) n FROM accounts_unit
          WHERE property_id = %(property)s AND substr(name, 2)::int %% 20 <> 0) u
    JOIN (SELECT id, row_number() OVER (ORDER BY id) n FROM accounts_tenant
          WHERE organisation_id = %(organisation)s AND name LIKE 'Grid tenant %%') t USING (n)
    JOIN (SELECT id, row_number() OVER (ORDER BY id) n FROM billing_ledgeraccount
          WHERE property_id = %(property)s AND kind = 'wallet') w USING (n)
    """,
    """
    INSERT INTO meters_meter (uuid, organisation_id, serial, utility, unit_id, installed_at,
                              has_relay, online, relay_closed, relay_confirmed_at, missed_polls,
                              mqtt_channel, mqtt_sml_key, created_at, updated_at)
    SELECT gen_random_uuid(), %(organisation)s, 'GRID-' || u.name, 'electricity', u.id, now(),
           true,
           CASE WHEN n %% 25 = 0 THEN false WHEN n %% 50 = 1 THEN NULL ELSE true END,
           COALESCE(w.balance, 1) > 0, now(), 0, 0, '', now(), now()
    FROM accounts_unit u
    CROSS JOIN LATERAL (SELECT substr(u.name, 2)::int AS n) k
    LEFT JOIN accounts_account a ON a.unit_id = u.id AND a.status = 'open'
    LEFT JOIN billing_ledgeraccount w ON w.id = a.wallet_id
    WHERE u.property_id = %(property)s
    """,
    """
    INSERT INTO meters_relaycommand (uuid, meter_id, close, state, reason, created_at, deadline,
                                     attempts, last_error)
    SELECT gen_random_uuid(), m.id, false, 'queued', 'bench', now(), now() + interval '1 hour',
           0, ''
    FROM meters_meter m JOIN accounts_unit u ON u.id = m.unit_id
    WHERE u.property_id = %(property)s AND substr(u.name, 2)::int %% 100 = 7
    """,
    "ANALYZE accounts_account, meters_meter, meters_relaycommand",
]
_RAW_PAGE = """
SELECT u.id, u.uuid, u.name, a.uuid, a.mode, t.uuid, t.name, w.balance,
       m.uuid, m.serial, m.utility, m.online, m.has_relay, m.relay_closed,
       EXISTS (SELECT 1 FROM meters_relaycommand c
               WHERE c.meter_id = m.id AND c.state IN ('queued', 'sent')) AS pending
FROM (SELECT id, uuid, name FROM accounts_unit WHERE property_id = %(property)s
      ORDER BY name, id LIMIT %(limit)s) u
LEFT JOIN accounts_account a ON a.unit_id = u.id AND a.status = 'open'
LEFT JOIN accounts_tenant t ON t.id = a.tenant_id
LEFT JOIN billing_ledgeraccount w ON w.id = a.wallet_id
LEFT JOIN meters_meter m ON m.unit_id = u.id AND m.removed_at IS NULL
ORDER BY u.name, u.id
"""
