"""`make bench`: every benchmark the issues name, each beside a same-run baseline."""

import sys

from bench.harness import setup_django

BENCHMARKS = [
    "charging",
    "topups",
    "polling",
    "poller-memory",
    "command-latency",
    "mqtt-ingest",
    "restore-latency",
    "daily-freeze",
    "webhooks",
    "units-grid",
    "report-export",
    "detection-quality",
    "detection-runtime",
]


def main(names: list[str]) -> None:
    setup_django()
    from bench import (
        detection,
        freeze,
        modbus,
        money,
        mqtt,
        reports,
        restore,
        units_grid,
        webhooks,
    )

    available = {
        "charging": money.bench_charging,
        "topups": money.bench_topups,
        "polling": modbus.bench_polling,
        "poller-memory": modbus.bench_poller_memory,
        "command-latency": modbus.bench_command_latency,
        "mqtt-ingest": mqtt.bench_mqtt_ingest,
        "restore-latency": restore.bench_restore_latency,
        "daily-freeze": freeze.bench_daily_freeze,
        "webhooks": webhooks.bench_webhooks,
        "units-grid": units_grid.bench_units_grid,
        "report-export": reports.bench_report_export,
        "detection-quality": detection.bench_detection_quality,
        "detection-runtime": detection.bench_detection_runtime,
    }
    for name in names or BENCHMARKS:
        # A benchmark gives one result, or one per variant (restore-latency: per transport).
        outcome = available[name]()
        for result in outcome if isinstance(outcome, list) else [outcome]:
            result.report()


if __name__ == "__main__":
    main(sys.argv[1:])
