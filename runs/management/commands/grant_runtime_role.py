"""Give the app's runtime role exactly the privileges it needs on PostgreSQL.

Run by the owner of the tables after every `migrate` (new tables need their grants):

    python manage.py grant_runtime_role rapidfolio_app

Every table gets SELECT, INSERT and UPDATE (the append-only triggers decide which UPDATEs pass);
DELETE only where rows may go (sessions, the ledger queue the sealer drains, ...), never on the
history tables of runs.append_only.RULES; sequences get USAGE and SELECT. Everything else
(TRUNCATE, REFERENCES, TRIGGER) is revoked, so running it again after RULES or the schema
changed converges to the same grants. The role is created by whoever administers the database
(README, "Database roles"); this command only grants and revokes.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from runs.append_only import HISTORY_TABLES

# Read, never written, at runtime: Django reads it to tell whether migrations are pending.
READ_ONLY_TABLES = frozenset({"django_migrations"})
RUN_TABLE = "runs_run"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_privileges(table: str) -> list[str]:
    if table in READ_ONLY_TABLES:
        return ["SELECT"]
    privileges = ["SELECT", "INSERT", "UPDATE"]
    if table not in HISTORY_TABLES:
        privileges.append("DELETE")
    return privileges


def grant_statements(role: str, schema: str, tables, sequences) -> list[tuple[str, bool]]:
    """(statement, whether to print it) for the runtime role's privileges, in order."""
    who = quote(role)
    statements = [(f"GRANT USAGE ON SCHEMA {quote(schema)} TO {who}", True)]
    for table in sorted(tables):
        privileges = ", ".join(table_privileges(table))
        statements.append((f"REVOKE ALL ON TABLE {quote(table)} FROM {who}", False))
        statements.append((f"GRANT {privileges} ON TABLE {quote(table)} TO {who}", True))
    for sequence in sorted(sequences):
        statements.append((f"REVOKE ALL ON SEQUENCE {quote(sequence)} FROM {who}", False))
        statements.append((f"GRANT USAGE, SELECT ON SEQUENCE {quote(sequence)} TO {who}", True))
    return statements


def _check_role(cursor, role: str) -> None:
    cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
    row = cursor.fetchone()
    if row is None:
        raise CommandError(f"Role {role!r} does not exist: create it first (README).")
    if row[0]:
        raise CommandError(
            f"Role {role!r} is a superuser: it bypasses privileges and can disable the "
            "append-only triggers. Use a plain LOGIN role."
        )
    cursor.execute(
        "SELECT pg_has_role(%s, tableowner, 'MEMBER') FROM pg_tables "
        "WHERE tablename = %s AND schemaname = current_schema()",
        [role, RUN_TABLE],
    )
    row = cursor.fetchone()
    if row is None:
        raise CommandError(f"Table {RUN_TABLE} does not exist: run `manage.py migrate` first.")
    if row[0]:
        raise CommandError(
            f"Role {role!r} owns the tables (or is a member of their owner), so it can disable "
            "the append-only triggers. Use a role that is neither."
        )


class Command(BaseCommand):
    help = "Grant the runtime role SELECT/INSERT/UPDATE, and DELETE on non-history tables only."

    def add_arguments(self, parser):
        parser.add_argument("role", help="the PostgreSQL role the app connects as")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args, role, database, **options):
        connection = connections[database]
        if connection.vendor != "postgresql":
            raise CommandError("Database roles are a PostgreSQL feature; nothing to grant.")
        with transaction.atomic(using=database), connection.cursor() as cursor:
            _check_role(cursor, role)
            cursor.execute("SELECT current_schema()")
            schema = cursor.fetchone()[0]
            tables = connection.introspection.table_names(cursor)
            sequences = [
                sequence["name"]
                for table in tables
                if table not in READ_ONLY_TABLES
                for sequence in connection.introspection.get_sequences(cursor, table)
            ]
            for statement, shown in grant_statements(role, schema, tables, sequences):
                cursor.execute(statement)
                if shown or options["verbosity"] > 1:
                    self.stdout.write(f"{statement};")
        self.stdout.write(
            self.style.SUCCESS(f"Granted {role} its runtime privileges on {len(tables)} tables.")
        )
