"""Browser tests: Playwright drives Debian's chromium (`scripts/ensure-browser` installs it; no
browser is ever downloaded) against the app on pytest-django's live server, with a real Celery
worker behind it."""

import os
import re
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.urls import reverse
from playwright.sync_api import sync_playwright

from prepaid.celery import app
from tests.processes import process_env
from tests.waiting import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    # The tests run as root in containers, where chromium's sandbox cannot start.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
# Generous for a loaded CI machine, yet a stuck step fails in seconds, with what it waited for.
ACTION_TIMEOUT_MS = 10_000
NAVIGATION_TIMEOUT_MS = 15_000


@pytest.fixture(scope="package")
def browser():
    """One headless chromium for every browser test.

    Package-scoped, not session-scoped: while Playwright's sync API is up, the main thread looks
    as if it ran an asyncio loop, so `asyncio.run` (the Modbus polling and relay code) would
    refuse to run in tests outside this package. For the same reason Django's guard against
    queries from async code would refuse every query here, so it is lifted for exactly as long
    as the browser is up."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/ensure-browser (make test does), which "
            "installs Debian's chromium package."
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000
            )
            yield chromium
            chromium.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser profile (no cookies) on the live server."""
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture
def staff_sign_in(page):
    """Sign a staff member in through the sign-in page, as a person would, and land on
    `next_url`: `staff_sign_in("manager", password, "/meters/")`."""

    def sign_in(username: str, password: str, next_url: str) -> None:
        page.goto(f"{reverse('login')}?next={quote(next_url)}")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(re.escape(next_url) + "$"))

    return sign_in


class Worker:
    """The running worker, by its node name, so it can be told to hold a queue."""

    def __init__(self, name: str):
        self.name = name

    def _control(self, command, queue: str) -> None:
        replies = command(queue, destination=[self.name], reply=True, timeout=10)
        assert replies, f"the worker did not answer {command.__name__}({queue!r})"

    @contextmanager
    def holding(self, queue: str):
        """Tasks sent to `queue` inside the block wait there and run once it is left."""
        self._control(app.control.cancel_consumer, queue)
        try:
            yield
        finally:
            self._control(app.control.add_consumer, queue)


@pytest.fixture
def celery_worker(tmp_path):
    """A real Celery worker on the test's broker and database, for the queues a payment and a
    cut-off go through."""
    log = tmp_path / "worker.log"
    # --purge: tasks earlier tests sent to these queues and nobody ran would reach it first.
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "prepaid", "worker", "--hostname", "browser@%h",
         "--pool", "threads", "--concurrency", "4", "--queues", "commands,billing,notify",
         "--purge", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=settings.BASE_DIR, env=process_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for(lambda: process.poll() is not None or "ready." in log.read_text(), timeout=30)
    if process.poll() is not None:
        pytest.fail(f"the Celery worker exited with {process.returncode}:\n{log.read_text()}")
    # Celery names the node "browser@" and this host's name, as given by --hostname.
    yield Worker(f"browser@{socket.gethostname()}")
    process.terminate()
    process.wait(timeout=30)
