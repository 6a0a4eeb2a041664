"""The outbox: messages to the workers that the broker may not hold yet (runs.dispatch).

Not part of the run record: never hashed, never a ledger fact, written by runs.dispatch and
not by runs.writer, and deleted once its work is done. Imported by runs.models, so Django sees
the model as the runs app's.
"""

from django.db import models
from django.db.models import Q


class OutboxActor(models.TextChoices):
    EXECUTE_RUN = "execute_run"
    RESUME_RUN = "resume_run"
    DELIVER_WEBHOOK = "deliver_webhook"


class OutboxMessage(models.Model):
    """One message for an actor, kept until its work is done.

    The message that starts (or resumes) a run is written in the transaction that makes the run
    ready, and sent once it commits; any other message is written here only if the broker
    refuses it. The scheduler sends again what is due, each message with its own backoff, until
    the run has moved on (a run message) or the broker took it (a webhook delivery).
    """

    actor = models.CharField(max_length=30, choices=OutboxActor.choices)
    # No index: the table holds the last minute's messages and the unsent ones; the relay finds
    # rows by next_attempt_at, the reaper (only when runs are stuck) by run in a small table,
    # and runs are never deleted.
    run = models.ForeignKey("runs.Run", on_delete=models.PROTECT, related_name="+", db_index=False)
    # The actor's arguments, exactly as sent.
    args = models.JSONField(default=list)
    # The run's last event when the message was written: a later one (other than a webhook
    # delivery's) means a worker has acted on the run, and a run message has done its work.
    after_event = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    # Sends by the scheduler (the one at commit is not counted): the backoff's exponent.
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["next_attempt_at"], name="outbox_due_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(actor__in=OutboxActor.values), name="outbox_actor_valid"
            ),
        ]

    def __str__(self):
        return f"{self.actor} for run {self.run_id} (attempts {self.attempts})"
