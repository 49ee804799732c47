"""Set-based UPDATEs for the hot paths (heartbeats, metering): many rows changed by one
statement that joins a VALUES list, on Postgres and SQLite alike."""

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models

_PG_TYPES = {
    "uuid": "UUID",
    "int": "BIGINT",
    "float": "DOUBLE PRECISION",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "text": "TEXT",
}
_SQLITE_TYPES = {
    "uuid": "TEXT",
    "int": "INTEGER",
    "float": "REAL",
    "timestamp": "TEXT",
    "text": "TEXT",
}


def _logical_type(field: Any) -> str:
    if isinstance(field, models.UUIDField):
        return "uuid"
    if isinstance(field, models.DateTimeField):
        return "timestamp"
    if isinstance(field, models.IntegerField | models.BigAutoField | models.AutoField):
        return "int"
    if isinstance(field, models.FloatField):
        return "float"
    return "text"


def update_from_values(
    *,
    model: type[models.Model],
    rows: Sequence[tuple[Any, Mapping[str, Any]]],
    add: Sequence[str] = (),
    set: Sequence[str] = (),  # noqa: A002 - reads like the SQL
) -> int:
    """For each (pk, values) row: `field = field + value` for fields in `add`, `field = value`
    for fields in `set`. One statement; returns the number of rows updated."""
    if not rows:
        return 0
    types = _PG_TYPES if connection.vendor == "postgresql" else _SQLITE_TYPES
    quote = connection.ops.quote_name
    meta = model._meta
    pk: Any = meta.pk
    fields: list[Any] = [pk, *(meta.get_field(name) for name in (*add, *set))]
    casts = ", ".join(f"CAST(%s AS {types[_logical_type(f)]})" for f in fields)
    values = ", ".join([f"({casts})"] * len(rows))
    names = ["k", *(f"c{i}" for i in range(1, len(fields)))]
    assignments = []
    for i, name in enumerate((*add, *set), start=1):
        column = quote(fields[i].column)
        expr = f"{column} + v.c{i}" if name in add else f"v.c{i}"
        assignments.append(f"{column} = {expr}")
    table = quote(meta.db_table)
    sql = (
        f"WITH v({', '.join(names)}) AS (VALUES {values}) "  # noqa: S608 - names are ours
        f"UPDATE {table} SET {', '.join(assignments)} FROM v "
        f"WHERE {table}.{quote(pk.column)} = v.k"
    )
    params: list[Any] = []
    for key, values_by_name in rows:
        params.append(pk.get_db_prep_value(key, connection))
        for field in fields[1:]:
            params.append(field.get_db_prep_value(values_by_name[field.name], connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
