"""Hand-built SQL for the few statements every proxied request runs, from the models' metadata.

Measured on these machines (PERF-NOTES, bench/gateway.py): executing a simple statement costs
~0.01 ms of CPU, compiling the same statement through the ORM ~0.2 ms, and `Model.objects
.create()` ~0.5 ms. A proxied request runs about ten statements, so the ORM alone cost more
than the whole relay of a 200-event stream. The serving path's hot reads and writes therefore
run the SQL below, built once per process from `_meta` (table and column names, the backend's
quoting) and parameterised with `%s`, which Django's cursor adapts for SQLite and Postgres.
Values still go through each field's own `get_db_prep_save` and `from_db_value`, so encrypted
fields, JSON and SQLite's text datetimes come out exactly as the ORM would give them.

Everything else, the admin and the services included, uses the ORM.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from django.db import connection
from django.db.models import Field, Model
from django.utils.dateparse import parse_datetime

Converter = Callable[[Any], Any] | None


def quote(name: str) -> str:
    return connection.ops.quote_name(name)


@functools.cache
def table(model: type[Model]) -> str:
    """Return the quoted table name of a model."""
    return quote(model._meta.db_table)


@functools.cache
def column(model: type[Model], name: str) -> str:
    """Return the quoted column of a field (`client_key` -> "client_key_id")."""
    return quote(model._meta.get_field(name).column)


def columns(model: type[Model], names: Iterable[str], prefix: str = "") -> str:
    return ", ".join(prefix + column(model, name) for name in names)


def _datetime(value: Any) -> datetime.datetime | None:
    """SQLite hands back naive UTC (text, or a datetime through Django's registered decoder),
    Postgres an aware datetime; the ORM gives aware UTC (USE_TZ)."""
    if value is None:
        return None
    if not isinstance(value, datetime.datetime):
        value = parse_datetime(value)
        if value is None:
            return None
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)


def _from_db(field: Field) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        return field.from_db_value(value, None, connection)

    return convert


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


@functools.cache
def converters(model: type[Model], names: tuple[str, ...]) -> tuple[Converter, ...]:
    """Return, per field, what turns a raw column value into the ORM's Python value."""
    out: list[Converter] = []
    for name in names:
        field = model._meta.get_field(name)
        kind = field.get_internal_type()
        if kind == "DateTimeField":
            out.append(_datetime)
        elif hasattr(field, "from_db_value"):  # encrypted text, JSON
            out.append(_from_db(field))
        elif kind == "BooleanField":
            out.append(_bool)
        else:
            out.append(None)
    return tuple(out)


def convert_row(model: type[Model], names: tuple[str, ...], row: Sequence[Any]) -> list[Any]:
    """Convert the first len(names) values of a row; the rest are returned as they are."""
    values = list(row)
    for index, convert in enumerate(converters(model, names)):
        if convert is not None:
            values[index] = convert(values[index])
    return values


def fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def execute(sql: str, params: Sequence[Any]) -> int:
    """Run a statement; return the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def prep(model: type[Model], name: str, value: Any) -> Any:
    """Return a Python value as the field's column takes it (a parameter of hand-built SQL)."""
    return model._meta.get_field(name).get_db_prep_save(value, connection)


def _prep(model: type[Model], values: Mapping[str, Any]) -> list[Any]:
    meta = model._meta
    return [
        meta.get_field(name).get_db_prep_save(value, connection) for name, value in values.items()
    ]


@functools.cache
def _insert_sql(model: type[Model], names: tuple[str, ...], rows: int) -> str:
    row = "(" + ", ".join(["%s"] * len(names)) + ")"
    pk = column(model, model._meta.pk.name)
    return (
        f"INSERT INTO {table(model)} ({columns(model, names)}) "
        f"VALUES {', '.join([row] * rows)} RETURNING {pk}"
    )


def insert(model: type[Model], values: Mapping[str, Any]) -> int:
    """Insert one row (field name -> Python value) and return its primary key."""
    sql = _insert_sql(model, tuple(values), 1)
    with connection.cursor() as cursor:
        cursor.execute(sql, _prep(model, values))
        return cursor.fetchone()[0]


def insert_many(model: type[Model], rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows that all name the same fields, in one statement."""
    if not rows:
        return
    names = tuple(rows[0])
    params: list[Any] = []
    for row in rows:
        params += _prep(model, row)
    execute(_insert_sql(model, names, len(rows)), params)
