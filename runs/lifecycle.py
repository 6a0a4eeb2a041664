"""The run state machine: the table of legal transitions and the one function that moves a run.

Nothing else assigns `Run.status`.

    pending ──> running ──> completed
       │           ├──> awaiting_review ──> running   (approved)
       │           │            └──────> failed       (rejected)
       │           ├──> failed                        (tool error, unhandled condition)
       └───────────┴──> cancelled  (also from awaiting_review)
"""

from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from rapidfolio import rows
from runs.errors import IllegalTransition
from runs.events import EventChain, append_event, in_transaction
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


def is_allowed(from_status: str, to_status: str) -> bool:
    return to_status in ALLOWED_TRANSITIONS[from_status]


def lock(run: Run) -> Run:
    """Reload the run under a row lock; must be called inside a transaction.

    Only the run's row is locked: a plain FOR UPDATE would lock the joined procedure and
    version rows too, and serialise every run of a procedure on them.
    """
    return (
        Run.objects.select_for_update(of=("self",))
        .select_related("procedure", "version")
        .get(pk=run.pk)
    )


def transition(
    run: Run,
    to_status: str,
    *,
    actor: str,
    reason: str = "",
    failure_kind: str = "",
    failed_step: Step | None = None,
    output=None,
    lease_seconds: float | None = None,
    locked: bool = False,
    chain: EventChain | None = None,
) -> Run:
    """Move `run` to `to_status`, or raise IllegalTransition. Returns the updated, locked run.

    Locks the row, checks the table, saves the status with its timestamps and writes the
    `run.status_changed` event, all in one transaction. `locked=True` says the caller already
    holds the row lock in its transaction and `run` is current (the engine), so the row is not
    read again; the engine also passes the run's `chain`, which it read with the lock, and the
    event is inserted with the transaction's others.
    """
    with in_transaction():
        current = run if locked else lock(run)
        if not is_allowed(current.status, to_status):
            raise IllegalTransition(
                f"Run {current.public_id} cannot go from {current.status} to {to_status}.",
                details={"from": current.status, "to": to_status},
            )
        if to_status == S.FAILED:
            if failure_kind not in FailureKind.values:
                raise IllegalTransition("A failed run needs a failure kind.")
            if current.status == S.AWAITING_REVIEW and failure_kind != FailureKind.REJECTED:
                raise IllegalTransition("A run awaiting review can only fail by rejection.")
        now = timezone.now()
        data = {"from": current.status, "to": to_status}
        fields = ["status", "lease_expires_at"]
        current.status = to_status
        if to_status == S.RUNNING and current.started_at is None:
            current.started_at = now
            fields.append("started_at")
        if to_status in TERMINAL_STATUSES:
            current.finished_at = now
            current.lease_expires_at = None
            fields.append("finished_at")
        elif to_status == S.AWAITING_REVIEW:
            current.lease_expires_at = None
        else:
            lease = settings.RUN_LEASE_SECONDS if lease_seconds is None else lease_seconds
            current.lease_expires_at = now + timedelta(seconds=lease)
        if to_status == S.COMPLETED:
            current.output = output
            fields.append("output")
            data["output_sha256"] = digest(output)
        if to_status == S.FAILED:
            current.failure_reason = reason
            current.failure_kind = failure_kind
            current.failed_step = failed_step
            fields += ["failure_reason", "failure_kind", "failed_step"]
            data.update(
                reason=reason,
                kind=failure_kind,
                failed_step=failed_step.sequence if failed_step else None,
            )
        elif reason:
            data["reason"] = reason
        if failed_step is not None and failed_step.pk is None:
            raise ValueError("The failed step must be saved before the run points at it.")
        # One UPDATE of exactly these columns, as save(update_fields=...) would write, without
        # compiling it through the ORM on every transition (rapidfolio.rows).
        rows.update(current, fields)
        append_event(current, "run.status_changed", actor=actor, data=data, chain=chain)
        if to_status in TERMINAL_STATUSES or to_status == S.AWAITING_REVIEW:
            from runs.webhooks import enqueue_deliveries

            transaction.on_commit(
                partial(
                    enqueue_deliveries,
                    run_id=current.pk,
                    status=to_status,
                    environment=current.environment,
                )
            )
    _copy_state(current, run)
    return current


def _copy_state(source: Run, target: Run) -> None:
    for field in (
        "status",
        "started_at",
        "finished_at",
        "lease_expires_at",
        "output",
        "failure_reason",
        "failure_kind",
        "failed_step_id",
    ):
        setattr(target, field, getattr(source, field))
