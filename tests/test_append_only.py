"""The database itself refuses to rewrite history, whatever SQL a client sends."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from reviews.models import ReviewDecision, ReviewRequest
from runs.models import Run, RunEvent, Step
from runs.services import start_run
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


def test_saving_a_procedure_version_again_is_refused_in_python(simple_version):
    from django.core.exceptions import ValidationError

    simple_version.definition = {}
    with pytest.raises(ValidationError, match="immutable"):
        simple_version.save()


def test_triggers_survive_a_table_rebuild_by_migrate(db):
    """SQLite rebuilds tables to alter them; post_migrate puts the triggers back."""
    from django.core.management import call_command

    from runs.append_only import trigger_names

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        installed = {row[0] for row in cursor.fetchall()}
    assert {name for _, name in trigger_names()} <= installed
