from django.conf import settings
from django.db import models
from django.db.models import Q

from rapidfolio import ids
from runs.models import Run


class ReviewRequest(models.Model):
    """A run paused at a human_review node: exactly what reviewers are shown and may change."""

    public_id = models.CharField(
        max_length=ids.PUBLIC_ID_MAX_LENGTH, unique=True, default=ids.review_id, editable=False
    )
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="review_requests")
    node_id = models.CharField(max_length=100)
    # The sequence number the review's step takes in the run's step log once decided.
    step_sequence = models.PositiveIntegerField()
    title = models.CharField(max_length=300, blank=True)
    instructions = models.TextField(blank=True)
    shown_values = models.JSONField(help_text="The exact values shown to reviewers.")
    overridable_fields = models.JSONField(
        default=list, help_text="[{name, schema}] reviewers may change before approving."
    )
    # Extra restriction from the node: only members of this group may decide (besides the
    # reviews.decide_review permission).
    reviewer_group = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "step_sequence"], name="reviewrequest_once_per_step"
            )
        ]
        permissions = [("decide_review", "Can approve or reject runs awaiting review")]

    def __str__(self):
        return f"{self.public_id} ({self.run.public_id} at {self.node_id})"


class Decision(models.TextChoices):
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class ReviewDecision(models.Model):
    """Who decided, when, what they saw, and what they changed. One per request, never edited."""

    request = models.OneToOneField(ReviewRequest, on_delete=models.PROTECT, related_name="decision")
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="review_decisions")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(blank=True)
    shown_values = models.JSONField()
    overrides = models.JSONField(default=list, help_text="[{field, before, after}]")
    decided_at = models.DateTimeField()

    class Meta:
        ordering = ["decided_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(decision__in=Decision.values), name="reviewdecision_decision_valid"
            ),
        ]

    def __str__(self):
        return f"{self.decision} by {self.reviewer} on {self.request.public_id}"
