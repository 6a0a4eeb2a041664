"""Deploy checks (`manage.py check --deploy`): the app must not connect to PostgreSQL as a role
that could switch the append-only triggers off, i.e. a superuser or the tables' owner. It should
connect as the runtime role that `manage.py grant_runtime_role` sets up (README, "Database
roles"). And the ledger's signing key must be configured, not generated (README, "Evidence")."""

from django.core import checks
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from rapidfolio import keys

SUPERUSER_SQL = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
# Membership counts: a member of the owner role can SET ROLE to it and disable the triggers.
OWNER_SQL = (
    "SELECT pg_has_role(current_user, tableowner, 'MEMBER') FROM pg_tables "
    "WHERE tablename = 'runs_run' AND schemaname = current_schema()"
)
HINT = (
    "Connect the app (DATABASE_URL) as the runtime role that `manage.py grant_runtime_role` "
    "grants to, and keep the owner for `migrate`; see README, 'Database roles'."
)


def _fetch_flag(cursor, sql: str) -> bool:
    cursor.execute(sql)
    row = cursor.fetchone()
    return bool(row and row[0])


def role_warnings(cursor) -> list[checks.CheckMessage]:
    """What is wrong with the role `cursor` is connected as (any DB-API cursor on PostgreSQL)."""
    warnings = []
    if _fetch_flag(cursor, SUPERUSER_SQL):
        warnings.append(
            checks.Warning(
                "The app connects to PostgreSQL as a superuser, which can disable the "
                "append-only triggers and rewrite run history.",
                hint=HINT,
                id="rapidfolio.W001",
            )
        )
    if _fetch_flag(cursor, OWNER_SQL):
        warnings.append(
            checks.Warning(
                "The app connects to PostgreSQL as the owner of the run tables, which can "
                "disable the append-only triggers and rewrite run history.",
                hint=HINT,
                id="rapidfolio.W002",
            )
        )
    return warnings


def connection_role_warnings(connection) -> list[checks.CheckMessage]:
    if connection.vendor != "postgresql":
        return []  # SQLite has no roles: whoever can open the file can rewrite it
    try:
        with connection.cursor() as cursor:
            return role_warnings(cursor)
    except DatabaseError as error:
        return [
            checks.Warning(
                f"Could not check which role the app connects to PostgreSQL as: {error}",
                hint=HINT,
                id="rapidfolio.W003",
            )
        ]


@checks.register(checks.Tags.security, deploy=True)
def check_database_role(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    return connection_role_warnings(connections[DEFAULT_DB_ALIAS])


@checks.register(checks.Tags.security, deploy=True)
def check_ledger_signing_key(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Production signs checkpoints with a key it was given, never one generated into var/:
    a generated key dies with the machine, and with it the auditors' trust in old checkpoints."""
    if keys.configured():
        try:
            keys.public_key_bytes()
        except (OSError, keys.KeyConfigError) as error:
            return [
                checks.Error(
                    f"The ledger signing key cannot be read: {error}", id="rapidfolio.E004"
                )
            ]
        return []
    return [
        checks.Error(
            "No ledger signing key is configured: checkpoints would be signed with a key "
            "generated into var/.",
            hint="Set LEDGER_SIGNING_KEY (base64 of a 32-byte Ed25519 seed) or "
            "LEDGER_SIGNING_KEY_FILE, kept outside the database; see README, 'Evidence'.",
            id="rapidfolio.E005",
        )
    ]
