"""Rows of any model, written and read as the ORM would, with SQL built once from `_meta`:
the INSERT and UPDATE of the write path (runs.writer) and the one statement of a writer's flush,
and the SELECT list and instance building of runs.sql's reads.

Through the ORM each statement costs 250–800 µs of CPU to compile (profiled with pyinstrument
and cProfile over `engine.drive` and the start-run POST), several times what the database
spends running it; `raw()` still introspects its columns on every call. Here the SQL for a model
is built once per process from the model's `_meta`, and values go through the fields' own
conversions, `get_db_prep_save` on the way in and the backend's and fields' converters on the
way out, so what is stored and read is exactly what `Model.save()` and a queryset would store
and read (JSON, datetimes and foreign keys alike, on PostgreSQL and SQLite). No signals are
sent: nothing in Rapidfolio listens to these models' save signals.

tests/test_sql.py runs each statement against the ORM's own save and read of the same objects.
"""

from functools import cache, lru_cache

from django.db import DEFAULT_DB_ALIAS, connection, connections, models

from runs.models import Run, Step

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


def quote_name(name: str) -> str:
    return connection.ops.quote_name(name)


def table_name(model) -> str:
    return quote_name(model._meta.db_table)


def _unchanged_types(field) -> tuple:
    if type(field) is models.ForeignKey and type(field.target_field) in _KEYS:
        return (int, type(None))
    found = _UNCHANGED.get(type(field))
    return (*found, type(None)) if found else ()


# --- rows of any model ------------------------------------------------------------------------
@cache
def insert_sql(model, rows: int, returning: bool) -> tuple[str, tuple]:
    """INSERT of every concrete column but the pk, for `rows` rows; the fields in order."""
    fields = tuple(
        (field, field.attname, _unchanged_types(field))
        for field in model._meta.concrete_fields
        if not field.primary_key
    )
    columns = ", ".join(quote_name(field.column) for field, _, _ in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = f"INSERT INTO {table_name(model)} ({columns}) VALUES " + ", ".join([row] * rows)
    if returning:
        sql += f" RETURNING {quote_name(model._meta.pk.column)}"
    return sql, fields


def _insert_params(objects: list, fields: tuple, db, params: list) -> None:
    for obj in objects:
        for field, attname, unchanged in fields:
            value = getattr(obj, attname)
            if type(value) not in unchanged:
                value = field.get_db_prep_save(field.pre_save(obj, True), db)
            params.append(value)


def _saved(objects: list, pks: list | None, db) -> None:
    for position, obj in enumerate(objects):
        if pks is not None:
            obj.pk = pks[position]
        obj._state.adding = False
        obj._state.db = db.alias


def insert(objects: list, *, returning_pk: bool = False) -> None:
    """INSERT unsaved instances of one model in one statement; sets their pks when asked."""
    if not objects:
        return
    model = type(objects[0])
    sql, fields = insert_sql(model, len(objects), returning_pk)
    # The connection itself, not the thread-local proxy that every field would look up again.
    db = connections[DEFAULT_DB_ALIAS]
    params = []
    _insert_params(objects, fields, db, params)
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        pks = [row[0] for row in cursor.fetchall()] if returning_pk else None
    _saved(objects, pks, db)


# --- one writer's flush: one statement on PostgreSQL --------------------------------------------
def write(*, steps: list, run, run_fields: tuple[str, ...], events: list, rows: list) -> None:
    """What a RunWriter's transaction recorded: its steps, the run's changed columns, its events
    and other rows of the run's (its outbox message), with their pks set.

    On PostgreSQL all of it is one statement, data-modifying CTEs joined by their RETURNING
    rows: an engine transaction costs its locking read and this, instead of one statement per
    table (a round trip, a parse-bind-execute and a Django cursor each). A failed step that
    this batch inserts is pointed at from the run's row through its CTE. Elsewhere (SQLite
    has no data-modifying CTEs) one statement per table, in the same order.
    """
    groups = [group for group in (steps, events, *rows) if group]
    if connection.vendor != "postgresql" or len(groups) + bool(run_fields) < 2:
        insert(steps, returning_pk=True)
        if run_fields:
            if "failed_step" in run_fields and run.failed_step is not None:
                run.failed_step_id = run.failed_step.pk  # inserted just above
            update(run, run_fields)
        for group in groups[1 if steps else 0 :]:
            insert(group, returning_pk=True)
        return
    db = connections[DEFAULT_DB_ALIAS]
    failed_step_is_new = "failed_step" in run_fields and run.failed_step in steps
    shape = (
        len(steps),
        run_fields,
        failed_step_is_new,
        tuple((type(group[0]), len(group)) for group in groups[1 if steps else 0 :]),
    )
    statement, inserted = _write_sql(shape)
    params = []
    for group, (model, count) in zip(groups, inserted, strict=True):
        _insert_params(group, insert_sql(model, count, True)[1], db, params)
    if run_fields:
        _update_params(run, run_fields, failed_step_is_new, db, params)
    with db.cursor() as cursor:
        cursor.execute(statement, params)
        returned = cursor.fetchall()
    pks = [[] for _ in groups]
    for position, pk in returned:
        pks[position].append(pk)
    for group, group_pks in zip(groups, pks, strict=True):
        _saved(group, group_pks, db)
    if failed_step_is_new:
        run.failed_step_id = run.failed_step.pk


def _update_params(run, names, failed_step_is_new: bool, db, params: list) -> None:
    for field in update_sql(type(run), names)[1]:
        if failed_step_is_new and field.name == "failed_step":
            params.append(run.failed_step.sequence)  # found by its sequence in the steps CTE
        else:
            params.append(field.get_db_prep_save(field.pre_save(run, False), db))
    params.append(run.pk)


@lru_cache(maxsize=1024)
def _write_sql(shape) -> tuple[str, list]:
    """The statement for one flush's shape: (steps, run columns, whether the failed step is
    among the steps, the other groups' models and sizes). Each inserted row comes back with its
    group's position; a group's rows in its VALUES order, as Django's bulk_create relies on."""
    step_count, run_fields, failed_step_is_new, others = shape
    inserted = ([(Step, step_count)] if step_count else []) + list(others)
    ctes, selects = [], []
    for position, (model, count) in enumerate(inserted):
        statement = insert_sql(model, count, True)[0]
        if model is Step:
            statement += ", " + quote_name(Step._meta.get_field("sequence").column)  # for the run's
        ctes.append(f"i{position} AS ({statement})")
        selects.append(
            f"SELECT {position} AS g, {quote_name(model._meta.pk.column)} FROM i{position}"
        )
    if run_fields:
        update, fields = update_sql(Run, run_fields)
        if failed_step_is_new:
            column = quote_name(Run._meta.get_field("failed_step").column)
            update = update.replace(
                f"{column} = %s", f"{column} = (SELECT id FROM i0 WHERE sequence = %s)"
            )
        ctes.append(f"u AS ({update} RETURNING 1)")
    return f"WITH {', '.join(ctes)} " + " UNION ALL ".join(selects), inserted


@cache
def update_sql(model, names: tuple[str, ...]) -> tuple[str, tuple]:
    meta = model._meta
    fields = tuple(meta.get_field(name) for name in names)
    assignments = ", ".join(f"{quote_name(field.column)} = %s" for field in fields)
    sql = f"UPDATE {table_name(model)} SET {assignments} WHERE {quote_name(meta.pk.column)} = %s"
    return sql, fields


def update(obj, names) -> None:
    """Write the named fields of a saved instance, as `obj.save(update_fields=names)` would."""
    sql, fields = update_sql(type(obj), tuple(names))
    db = connections[DEFAULT_DB_ALIAS]
    params = [field.get_db_prep_save(field.pre_save(obj, False), db) for field in fields]
    params.append(obj.pk)
    with db.cursor() as cursor:
        cursor.execute(sql, params)


@cache
def columns(model, alias: str) -> str:
    """The SELECT list of all of `model`'s columns in field order, for `build`."""
    return ", ".join(f"{alias}.{quote_name(field.column)}" for field in model._meta.concrete_fields)


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
