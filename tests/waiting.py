"""Waiting on something another thread or process does, with a deadline (no Django here, so
tests that run without the database can use it)."""

import time
from collections.abc import Callable

import pytest


def wait_for(
    condition: Callable[[], object],
    *,
    timeout: float = 15.0,
    interval: float = 0.05,
    describe: Callable[[], object] | None = None,
):
    """Poll until `condition()` is truthy and return its value; fail the test at the deadline,
    with what `describe()` returns then, so a failure says what was seen instead."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; saw {describe()!r}" if describe else ""
            pytest.fail(f"gave up after {timeout} s waiting for {condition}{seen}")
        time.sleep(interval)
