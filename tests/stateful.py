"""Hypothesis state machines that run against the real database.

Each run of a machine (hypothesis makes many while it searches and shrinks) works inside a raw
savepoint of the test's transaction and rolls back to it at teardown, so every run starts clean.
A raw savepoint rather than an `atomic()` block held open between calls: a run that fails before
its teardown leaves nothing on Django's atomic stack for later tests to trip over, and the test's
own rollback still removes its rows.
"""

from django.db import transaction
from hypothesis.stateful import RuleBasedStateMachine


class DatabaseMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._savepoint = transaction.savepoint()
        assert self._savepoint, "a database machine runs inside the db fixture's transaction"

    def teardown(self):
        transaction.savepoint_rollback(self._savepoint)
        # A failed statement outside the code's own atomic blocks marks the test's transaction
        # for rollback; rolling back to the savepoint has undone it.
        transaction.set_rollback(False)
