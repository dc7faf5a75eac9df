"""Two beats running at once fire each periodic job once: real `celery beat` processes, the
real database schedule and Redis."""

import json
import subprocess
import sys
import uuid
from collections import Counter
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, PeriodicTask

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
            beat.terminate()
            beat.wait(timeout=30)
    assert _sent(broker) == {"billing.tasks.cutoff_sweep_task": 1}


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
