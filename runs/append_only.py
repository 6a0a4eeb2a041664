"""Database triggers that make the run record append-only, on PostgreSQL and SQLite alike.

Refused, whatever client issues the SQL:
- any UPDATE of a run in a terminal status (completed, failed, cancelled);
- any UPDATE that changes a run's inputs, procedure, version or environment, in any status: the
  engine executes what the row says, so what it says must be what was started; nor its listing
  (the references, search text and amount the Runs list shows, derived from the inputs);
- any UPDATE of a finished step (status other than running);
- any UPDATE of run events, review requests, review decisions, procedure versions and the
  ledger's leaves, nodes and checkpoints;
- any DELETE of those history tables' rows, and on PostgreSQL any TRUNCATE of them (TRUNCATE
  fires no row triggers, so each history table also has a statement-level TRUNCATE trigger).

The triggers are installed by a migration and re-installed after every `migrate`, because SQLite
rebuilds a table to alter it and a rebuilt table has lost its triggers. A rule whose table does
not exist yet (an earlier migration) is installed by the `migrate` that creates it.

The one escape hatch is for the test suite's flush between tests:
- SQLite flushes with DELETE: `rapidfolio_purge_allowed()` is a function that only our own test
  process registers as returning 1. A connection without it cannot delete at all.
- PostgreSQL flushes with TRUNCATE: the TRUNCATE trigger lets it through only when the
  transaction has `SET LOCAL rapidfolio.allow_purge = 'on'` (see `purge_sql`) AND the current
  user is a superuser or a member of the table's owner. Such a user can drop or disable the
  triggers anyway, so the hatch gives nobody a power they lacked; the runtime role (see
  `manage.py grant_runtime_role`) is neither, and has no TRUNCATE privilege besides.
"""

import threading
from dataclasses import dataclass

TERMINAL = "('completed', 'failed', 'cancelled')"
PURGE_SETTING = "rapidfolio.allow_purge"
# A run's listing (procedures.run_listing: what the Runs list shows and searches), derived from
# its inputs when it starts and fixed with them: the amount a list shows is the one started.
LISTING_COLUMNS = ("reference_values", "search_text", "amount_minor", "amount_currency")


@dataclass(frozen=True)
class Changed:
    """An UPDATE condition: any of `columns` would change. NULL-safe on both databases."""

    columns: tuple[str, ...]

    def sql(self, vendor: str) -> str:
        differs = "IS DISTINCT FROM" if vendor == "postgresql" else "IS NOT"
        return " OR ".join(f"NEW.{column} {differs} OLD.{column}" for column in self.columns)


def changed(*columns: str) -> Changed:
    return Changed(columns)


# (table, what is refused, condition (None: always; a string is SQL on OLD and NEW that reads
# the same on both databases; `changed(...)`: a column would change), message)
RULES = [
    ("runs_run", "UPDATE", f"OLD.status IN {TERMINAL}", "a terminal run never changes"),
    (
        "runs_run",
        "UPDATE",
        changed("inputs", "procedure_id", "version_id", "environment", *LISTING_COLUMNS),
        "a run's inputs, procedure, version and environment are fixed when it starts",
    ),
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
    ("runs_ledgerleaf", "UPDATE", None, "ledger leaves are insert-only"),
    ("runs_ledgerleaf", "DELETE", None, "ledger leaves are insert-only"),
    ("runs_ledgernode", "UPDATE", None, "ledger nodes are insert-only"),
    ("runs_ledgernode", "DELETE", None, "ledger nodes are insert-only"),
    ("runs_checkpoint", "UPDATE", None, "checkpoints are insert-only"),
    ("runs_checkpoint", "DELETE", None, "checkpoints are insert-only"),
]

# Tables whose rows are never deleted: no TRUNCATE (PostgreSQL trigger) and no DELETE privilege
# for the runtime role (manage.py grant_runtime_role).
HISTORY_TABLES = tuple(
    dict.fromkeys(table for table, operation, *_ in RULES if operation == "DELETE")
)


def _trigger_name(table: str, operation: str, condition=None) -> str:
    # The fixed-columns rule is a second UPDATE trigger on its table, so it needs its own name;
    # the others keep the names earlier releases installed, so re-installing replaces them.
    suffix = "_of_fixed_columns" if isinstance(condition, Changed) else ""
    return f"rapidfolio_{table}_no_{operation.lower()}{suffix}"


def _truncate_trigger_name(table: str) -> str:
    return f"rapidfolio_{table}_no_truncate"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _condition_sql(condition, vendor: str, columns: set[str]) -> str | None:
    if not isinstance(condition, Changed):
        return condition
    # Only the columns the table has so far: an earlier migration installs the rule before a
    # later one adds a fixed column (the listing's, 0008), and `migrate` re-installs it after.
    return Changed(tuple(c for c in condition.columns if c in columns)).sql(vendor)


_POSTGRES_FUNCTIONS = [
    """
    CREATE OR REPLACE FUNCTION rapidfolio_refuse() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'rapidfolio append-only: % on % refused: %',
            TG_OP, TG_TABLE_NAME, TG_ARGV[0]
            USING ERRCODE = 'restrict_violation';
    END
    $$ LANGUAGE plpgsql;
    """,
    # search_path is pinned so that no one can shadow pg_has_role or pg_class for this function.
    f"""
    CREATE OR REPLACE FUNCTION rapidfolio_refuse_truncate() RETURNS trigger AS $$
    BEGIN
        IF current_setting('{PURGE_SETTING}', true) = 'on' AND pg_has_role(
            current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER'
        ) THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'rapidfolio append-only: TRUNCATE on % refused: history is never emptied',
            TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END
    $$ LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp;
    """,
]


def _postgres_statements(tables: dict[str, set[str]]) -> list[str]:
    statements = list(_POSTGRES_FUNCTIONS)
    for table, operation, condition, message in RULES:
        if table not in tables:
            continue
        name = _trigger_name(table, operation, condition)
        when = (
            f"WHEN ({_condition_sql(condition, 'postgresql', tables[table])})" if condition else ""
        )
        statements.append(f"DROP TRIGGER IF EXISTS {name} ON {table};")
        statements.append(
            f"CREATE TRIGGER {name} BEFORE {operation} ON {table} FOR EACH ROW {when} "
            f"EXECUTE FUNCTION rapidfolio_refuse({_literal(message)});"
        )
    for table in HISTORY_TABLES:
        if table not in tables:
            continue
        name = _truncate_trigger_name(table)
        statements.append(f"DROP TRIGGER IF EXISTS {name} ON {table};")
        statements.append(
            f"CREATE TRIGGER {name} BEFORE TRUNCATE ON {table} FOR EACH STATEMENT "
            "EXECUTE FUNCTION rapidfolio_refuse_truncate();"
        )
    return statements


def _sqlite_statements(tables: dict[str, set[str]]) -> list[str]:
    statements = []
    for table, operation, condition, message in RULES:
        if table not in tables:
            continue
        name = _trigger_name(table, operation, condition)
        conditions = (
            [f"({_condition_sql(condition, 'sqlite', tables[table])})"] if condition else []
        )
        if operation == "DELETE":
            conditions.append("rapidfolio_purge_allowed() = 0")
        when = f"WHEN {' AND '.join(conditions)}" if conditions else ""
        statements.append(f"DROP TRIGGER IF EXISTS {name};")
        refusal = _literal(f"rapidfolio append-only: {operation} on {table} refused: {message}")
        statements.append(
            f"CREATE TRIGGER {name} BEFORE {operation} ON {table} FOR EACH ROW {when} "
            f"BEGIN SELECT RAISE(ABORT, {refusal}); END;"
        )
    return statements


def install_triggers(connection) -> None:
    if connection.vendor == "postgresql":
        write = _postgres_statements
    elif connection.vendor == "sqlite":
        write = _sqlite_statements
    else:
        raise RuntimeError(f"append-only triggers are not written for {connection.vendor}")
    with connection.cursor() as cursor:
        protected = {table for table, *_ in RULES}
        tables = {
            table: {
                column.name
                for column in connection.introspection.get_table_description(cursor, table)
            }
            for table in connection.introspection.table_names(cursor)
            if table in protected
        }
        for statement in write(tables):
            cursor.execute(statement)


def trigger_names(vendor: str = "sqlite") -> list[tuple[str, str]]:
    """(table, trigger) for every trigger `install_triggers` installs on `vendor`."""
    names = [
        (table, _trigger_name(table, operation, condition))
        for table, operation, condition, _ in RULES
    ]
    if vendor == "postgresql":
        names += [(table, _truncate_trigger_name(table)) for table in HISTORY_TABLES]
    return names


# --- the test flush's escape hatch -----------------------------------------------------------
_purge = threading.local()


def purge_allowed() -> int:
    return 1 if getattr(_purge, "allowed", False) else 0


class allow_purge:
    """Lets this thread's SQLite connection DELETE protected rows. Used by the test flush only."""

    def __enter__(self):
        _purge.allowed = True

    def __exit__(self, *exc):
        _purge.allowed = False


def purge_sql(vendor: str, statements: list[str]) -> list[str]:
    """A flush's `statements`, with what lets PostgreSQL's TRUNCATE triggers pass them for a
    table owner or superuser (and nobody else), in the flush's own transaction only."""
    if vendor != "postgresql":
        return list(statements)
    return [
        f"SET LOCAL {PURGE_SETTING} = 'on'",
        *statements,
        f"SET LOCAL {PURGE_SETTING} = 'off'",
    ]


def register_sqlite_functions(sender, connection, **kwargs) -> None:
    if connection.vendor == "sqlite":
        connection.connection.create_function("rapidfolio_purge_allowed", 0, purge_allowed)
