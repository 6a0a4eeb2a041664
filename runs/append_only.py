"""Database triggers that make the run record append-only, on PostgreSQL and SQLite alike.

Refused, whatever client issues the SQL:
- any UPDATE of a run in a terminal status (completed, failed, cancelled);
- any UPDATE of a finished step (status other than running);
- any UPDATE of run events, review requests, review decisions and procedure versions;
- any DELETE of runs, steps, run events, review requests, review decisions, procedure versions.

The triggers are installed by a migration and re-installed after every `migrate`, because SQLite
rebuilds a table to alter it and a rebuilt table has lost its triggers.

The one escape hatch is for the test suite's flush between tests on SQLite (PostgreSQL flushes
with TRUNCATE, which fires no row triggers): `rapidfolio_purge_allowed()` is a function that only
our own test process registers as returning 1. A connection without it cannot delete at all.
"""

import threading

TERMINAL = "('completed', 'failed', 'cancelled')"

# (table, what is refused, optional condition on OLD, message)
RULES = [
    ("runs_run", "UPDATE", f"OLD.status IN {TERMINAL}", "a terminal run never changes"),
    ("runs_run", "DELETE", None, "runs are never deleted"),
    ("runs_step", "UPDATE", "OLD.status <> 'running'", "a finished step never changes"),
    ("runs_step", "DELETE", None, "steps are never deleted"),
    ("runs_runevent", "UPDATE", None, "run events are insert-only"),
    ("runs_runevent", "DELETE", None, "run events are insert-only"),
    ("reviews_reviewrequest", "UPDATE", None, "review requests never change"),
    ("reviews_reviewrequest", "DELETE", None, "review requests are never deleted"),
    ("reviews_reviewdecision", "UPDATE", None, "review decisions never change"),
    ("reviews_reviewdecision", "DELETE", None, "review decisions are never deleted"),
    ("procedures_procedureversion", "UPDATE", None, "procedure versions are immutable"),
    ("procedures_procedureversion", "DELETE", None, "procedure versions are never deleted"),
]


def _trigger_name(table: str, operation: str) -> str:
    return f"rapidfolio_{table}_no_{operation.lower()}"


def _postgres_statements() -> list[str]:
    statements = [
        """
        CREATE OR REPLACE FUNCTION rapidfolio_refuse() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION 'rapidfolio append-only: % on % refused: %',
                TG_OP, TG_TABLE_NAME, TG_ARGV[0]
                USING ERRCODE = 'restrict_violation';
        END
        $$ LANGUAGE plpgsql;
        """
    ]
    for table, operation, condition, message in RULES:
        name = _trigger_name(table, operation)
        when = f"WHEN ({condition})" if condition else ""
        statements.append(f"DROP TRIGGER IF EXISTS {name} ON {table};")
        statements.append(
            f"CREATE TRIGGER {name} BEFORE {operation} ON {table} FOR EACH ROW {when} "
            f"EXECUTE FUNCTION rapidfolio_refuse('{message}');"
        )
    return statements


def _sqlite_statements() -> list[str]:
    statements = []
    for table, operation, condition, message in RULES:
        name = _trigger_name(table, operation)
        conditions = [condition] if condition else []
        if operation == "DELETE":
            conditions.append("rapidfolio_purge_allowed() = 0")
        when = f"WHEN {' AND '.join(conditions)}" if conditions else ""
        statements.append(f"DROP TRIGGER IF EXISTS {name};")
        statements.append(
            f"CREATE TRIGGER {name} BEFORE {operation} ON {table} FOR EACH ROW {when} "
            f"BEGIN SELECT RAISE(ABORT, 'rapidfolio append-only: {operation} on {table} "
            f"refused: {message}'); END;"
        )
    return statements


def install_triggers(connection) -> None:
    if connection.vendor == "postgresql":
        statements = _postgres_statements()
    elif connection.vendor == "sqlite":
        statements = _sqlite_statements()
    else:
        raise RuntimeError(f"append-only triggers are not written for {connection.vendor}")
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def trigger_names() -> list[tuple[str, str]]:
    return [(table, _trigger_name(table, operation)) for table, operation, _, _ in RULES]


# --- SQLite purge flag (test flush only) ------------------------------------------------------
_purge = threading.local()


def purge_allowed() -> int:
    return 1 if getattr(_purge, "allowed", False) else 0


class allow_purge:
    """Lets this thread's SQLite connection DELETE protected rows. Used by the test flush only."""

    def __enter__(self):
        _purge.allowed = True

    def __exit__(self, *exc):
        _purge.allowed = False


def register_sqlite_functions(sender, connection, **kwargs) -> None:
    if connection.vendor == "sqlite":
        connection.connection.create_function("rapidfolio_purge_allowed", 0, purge_allowed)
