from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


def _reinstall_triggers(sender, using="default", **kwargs):
    from django.db import connections

    from runs import ledger_queue
    from runs.append_only import RULES, install_triggers

    connection = connections[using]
    existing = set(connection.introspection.table_names())
    # Skip while the protected tables are not all there (a partial or backwards migrate).
    if {table for table, *_ in RULES} <= existing:
        install_triggers(connection)
    if {"runs_runevent", "runs_ledgerqueue"} <= existing:
        ledger_queue.install(connection)


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self):
        # Imported here, not at the top: Django loads apps.py before the models exist.
        import runs.checks  # noqa: F401  (registers the deploy checks)
        from runs import tasks  # noqa: F401  (registers the actors with the broker)
        from runs.append_only import register_sqlite_functions
        from runs.engine import registry
        from runs.engine.nodes import BUILT_IN_NODES

        connection_created.connect(register_sqlite_functions, dispatch_uid="rapidfolio_sqlite_fns")
        post_migrate.connect(_reinstall_triggers, sender=self, dispatch_uid="rapidfolio_triggers")
        for handler in BUILT_IN_NODES:
            registry.register(handler)
