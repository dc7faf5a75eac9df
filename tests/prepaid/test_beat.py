"""Two beats running at once fire each periodic job once: real `celery beat` processes, the
real database schedule and Redis."""

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, IntervalSchedule, PeriodicTask

from prepaid.beat import FileLease, RedisLease
from tests.processes import process_env
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# A broker database of this test's own, so what the beats send is all that is in it.
BROKER_DB = 9


def _beat(lease_key: str, log_path) -> subprocess.Popen:
    env = process_env(
        CELERY_BROKER_URL=f"redis://127.0.0.1:6379/{BROKER_DB}", BEAT_LEASE_KEY=lease_key
    )
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(  # noqa: S603 - our own command line
        [sys.executable, "-m", "celery", "-A", "prepaid", "beat", "--loglevel", "WARNING",
         "--max-interval", "1", "--schedule", str(log_path) + ".db"],
        cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _stop(beat: subprocess.Popen) -> None:
    beat.terminate()
    try:
        beat.wait(timeout=30)
    except subprocess.TimeoutExpired:
        beat.kill()  # leave no process behind, and still fail
        raise


def _sent(broker: redis.Redis) -> Counter:
    """The tasks waiting in the broker, by name."""
    names: Counter = Counter()
    for key in broker.scan_iter():
        if broker.type(key) != b"list":
            continue
        for raw in broker.lrange(key, 0, -1):
            names[json.loads(raw)["headers"]["task"]] += 1
    return names


def test_two_beats_fire_a_job_once(tmp_path):
    broker = redis.Redis(db=BROKER_DB)
    broker.flushdb()
    # A job due once, a little after both beats are up.
    due = timezone.now() + timedelta(seconds=20)
    PeriodicTask.objects.create(
        name="test: once",
        task="billing.tasks.cutoff_sweep_task",
        clocked=ClockedSchedule.objects.create(clocked_time=due),
        one_off=True,
    )
    lease_key = f"test:beat:{uuid.uuid4().hex}"
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    beats = []
    try:
        for log, says in zip(logs, ["now firing jobs", "another beat fires jobs"], strict=True):
            beats.append(_beat(lease_key, log))
            wait_for(lambda log=log, says=says: says in log.read_text(), timeout=30)
        assert timezone.now() < due, "the beats took too long to start for this test"
        wait_for(lambda: timezone.now() > due + timedelta(seconds=3), timeout=60)
        wait_for(lambda: _sent(broker), timeout=10)
    finally:
        for beat in beats:
            _stop(beat)
    assert _sent(broker) == {"billing.tasks.cutoff_sweep_task": 1}


def _waiting_on_a_lock(database: psycopg.Connection) -> bool:
    row = database.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> %s",
        [database.info.backend_pid],
    ).fetchone()
    return row[0] > 0


def test_a_beat_stopped_while_its_query_waits_exits(tmp_path):
    """SIGTERM in the middle of a tick's query, with a fired job's schedule still to write: the
    beat must write it and stop, not wait on its own connection."""
    broker = redis.Redis(db=BROKER_DB)
    broker.flushdb()
    job = PeriodicTask.objects.create(
        name="test: every second",
        task="billing.tasks.cutoff_sweep_task",
        interval=IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS),
    )
    log = tmp_path / "beat.log"
    beat = _beat(f"test:beat:{uuid.uuid4().hex}", log)
    try:
        # The beat writes the schedule after its first send; the second leaves it unwritten.
        wait_for(lambda: _sent(broker).total() >= 2, timeout=30, describe=log.read_text)
        database = connection.settings_dict
        with psycopg.connect(
            host=database["HOST"], port=database["PORT"], user=database["USER"],
            dbname=database["NAME"],
        ) as other:  # fmt: skip
            # Every tick reads this table; the lock holds the next tick's query in flight.
            other.execute("LOCK TABLE django_celery_beat_periodictasks IN ACCESS EXCLUSIVE MODE")
            wait_for(lambda: _waiting_on_a_lock(other), timeout=10)
            beat.send_signal(signal.SIGTERM)
            # Long enough for the signal to be handled while the query still waits.
            time.sleep(1)
        wait_for(lambda: beat.poll() is not None, timeout=15, describe=log.read_text)
    finally:
        if beat.poll() is None:
            beat.kill()
    assert beat.returncode == 0, log.read_text()
    job.refresh_from_db()
    assert job.total_run_count == _sent(broker).total()
    broker.flushdb()


def test_a_redis_lease_is_held_by_one_holder_and_renewed_by_it():
    key = f"test:lease:{uuid.uuid4().hex}"
    first, second = RedisLease(settings.REDIS_URL, key=key), RedisLease(settings.REDIS_URL, key=key)
    assert first.hold()
    assert first.hold()
    assert not second.hold()


def test_without_redis_a_file_lock_elects_one_beat(tmp_path):
    first, second = FileLease(tmp_path / "beat.lock"), FileLease(tmp_path / "beat.lock")
    assert first.hold()
    assert first.hold()
    assert not second.hold()
