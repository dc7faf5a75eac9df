import pytest
from django.db import connection
from hypothesis import settings
from hypothesis.stateful import rule, run_state_machine_as_test

from accounts.models import Organisation
from tests import factories
from tests.stateful import DatabaseMachine

ONE_RUN = settings(max_examples=1, stateful_step_count=1, deadline=None, database=None)


class SetupFails(DatabaseMachine):
    def __init__(self):
        super().__init__()
        factories.OrganisationFactory()
        raise RuntimeError("setup failed")

    @rule()
    def step(self):
        pass


class WritesARow(DatabaseMachine):
    @rule()
    def write(self):
        factories.OrganisationFactory()


def test_a_machine_that_fails_in_setup_leaves_the_atomic_stack_as_it_was(db):
    blocks = len(connection.atomic_blocks)
    with pytest.raises(RuntimeError):
        run_state_machine_as_test(SetupFails, settings=ONE_RUN)
    assert len(connection.atomic_blocks) == blocks
    factories.OrganisationFactory()


def test_each_run_rolls_its_rows_back_at_teardown(db):
    before = Organisation.objects.count()
    run_state_machine_as_test(WritesARow, settings=ONE_RUN)
    assert Organisation.objects.count() == before
