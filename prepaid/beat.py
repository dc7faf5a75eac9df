"""The beat scheduler: django-celery-beat's database schedule, fired by one beat at a time.

Two beats running by mistake (a deploy that overlaps, a second host) would send every periodic
job twice. Each beat here ticks only while it holds a lease: a Redis key with a short expiry
that its holder renews, or, without Redis (`make run`), an exclusive lock on a file in VAR_DIR.
A beat that dies stops renewing, and another takes over within LEASE_SECONDS.
"""

import fcntl
import logging
import os
import socket
import uuid

import redis
from celery import platforms
from celery.signals import beat_init
from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

log = logging.getLogger(__name__)

LEASE_SECONDS = 30
LEASE_KEY = "prepaid:beat:leader"

# Take the lease if it is free, or renew it if it is ours, in one step.
_ACQUIRE_OR_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return 1
end
return 0
"""


class RedisLease:
    def __init__(self, url: str, key: str = LEASE_KEY, seconds: int = LEASE_SECONDS) -> None:
        self._redis = redis.Redis.from_url(url)
        self._script = self._redis.register_script(_ACQUIRE_OR_RENEW)
        self._key = key
        self._milliseconds = seconds * 1000
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def hold(self) -> bool:
        return bool(self._script(keys=[self._key], args=[self.holder, self._milliseconds]))


class FileLease:
    """One machine, no Redis: an exclusive lock on a file, held until the process exits."""

    def __init__(self, path) -> None:
        self._path = path
        self._file = None

    def hold(self) -> bool:
        if self._file is not None:
            return True
        handle = open(self._path, "a")  # noqa: SIM115 - held open for the process's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True


def lease():
    if settings.REDIS_URL:
        return RedisLease(settings.REDIS_URL, key=settings.BEAT_LEASE_KEY)
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    return FileLease(settings.VAR_DIR / "beat.lock")


def _exit(signum, frame):
    raise SystemExit()


def _exit_on_stop_signals(**kwargs) -> None:
    """Celery's own SIGTERM handler writes the schedule to the database from inside the handler.
    A signal that lands while a tick's query is in flight re-enters that psycopg connection and
    waits forever on its lock. Only exit here: psycopg cancels the query in flight, and the beat
    loop's `finally` writes the schedule once the stack has unwound."""
    platforms.signals.update(SIGTERM=_exit, SIGINT=_exit)


class SingleBeatScheduler(DatabaseScheduler):
    def __init__(self, *args, **kwargs):
        self._lease = lease()
        self._leading: bool | None = None  # unknown until the first tick says
        # beat_init is sent after celery has installed its handler, so this one replaces it.
        beat_init.connect(_exit_on_stop_signals, weak=False, dispatch_uid=__name__)
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs):
        leading = self._lease.hold()
        if leading != self._leading:
            log.warning("beat: %s", "now firing jobs" if leading else "another beat fires jobs")
            self._leading = leading
        if not leading:
            # Check again well before the leader's lease could run out.
            return LEASE_SECONDS / 3
        return min(super().tick(*args, **kwargs), LEASE_SECONDS / 3)
