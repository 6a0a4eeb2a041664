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
    # What the node required when the run reached it (reviews.policy.ReviewPolicy): approvals,
    # groups, timeout and escalation, confirm_above, the payment fields, and who is excluded
    # (the starters of the run's retry lineage). Pinned by the request's digest. Empty on
    # requests recorded before policies existed.
    policy = models.JSONField(default=dict, db_default={})
    # created_at + the node's timeout; an escalation sets a later one on its decision row.
    deadline = models.DateTimeField(null=True, blank=True)
    # sha256 of the shown values' canonical JSON: finds the same values under review twice.
    values_sha256 = models.CharField(max_length=64, blank=True, default="", db_default="")
    # policy["excluded_reviewer_ids"] as rows, so the queue can leave them out in SQL.
    lineage_starters = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="+", blank=True
    )

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "step_sequence"], name="reviewrequest_once_per_step"
            )
        ]
        indexes = [
            # reviews.timeouts.expired_reviews: the requests whose deadline has passed.
            models.Index(
                fields=["deadline"],
                name="reviewrequest_deadline_idx",
                condition=Q(deadline__isnull=False),
            ),
            # reviews.duplicates: the same values under review in the same procedure.
            models.Index(fields=["values_sha256"], name="reviewrequest_values_idx"),
        ]
        permissions = [("decide_review", "Can approve or reject runs awaiting review")]

    def __str__(self):
        return f"{self.public_id} ({self.run.public_id} at {self.node_id})"


class ReviewGroup(models.Model):
    """A group whose members may decide a request: before an escalation (`escalation` false)
    or after it. No row of a stage means anyone with the reviewer role. Written with the
    request, from its pinned policy, so the queue can filter by group in SQL."""

    request = models.ForeignKey(ReviewRequest, on_delete=models.PROTECT, related_name="groups")
    name = models.CharField(max_length=150)
    escalation = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["request", "name", "escalation"], name="reviewgroup_unique"
            )
        ]

    def __str__(self):
        return f"{self.name} ({self.request.public_id})"


class Decision(models.TextChoices):
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    # The deadline passed and the node escalates: another group decides, by a new deadline.
    ESCALATED = "escalated", "Escalated"


class DecidedBy(models.TextChoices):
    PERSON = "person", "Person"
    # A timeout: no reviewer, the system decided by the node's on_timeout.
    SYSTEM = "system", "System"


class ReviewDecision(models.Model):
    """Who decided, when, what they saw, and what they changed. Never edited: each approval of
    a quorum is its own row, the one that closes the request is `final`."""

    request = models.ForeignKey(ReviewRequest, on_delete=models.PROTECT, related_name="decisions")
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="review_decisions")
    # Its place among the request's decisions: 1, 2, ...
    sequence = models.PositiveIntegerField(default=1, db_default=1)
    decided_by = models.CharField(
        max_length=10, choices=DecidedBy.choices, default=DecidedBy.PERSON, db_default="person"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(blank=True)
    shown_values = models.JSONField()
    # The rest of what the decider was shown (reviews.shown): the run's state, the policy,
    # earlier approvals, the deadline, possible duplicates; and the digest of all of it, which
    # the page carried and the decision was checked against.
    shown_context = models.JSONField(default=dict, db_default={})
    shown_sha256 = models.CharField(max_length=64, blank=True, default="", db_default="")
    # What the person confirmed on the confirmation step ("overrides", "live", "amount").
    confirmed = models.JSONField(default=list, db_default=[])
    overrides = models.JSONField(default=list, help_text="[{field, before, after}]")
    # The decision that closed the request: a rejection, the last approval of the quorum.
    final = models.BooleanField(default=True, db_default=True)
    # An escalation's new deadline.
    deadline = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField()

    class Meta:
        ordering = ["decided_at", "sequence"]
        constraints = [
            models.CheckConstraint(
                condition=Q(decision__in=Decision.values), name="reviewdecision_decision_valid"
            ),
            models.CheckConstraint(
                condition=(Q(decided_by="person") & Q(reviewer__isnull=False))
                | (Q(decided_by="system") & Q(reviewer__isnull=True)),
                name="reviewdecision_reviewer_iff_person",
            ),
            models.CheckConstraint(
                condition=~Q(decision="escalated") | (Q(decided_by="system") & Q(final=False)),
                name="reviewdecision_escalation_by_system",
            ),
            models.UniqueConstraint(
                fields=["request", "sequence"], name="reviewdecision_sequence_unique"
            ),
            # One decision per person per request: a quorum is of distinct reviewers.
            models.UniqueConstraint(
                fields=["request", "reviewer"],
                condition=Q(reviewer__isnull=False),
                name="reviewdecision_once_per_reviewer",
            ),
            models.UniqueConstraint(
                fields=["request"], condition=Q(final=True), name="reviewdecision_one_final"
            ),
        ]

    def __str__(self):
        who = self.reviewer if self.reviewer_id else "the system"
        return f"{self.decision} by {who} on {self.request.public_id}"

    @property
    def decider_label(self) -> str:
        return self.reviewer.get_username() if self.reviewer_id else "the system"


class LiveApprovalPolicy(models.Model):
    """The admin's switches for deciding live runs: one row (reviews/otp_policy.py reads it).

    A row an admin changes in Django admin takes effect on the next decision, with no deploy,
    and the admin's history records who changed it and when."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    require_otp = models.BooleanField(
        "Require two-factor for live approvals",
        default=False,
        help_text="Approving or rejecting a live run needs a session verified with an "
        "authenticator code (reviewers set one up on their Security page).",
    )
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "live approval policy"
        verbose_name_plural = "live approval policy"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="liveapprovalpolicy_one_row")]

    def __str__(self):
        return "Live approval policy"

    @classmethod
    def current(cls) -> "LiveApprovalPolicy":
        """The row, or the defaults before an admin has saved it."""
        return cls.objects.filter(pk=1).first() or cls()
