"""What an attacker with the database does: edit rows with the append-only triggers out of the
way (a superuser can disable them; on SQLite a connection can drop them). For the rest of the
test's transaction only."""

from django.db import connection


def without_triggers(table: str) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Deferred foreign-key checks count as pending trigger events; settle them first.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [table]
            )
            for (name,) in cursor.fetchall():
                cursor.execute(f"DROP TRIGGER {name}")


def tamper(table: str, sql: str, params=()) -> None:
    without_triggers(table)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
