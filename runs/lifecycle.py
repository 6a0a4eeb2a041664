"""The run state machine: the table of legal transitions and the one function that moves a run.

Nothing else assigns `Run.status`; the write path (runs.writer) saves what `apply` changed and
appends the status event in the same transaction.

    pending ──> running ──> completed
       │           ├──> awaiting_review ──> running   (approved)
       │           │            └──────> failed       (rejected)
       │           ├──> failed                        (tool error, unhandled condition)
       └───────────┴──> cancelled  (also from awaiting_review)
"""

from datetime import timedelta

from django.conf import settings

from runs.errors import IllegalTransition
from runs.integrity import digest
from runs.models import TERMINAL_STATUSES, FailureKind, Run, RunStatus, Step

S = RunStatus

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset({S.COMPLETED, S.AWAITING_REVIEW, S.FAILED, S.CANCELLED}),
    S.AWAITING_REVIEW: frozenset({S.RUNNING, S.FAILED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}

# The statuses that outbound webhooks announce.
NOTIFIED_STATUSES = TERMINAL_STATUSES | {S.AWAITING_REVIEW}

# The columns a transition may change, copied back to the caller's instance.
STATE_FIELDS = (
    "status",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "output",
    "failure_reason",
    "failure_kind",
    "outcome",
    "failed_step_id",
)


def is_allowed(from_status: str, to_status: str) -> bool:
    return to_status in ALLOWED_TRANSITIONS[from_status]


def notifies(status: str) -> bool:
    return status in NOTIFIED_STATUSES


def check(run: Run, to_status: str, failure_kind: str, outcome: str = "") -> None:
    """Raise IllegalTransition unless the table (and the failure and outcome rules) allow the
    move."""
    if not is_allowed(run.status, to_status):
        raise IllegalTransition(
            f"Run {run.public_id} cannot go from {run.status} to {to_status}.",
            details={"from": run.status, "to": to_status},
        )
    if to_status == S.FAILED:
        if failure_kind not in FailureKind.values:
            raise IllegalTransition("A failed run needs a failure kind.")
        if run.status == S.AWAITING_REVIEW and failure_kind != FailureKind.REJECTED:
            raise IllegalTransition("A run awaiting review can only fail by rejection.")
        if (failure_kind == FailureKind.BUSINESS) != bool(outcome):
            raise IllegalTransition(
                "A run fails with a business outcome exactly when it names one."
            )
    elif outcome and to_status != S.COMPLETED:
        raise IllegalTransition("Only a completed or failed run has a business outcome.")


def apply(
    run: Run,
    to_status: str,
    *,
    now,
    reason: str = "",
    failure_kind: str = "",
    failed_step: Step | None = None,
    output=None,
    outcome: str = "",
) -> tuple[list[str], dict]:
    """Check and apply the move to the (locked) run in memory. Returns the changed fields and
    the data of its `run.status_changed` event, which records a business outcome by name."""
    check(run, to_status, failure_kind, outcome)
    data = {"from": run.status, "to": to_status}
    fields = ["status", "lease_expires_at"]
    run.status = to_status
    if to_status == S.RUNNING and run.started_at is None:
        run.started_at = now
        fields.append("started_at")
    if to_status in TERMINAL_STATUSES:
        run.finished_at = now
        fields.append("finished_at")
    # A run that waits for a reviewer or has finished has no lease for the reaper to watch.
    run.lease_expires_at = (
        None
        if to_status in NOTIFIED_STATUSES
        else now + timedelta(seconds=settings.RUN_LEASE_SECONDS)
    )
    if to_status == S.COMPLETED:
        run.output = output
        fields.append("output")
        data["output_sha256"] = digest(output)
    if to_status == S.FAILED:
        run.failure_reason, run.failure_kind, run.failed_step = reason, failure_kind, failed_step
        fields += ["failure_reason", "failure_kind", "failed_step"]
        data.update(
            reason=reason,
            kind=failure_kind,
            failed_step=failed_step.sequence if failed_step else None,
        )
    elif reason:
        data["reason"] = reason
    if outcome:
        run.outcome = outcome
        fields.append("outcome")
        data["outcome"] = outcome
    return fields, data


def copy_state(source: Run, target: Run) -> None:
    for field in STATE_FIELDS:
        setattr(target, field, getattr(source, field))
