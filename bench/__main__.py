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
]


def main(names: list[str]) -> None:
    setup_django()
    from bench import modbus, money, mqtt

    available = {
        "charging": money.bench_charging,
        "topups": money.bench_topups,
        "polling": modbus.bench_polling,
        "poller-memory": modbus.bench_poller_memory,
        "command-latency": modbus.bench_command_latency,
        "mqtt-ingest": mqtt.bench_mqtt_ingest,
    }
    for name in names or BENCHMARKS:
        available[name]().report()


if __name__ == "__main__":
    main(sys.argv[1:])
