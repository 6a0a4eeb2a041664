"""The engine acts only on facts it can authenticate.

The attacker has database access (SELECT/INSERT/UPDATE, or a superuser who can switch the
append-only triggers off) but not our keys. Each test reproduces one attack and shows it
refused: the run records a record.refused event, fails (permanent) and nothing is paid; and
`verify_run` names the forged row even when the attacker recomputed the hash chain.
"""

import base64
import json
import os
from contextlib import contextmanager

from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from rapidfolio import keys
from reviews.models import ReviewRequest
from reviews.services import approve
from runs import engine, sql
from runs.integrity import GENESIS_HASH, digest, event_hash, step_digest, verify_run
from runs.models import Run, RunEvent, Step
from runs.services import start_run
from tests.conftest import make_version
from tests.test_engine import REVIEW_DEFINITION

NOT_OURS = "was not recorded by this installation: its authentication tag does not verify"

PAY_DEFINITION = {
    "input_schema": {"type": "object"},
    "start": "pay",
    "nodes": {
        "pay": {
            "type": "tool",
            "tool": "stripe.create_payment_intent",
            "input": {"amount": "inputs.amount", "currency": "'usd'", "customer": "inputs.to"},
            "next": "done",
        },
        "done": {"type": "output", "value": {"charged": "steps.pay.output.amount"}},
    },
}

# A condition, then a review, then the payment: a run that resumes with a condition step done.
CHECKED_DEFINITION = {
    "input_schema": {"type": "object"},
    "start": "big",
    "nodes": {
        "big": {
            "type": "condition",
            "expression": "inputs.amount > 1000",
            "then": "review",
            "else": "pay",
        },
        "review": {
            "type": "human_review",
            "title": "Approve a big payment",
            "show": {"amount": "inputs.amount"},
            "next": "pay",
        },
        **PAY_DEFINITION["nodes"],
    },
}


# --- the attacker -----------------------------------------------------------------------------
@contextmanager
def another_installations_key():
    """Run the application's own code, but with a key that is not this installation's: what an
    attacker does who calls our services from a process of their own."""
    keys.forget_cached_keys()
    with override_settings(LEDGER_SIGNING_KEY=base64.b64encode(os.urandom(32)).decode()):
        keys.forget_cached_keys()
        yield
    keys.forget_cached_keys()


@contextmanager
def triggers_bypassed(*tables: str):
    """Write past the append-only triggers, for this test's transaction, as a superuser can.

    PostgreSQL: session_replication_role = replica (no user trigger fires), reset afterwards.
    SQLite: the triggers on `tables` are dropped (rolled back with the test's transaction).
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        else:
            for table in tables:
                cursor.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                    [table],
                )
                for (name,) in cursor.fetchall():
                    cursor.execute(f"DROP TRIGGER {name}")
        yield cursor
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = DEFAULT")


def rewrite_events(run: Run, first: int, rewrite) -> None:
    """Rewrite the run's events from sequence `first` on with our own hashing code (but no
    key): `rewrite(event)` returns an event's new data; every hash from there is recomputed."""
    events = list(RunEvent.objects.filter(run=run).order_by("sequence"))
    prev = events[first - 2].hash if first > 1 else GENESIS_HASH
    with triggers_bypassed("runs_runevent") as cursor:
        for event in events[first - 1 :]:
            data = rewrite(event)
            new_hash = event_hash(
                prev_hash=prev,
                run_public_id=run.public_id,
                sequence=event.sequence,
                type=event.type,
                actor=event.actor,
                data=data,
                created_at=event.created_at,
            )
            cursor.execute(
                "UPDATE runs_runevent SET data = %s, prev_hash = %s, hash = %s WHERE id = %s",
                [json.dumps(data), prev, new_hash, event.pk],
            )
            prev = new_hash


def rewrite_step_and_chain(run: Run, sequence: int, **columns) -> None:
    """Edit a step, then put its new digest in its step.recorded event and recompute the chain,
    as someone with our code but not our key can."""
    step = Step.objects.get(run=run, sequence=sequence)
    assignments = ", ".join(f"{column} = %s" for column in columns)
    with triggers_bypassed("runs_step") as cursor:
        cursor.execute(
            f"UPDATE runs_step SET {assignments} WHERE id = %s",
            [json.dumps(value) for value in columns.values()] + [step.pk],
        )
    sha256 = step_digest(Step.objects.get(pk=step.pk))
    recorded = RunEvent.objects.get(run=run, type="step.recorded", data__step=sequence)

    def rewrite(event):
        return {**event.data, "sha256": sha256} if event.pk == recorded.pk else event.data

    rewrite_events(run, recorded.sequence, rewrite)


# --- runs -------------------------------------------------------------------------------------
def paused_run(operator, definition=REVIEW_DEFINITION, **inputs) -> Run:
    version = make_version(definition, name="Reviewed payment")
    run = start_run(
        version=version, environment="sandbox", type="manual", user=operator, inputs=inputs
    )
    engine.drive(run.pk)
    run.refresh_from_db()
    assert run.status == "awaiting_review"
    return run


def pending_payment(**inputs) -> Run:
    version = make_version(PAY_DEFINITION, name="Pay")
    return start_run(version=version, environment="sandbox", type="api", inputs=inputs)


def assert_refused(run: Run, fact: str, problem: str) -> Run:
    """The run failed (permanent) on a record.refused event naming `fact`, before paying."""
    run = Run.objects.get(pk=run.pk)
    assert run.status == "failed"
    assert run.failure_kind == "permanent"
    subject = "the run header" if fact == "run header" else fact
    assert run.failure_reason.startswith(f"Refused to continue: {subject} ")
    assert run.failure_reason.endswith("; nothing further was executed.")
    refused = run.events.get(type="record.refused")
    assert refused.actor == "system:engine"
    assert refused.data == {"fact": fact, "problem": problem}
    assert not run.steps.filter(node_id="pay").exists()  # nothing paid
    return run


# --- a decision forged with our own services, without our key --------------------------------
def test_a_genuine_approval_resumes_and_pays(operator, reviewer):
    run = paused_run(operator, customer_id="cust_anna", amount=900000)
    approve(request=ReviewRequest.objects.get(run=run), reviewer=reviewer)
    engine.drive(run.pk)
    run = Run.objects.get(pk=run.pk)
    assert run.status == "completed"
    assert run.output == {"charged": 900000}
    assert not run.events.filter(type="record.refused").exists()
    assert verify_run(run).intact


def test_an_approval_made_without_our_key_is_refused_and_nothing_is_paid(operator, reviewer):
    run = paused_run(operator, customer_id="cust_anna", amount=900000)
    with another_installations_key():
        approve(request=ReviewRequest.objects.get(run=run), reviewer=reviewer)
    assert Run.objects.get(pk=run.pk).status == "running"  # the forgery did resume the run
    engine.drive(run.pk)
    run = assert_refused(run, "step #1 (review)", "forged")
    assert run.failure_reason == (
        "Refused to continue: step #1 (review) does not carry this installation's "
        "authentication tag (forged or altered outside Rapidfolio); nothing further was executed."
    )
    assert list(run.steps.values_list("node_id", flat=True)) == ["review"]
    assert run.failed_step is None
    result = verify_run(run)
    assert not result.intact
    assert result.problem == f"step #1 (review) {NOT_OURS}"


# --- inputs altered behind the application's back ---------------------------------------------
def test_inputs_altered_in_the_database_are_refused_before_anything_runs(db):
    run = pending_payment(amount=500, to="cust_anna")
    with triggers_bypassed("runs_run") as cursor:
        cursor.execute(
            "UPDATE runs_run SET inputs = %s WHERE id = %s",
            [json.dumps({"amount": 5_000_000, "to": "cust_mallory"}), run.pk],
        )
    engine.drive(run.pk)
    run = assert_refused(run, "run header", "changed")
    assert run.failure_reason == (
        "Refused to continue: the run header differs from what Rapidfolio recorded "
        "(altered outside Rapidfolio); nothing further was executed."
    )
    assert not run.steps.exists()
    assert list(run.events.values_list("type", flat=True)) == [
        "run.created",
        "run.status_changed",
        "record.refused",
        "run.status_changed",
    ]


def test_inputs_altered_with_the_run_created_event_rewritten_to_match_are_refused(db):
    run = pending_payment(amount=500, to="cust_anna")
    altered = {"amount": 5_000_000, "to": "cust_mallory"}
    with triggers_bypassed("runs_run") as cursor:
        cursor.execute(
            "UPDATE runs_run SET inputs = %s WHERE id = %s", [json.dumps(altered), run.pk]
        )
    rewrite_events(
        run,
        1,
        lambda event: {
            **event.data,
            "header": {**event.data["header"], "inputs_sha256": digest(altered)},
        },
    )
    assert verify_run(Run.objects.get(pk=run.pk)).problem == (
        f"the run's header (event #1 (run.created)) {NOT_OURS}"
    )
    engine.drive(run.pk)
    assert_refused(run, "run header", "forged")


def test_a_run_pointed_at_another_procedures_version_is_refused(db):
    run = pending_payment(amount=500, to="cust_anna")
    # Same version number, another procedure: a definition that pays someone else.
    other = make_version(PAY_DEFINITION, name="Mallory's procedure")
    assert other.number == run.version.number
    with triggers_bypassed("runs_run") as cursor:
        cursor.execute("UPDATE runs_run SET version_id = %s WHERE id = %s", [other.pk, run.pk])
    assert sql.lock_run(run.pk).header_facts.procedure is None
    engine.drive(run.pk)
    assert_refused(run, "run header", "changed")


# --- committed steps altered before the run resumes -------------------------------------------
def test_an_edited_condition_step_is_refused_when_the_run_resumes(operator, reviewer):
    run = paused_run(operator, CHECKED_DEFINITION, amount=5000, to="cust_anna")
    approve(request=ReviewRequest.objects.get(run=run), reviewer=reviewer)
    big = run.steps.get(node_id="big")
    with triggers_bypassed("runs_step") as cursor:
        cursor.execute("UPDATE runs_step SET output = %s WHERE id = %s", ["false", big.pk])
    engine.drive(run.pk)
    run = assert_refused(run, "step #1 (big)", "changed")
    assert run.failure_reason == (
        "Refused to continue: step #1 (big) differs from what Rapidfolio recorded "
        "(altered outside Rapidfolio); nothing further was executed."
    )


def test_an_edited_approval_with_its_digest_and_chain_recomputed_is_refused(operator, reviewer):
    run = paused_run(operator, customer_id="cust_anna", amount=900000)
    approve(request=ReviewRequest.objects.get(run=run), reviewer=reviewer)
    rewrite_step_and_chain(run, 1, output={"amount": 9_000_000, "customer": "cust_anna"})
    assert verify_run(Run.objects.get(pk=run.pk)).problem == f"step #1 (review) {NOT_OURS}"
    engine.drive(run.pk)
    assert_refused(run, "step #1 (review)", "forged")


def test_a_removed_step_is_refused(operator, reviewer):
    run = paused_run(operator, CHECKED_DEFINITION, amount=5000, to="cust_anna")
    approve(request=ReviewRequest.objects.get(run=run), reviewer=reviewer)
    with triggers_bypassed("runs_step") as cursor:
        cursor.execute("DELETE FROM runs_step WHERE run_id = %s AND sequence = 2", [run.pk])
    engine.drive(run.pk)
    run = assert_refused(run, "step #2 (review)", "missing")
    assert "step #2 (review) was recorded but is missing" in run.failure_reason


# --- the chain recomputed by the attacker -----------------------------------------------------
def test_verify_run_reports_a_step_rewritten_with_a_recomputed_chain(finished_run):
    rewrite_step_and_chain(finished_run, 1, output=False)
    result = verify_run(Run.objects.get(pk=finished_run.pk))
    assert not result.intact
    assert result.problem == f"step #1 (big) {NOT_OURS}"


def test_verify_run_reports_a_step_event_without_its_tag(finished_run):
    recorded = finished_run.events.get(type="step.recorded", data__step=2)

    def untagged(event):
        data = dict(event.data)
        if event.pk == recorded.pk:
            del data["tag"]
        return data

    rewrite_events(finished_run, recorded.sequence, untagged)
    assert verify_run(Run.objects.get(pk=finished_run.pk)).problem == (
        f"step #2 (big_out) {NOT_OURS}"
    )


# --- what the check costs and reads -----------------------------------------------------------
def _step_event_reads(queries) -> int:
    # The reads of step.recorded events (the engine also inserts some).
    return sum(
        query["sql"].startswith("SELECT") and "step.recorded" in query["sql"] for query in queries
    )


def test_a_first_drive_costs_no_query_and_a_resume_one(operator, reviewer):
    run = paused_run(operator, customer_id="cust_anna", amount=5)
    approve(request=ReviewRequest.objects.get(run=run), reviewer=reviewer)
    with CaptureQueriesContext(connection) as resume:
        engine.drive(run.pk)
    assert Run.objects.get(pk=run.pk).status == "completed"
    assert _step_event_reads(resume.captured_queries) == 1
    first = pending_payment(amount=5, to="cust_anna")
    with CaptureQueriesContext(connection) as drive:
        engine.drive(first.pk)
    assert Run.objects.get(pk=first.pk).status == "completed"
    assert _step_event_reads(drive.captured_queries) == 0


def test_the_row_lock_reads_what_authenticates_the_header(db):
    first = pending_payment(amount=5, to="cust_anna")
    retry = start_run(
        version=first.version,
        environment="sandbox",
        type="api",
        inputs=first.inputs,
        retry_of=first,
    )
    facts = sql.lock_run(retry.pk).header_facts
    created = RunEvent.objects.get(run=retry, sequence=1)
    assert facts == (created.data, first.procedure.public_id, first.public_id)
    assert set(created.data) == {"header", "tag"}
    engine.drive(retry.pk)
    retry = Run.objects.get(pk=retry.pk)
    assert retry.status == "completed" and verify_run(retry).intact
