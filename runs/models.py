from django.conf import settings
from django.db import models
from django.db.models import Q

from procedures.models import Environment, Procedure, ProcedureVersion, Trigger, TriggerEvent
from rapidfolio import crypto, ids

# The ledger's, the outbox's and the scheduler heartbeat's models live in their own modules;
# importing them here registers them.
from runs.heartbeat_models import SchedulerHeartbeat  # noqa: F401
from runs.ledger_models import Checkpoint, LedgerLeaf, LedgerNode, LedgerQueue  # noqa: F401
from runs.outbox_models import OutboxActor, OutboxMessage  # noqa: F401


class RunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    AWAITING_REVIEW = "awaiting_review", "Awaiting review"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class RunType(models.TextChoices):
    API = "api", "API"
    TRIGGER = "trigger", "Trigger"
    MANUAL = "manual", "Manual"


class FailureKind(models.TextChoices):
    TRANSIENT = "transient", "Transient"
    PERMANENT = "permanent", "Permanent"
    REJECTED = "rejected", "Rejected"
    # The procedure ended at a fail node that declares a business outcome (`outcome: declined`):
    # a normal answer, not a technical failure. The run's `outcome` names it; never retried.
    BUSINESS = "business", "Business outcome"


class Run(models.Model):
    """One execution of a procedure version: the permanent record.

    `status` is assigned only by runs.lifecycle; terminal runs are frozen by database triggers.
    """

    # Unique by a constraint in Meta, not unique=True, which on PostgreSQL also builds a
    # pattern-matching (LIKE) index that nothing uses.
    public_id = models.CharField(
        max_length=ids.PUBLIC_ID_MAX_LENGTH, default=ids.run_id, editable=False
    )
    # The procedure is denormalised from the version so the Runs list filters on one index
    # (run_procedure_created_idx, which also serves the foreign key). Nothing looks runs up by
    # version (versions are never deleted), so that key has no index of its own.
    procedure = models.ForeignKey(
        Procedure, on_delete=models.PROTECT, related_name="runs", db_index=False
    )
    version = models.ForeignKey(
        ProcedureVersion, on_delete=models.PROTECT, related_name="runs", db_index=False
    )
    environment = models.CharField(max_length=10, choices=Environment.choices)
    type = models.CharField(max_length=10, choices=RunType.choices)
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.PENDING)

    # The starters, the failed step and the original of a retry are mostly empty: their
    # indexes are partial (Meta.indexes), holding only the runs that have one.
    started_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    started_by_api_key = models.ForeignKey(
        "runs.ApiKey",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs",
        db_index=False,
    )
    started_by_trigger = models.ForeignKey(
        Trigger,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs",
        db_index=False,
    )
    # One run per outside event: a redelivered webhook can never start a second run.
    trigger_event = models.OneToOneField(
        TriggerEvent, null=True, blank=True, on_delete=models.PROTECT, related_name="run"
    )

    inputs = models.JSONField()
    # The listing (procedures.run_listing): what the Runs list shows of the inputs and what its
    # search matches, derived from the inputs when the run is created and as fixed as they are
    # (runs.append_only; runs.integrity recomputes it). Runs from before it may have it empty
    # (runs/migrations/0008_run_search.py); so do inserts that name none (database defaults).
    reference_values = models.JSONField(default=dict, db_default={}, blank=True)
    search_text = models.TextField(blank=True, default="", db_default="")
    amount_minor = models.BigIntegerField(null=True, blank=True)
    amount_currency = models.CharField(max_length=3, blank=True, default="", db_default="")
    output = models.JSONField(null=True, blank=True)
    failure_reason = models.TextField(blank=True)
    failure_kind = models.CharField(max_length=10, choices=FailureKind.choices, blank=True)
    # The business outcome the run ended with, as its definition names it (`outcome: declined`
    # on the fail or output node it ended at); empty for every other ending. A failed run with
    # one has failure_kind "business"; a completed run may have one too. The database default
    # keeps inserts that name no outcome (the bench's COPY, the database role tests) valid.
    outcome = models.CharField(max_length=50, blank=True, default="", db_default="")
    failed_step = models.ForeignKey(
        "runs.Step",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    retry_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="retries",
        db_index=False,
    )

    created_at = models.DateTimeField(db_index=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # If nothing happens to a pending or running run by this time, the reaper re-enqueues it.
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("start_run", "Can start runs from the dashboard"),
            ("cancel_run", "Can cancel runs"),
            ("retry_run", "Can retry runs that failed transiently"),
            # With view_run: also the live environment's runs (runs.selectors.visible_runs),
            # and acting on them with the user's other permissions (start, cancel, decide).
            ("view_live_run", "Can see live runs and act on them"),
        ]
        # A run's row is written three times (created, started, finished), and every write
        # changes an indexed column, so each write adds an entry to every index below: the
        # engine's most expensive statements. Hence no index that nothing reads.
        indexes = [
            # Each index serves a Runs list query in runs/selectors.py (newest first, keyset).
            models.Index(fields=["-created_at", "-id"], name="run_created_idx"),
            models.Index(fields=["status", "-created_at", "-id"], name="run_status_created_idx"),
            models.Index(
                fields=["procedure", "-created_at", "-id"], name="run_procedure_created_idx"
            ),
            models.Index(fields=["environment", "-created_at", "-id"], name="run_env_created_idx"),
            models.Index(
                fields=["lease_expires_at"],
                name="run_unfinished_lease_idx",
                condition=Q(status__in=["pending", "running"]),
            ),
            # The foreign keys' lookups (a run's retries; what PROTECT checks before a user,
            # key, trigger or step could be deleted), over only the runs that have one.
            *(
                models.Index(
                    fields=[name], name=f"run_{name}_idx", condition=Q(**{f"{name}__isnull": False})
                )
                for name in (
                    "started_by_user",
                    "started_by_api_key",
                    "started_by_trigger",
                    "failed_step",
                    "retry_of",
                )
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="run_public_id_unique"),
            models.CheckConstraint(
                condition=Q(status__in=RunStatus.values), name="run_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(environment__in=Environment.values), name="run_environment_valid"
            ),
            models.CheckConstraint(condition=Q(type__in=RunType.values), name="run_type_valid"),
            models.CheckConstraint(
                condition=~Q(status="failed") | ~Q(failure_kind=""),
                name="run_failed_has_kind",
            ),
            models.CheckConstraint(
                condition=Q(status="failed") | Q(failure_kind=""),
                name="run_kind_only_when_failed",
            ),
            models.CheckConstraint(
                condition=~Q(type="trigger") | Q(started_by_trigger__isnull=False),
                name="run_trigger_type_has_trigger",
            ),
            # A business failure names its outcome; an outcome belongs to a completed run or a
            # business failure, never to a technical one.
            models.CheckConstraint(
                condition=~Q(failure_kind="business") | ~Q(outcome=""),
                name="run_business_failure_has_outcome",
            ),
            models.CheckConstraint(
                condition=Q(outcome="") | Q(status="completed") | Q(failure_kind="business"),
                name="run_outcome_only_when_answered",
            ),
        ]

    def __str__(self):
        return self.public_id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def duration(self):
        if self.started_at is None:
            return None
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def started_by_label(self) -> str:
        if self.started_by_user_id:
            return f"user {self.started_by_user.get_username()}"
        if self.started_by_api_key_id:
            return f"API key {self.started_by_api_key.name}"
        if self.started_by_trigger_id:
            label = f"trigger {self.started_by_trigger.name}"
            if self.trigger_event_id:
                label += f" (event {self.trigger_event.external_id})"
            return label
        return "system"


class StepStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Step(models.Model):
    """One execution of one node. Finished steps are frozen by a database trigger."""

    # Served by step_unique_sequence (run, sequence): a separate index would be written for
    # every step and never read.
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="steps", db_index=False)
    sequence = models.PositiveIntegerField()
    node_id = models.CharField(max_length=100)
    node_type = models.CharField(max_length=20)
    tool = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=StepStatus.choices)
    attempt = models.PositiveSmallIntegerField(default=1)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    # The exact bytes sent to and received from the integration, stored as text so nothing
    # (key order, number formatting) is changed by the database.
    request = models.TextField(blank=True)
    response = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=10, choices=FailureKind.choices, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["run", "sequence"], name="step_unique_sequence"),
            models.CheckConstraint(condition=Q(attempt__gte=1), name="step_attempt_positive"),
        ]

    def __str__(self):
        return f"{self.run.public_id} #{self.sequence} {self.node_id}"

    @property
    def duration_ms(self):
        return duration_ms(self.started_at, self.finished_at)


def duration_ms(started_at, finished_at) -> float | None:
    """A step's duration as the pages and the API show it (also for steps read as rows)."""
    if finished_at is None:
        return None
    return round((finished_at - started_at).total_seconds() * 1000, 1)


class RunEvent(models.Model):
    """The run's timeline. Insert-only, hash-chained per run (see runs.integrity)."""

    # Served by runevent_unique_sequence (run, sequence), like Step.run.
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="events", db_index=False)
    sequence = models.PositiveIntegerField()
    type = models.CharField(max_length=50)
    actor = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["run", "sequence"]
        constraints = [
            # Two writers can never fork a run's chain: the second insert of a sequence fails.
            models.UniqueConstraint(fields=["run", "sequence"], name="runevent_unique_sequence"),
        ]

    def __str__(self):
        return f"{self.run.public_id} #{self.sequence} {self.type}"


class ApiKey(models.Model):
    """A backend's credential, scoped to one environment. Only a hash of the key is stored."""

    name = models.CharField(max_length=200)
    environment = models.CharField(max_length=10, choices=Environment.choices)
    prefix = models.CharField(max_length=20, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…, {self.environment})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyRecord(models.Model):
    """The first answer to a POST with an Idempotency-Key, replayed for repeats."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_unique_key")
        ]

    def __str__(self):
        return f"{self.method} {self.path} ({self.key})"


class WebhookEndpoint(models.Model):
    """Where run events are delivered, signed with the endpoint's secret."""

    class EventType(models.TextChoices):
        RUN_COMPLETED = "run.completed"
        RUN_FAILED = "run.failed"
        RUN_AWAITING_REVIEW = "run.awaiting_review"
        RUN_CANCELLED = "run.cancelled"

    url = models.URLField(max_length=500)
    environment = models.CharField(max_length=10, choices=Environment.choices)
    events = models.JSONField(default=list, help_text="Subscribed event types.")
    encrypted_secret = models.TextField(editable=False)
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.url} ({self.environment})"

    def set_secret(self, secret: str) -> None:
        self.encrypted_secret = crypto.encrypt(secret)

    def get_secret(self) -> str:
        return crypto.decrypt(self.encrypted_secret)
