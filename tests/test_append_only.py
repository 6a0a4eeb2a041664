"""The database itself refuses to rewrite history, whatever SQL a client sends."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from reviews.models import ReviewDecision, ReviewRequest
from runs.append_only import HISTORY_TABLES, purge_sql, trigger_names
from runs.models import Checkpoint, Run, RunEvent, Step
from runs.services import start_run
from tests.conftest import SIMPLE_DEFINITION, make_version, needs_postgres
from tests.factories import force_status


def _raw(sql: str, params=()):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def _refused(sql: str, params=()):
    with pytest.raises(IntegrityError, match="append-only"):
        _raw(sql, params)


@pytest.fixture
def run(simple_version):
    return start_run(
        version=simple_version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type="api",
    )


def _step(run, status="succeeded", sequence=1):
    now = timezone.now()
    return Step.objects.create(
        run=run,
        sequence=sequence,
        node_id="big",
        node_type="condition",
        status=status,
        input={},
        output=True,
        started_at=now,
        finished_at=None if status == "running" else now,
    )


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_update_of_a_terminal_run_is_refused(run, status):
    force_status(run, status)
    _refused("UPDATE runs_run SET inputs = %s WHERE id = %s", ['{"amount": 1}', run.pk])
    _refused("UPDATE runs_run SET status = 'running' WHERE id = %s", [run.pk])


@pytest.mark.parametrize("status", ["pending", "running", "awaiting_review"])
def test_update_of_an_unfinished_run_is_allowed(run, status):
    force_status(run, status)
    _raw("UPDATE runs_run SET lease_expires_at = NULL WHERE id = %s", [run.pk])


def _altered(run, column: str):
    """A value for `column` of `run` that differs from the one it started with."""
    if column == "inputs":
        return json.dumps({"amount": 999999, "currency": "usd"})
    if column == "environment":
        return "live"
    other = make_version(SIMPLE_DEFINITION, name="Classify payment")
    if column == "version_id":
        return other.pk  # a later version of the same procedure
    return make_version(SIMPLE_DEFINITION, name="Another procedure").procedure_id


@pytest.mark.parametrize("column", ["inputs", "environment", "version_id", "procedure_id"])
@pytest.mark.parametrize("status", ["pending", "running", "awaiting_review"])
def test_what_an_unfinished_run_executes_can_never_change(run, status, column):
    force_status(run, status)
    _refused(f"UPDATE runs_run SET {column} = %s WHERE id = %s", [_altered(run, column), run.pk])
    fresh = Run.objects.get(pk=run.pk)
    assert (fresh.inputs, fresh.environment, fresh.version_id, fresh.procedure_id) == (
        run.inputs,
        run.environment,
        run.version_id,
        run.procedure_id,
    )


def test_saving_a_run_with_its_own_inputs_is_allowed(run):
    # The rule compares values, not whether a column was written: a full save passes.
    _raw(
        "UPDATE runs_run SET inputs = inputs, environment = environment, "
        "version_id = version_id, procedure_id = procedure_id WHERE id = %s",
        [run.pk],
    )
    Run.objects.get(pk=run.pk).save()


def test_delete_of_a_run_is_refused_even_when_pending(run):
    _refused("DELETE FROM runs_run WHERE id = %s", [run.pk])
    assert Run.objects.filter(pk=run.pk).exists()


def test_update_of_a_finished_step_is_refused(run):
    step = _step(run, "succeeded")
    _refused("UPDATE runs_step SET output = %s WHERE id = %s", ["false", step.pk])


def test_update_of_a_running_step_is_allowed(run):
    step = _step(run, "running")
    _raw("UPDATE runs_step SET status = 'succeeded' WHERE id = %s", [step.pk])
    step.refresh_from_db()
    assert step.status == "succeeded"
    _refused("UPDATE runs_step SET status = 'failed' WHERE id = %s", [step.pk])


def test_delete_of_a_step_is_refused(run):
    step = _step(run, "running")
    _refused("DELETE FROM runs_step WHERE id = %s", [step.pk])


def test_update_and_delete_of_a_run_event_are_refused(run):
    event = RunEvent.objects.filter(run=run).first()
    _refused("UPDATE runs_runevent SET actor = 'someone else' WHERE id = %s", [event.pk])
    _refused("DELETE FROM runs_runevent WHERE id = %s", [event.pk])


def test_update_and_delete_of_a_review_decision_are_refused(run, reviewer):
    force_status(run, "awaiting_review")
    request = ReviewRequest.objects.create(
        run=run,
        node_id="review",
        step_sequence=1,
        shown_values={"amount": 5},
        created_at=timezone.now(),
    )
    decision = ReviewDecision.objects.create(
        request=request,
        run=run,
        reviewer=reviewer,
        decision="approved",
        shown_values={"amount": 5},
        decided_at=timezone.now(),
    )
    _refused("UPDATE reviews_reviewdecision SET decision = 'rejected' WHERE id = %s", [decision.pk])
    _refused("DELETE FROM reviews_reviewdecision WHERE id = %s", [decision.pk])
    _refused("UPDATE reviews_reviewrequest SET shown_values = '{}' WHERE id = %s", [request.pk])


def test_update_of_a_procedure_version_is_refused(simple_version):
    _refused(
        "UPDATE procedures_procedureversion SET definition = '{}' WHERE id = %s",
        [simple_version.pk],
    )
    _refused("DELETE FROM procedures_procedureversion WHERE id = %s", [simple_version.pk])


def _checkpoint():
    return Checkpoint.objects.create(
        tree_size=1, root_hash="ab" * 32, note="note", created_at=timezone.now()
    )


def test_update_and_delete_of_a_ledger_checkpoint_are_refused(db):
    checkpoint = _checkpoint()
    _refused("UPDATE runs_checkpoint SET root_hash = %s WHERE id = %s", ["cd" * 32, checkpoint.pk])
    _refused("DELETE FROM runs_checkpoint WHERE id = %s", [checkpoint.pk])


def _truncate_refused(table: str):
    # The run's rows are this transaction's own: check their deferred foreign keys now, or
    # PostgreSQL refuses the TRUNCATE for that ("pending trigger events") before our trigger.
    _raw("SET CONSTRAINTS ALL IMMEDIATE")
    _refused(f"TRUNCATE {table} CASCADE")


@needs_postgres
@pytest.mark.parametrize("table", HISTORY_TABLES)
def test_truncate_of_a_history_table_is_refused(run, table):
    _truncate_refused(table)
    assert Run.objects.filter(pk=run.pk).exists()


def _raw_all(statements):
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


@needs_postgres
def test_the_owner_may_truncate_with_the_purge_setting(db):
    # What the test flush does (tests/conftest.py); rolled back with the test's transaction.
    _checkpoint()
    _raw_all(purge_sql("postgresql", ["TRUNCATE runs_checkpoint"]))
    assert not Checkpoint.objects.exists()


@needs_postgres
def test_the_purge_setting_ends_with_the_flush_statements(run):
    _raw_all(purge_sql("postgresql", ["SELECT 1"]))
    _truncate_refused("runs_run")


def test_saving_a_procedure_version_again_is_refused_in_python(simple_version):
    simple_version.definition = {}
    with pytest.raises(ValidationError, match="immutable"):
        simple_version.save()


def test_triggers_survive_a_table_rebuild_by_migrate(db):
    """SQLite rebuilds tables to alter them; post_migrate puts the triggers back."""
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        installed = {row[0] for row in cursor.fetchall()}
    assert {name for _, name in trigger_names(connection.vendor)} <= installed
