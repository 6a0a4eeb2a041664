"""Where a review stands: its pinned policy and its decisions so far, read together.

A request's decisions are append-only rows, so its state is derived from them, never stored:
approvals recorded, an escalation (and the deadline and group it set), the decision that closed
it. Values overridden by the first approver are what later approvers of a quorum confirm: they
see them and may not change them again (maker-checker), so every approval of a quorum is an
approval of the same values.
"""

from dataclasses import dataclass, field

from reviews.models import Decision, ReviewDecision, ReviewRequest
from reviews.policy import ReviewPolicy, policy_of_request
from runs.models import Run, RunStatus

# A retry of a retry of ...: far more than any real lineage, a guard against a cycle.
MAX_LINEAGE = 1000


@dataclass
class ReviewState:
    request: ReviewRequest
    policy: ReviewPolicy
    decisions: list[ReviewDecision] = field(default_factory=list)

    @property
    def run(self) -> Run:
        return self.request.run

    @property
    def approvals(self) -> list[ReviewDecision]:
        return [d for d in self.decisions if d.decision == Decision.APPROVED]

    @property
    def approvals_needed(self) -> int:
        return max(self.policy.approvals - len(self.approvals), 0)

    @property
    def final(self) -> ReviewDecision | None:
        return next((d for d in self.decisions if d.final), None)

    @property
    def escalation(self) -> ReviewDecision | None:
        return next((d for d in self.decisions if d.decision == Decision.ESCALATED), None)

    @property
    def deadline(self):
        escalation = self.escalation
        return escalation.deadline if escalation else self.request.deadline

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups whose members may decide now (empty: anyone with the reviewer role)."""
        return (self.policy.escalate_to,) if self.escalation else self.policy.groups

    @property
    def is_open(self) -> bool:
        return self.final is None and self.run.status == RunStatus.AWAITING_REVIEW

    @property
    def may_override(self) -> bool:
        """Only the first approver changes values; the others confirm them."""
        return not self.approvals

    @property
    def values(self) -> dict:
        """The values under review now: as shown, with the first approver's overrides."""
        values = dict(self.request.shown_values or {})
        for approval in self.approvals:
            values.update({change["field"]: change["after"] for change in approval.overrides})
        return values

    @property
    def next_sequence(self) -> int:
        return len(self.decisions) + 1


def review_state(request: ReviewRequest) -> ReviewState:
    """The request's state, its decisions read in one query (in order)."""
    decisions = list(request.decisions.select_related("reviewer").order_by("sequence"))
    return ReviewState(request=request, policy=policy_of_request(request), decisions=decisions)


def lineage_starters(run: Run) -> dict[int, str]:
    """The users who started `run` and every run it retries, however far back: {user id: the
    public id of the (latest) run they started}."""
    starters = {run.started_by_user_id: run.public_id} if run.started_by_user_id else {}
    original, seen = run.retry_of_id, set()
    while original is not None and original not in seen and len(seen) < MAX_LINEAGE:
        seen.add(original)
        row = Run.objects.filter(pk=original).values_list(
            "retry_of_id", "started_by_user_id", "public_id"
        )
        original, starter, public_id = row.get()
        if starter is not None:
            starters.setdefault(starter, public_id)
    return starters


def lineage_run_ids(run: Run) -> set[int]:
    """The runs `run` retries, however far back (not `run` itself)."""
    found = set()
    original = run.retry_of_id
    while original is not None and original not in found and len(found) < MAX_LINEAGE:
        found.add(original)
        original = Run.objects.filter(pk=original).values_list("retry_of_id", flat=True).get()
    return found
