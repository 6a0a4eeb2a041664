"""Writes that matter on runs: start, cancel, retry. Each validates, writes in a transaction,
enqueues work only after the commit, and returns the run."""

from django.db import transaction
from django.utils import timezone

from procedures.inputs import input_errors
from procedures.models import Environment, ProcedureVersion
from runs import dispatch, metrics, outbox, writer
from runs.errors import (
    CancelNotAllowed,
    IllegalTransition,
    InputValidationError,
    PermissionDenied,
    RetryNotAllowed,
)
from runs.models import TERMINAL_STATUSES, FailureKind, Run, RunStatus, RunType
from runs.writer import RunWriter


def actor_label(*, user=None, api_key=None, trigger=None, system: str = "") -> str:
    if user is not None:
        return f"user:{user.get_username()}"
    if api_key is not None:
        return f"api_key:{api_key.prefix}"
    if trigger is not None:
        return f"trigger:{trigger.public_id}"
    return f"system:{system or 'rapidfolio'}"


def _require_perm(user, perm: str, action: str) -> None:
    if user is not None and not user.has_perm(perm):
        raise PermissionDenied(f"You do not have permission to {action}.")


def start_run(
    *,
    version: ProcedureVersion,
    environment: str,
    inputs,
    type: str,
    user=None,
    api_key=None,
    trigger=None,
    trigger_event=None,
    retry_of: Run | None = None,
) -> Run:
    """Validate the inputs, record the run as pending and enqueue it."""
    if environment not in Environment.values:
        raise InputValidationError(
            f"Unknown environment {environment!r}; use sandbox or live.",
            details=[{"field": "environment", "message": "Must be sandbox or live."}],
        )
    if type not in RunType.values:
        raise InputValidationError(f"Unknown run type {type!r}.")
    if type == RunType.MANUAL:
        _require_perm(user, "runs.start_run", "start runs")
    if environment == Environment.LIVE:
        # A person (the Run form, a retry) acts in live only if they may see live runs.
        _require_perm(user, "runs.view_live_run", "start live runs")
    problems = input_errors(version.input_schema, inputs)
    if problems:
        raise InputValidationError(
            f"The inputs do not match the input schema of {version}: "
            + "; ".join(f"{p['field']}: {p['message']}" for p in problems),
            details=problems,
        )
    with transaction.atomic():
        run = Run(
            # The version's procedure (usually loaded with it): the run.created event reads it.
            procedure=version.procedure,
            version=version,
            environment=environment,
            type=type,
            inputs=inputs,
            started_by_user=user,
            started_by_api_key=api_key,
            started_by_trigger=trigger,
            trigger_event=trigger_event,
            retry_of=retry_of,
            created_at=timezone.now(),
        )
        actor = actor_label(user=user, api_key=api_key, trigger=trigger)
        created = RunWriter.create(run, actor=actor)
        # Its message goes into the outbox with its record, and to the broker after the commit.
        dispatch.enqueue_execution(run, after_event=created.next_sequence - 1, writer=created)
        created.flush()
        if retry_of is not None:
            writer.append_event(retry_of, "run.retried", actor=actor, data={"retry": run.public_id})
    return run


def cancel_run(*, run: Run, user=None, api_key=None, reason: str = "") -> Run:
    """Cancel a pending, running or awaiting-review run. A running run stops before its next
    node; a tool call already under way finishes and is recorded."""
    _require_perm(user, "runs.cancel_run", "cancel runs")
    if run.environment == Environment.LIVE:
        _require_perm(user, "runs.view_live_run", "cancel live runs")
    if run.status in TERMINAL_STATUSES:
        raise CancelNotAllowed(
            f"Run {run.public_id} is {run.status} and can no longer be cancelled."
        )
    actor = actor_label(user=user, api_key=api_key)
    try:
        return writer.transition(
            run, RunStatus.CANCELLED, actor=actor, reason=reason or "Cancelled by operator"
        )
    except IllegalTransition as exc:
        raise CancelNotAllowed(exc.message) from exc


def retry_run(*, run: Run, user=None, api_key=None) -> Run:
    """Start a new run with the same inputs and version as a run that failed transiently."""
    _require_perm(user, "runs.retry_run", "retry runs")
    with transaction.atomic():
        original = Run.objects.select_for_update().select_related("version").get(pk=run.pk)
        if original.status != RunStatus.FAILED:
            raise RetryNotAllowed(
                f"Run {original.public_id} is {original.status}; only failed runs can be retried."
            )
        if original.failure_kind != FailureKind.TRANSIENT:
            hint = {
                FailureKind.REJECTED: " A rejected run cannot be retried; start a fresh run "
                "instead.",
                # A decline is the procedure's answer: asking again gives the same answer.
                FailureKind.BUSINESS: f" It ended with the business outcome "
                f"'{original.outcome}', an answer rather than an error: start a fresh run "
                "if the facts have changed.",
            }.get(
                original.failure_kind,
                " Its failure is permanent: retrying would fail the same way.",
            )
            raise RetryNotAllowed(
                f"Run {original.public_id} failed with kind {original.failure_kind}.{hint}"
            )
        existing = original.retries.order_by("created_at").first()
        if existing is not None:
            raise RetryNotAllowed(
                f"Run {original.public_id} was already retried as {existing.public_id}.",
                details={"retry": existing.public_id},
            )
        return start_run(
            version=original.version,
            environment=original.environment,
            inputs=original.inputs,
            type=RunType.API if api_key is not None else RunType.MANUAL,
            user=user,
            api_key=api_key,
            retry_of=original,
        )


def reap_stuck_runs(*, now=None, limit: int = 500) -> list[int]:
    """Re-enqueue pending or running runs whose lease ran out (a lost message, a killed worker),
    each at most once per backoff step (runs.outbox); returns the ids of the runs sent now.

    Enqueueing twice is harmless: only one worker at a time drives a run (runs.locks) and a
    run resumes after its last committed step.
    """
    now = now or timezone.now()
    stuck = Run.objects.filter(
        status__in=[RunStatus.PENDING, RunStatus.RUNNING], lease_expires_at__lt=now
    )
    reaped = outbox.resend_stuck_runs(stuck, now=now, limit=limit)
    metrics.runs_reaped(len(reaped))
    return reaped
