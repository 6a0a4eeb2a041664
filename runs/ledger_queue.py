"""The trigger that queues every run event for the ledger, in the transaction that inserts it.

The write path inserts events; the database itself queues them (runs_ledgerqueue), so no
event can be committed without being queued, and the sealer (runs.ledger) appends exactly the
committed ones in queue order. On PostgreSQL one statement-level trigger per INSERT (the
write path inserts a transaction's events in one statement); on SQLite a row trigger.
Installed after every migrate, with the append-only triggers (runs/apps.py).
"""

from runs.models import LedgerQueue, RunEvent

TRIGGER = "rapidfolio_runevent_to_ledger_queue"


def _statements(vendor: str) -> list[str]:
    events, queue = RunEvent._meta.db_table, LedgerQueue._meta.db_table
    if vendor == "postgresql":
        return [
            f"""
            CREATE OR REPLACE FUNCTION rapidfolio_queue_events() RETURNS trigger AS $$
            BEGIN
                INSERT INTO {queue} (event_id) SELECT id FROM new_events ORDER BY id;
                RETURN NULL;
            END
            $$ LANGUAGE plpgsql;
            """,
            f"DROP TRIGGER IF EXISTS {TRIGGER} ON {events};",
            f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON {events} "
            "REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT "
            "EXECUTE FUNCTION rapidfolio_queue_events();",
        ]
    if vendor == "sqlite":
        return [
            f"DROP TRIGGER IF EXISTS {TRIGGER};",
            f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON {events} FOR EACH ROW "
            f"BEGIN INSERT INTO {queue} (event_id) VALUES (NEW.id); END;",
        ]
    raise RuntimeError(f"the ledger queue trigger is not written for {vendor}")


def install(connection) -> None:
    with connection.cursor() as cursor:
        for statement in _statements(connection.vendor):
            cursor.execute(statement)
