"""Receipts get a public uuid, for URLs and API bodies.

Receipts already issued need distinct uuids, but billing_receipt is append-only: its triggers
(prepaid/append_only.py) refuse every UPDATE. So the column is added nullable, filled with the
triggers out of the way, then made unique and required. On SQLite that last step rebuilds the
table, which drops its triggers, so they are created again afterwards.
"""

import uuid

from django.db import NotSupportedError, migrations, models

TABLE = "billing_receipt"


def _sqlite_drop_triggers(schema_editor) -> None:
    for operation in ("update", "delete"):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_{operation};")


def sqlite_ensure_triggers(apps, schema_editor) -> None:
    """The same triggers `AppendOnly("Receipt")` creates on SQLite, if a rebuild dropped them."""
    if schema_editor.connection.vendor != "sqlite":
        return
    for operation in ("UPDATE", "DELETE"):
        message = f"{TABLE} is append-only: {operation} refused"
        schema_editor.execute(
            f'CREATE TRIGGER IF NOT EXISTS {TABLE}_no_{operation.lower()} BEFORE {operation} ON "{TABLE}" '
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END;"
        )


def fill_uuids(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        # Disabled inside this migration's transaction only: no other write can slip through.
        schema_editor.execute(
            "ALTER TABLE billing_receipt DISABLE TRIGGER billing_receipt_append_only;"
        )
        schema_editor.execute(
            "UPDATE billing_receipt SET uuid = gen_random_uuid() WHERE uuid IS NULL;"
        )
        schema_editor.execute(
            "ALTER TABLE billing_receipt ENABLE TRIGGER billing_receipt_append_only;"
        )
    elif vendor == "sqlite":
        # The next operation rebuilds the table on SQLite anyway, which drops the triggers;
        # `sqlite_ensure_triggers` puts them back.
        _sqlite_drop_triggers(schema_editor)
        Receipt = apps.get_model("billing", "Receipt")
        for pk in Receipt.objects.filter(uuid__isnull=True).values_list("pk", flat=True):
            Receipt.objects.filter(pk=pk).update(uuid=uuid.uuid4())
    else:
        raise NotSupportedError(f"Append-only tables are not available on {vendor}.")


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_ledger_guards")]

    operations = [
        # Backwards only: removing the column again rebuilds the table on SQLite.
        migrations.RunPython(migrations.RunPython.noop, sqlite_ensure_triggers),
        migrations.AddField(
            model_name="receipt",
            name="uuid",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(fill_uuids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="receipt",
            name="uuid",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.RunPython(sqlite_ensure_triggers, migrations.RunPython.noop),
    ]
