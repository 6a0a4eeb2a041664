"""Reads behind the review queue and the nav bar's count."""

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from reviews.amounts import money_of, show_value
from reviews.duplicates import duplicates_of
from reviews.models import Decision, ReviewDecision, ReviewGroup, ReviewRequest
from reviews.policy import policy_of_request
from reviews.services import DECIDE_PERMISSION
from reviews.state import ReviewState
from runs.models import RunStatus
from runs.selectors import rows_of_visible_runs

# Shown values that say what is at stake, in this order, when a review names them.
KEY_VALUE_NAMES = (
    "amount",
    "requested_amount",
    "total",
    "currency",
    "credit_limit",
    "limit",
    "customer",
    "beneficiary",
    "invoice",
    "reference",
)
MAX_KEY_VALUES = 4


def reviews_awaiting_decision(user) -> QuerySet[ReviewRequest]:
    """Open requests of runs awaiting review that `user` may decide, oldest first.

    Mirrors reviews.authority.refusal_reason in SQL: the permission, runs the user may see
    (live ones only with the live environment), four-eyes across the retry lineage (never a
    run the user started, nor a retry of one: the request's lineage_starters), never a review
    the user already decided (a quorum is of distinct people), and the groups: the node's
    before an escalation, escalate_to's after it.
    """
    if not user.is_authenticated or not user.has_perm(DECIDE_PERMISSION):
        return ReviewRequest.objects.none()
    decisions = ReviewDecision.objects.filter(request=OuterRef("pk"))
    waiting = ReviewRequest.objects.filter(run__status=RunStatus.AWAITING_REVIEW).exclude(
        Exists(decisions.filter(final=True))
    )
    excluded = ReviewRequest.lineage_starters.through.objects.filter(
        reviewrequest=OuterRef("pk"), user_id=user.pk
    )
    return (
        rows_of_visible_runs(user, waiting)
        .exclude(run__started_by_user_id=user.pk)
        .exclude(Exists(excluded))
        .exclude(Exists(decisions.filter(reviewer_id=user.pk)))
        .filter(_in_deciding_group(user, decisions))
        .select_related("run__procedure", "run__version")
        .order_by("created_at", "id")
    )


def _in_deciding_group(user, decisions) -> Q:
    names = user.groups.values_list("name", flat=True)
    rows = ReviewGroup.objects.filter(request=OuterRef("pk"))
    escalated = Exists(decisions.filter(decision=Decision.ESCALATED))
    # Requests recorded before ReviewGroup rows name their one group in reviewer_group.
    before = (
        Q(~Exists(rows.filter(escalation=False)))
        & (Q(reviewer_group="") | Q(reviewer_group__in=names))
    ) | Q(Exists(rows.filter(escalation=False, name__in=names)))
    after = Q(Exists(rows.filter(escalation=True, name__in=names)))
    return (~Q(escalated) & before) | (Q(escalated) & after)


@dataclass
class QueueItem:
    """One row of the review queue."""

    state: ReviewState
    key_values: list
    duplicates: list

    @property
    def review(self) -> ReviewRequest:
        return self.state.request


def review_queue(user) -> list[QueueItem]:
    """The queue: each review the user may decide, where it stands (values now, money as
    money, approvals, deadline) and its possible duplicates; a few queries however long the
    queue is."""
    requests = list(
        reviews_awaiting_decision(user).prefetch_related(
            Prefetch(
                "decisions",
                queryset=ReviewDecision.objects.select_related("reviewer").order_by("sequence"),
            )
        )
    )
    duplicates = duplicates_of(requests)
    items = []
    for request in requests:
        state = ReviewState(request, policy_of_request(request), list(request.decisions.all()))
        money = money_of(state)
        shown = [(name, show_value(state, name, v, money)) for name, v in key_values(state.values)]
        items.append(QueueItem(state, shown, duplicates.get(request.pk, [])))
    return items


def key_values(shown_values) -> list[tuple[str, object]]:
    """The few shown values that say what a review is about (amounts first)."""
    if not isinstance(shown_values, dict):
        return []
    return [(name, shown_values[name]) for name in KEY_VALUE_NAMES if name in shown_values][
        :MAX_KEY_VALUES
    ]
