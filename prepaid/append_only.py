"""A migration operation that makes a table append-only in the database itself.

Application code never updates or deletes audit rows or ledger postings; the trigger makes that a
guarantee for every client, raw SQL included. TRUNCATE stays possible for the table's owner,
which is how the test runner resets the database between transactional tests.
"""

from django.db import NotSupportedError
from django.db.migrations.operations.base import Operation

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION prepaid_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
"""


class AppendOnly(Operation):
    reversible = True
    reduces_to_sql = True

    def __init__(self, model_name: str):
        self.model_name = model_name

    def state_forwards(self, app_label, state):
        """Triggers live only in the database; the model state is unchanged."""

    def _table(self, app_label, state) -> str:
        return state.apps.get_model(app_label, self.model_name)._meta.db_table

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        table = self._table(app_label, to_state)
        quoted = schema_editor.quote_name(table)
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            # No parameters: the % signs belong to PL/pgSQL, not to the driver.
            schema_editor.execute(_PG_FUNCTION, params=None)
            schema_editor.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {quoted} "
                "FOR EACH ROW EXECUTE FUNCTION prepaid_refuse_change();"
            )
        elif vendor == "sqlite":
            for operation in ("UPDATE", "DELETE"):
                message = f"{table} is append-only: {operation} refused"
                schema_editor.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {quoted} "
                    f"BEGIN SELECT RAISE(ABORT, '{message}'); END;"
                )
        else:
            raise NotSupportedError(f"Append-only tables are not available on {vendor}.")

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        table = self._table(app_label, from_state)
        quoted = schema_editor.quote_name(table)
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {quoted};")
        else:
            for operation in ("update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation};")

    def describe(self) -> str:
        return f"Make {self.model_name} append-only"

    @property
    def migration_name_fragment(self) -> str:
        return f"{self.model_name.lower()}_append_only"
