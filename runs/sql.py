"""Every hand-written SQL statement of the product, beside the write path (runs.writer).

The engine writes a step and an event for every node and updates the run in every transaction;
every API start authenticates, reads the procedure's version and inserts a run. Those rows'
INSERT, UPDATE and a flush's one statement, built once from the models' `_meta`, are in
runs.sql_rows and used from here; the reads the engine and the API make on every run are below.

tests/test_sql.py runs each statement against the ORM's own save and read of the same objects.
"""

from functools import cache
from typing import NamedTuple

from django.db import connection

from procedures.models import Connection, Procedure, ProcedureVersion
from runs.models import ApiKey, OutboxMessage, Run, RunEvent, WebhookEndpoint

# The write path's statements, one import away for runs.writer and the tests.
from runs.sql_rows import (  # noqa: F401
    build,
    columns,
    insert,
    insert_sql,
    quote_name,
    table_name,
    update,
    update_sql,
    write,
)


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
    events = table_name(RunEvent)
    last = f"(SELECT {{}} FROM {events} WHERE run_id = {run_column} ORDER BY sequence DESC LIMIT 1)"
    return f"{last.format('sequence')}, {last.format('hash')}"


def _for_update(sql: str) -> str:
    # FOR UPDATE locks only the run's row: never the version's or the procedure's, which every
    # run of the procedure shares (the subqueries read without locking). SQLite serialises
    # writers on the database file instead.
    return sql + " FOR UPDATE" if connection.features.has_select_for_update else sql


@cache
def _lock_status_sql() -> str:
    run_id = f"{table_name(Run)}.id"
    return _for_update(
        f"SELECT status, {_chain_head_columns(run_id)} FROM {table_name(Run)} WHERE id = %s"
    )


def lock_status(run_id: int) -> tuple[str, ChainHead] | None:
    """Lock the run's row; its status and its chain's head. None if there is no such run."""
    row = _one(_lock_status_sql(), [run_id])
    return None if row is None else (row[0], ChainHead(row[1], row[2]))


def _header_facts_columns(runs: str) -> str:
    """What authenticating the run's row takes (HeaderFacts): three scalar subqueries, each
    served by a unique index."""
    created = (
        f"(SELECT data FROM {table_name(RunEvent)} WHERE run_id = {runs}.id AND sequence = 1 "
        "AND type = 'run.created')"
    )
    # The procedure's public id only when the run's version is one of its versions: a row
    # pointed at another procedure's version then names no procedure, which no header names.
    procedure = (
        f"(SELECT p.public_id FROM {table_name(Procedure)} p JOIN {table_name(ProcedureVersion)} v "
        f"ON v.procedure_id = p.id WHERE v.id = {runs}.version_id AND p.id = {runs}.procedure_id)"
    )
    retry_of = f"(SELECT r.public_id FROM {runs} r WHERE r.id = {runs}.retry_of_id)"
    return f"{created}, {procedure}, {retry_of}"


@cache
def _lock_run_sql() -> str:
    runs = table_name(Run)
    version = f"(SELECT {{0}} FROM {table_name(ProcedureVersion)} WHERE id = {runs}.version_id)"
    # Whether the environment has any integration connection: mostly not (sandbox simulators),
    # and then they need no query of their own.
    has_connections = (
        f"EXISTS (SELECT 1 FROM {table_name(Connection)} WHERE environment = {runs}.environment)"
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
        f"SELECT {columns(ApiKey, 'k')} FROM {table_name(ApiKey)} k "
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
        f"FROM {table_name(ProcedureVersion)} v "
        f"JOIN {table_name(Procedure)} p ON p.id = v.procedure_id "
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
            f"SELECT 1 FROM {table_name(WebhookEndpoint)} "
            "WHERE enabled AND environment = %s LIMIT 1",
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
