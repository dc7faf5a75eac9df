"""INSERTs for the hottest write paths, with each statement built once per model.

The ORM compiles every INSERT afresh, and on a counter top-up that compiling cost more CPU than
the database's own work (`make bench topups`). `insert` takes the same unsaved instances
`bulk_create` takes, applies the same field defaults (`pre_save`) and conversions
(`get_db_prep_save`), and reuses the statement. It handles plain concrete fields only: no
database expressions, no multi-table inheritance, no signals, none of which these models use.
"""

from __future__ import annotations

from functools import cache

from django.db import connections, models, router


@cache
def _statement(model: type[models.Model], rows: int, alias: str) -> tuple[str, tuple]:
    connection = connections[alias]
    quote = connection.ops.quote_name
    meta = model._meta
    fields = tuple(
        field
        for field in meta.concrete_fields
        if not (field.primary_key and isinstance(field, models.AutoField))
    )
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    # Identifiers come from the model's metadata, quoted; every value is a bound parameter.
    columns = ", ".join(quote(field.column) for field in fields)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608
        f"VALUES {', '.join([row] * rows)} RETURNING {quote(meta.pk.column)}"
    )
    return sql, fields


def insert(*instances: models.Model) -> None:
    """Insert new instances of one model in one statement and set their primary keys."""
    model = type(instances[0])
    alias = router.db_for_write(model)
    connection = connections[alias]
    sql, fields = _statement(model, len(instances), alias)
    for instance in instances:
        # As bulk_create does: take the keys of related objects saved since they were assigned.
        instance._prepare_related_fields_for_save(operation_name="insert")
    params = [
        field.get_db_prep_save(field.pre_save(instance, add=True), connection)
        for instance in instances
        for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        # PostgreSQL and SQLite return the rows of a multi-row VALUES in their order.
        for instance, (pk,) in zip(instances, cursor.fetchall(), strict=True):
            instance.pk = pk
            instance._state.adding = False
            instance._state.db = alias
