"""Every hand-written SQL statement of the product, beside the write path (runs.writer).

The engine writes a step and an event for every node and updates the run in every transaction;
every API start authenticates, reads the procedure's version and inserts a run. Through the ORM
each of those statements costs 250–800 µs of CPU to compile (profiled with pyinstrument and
cProfile over `engine.drive` and the start-run POST), several times what the database spends
running it; `raw()` still introspects its columns on every call. Here the SQL for a model is
built once per process from the model's `_meta`, and values go through the fields' own
conversions, `get_db_prep_save` on the way in and the backend's and fields' converters on the
way out, so what is stored and read is exactly what `Model.save()` and a queryset would store
and read (JSON, datetimes and foreign keys alike, on PostgreSQL and SQLite). No signals are
sent: nothing in Rapidfolio listens to these models' save signals.

tests/test_sql.py runs each statement against the ORM's own save and read of the same objects.
"""

from functools import cache, lru_cache
from typing import NamedTuple

from django.db import DEFAULT_DB_ALIAS, connection, connections, models

from procedures.models import Connection, Procedure, ProcedureVersion
from runs.models import ApiKey, OutboxMessage, Run, RunEvent, WebhookEndpoint

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


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model) -> str:
    return _quote(model._meta.db_table)


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
    columns = ", ".join(_quote(field.column) for field, _, _ in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = f"INSERT INTO {_table(model)} ({columns}) VALUES " + ", ".join([row] * rows)
    if returning:
        sql += f" RETURNING {_quote(model._meta.pk.column)}"
    return sql, fields


def insert(objects: list, *, returning_pk: bool = False) -> None:
    """INSERT unsaved instances of one model in one statement; sets their pks when asked."""
    if not objects:
        return
    model = type(objects[0])
    sql, fields = insert_sql(model, len(objects), returning_pk)
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
def update_sql(model, names: tuple[str, ...]) -> tuple[str, tuple]:
    meta = model._meta
    fields = tuple(meta.get_field(name) for name in names)
    assignments = ", ".join(f"{_quote(field.column)} = %s" for field in fields)
    sql = f"UPDATE {_table(model)} SET {assignments} WHERE {_quote(meta.pk.column)} = %s"
    return sql, fields


def update(obj, names) -> None:
    """Write the named fields of a saved instance, as `obj.save(update_fields=names)` would."""
    sql, fields = update_sql(type(obj), tuple(names))
    db = connections[DEFAULT_DB_ALIAS]
    params = [field.get_db_prep_save(field.pre_save(obj, False), db) for field in fields]
    params.append(obj.pk)
    with db.cursor() as cursor:
        cursor.execute(sql, params)


def columns(model, alias: str) -> str:
    """The SELECT list of all of `model`'s columns in field order, for `build`."""
    return ", ".join(f"{alias}.{_quote(field.column)}" for field in model._meta.concrete_fields)


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


def _one(sql: str, params: list):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


# --- the run's row lock and its event chain's head ------------------------------------------
class ChainHead(NamedTuple):
    """The run's last event: (None, None) for a run with no event yet."""

    sequence: int | None
    hash: str | None


NO_EVENTS = ChainHead(None, None)


def _chain_head_columns(run_column: str) -> str:
    """The last event's sequence and hash of the run in `run_column`: two scalar subqueries
    served by the (run, sequence) unique index."""
    events = _table(RunEvent)
    last = f"(SELECT {{}} FROM {events} WHERE run_id = {run_column} ORDER BY sequence DESC LIMIT 1)"
    return f"{last.format('sequence')}, {last.format('hash')}"


def _for_update(sql: str) -> str:
    # FOR UPDATE locks only the run's row: never the version's or the procedure's, which every
    # run of the procedure shares (the subqueries read without locking). SQLite serialises
    # writers on the database file instead.
    return sql + " FOR UPDATE" if connection.features.has_select_for_update else sql


@cache
def _lock_status_sql() -> str:
    run_id = f"{_table(Run)}.id"
    return _for_update(
        f"SELECT status, {_chain_head_columns(run_id)} FROM {_table(Run)} WHERE id = %s"
    )


def lock_status(run_id: int) -> tuple[str, ChainHead] | None:
    """Lock the run's row; its status and its chain's head. None if there is no such run."""
    row = _one(_lock_status_sql(), [run_id])
    return None if row is None else (row[0], ChainHead(row[1], row[2]))


def _header_facts_columns(runs: str) -> str:
    """What authenticating the run's row takes (HeaderFacts): three scalar subqueries, each
    served by a unique index."""
    created = (
        f"(SELECT data FROM {_table(RunEvent)} WHERE run_id = {runs}.id AND sequence = 1 "
        "AND type = 'run.created')"
    )
    # The procedure's public id only when the run's version is one of its versions: a row
    # pointed at another procedure's version then names no procedure, which no header names.
    procedure = (
        f"(SELECT p.public_id FROM {_table(Procedure)} p JOIN {_table(ProcedureVersion)} v "
        f"ON v.procedure_id = p.id WHERE v.id = {runs}.version_id AND p.id = {runs}.procedure_id)"
    )
    retry_of = f"(SELECT r.public_id FROM {runs} r WHERE r.id = {runs}.retry_of_id)"
    return f"{created}, {procedure}, {retry_of}"


@cache
def _lock_run_sql() -> str:
    runs = _table(Run)
    version = f"(SELECT {{0}} FROM {_table(ProcedureVersion)} WHERE id = {runs}.version_id)"
    # Whether the environment has any integration connection: mostly not (sandbox simulators),
    # and then they need no query of their own.
    has_connections = (
        f"EXISTS (SELECT 1 FROM {_table(Connection)} WHERE environment = {runs}.environment)"
    )
    return _for_update(
        f"SELECT {columns(Run, runs)}, {version.format('number')}, "
        f"{version.format('definition')}, {has_connections}, {_chain_head_columns(runs + '.id')}, "
        f"{_header_facts_columns(runs)} FROM {runs} WHERE id = %s"
    )


class HeaderFacts(NamedTuple):
    """What the engine checks the run's row against before it acts on it (runs.engine.
    authenticity), read with the row: the data of its run.created event (None without one)
    and the public ids that its header names, as the row points at them now."""

    created: dict | None
    procedure: str | None  # None when the run's version is not one of its procedure's
    retry_of: str | None


class LockedRun(NamedTuple):
    run: Run
    head: ChainHead
    has_connections: bool
    header_facts: HeaderFacts


def lock_run(run_id: int) -> LockedRun | None:
    """Lock the run's row and read it whole, with its version (number and definition: the
    rest is never needed to execute it), whether its environment has connections, its
    chain's head and its HeaderFacts: one query. None if there is no such run."""
    row = _one(_lock_run_sql(), [run_id])
    if row is None:
        return None
    run = build(Run, row)
    number, definition, has_connections, last_sequence, last_hash = row[-8:-3]
    created, procedure, retry_of = row[-3:]
    field = ProcedureVersion._meta.get_field("definition")
    run.version = ProcedureVersion.from_db(
        connection.alias,
        ["id", "procedure_id", "number", "definition"],
        [
            run.version_id,
            run.procedure_id,
            number,
            field.from_db_value(definition, None, connection),
        ],
    )
    data = RunEvent._meta.get_field("data").from_db_value(created, None, connection)
    return LockedRun(
        run,
        ChainHead(last_sequence, last_hash),
        bool(has_connections),
        HeaderFacts(data, procedure, retry_of),
    )


# --- what every API request and start reads ---------------------------------------------------
def active_api_key(key_hash: str) -> ApiKey | None:
    """The unrevoked key with this hash (key_hash is unique)."""
    row = _one(
        f"SELECT {columns(ApiKey, 'k')} FROM {_table(ApiKey)} k "
        "WHERE k.key_hash = %s AND k.revoked_at IS NULL",
        [key_hash],
    )
    return build(ApiKey, row) if row is not None else None


def current_version(procedure_public_id: str) -> ProcedureVersion | None:
    """The newest version of the procedure with this public id, with the procedure's id,
    public id and name loaded (the rest on access): one query, for starting runs. None when
    there is no such procedure or it has no version."""
    row = _one(
        f"SELECT {columns(ProcedureVersion, 'v')}, p.public_id, p.name "
        f"FROM {_table(ProcedureVersion)} v JOIN {_table(Procedure)} p ON p.id = v.procedure_id "
        "WHERE p.public_id = %s ORDER BY v.number DESC LIMIT 1",
        [procedure_public_id],
    )
    if row is None:
        return None
    version = build(ProcedureVersion, row)
    version.procedure = Procedure.from_db(
        version._state.db, ["id", "public_id", "name"], [version.procedure_id, *row[-2:]]
    )
    return version


def any_enabled_webhook_endpoint(environment: str) -> bool:
    # Once per finished run, mostly where none is configured: the ORM's compilation would
    # cost more than the query.
    return (
        _one(
            f"SELECT 1 FROM {_table(WebhookEndpoint)} WHERE enabled AND environment = %s LIMIT 1",
            [environment],
        )
        is not None
    )


def insert_outbox_message(message: OutboxMessage) -> None:
    """Every start writes its run's message to the outbox (runs.dispatch), in its transaction:
    this module's INSERT, as the run's own. Not the record: no hash, no ledger fact."""
    insert([message], returning_pk=True)


# --- who drives a run: a session advisory lock (runs.locks) ---------------------------------
def try_run_lock(run_id: int) -> bool:
    return bool(_one("SELECT pg_try_advisory_lock(%s)", [run_id])[0])


def release_run_lock(run_id: int) -> None:
    _one("SELECT pg_advisory_unlock(%s)", [run_id])


# --- the ledger -------------------------------------------------------------------------------
LEDGER_LOCK_KEY = 0x5246_4C47  # "RFLG": one sealer at a time, across processes


def lock_ledger() -> None:
    """Serialise sealers for this transaction (PostgreSQL; SQLite serialises writers)."""
    if connection.vendor == "postgresql":
        _one("SELECT pg_advisory_xact_lock(%s)", [LEDGER_LOCK_KEY])
