"""The run's listing (procedures.run_listing): the columns the Runs list shows and searches.

On PostgreSQL the search text gets a trigram index (pg_trgm, a trusted extension the database
owner may create), which serves `search_text LIKE '%…%'` for runs.selectors.search_runs; the run
id prefix is served by the public_id unique index. SQLite scans (the embedded demo).

Runs started before this migration get their listing computed here, from their version's
definition and their inputs, as a new run gets it when it starts, when there are at most
BACKFILL_MAX_RUNS of them (seconds of work). A larger table is left as it is: rewriting a
million rows in the migration's one transaction would hold the table and double its size, so
those older runs show no references or amount and are found by their id only (runs.integrity
accepts an empty listing for a run created before this migration, and nothing else). The
append-only triggers refuse any UPDATE of a finished run and of a run's fixed columns, so the
backfill drops the runs table's two UPDATE triggers for its own transaction and installs them
again (with the new columns among the fixed ones) before it commits.
"""

from django.db import migrations, models

BATCH = 2000
BACKFILL_MAX_RUNS = 50_000
TRIGRAM_INDEX = "run_search_text_trgm_idx"


def backfill_listings(apps, schema_editor):
    from procedures.run_listing import listing_of
    from runs.append_only import install_triggers

    Run = apps.get_model("runs", "Run")
    ProcedureVersion = apps.get_model("procedures", "ProcedureVersion")
    connection = schema_editor.connection
    if not Run.objects.exists() or Run.objects.count() > BACKFILL_MAX_RUNS:
        return
    _drop_run_update_triggers(connection)
    definitions = dict(ProcedureVersion.objects.values_list("pk", "definition"))
    last_pk = 0
    while True:
        runs = list(
            Run.objects.filter(pk__gt=last_pk)
            .order_by("pk")
            .only("pk", "version_id", "inputs")[:BATCH]
        )
        if not runs:
            break
        for run in runs:
            listing = listing_of(definitions.get(run.version_id), run.inputs)
            run.reference_values = listing.references
            run.search_text = listing.search_text
            run.amount_minor = listing.amount_minor
            run.amount_currency = listing.amount_currency
        Run.objects.bulk_update(
            runs, ["reference_values", "search_text", "amount_minor", "amount_currency"]
        )
        last_pk = runs[-1].pk
    install_triggers(connection)


def _drop_run_update_triggers(connection) -> None:
    from runs.append_only import trigger_names

    with connection.cursor() as cursor:
        for table, trigger in trigger_names(connection.vendor):
            if table == "runs_run" and "_no_update" in trigger:
                on_table = " ON runs_run" if connection.vendor == "postgresql" else ""
                cursor.execute(f"DROP TRIGGER IF EXISTS {trigger}{on_table}")


def unfix_listing_columns(apps, schema_editor):
    # Backwards: PostgreSQL will not drop a column that a trigger names; `migrate` installs
    # the triggers again, for the columns that are left, once it is done.
    _drop_run_update_triggers(schema_editor.connection)


def create_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {TRIGRAM_INDEX} ON runs_run "
        "USING gin (search_text gin_trgm_ops)"
    )


def drop_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {TRIGRAM_INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0007_scheduler_heartbeat"),
        ("procedures", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="reference_values",
            field=models.JSONField(blank=True, default=dict, db_default={}),
        ),
        migrations.AddField(
            model_name="run",
            name="search_text",
            field=models.TextField(blank=True, default="", db_default=""),
        ),
        migrations.AddField(
            model_name="run",
            name="amount_minor",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="run",
            name="amount_currency",
            field=models.CharField(blank=True, default="", db_default="", max_length=3),
        ),
        migrations.RunPython(backfill_listings, unfix_listing_columns),
        migrations.RunPython(create_trigram_index, drop_trigram_index),
    ]
