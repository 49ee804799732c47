"""Set-based UPDATEs for the hot paths (heartbeats, metering): many rows changed by one
statement that joins a VALUES list, on Postgres and SQLite alike."""

from collections.abc import Iterator, Mapping, Sequence
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
    if connection.vendor == "postgresql":
        return _update_from_arrays(model=model, rows=rows, add=add, set_=set)
    types = _SQLITE_TYPES
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


def _update_from_arrays(
    *,
    model: type[models.Model],
    rows: Sequence[tuple[Any, Mapping[str, Any]]],
    add: Sequence[str],
    set_: Sequence[str],
) -> int:
    """Postgres: one array parameter per column, joined with `unnest`, so the statement stays
    a few placeholders long however many rows it updates (no per-row SQL to build or parse)."""
    quote = connection.ops.quote_name
    meta = model._meta
    pk: Any = meta.pk
    fields: list[Any] = [pk, *(meta.get_field(name) for name in (*add, *set_))]
    names = ["k", *(f"c{i}" for i in range(1, len(fields)))]
    arrays = ", ".join(f"%s::{_PG_TYPES[_logical_type(f)]}[]" for f in fields)
    assignments = []
    for i, name in enumerate((*add, *set_), start=1):
        column = quote(fields[i].column)
        expr = f"{column} + v.c{i}" if name in add else f"v.c{i}"
        assignments.append(f"{column} = {expr}")
    table = quote(meta.db_table)
    sql = (
        f"UPDATE {table} SET {', '.join(assignments)} "  # noqa: S608 - names are ours
        f"FROM unnest({arrays}) AS v({', '.join(names)}) "
        f"WHERE {table}.{quote(pk.column)} = v.k"
    )
    columns: list[list[Any]] = [[key for key, _ in rows]]
    for field in fields[1:]:
        columns.append([values[field.name] for _, values in rows])
    with connection.cursor() as cursor:
        cursor.execute(sql, columns)
        return cursor.rowcount


def _prepped(
    model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Iterator[list[Any]]:
    meta_fields: list[Any] = [model._meta.get_field(name) for name in fields]
    for row in rows:
        yield [f.get_db_prep_value(v, connection) for f, v in zip(meta_fields, row, strict=True)]


def insert_rows(
    *, model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert many rows at once: COPY on Postgres (no per-row SQL at all), one multi-row
    INSERT per batch elsewhere. Columns left out take their database defaults."""
    if not rows:
        return
    meta = model._meta
    columns: list[str] = [meta.get_field(name).column for name in fields]  # type: ignore[union-attr, misc]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            names = ", ".join(quote(c) for c in columns)
            # psycopg adapts ints, strings, UUIDs and aware datetimes itself: no per-value prep,
            # except JSON, which the field wraps for the driver.
            json_fields = [
                (i, field)
                for i, name in enumerate(fields)
                if isinstance(field := meta.get_field(name), models.JSONField)
            ]
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    if json_fields:
                        row = list(row)  # noqa: PLW2901 - a prepped copy of the row
                        for i, field in json_fields:
                            row[i] = field.get_db_prep_value(row[i], connection)
                    copy.write_row(row)
            return
        placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
        names = ", ".join(quote(c) for c in columns)
        prepped = list(_prepped(model, fields, rows))
        for i in range(0, len(prepped), 500):
            batch = prepped[i : i + 500]
            cursor.execute(
                f"INSERT INTO {table} ({names}) VALUES "  # noqa: S608 - names are ours
                + ", ".join([placeholders] * len(batch)),
                [v for row in batch for v in row],
            )


def insert_rows_returning_ids(
    *, model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[int]:
    """`insert_rows` for a model with an integer primary key, returning the new keys in row
    order (on Postgres the keys are drawn from the sequence first, then COPYed with the rows)."""
    if not rows:
        return []
    pk: Any = model._meta.pk
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [model._meta.db_table, pk.column, len(rows)],
            )
            ids = [row[0] for row in cursor.fetchall()]
        insert_rows(
            model=model,
            fields=[pk.name, *fields],
            rows=[[i, *row] for i, row in zip(ids, rows, strict=True)],
        )
        return ids
    created = model.objects.bulk_create(  # type: ignore[attr-defined]
        model(**dict(zip(fields, row, strict=True))) for row in rows
    )
    return [obj.pk for obj in created]
