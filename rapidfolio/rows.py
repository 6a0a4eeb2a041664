"""Plain INSERTs, UPDATEs and row reads for the hot paths (the engine, starting a run), without
the ORM's per-call compilation.

The engine writes a step and an event for every node and updates the run in every transaction;
every API start authenticates, reads the procedure's version and inserts a run. Through the ORM
each of those statements costs 250–800 µs of CPU to compile (profiled with pyinstrument and
cProfile over `engine.drive` and the start-run POST), several times what the database spends
running it; `raw()` still introspects its columns on every call. Here the SQL for a model is
built once per process and values go through the fields' own conversions, `get_db_prep_save`
on the way in and the backend's and fields' converters on the way out, so what is stored and
read is exactly what `Model.save()` and a queryset would store and read (JSON, datetimes and
foreign keys alike, on PostgreSQL and SQLite). No signals are sent: nothing in Rapidfolio
listens to these models' save signals.
"""

from functools import cache, lru_cache

from django.db import DEFAULT_DB_ALIAS, connection, connections, models

# Field types whose get_db_prep_save returns a value of these exact types (or None) unchanged,
# and whose pre_save only reads the attribute: such values skip the field's method calls, which
# were a tenth of the engine's CPU. Anything else (datetimes, JSON, enums, subclasses) goes
# through the field.
_UNCHANGED = {
    models.CharField: (str,),
    models.TextField: (str,),
    models.IntegerField: (int,),
    models.BigIntegerField: (int,),
    models.PositiveIntegerField: (int,),
    models.PositiveSmallIntegerField: (int,),
    models.SmallIntegerField: (int,),
}
_KEYS = (models.AutoField, models.BigAutoField)


def _unchanged_types(field) -> tuple:
    if type(field) is models.ForeignKey and type(field.target_field) in _KEYS:
        return (int, type(None))
    found = _UNCHANGED.get(type(field))
    return (*found, type(None)) if found else ()


@cache
def _insert_sql(model, rows: int, returning: bool) -> tuple[str, tuple]:
    fields = tuple(
        (field, field.attname, _unchanged_types(field))
        for field in model._meta.concrete_fields
        if not field.primary_key
    )
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field, _, _ in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES " + ", ".join([row] * rows)
    if returning:
        sql += f" RETURNING {quote(model._meta.pk.column)}"
    return sql, fields


def insert(objects: list, *, returning_pk: bool = False) -> None:
    """INSERT unsaved instances of one model in one statement; sets their pks when asked."""
    if not objects:
        return
    model = type(objects[0])
    sql, fields = _insert_sql(model, len(objects), returning_pk)
    # The connection itself, not the thread-local proxy that every field would look up again.
    db = connections[DEFAULT_DB_ALIAS]
    params = []
    for obj in objects:
        for field, attname, unchanged in fields:
            value = getattr(obj, attname)
            if type(value) not in unchanged:
                value = field.get_db_prep_save(field.pre_save(obj, True), db)
            params.append(value)
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        pks = [row[0] for row in cursor.fetchall()] if returning_pk else None
    for position, obj in enumerate(objects):
        if pks is not None:
            obj.pk = pks[position]
        obj._state.adding = False
        obj._state.db = db.alias


@cache
def _update_sql(model, names: tuple[str, ...]) -> tuple[str, tuple]:
    meta = model._meta
    fields = tuple(meta.get_field(name) for name in names)
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"
    return sql, fields


def update(obj, names: list[str]) -> None:
    """Write the named fields of a saved instance, as `obj.save(update_fields=names)` would."""
    sql, fields = _update_sql(type(obj), tuple(names))
    db = connections[DEFAULT_DB_ALIAS]
    params = [field.get_db_prep_save(field.pre_save(obj, False), db) for field in fields]
    params.append(obj.pk)
    with db.cursor() as cursor:
        cursor.execute(sql, params)


def columns(model, alias: str) -> str:
    """The SELECT list of all of `model`'s columns in field order, for `build`."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(field.column)}" for field in model._meta.concrete_fields)


@lru_cache(maxsize=256)
def _converters(model, db) -> tuple[list[str], list[tuple]]:
    # What SQLCompiler.apply_converters does for a model's columns: the backend's converters
    # (datetimes read from SQLite) and the fields' own (JSON text parsed).
    names, converters = [], []
    for position, field in enumerate(model._meta.concrete_fields):
        names.append(field.attname)
        column = field.get_col(model._meta.db_table)
        found = db.ops.get_db_converters(column) + column.get_db_converters(db)
        if found:
            converters.append((position, found, column))
    return names, converters


def build(model, values):
    """An instance of `model` from a row whose first values are `columns(model, ...)`,
    converted as the ORM converts them; further values in the row are ignored."""
    db = connections[DEFAULT_DB_ALIAS]
    names, converters = _converters(model, db)
    values = list(values[: len(names)])
    for position, found, column in converters:
        value = values[position]
        for convert in found:
            value = convert(value, column, db)
        values[position] = value
    return model.from_db(db.alias, names, values)
