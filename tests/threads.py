"""Real concurrency for tests: threads with their own database connections, committing."""

import threading

from django.db import connection


def run_together(work, count: int) -> list:
    """Run `work(n)` in `count` threads released at once; return results or raised errors."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def thread(n: int) -> None:
        try:
            barrier.wait()
            results[n] = work(n)
        except Exception as error:  # Reported to the test, which asserts on it.
            results[n] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung (deadlock?)"
    return results
