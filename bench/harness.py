"""Shared plumbing for `make bench`: a dedicated database, timing, and result files.

Every benchmark prints its figure beside a baseline measured in the same run on the same
machine (raw SQL, a raw protocol loop), and the ratio, because these machines are noisy.
"""

import json
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import django
import psycopg

RESULTS = Path(__file__).resolve().parent / "results"


def setup_django() -> None:
    """Point Django at a fresh bench database, `<the DATABASE_URL's database>_bench` (so
    `make bench` gets prepaid_bench, and two engineers with their own DATABASE_URL do not
    drop each other's), and migrate it. The database DATABASE_URL names is never touched."""
    url, database = os.environ["DATABASE_URL"].rsplit("/", 1)
    name = f"{database}_bench"
    with psycopg.connect(f"{url}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    os.environ["DATABASE_URL"] = f"{url}/{name}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prepaid.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@contextmanager
def stopwatch():
    started = time.perf_counter()
    elapsed = {}
    yield elapsed
    elapsed["seconds"] = time.perf_counter() - started


@dataclass
class Result:
    name: str
    unit: str
    figure: float
    baseline: float
    target: str
    notes: str = ""
    # Latency benchmarks: the figure's and the baseline's percentiles, e.g. {"p50": 12.3}.
    percentiles: dict[str, float] = field(default_factory=dict)
    baseline_percentiles: dict[str, float] = field(default_factory=dict)
    # The percentiles' unit when it is not the figure's (a throughput with latencies, in ms).
    percentile_unit: str = ""

    @property
    def ratio(self) -> float:
        return self.figure / self.baseline if self.baseline else float("nan")

    def report(self) -> None:
        print(
            f"{self.name}: {self.figure:,.1f} {self.unit}  |  baseline {self.baseline:,.1f} "
            f"{self.unit}  |  ratio {self.ratio:.2f}  |  target {self.target}"
        )
        if self.percentiles:
            print(
                f"    {_spread(self.percentiles, self.percentile_unit or self.unit)}  |  "
                f"baseline {_spread(self.baseline_percentiles, self.percentile_unit or self.unit)}"
            )
        if self.notes:
            print(f"    {self.notes}")
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{self.name.replace(' ', '_')}.json"
        # Results without percentiles keep the file format they always had.
        fields = {key: value for key, value in asdict(self).items() if value not in ({}, "")}
        path.write_text(json.dumps({**fields, "ratio": self.ratio}, indent=2) + "\n")


def percentiles(samples: list[float], *points: int) -> dict[str, float]:
    """The given percentiles of `samples`, interpolated between samples (numpy's default)."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {f"p{point}": cuts[point - 1] for point in points}


def _spread(values: dict[str, float], unit: str) -> str:
    return (
        ", ".join(f"{name} {value:,.1f}" for name, value in values.items()) + f" {unit.split()[0]}"
    )


def bench_property(code: str, name: str):
    """A property of the shared "Bench" organisation in Shanghai, made through the services."""
    from accounts import services as accounts
    from accounts.models import Organisation

    organisation = Organisation.objects.filter(slug="bench").first() or (
        accounts.organisation_create(name="Bench", slug="bench")
    )
    return accounts.property_create(
        organisation=organisation,
        actor=None,
        name=name,
        code=code,
        time_zone="Asia/Shanghai",
        currency="CNY",
        country="CN",
    )
