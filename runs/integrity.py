"""Tamper evidence: the per-run hash chain of RunEvents and its verification.

Each event's hash is sha256(prev_hash ‖ canonical JSON of the event). Events that record a
step, a review request, a review decision, the inputs or the output carry a sha256 digest of
that row's content, so editing any of them (or an event) breaks the chain at a point that
`verify_run` can name.
"""

import hashlib
import json
from dataclasses import dataclass

from runs.selectors import event_rows, step_rows

GENESIS_HASH = "0" * 64


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def event_hash(
    *,
    prev_hash: str,
    run_public_id: str,
    sequence: int,
    type: str,
    actor: str,
    data: dict,
    created_at,
) -> str:
    body = canonical_json(
        {
            "run": run_public_id,
            "sequence": sequence,
            "type": type,
            "actor": actor,
            "data": data,
            "created_at": _iso(created_at),
        }
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def step_digest(step) -> str:
    return digest(
        {
            "sequence": step.sequence,
            "node_id": step.node_id,
            "node_type": step.node_type,
            "tool": step.tool,
            "status": step.status,
            "attempt": step.attempt,
            "input": step.input,
            "output": step.output,
            "request": step.request,
            "response": step.response,
            "idempotency_key": step.idempotency_key,
            "error": step.error,
            "error_kind": step.error_kind,
            "started_at": _iso(step.started_at),
            "finished_at": _iso(step.finished_at),
        }
    )


def review_request_digest(request) -> str:
    return digest(
        {
            "review": request.public_id,
            "node_id": request.node_id,
            "shown_values": request.shown_values,
            "overridable_fields": request.overridable_fields,
            "reviewer_group": request.reviewer_group,
        }
    )


def decision_digest(decision) -> str:
    return digest(
        {
            "review": decision.request.public_id,
            "reviewer_id": decision.reviewer_id,
            "decision": decision.decision,
            "comment": decision.comment,
            "shown_values": decision.shown_values,
            "overrides": decision.overrides,
            "decided_at": _iso(decision.decided_at),
        }
    )


def run_header(run) -> dict:
    """What the run.created event pins down about the run itself."""
    return {
        "procedure": run.procedure.public_id,
        "version": run.version.number,
        "environment": run.environment,
        "type": run.type,
        "inputs_sha256": digest(run.inputs),
        "retry_of": run.retry_of.public_id if run.retry_of_id else None,
        "started_by_user_id": run.started_by_user_id,
        "started_by_api_key_id": run.started_by_api_key_id,
        "started_by_trigger_id": run.started_by_trigger_id,
        "trigger_event_id": run.trigger_event_id,
    }


@dataclass(frozen=True)
class Verification:
    run_public_id: str
    intact: bool
    problem: str = ""
    events_checked: int = 0

    def __str__(self):
        if self.intact:
            return f"{self.run_public_id}: intact ({self.events_checked} events)"
        return f"{self.run_public_id}: BROKEN: {self.problem}"


def verify_run(run) -> Verification:
    """Recompute the chain and every digest it carries; name the first broken link."""

    def broken(problem: str, checked: int) -> Verification:
        return Verification(run.public_id, False, problem, checked)

    events = event_rows(run)
    steps = {step.sequence: step for step in step_rows(run)}
    requests = {r.public_id: r for r in run.review_requests.all()}
    decisions = {d.request.public_id: d for d in run.review_decisions.select_related("request")}

    prev = GENESIS_HASH
    seen_steps, seen_requests, seen_decisions = set(), set(), set()
    last_status = None
    last_completion = None
    last_failure = None
    for position, event in enumerate(events, start=1):
        label = f"event #{event.sequence} ({event.type})"
        if event.sequence != position:
            return broken(f"event #{position} is missing (found #{event.sequence})", position - 1)
        if event.prev_hash != prev:
            return broken(f"{label} does not link to the event before it", position - 1)
        expected = event_hash(
            prev_hash=prev,
            run_public_id=run.public_id,
            sequence=event.sequence,
            type=event.type,
            actor=event.actor,
            data=event.data,
            created_at=event.created_at,
        )
        if event.hash != expected:
            return broken(
                f"{label} was altered: its hash does not match its contents", position - 1
            )
        prev = event.hash
        data = event.data
        if event.type == "run.created":
            if data.get("header") != run_header(run):
                return broken(
                    f"the run's inputs or header differ from what {label} recorded", position
                )
        elif event.type == "step.recorded":
            step = steps.get(data.get("step"))
            if step is None:
                return broken(f"step #{data.get('step')} recorded by {label} is missing", position)
            if step_digest(step) != data.get("sha256"):
                return broken(
                    f"step #{step.sequence} ({step.node_id}) differs from what {label} recorded",
                    position,
                )
            seen_steps.add(step.sequence)
        elif event.type == "review.requested":
            request = requests.get(data.get("review"))
            if request is None or review_request_digest(request) != data.get("sha256"):
                return broken(
                    f"review request {data.get('review')} differs from what {label} recorded",
                    position,
                )
            seen_requests.add(request.public_id)
        elif event.type == "review.decided":
            decision = decisions.get(data.get("review"))
            if decision is None or decision_digest(decision) != data.get("sha256"):
                return broken(
                    f"the decision on {data.get('review')} differs from what {label} recorded",
                    position,
                )
            seen_decisions.add(data.get("review"))
        if event.type == "run.status_changed":
            last_status = data.get("to")
            if last_status == "completed":
                last_completion = data
            if last_status == "failed":
                last_failure = data

    checked = len(events)
    if not events or events[0].type != "run.created":
        return broken("the run.created event is missing", checked)
    for sequence, step in sorted(steps.items()):
        if sequence not in seen_steps:
            return broken(
                f"step #{sequence} ({step.node_id}) was added outside the record", checked
            )
    for public_id in requests:
        if public_id not in seen_requests:
            return broken(f"review request {public_id} was added outside the record", checked)
    for public_id in decisions:
        if public_id not in seen_decisions:
            return broken(f"the decision on {public_id} was added outside the record", checked)
    if (last_status or "pending") != run.status:
        return broken(
            f"the run's status is {run.status} but its events end at {last_status or 'pending'}",
            checked,
        )
    if last_completion is not None and last_completion.get("output_sha256") != digest(run.output):
        return broken("the run's output differs from what its completion event recorded", checked)
    if last_failure is not None:
        failed_step = (
            steps.get(last_failure.get("failed_step")) if last_failure.get("failed_step") else None
        )
        if (
            last_failure.get("reason") != run.failure_reason
            or last_failure.get("kind") != run.failure_kind
            or (failed_step.pk if failed_step else None) != run.failed_step_id
        ):
            return broken("the run's failure differs from what its failure event recorded", checked)
    return Verification(run.public_id, True, "", checked)
