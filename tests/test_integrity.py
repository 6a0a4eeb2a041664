"""Tamper evidence: any later edit of a run, step, decision or event is detected."""

import pytest
from django.core.management import call_command

from runs.integrity import verify_run
from runs.models import Run
from tests.tampering import tamper


def test_an_untouched_run_verifies_intact(finished_run):
    result = verify_run(finished_run)
    assert result.intact, result.problem
    assert result.events_checked == finished_run.events.count()


def test_edited_step_output_is_detected_and_named(finished_run):
    step = finished_run.steps.get(sequence=1)
    tamper("runs_step", "UPDATE runs_step SET output = %s WHERE id = %s", ["false", step.pk])
    result = verify_run(Run.objects.get(pk=finished_run.pk))
    assert not result.intact
    assert "step #1 (big) differs" in result.problem


def test_edited_inputs_are_detected(finished_run):
    tamper(
        "runs_run",
        "UPDATE runs_run SET inputs = %s WHERE id = %s",
        ['{"amount": 50, "currency": "usd"}', finished_run.pk],
    )
    result = verify_run(Run.objects.get(pk=finished_run.pk))
    assert not result.intact
    assert "inputs or header differ" in result.problem


def test_edited_output_is_detected(finished_run):
    tamper(
        "runs_run",
        "UPDATE runs_run SET output = %s WHERE id = %s",
        ['{"size": "small"}', finished_run.pk],
    )
    result = verify_run(Run.objects.get(pk=finished_run.pk))
    assert not result.intact
    assert "output differs" in result.problem


def test_edited_event_is_detected_at_that_event(finished_run):
    event = finished_run.events.get(sequence=2)
    tamper(
        "runs_runevent",
        "UPDATE runs_runevent SET actor = %s WHERE id = %s",
        ["user:mallory", event.pk],
    )
    result = verify_run(Run.objects.get(pk=finished_run.pk))
    assert not result.intact
    assert result.problem.startswith(f"event #2 ({event.type}) was altered")


def test_deleted_event_is_detected(finished_run):
    event = finished_run.events.get(sequence=2)
    # The attacker deletes the event's queue entry for the ledger too (its foreign key).
    tamper("runs_ledgerqueue", "DELETE FROM runs_ledgerqueue WHERE event_id = %s", [event.pk])
    tamper("runs_runevent", "DELETE FROM runs_runevent WHERE id = %s", [event.pk])
    result = verify_run(Run.objects.get(pk=finished_run.pk))
    assert not result.intact
    assert "event #2 is missing" in result.problem


def test_status_rewritten_behind_the_events_is_detected(finished_run):
    tamper(
        "runs_run",
        "UPDATE runs_run SET status = 'failed', failure_kind = 'permanent' WHERE id = %s",
        [finished_run.pk],
    )
    result = verify_run(Run.objects.get(pk=finished_run.pk))
    assert not result.intact
    assert "status is failed but its events end at completed" in result.problem


def test_verify_runs_command_reports_intact_runs_and_exits_zero(finished_run, capsys):
    call_command("verify_runs", finished_run.public_id)
    out = capsys.readouterr().out
    assert f"{finished_run.public_id}: intact" in out
    assert "1 run(s) checked, 0 broken." in out


def test_verify_runs_command_names_the_broken_run_and_exits_non_zero(finished_run, capsys):
    step = finished_run.steps.get(sequence=2)
    tamper(
        "runs_step", "UPDATE runs_step SET output = %s WHERE id = %s", ['{"size": "tiny"}', step.pk]
    )
    with pytest.raises(SystemExit) as exited:
        call_command("verify_runs")
    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert f"{finished_run.public_id}: BROKEN: step #2 (big_out) differs" in out


def test_verify_runs_command_refuses_unknown_ids(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No such run: run_nope"):
        call_command("verify_runs", "run_nope")
