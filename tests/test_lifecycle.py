"""The run state machine: every legal transition works, every illegal one is refused."""

import itertools

import pytest

from runs import lifecycle, writer
from runs.errors import IllegalTransition
from runs.models import FailureKind, RunEvent, RunStatus
from runs.services import start_run
from tests.factories import force_status

LEGAL = {
    ("pending", "running"),
    ("pending", "cancelled"),
    ("running", "completed"),
    ("running", "awaiting_review"),
    ("running", "failed"),
    ("running", "cancelled"),
    ("awaiting_review", "running"),
    ("awaiting_review", "failed"),
    ("awaiting_review", "cancelled"),
}
ALL_PAIRS = set(itertools.product(RunStatus.values, RunStatus.values))


def _kwargs(source, target):
    if target == "failed":
        kind = FailureKind.REJECTED if source == "awaiting_review" else FailureKind.TRANSIENT
        return {"failure_kind": kind, "reason": "because"}
    if target == "completed":
        return {"output": {"ok": True}}
    return {}


def test_the_transition_table_is_the_designed_one():
    table = {
        (source, target)
        for source, targets in lifecycle.ALLOWED_TRANSITIONS.items()
        for target in targets
    }
    assert table == LEGAL


@pytest.mark.parametrize("source,target", sorted(LEGAL))
def test_legal_transition_changes_status_and_appends_one_event(simple_version, source, target):
    run = start_run(
        version=simple_version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type="api",
    )
    force_status(run, source)
    events_before = RunEvent.objects.filter(run=run).count()

    writer.transition(run, target, actor="user:test", **_kwargs(source, target))

    run.refresh_from_db()
    assert run.status == target
    events = list(RunEvent.objects.filter(run=run).order_by("sequence"))
    assert len(events) == events_before + 1
    assert events[-1].type == "run.status_changed"
    assert events[-1].data["from"] == source and events[-1].data["to"] == target
    assert events[-1].actor == "user:test"


@pytest.mark.parametrize("source,target", sorted(ALL_PAIRS - LEGAL))
def test_illegal_transition_is_refused_with_a_clear_error(simple_version, source, target):
    run = start_run(
        version=simple_version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type="api",
    )
    force_status(run, source)
    events_before = RunEvent.objects.filter(run=run).count()

    with pytest.raises(IllegalTransition) as refused:
        writer.transition(run, target, actor="user:test", **_kwargs(source, target))

    assert f"cannot go from {source} to {target}" in str(refused.value)
    run.refresh_from_db()
    assert run.status == source
    assert RunEvent.objects.filter(run=run).count() == events_before


def test_failing_needs_a_failure_kind(simple_version):
    run = start_run(
        version=simple_version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type="api",
    )
    writer.transition(run, "running", actor="system:engine")
    with pytest.raises(IllegalTransition, match="failure kind"):
        writer.transition(run, "failed", actor="system:engine", reason="x")


def test_a_run_awaiting_review_fails_only_by_rejection(simple_version):
    run = start_run(
        version=simple_version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type="api",
    )
    force_status(run, "awaiting_review")
    with pytest.raises(IllegalTransition, match="only fail by rejection"):
        writer.transition(run, "failed", actor="x", reason="r", failure_kind=FailureKind.TRANSIENT)


def test_terminal_transition_sets_finished_at_and_first_running_sets_started_at(simple_version):
    run = start_run(
        version=simple_version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type="api",
    )
    writer.transition(run, "running", actor="system:engine")
    run.refresh_from_db()
    assert run.started_at is not None and run.finished_at is None
    writer.transition(run, "completed", actor="system:engine", output={"a": 1})
    run.refresh_from_db()
    assert run.finished_at >= run.started_at
    assert run.output == {"a": 1}
    assert run.lease_expires_at is None
