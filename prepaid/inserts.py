"""INSERTs and UPDATEs for the hottest write paths, with each statement built once per model.

The ORM compiles every statement afresh, and on a counter top-up that compiling cost more CPU than
the database's own work (`make bench topups`). `insert` takes the same unsaved instances
`bulk_create` takes, and `update` the saved instance and field names `save(update_fields=...)`
takes; both apply the same field defaults (`pre_save`) and conversions (`get_db_prep_save`), and
reuse the statement. They handle plain concrete fields only: no database expressions, no
multi-table inheritance, no signals, none of which these models use.
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


@cache
def _update_statement(
    model: type[models.Model], names: tuple[str, ...], alias: str
) -> tuple[str, tuple]:
    quote = connections[alias].ops.quote_name
    meta = model._meta
    fields = tuple(meta.get_field(name) for name in names)
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608
    return sql, fields


def update(instance: models.Model, *names: str) -> None:
    """Write the named fields of a saved instance by its primary key, as
    `save(update_fields=names)` does; `auto_now` fields are set when named."""
    model = type(instance)
    alias = router.db_for_write(model)
    connection = connections[alias]
    sql, fields = _update_statement(model, names, alias)
    instance._prepare_related_fields_for_save(operation_name="update", fields=fields)
    params = [
        field.get_db_prep_save(field.pre_save(instance, add=False), connection) for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, instance.pk])
        if cursor.rowcount != 1:
            raise model.DoesNotExist(f"No {model._meta.object_name} {instance.pk} to update.")
