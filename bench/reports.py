"""Exporting 1,000,000 daily-freeze rows to CSV and XLSX (issue #9).

The data is loaded set-based (INSERT ... SELECT generate_series) into one Shanghai property:
2,740 accounts frozen on each of the 365 days of 2025, 1,000,100 rows whose balances add up as
the table's CHECK constraint demands (closing = opening + top-ups - charges - refunds +
adjustments).

Timed, each in its own process so its peak RSS is its own: the daily freeze report of the
catalogue (`reports.catalogue.REPORTS["daily-freeze"]`), or, while the catalogue has none, the
`DailyFreezeExport` below over the same columns, written by `reports.exports.write_csv` and
`write_xlsx` for the whole year. Baseline, in the same run: PostgreSQL's own
`COPY (SELECT ...) TO STDOUT WITH CSV` of the same rows through psycopg, in a process of its own.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from bench.harness import Result, bench_property

ACCOUNTS = 2_740
FIRST_DAY = date(2025, 1, 1)
DAYS = 365
CSV_TARGET_SECONDS = 60
XLSX_TARGET_SECONDS = 180
RSS_TARGET_MB = 250

# The rows a report of the daily freeze shows, by day and unit, amounts to the cent.
_ROWS_SQL = """
SELECT u.name, f.day, round(f.opening_balance, %(places)s), round(f.topups, %(places)s),
       round(f.energy_net, %(places)s), round(f.energy_tax, %(places)s),
       round(f.standing_net, %(places)s), round(f.standing_tax, %(places)s),
       round(f.refunds, %(places)s), round(f.adjustments, %(places)s),
       round(f.closing_balance, %(places)s), f.electricity, f.water
FROM billing_dailyfreeze f
JOIN accounts_account a ON a.id = f.account_id
JOIN accounts_unit u ON u.id = a.unit_id
WHERE f.property_id = %(property)s AND f.day >= %(start)s AND f.day <= %(end)s
ORDER BY f.day, u.name, f.account_id
"""


def _report_class():
    """A daily freeze report over the DailyFreeze columns, for when the catalogue has none."""
    from django.db import connection
    from django.utils.translation import gettext_lazy as _

    from prepaid.money import minor_unit
    from reports.base import Column, Filters, Kind, Report

    class DailyFreezeExport(Report):
        slug = "daily-freeze-bench"
        title = _("Daily freeze")
        description = _("Each account's balances and movements per local day.")

        def columns(self, filters: Filters):
            return [
                Column("unit", _("Unit"), Kind.TEXT),
                Column("day", _("Day"), Kind.DATE),
                Column("opening_balance", _("Opening balance"), Kind.MONEY),
                Column("topups", _("Top-ups"), Kind.MONEY),
                Column("energy_net", _("Energy"), Kind.MONEY),
                Column("energy_tax", _("Energy tax"), Kind.MONEY),
                Column("standing_net", _("Standing charge"), Kind.MONEY),
                Column("standing_tax", _("Standing charge tax"), Kind.MONEY),
                Column("refunds", _("Refunds"), Kind.MONEY),
                Column("adjustments", _("Adjustments"), Kind.MONEY),
                Column("closing_balance", _("Closing balance"), Kind.MONEY),
                Column("electricity", _("Electricity (kWh)"), Kind.QUANTITY),
                Column("water", _("Water (m³)"), Kind.QUANTITY),
            ]

        def _params(self, filters: Filters) -> dict:
            return {
                "places": max(0, -minor_unit(filters.currency).as_tuple().exponent),
                "property": filters.property.pk,
                "start": filters.start,
                "end": filters.end,
            }

        def rows(self, filters: Filters, *, offset: int = 0, limit: int | None = None) -> Iterator:
            sql = _ROWS_SQL + " OFFSET %(offset)s" + (" LIMIT %(limit)s" if limit else "")
            with connection.chunked_cursor() as cursor:
                cursor.execute(sql, {**self._params(filters), "offset": offset, "limit": limit})
                while batch := cursor.fetchmany(2000):
                    yield from batch

        def count(self, filters: Filters) -> int:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM billing_dailyfreeze WHERE property_id = %(property)s"
                    " AND day >= %(start)s AND day <= %(end)s",
                    self._params(filters),
                )
                return cursor.fetchone()[0]

    return DailyFreezeExport


def bench_report_export() -> list[Result]:
    from django.db import connection

    started = time.perf_counter()
    prop = _load()
    loading = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM billing_dailyfreeze WHERE property_id = %s", [prop.pk])
        rows = cursor.fetchone()[0]
    with tempfile.TemporaryDirectory(prefix="bench-report-export-") as folder:
        baseline = _child("copy", prop.pk, Path(folder) / "copy.csv")
        csv_run = _child("csv", prop.pk, Path(folder) / "export.csv")
        xlsx_run = _child("xlsx", prop.pk, Path(folder) / "export.xlsx")
    for run in (csv_run, xlsx_run):
        assert run["rows"] == rows, (run, rows)
    assert baseline["lines"] == rows, (baseline, rows)
    which = csv_run["report"]
    common = (
        f"{rows:,} daily-freeze rows ({ACCOUNTS:,} accounts x {DAYS} days, one property), "
        f"report {which!r}; loading took {loading:.0f} s"
    )
    peak = max(csv_run["rss_mb"], xlsx_run["rss_mb"])
    return [
        Result(
            name="report-export-csv",
            unit="s",
            figure=csv_run["seconds"],
            baseline=baseline["seconds"],
            target=f"<= {CSV_TARGET_SECONDS} s",
            notes=f"{common}; {csv_run['bytes'] / 1e6:,.0f} MB written, peak RSS "
            f"{csv_run['rss_mb']:.0f} MB (COPY's process {baseline['rss_mb']:.0f} MB)",
        ),
        Result(
            name="report-export-xlsx",
            unit="s",
            figure=xlsx_run["seconds"],
            baseline=baseline["seconds"],
            target=f"<= {XLSX_TARGET_SECONDS} s",
            notes=f"{common}; {xlsx_run['bytes'] / 1e6:,.0f} MB written, peak RSS "
            f"{xlsx_run['rss_mb']:.0f} MB; the baseline is COPY to CSV",
        ),
        Result(
            name="report-export-rss",
            unit="MB",
            figure=peak,
            baseline=baseline["rss_mb"],
            target=f"<= {RSS_TARGET_MB} MB",
            notes="the larger peak RSS of the CSV and XLSX export processes (Django loaded); "
            "the baseline is the COPY process's (psycopg alone)",
        ),
    ]


def _child(kind: str, property_id: int, out: Path) -> dict:
    """Run one export in a fresh process (the bench database's URL is in the environment);
    what it measured about itself."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.reports", kind, str(property_id), str(out)],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        cwd=Path(__file__).resolve().parent.parent,
    )
    # The measurements are the last line; Django may log before them.
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _load():
    """The bench property's units, tenants, wallets and accounts, and a year of frozen days
    for each, in plain SQL."""
    from django.db import connection, transaction

    prop = bench_property("RPT", "Bench reports")
    params = {
        "count": ACCOUNTS,
        "days": DAYS,
        "first": FIRST_DAY,
        "property": prop.pk,
        "organisation": prop.organisation_id,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in _LOAD:
            cursor.execute(statement, params)
    return prop


_LOAD = [
    """
    INSERT INTO accounts_unit (uuid, property_id, name, kind, floor, created_at, updated_at)
    SELECT gen_random_uuid(), %(property)s, lpad(n::text, 5, '0'), 'flat', '', now(), now()
    FROM generate_series(1, %(count)s) n
    """,
    """
    INSERT INTO accounts_tenant
        (uuid, organisation_id, name, phone, email, preferred_language, created_at, updated_at)
    SELECT gen_random_uuid(), %(organisation)s, 'RPT tenant ' || n, '', '', 'en', now(), now()
    FROM generate_series(1, %(count)s) n
    """,
    """
    INSERT INTO billing_ledgeraccount
        (uuid, organisation_id, property_id, kind, channel, currency, balance, created_at)
    SELECT gen_random_uuid(), %(organisation)s, %(property)s, 'wallet', '', 'CNY', 0, now()
    FROM generate_series(1, %(count)s) n
    """,
    """
    INSERT INTO accounts_account (uuid, mode, status, opened_at, protected, created_at,
                                  updated_at, wallet_id, tenant_id, unit_id)
    SELECT gen_random_uuid(), 'prepaid', 'open', %(first)s::timestamptz, false, now(), now(),
           w.id, t.id, u.id
    FROM (SELECT id, row_number() OVER (ORDER BY id) n FROM accounts_unit
          WHERE property_id = %(property)s) u
    JOIN (SELECT id, row_number() OVER (ORDER BY id) n FROM accounts_tenant
          WHERE organisation_id = %(organisation)s AND name LIKE 'RPT tenant %%') t USING (n)
    JOIN (SELECT id, row_number() OVER (ORDER BY id) n FROM billing_ledgeraccount
          WHERE property_id = %(property)s AND kind = 'wallet') w USING (n)
    """,
    # Every account on every day: the movements vary with the account and the day, and the
    # closing balance is computed from them, so the CHECK constraint holds on every row.
    """
    INSERT INTO billing_dailyfreeze (account_id, property_id, day, currency, opening_balance,
        topups, energy_net, energy_tax, standing_net, standing_tax, refunds, adjustments,
        closing_balance, electricity, water, month_end)
    SELECT a.id, %(property)s, v.day, 'CNY', v.opening, v.topups, v.energy, v.energy_tax,
           0.50, 0.07, v.refunds, v.adjustments,
           v.opening + v.topups - v.energy - v.energy_tax - 0.50 - 0.07 - v.refunds
             + v.adjustments,
           v.kwh, v.water, extract(day from v.day + 1) = 1
    FROM (SELECT a.id, row_number() OVER (ORDER BY a.id) n FROM accounts_account a
          JOIN accounts_unit u ON u.id = a.unit_id WHERE u.property_id = %(property)s) a
    CROSS JOIN generate_series(0, %(days)s - 1) d
    CROSS JOIN LATERAL (
        SELECT %(first)s::date + d AS day,
               ((a.n * 37 + d * 11) %% 50000)::numeric / 100 AS opening,
               CASE WHEN (a.n + d) %% 7 = 0 THEN 100.00 ELSE 0 END AS topups,
               ((a.n + d) %% 300)::numeric / 100 AS energy,
               round(((a.n + d) %% 300)::numeric / 100 * 0.13, 2) AS energy_tax,
               CASE WHEN (a.n + d) %% 97 = 0 THEN 5.00 ELSE 0 END AS refunds,
               CASE WHEN (a.n + d) %% 89 = 0 THEN 1.25 ELSE 0 END AS adjustments,
               ((a.n + d) %% 300)::numeric / 100 * 1.7 AS kwh,
               ((a.n * d) %% 100)::numeric / 1000 AS water
    ) v
    """,
    "ANALYZE accounts_unit, accounts_account, billing_dailyfreeze",
]


# The measured processes --------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, the high-water mark of its own address
    space. (getrusage's ru_maxrss would carry over the forking parent's peak across exec.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _copy(property_id: int, out: Path) -> dict:
    import psycopg

    params = {"places": 2, "property": property_id, "start": FIRST_DAY, "end": date(2025, 12, 31)}
    started = time.perf_counter()
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn, out.open("wb") as file:
        query = psycopg.ClientCursor(conn).mogrify(_ROWS_SQL, params)
        cursor = conn.cursor()
        with cursor.copy(f"COPY ({query}) TO STDOUT WITH CSV") as copy:
            for chunk in copy:
                file.write(chunk)
    seconds = time.perf_counter() - started
    with out.open("rb") as file:
        lines = sum(1 for _ in file)
    return {"seconds": seconds, "rss_mb": _peak_rss_mb(), "lines": lines}


def _export(kind: str, property_id: int, out: Path) -> dict:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prepaid.settings")
    django.setup()
    from accounts.models import Property
    from reports.base import Filters
    from reports.catalogue import REPORTS
    from reports.exports import write_csv, write_xlsx

    prop = Property.objects.get(pk=property_id)
    filters = Filters(property=prop, start=FIRST_DAY, end=date(2025, 12, 31), extra={})
    report = REPORTS.get("daily-freeze")
    if report is not None:
        filters = _catalogue_filters(report, prop) or filters
    else:
        report = _report_class()()
    started = time.perf_counter()
    if kind == "csv":
        with out.open("wb") as file:
            rows = write_csv(report, filters, file)
    else:
        rows = write_xlsx(report, filters, out)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rss_mb": _peak_rss_mb(),
        "rows": rows,
        "bytes": out.stat().st_size,
        "report": report.slug,
    }


def _catalogue_filters(report, prop):
    """The catalogue report's own filters for the bench year, through its form."""
    from django.http import QueryDict

    from prepaid.scoping import Role, Scope

    data = QueryDict(mutable=True)
    data.update({"property": str(prop.uuid), "start": "2025-01-01", "end": "2025-12-31"})
    scope = Scope(organisation=prop.organisation, role=Role.OWNER, property_ids=None)
    form = report.form_class(data, scope=scope)
    return form.filters() if form.is_valid() else None


if __name__ == "__main__":
    kind, property_id, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    measured = _copy(property_id, out) if kind == "copy" else _export(kind, property_id, out)
    print(json.dumps(measured))
