"""Reads behind the review queue and the nav bar's count."""

from django.db.models import Q, QuerySet

from reviews.models import ReviewRequest
from reviews.services import DECIDE_PERMISSION
from runs.models import RunStatus

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
    """Undecided requests of runs awaiting review that `user` may decide, oldest first.

    Mirrors reviews.services.refusal_reason: the permission, the four-eyes rule (never a run
    the user started) and the node's reviewer group.
    """
    if not user.is_authenticated or not user.has_perm(DECIDE_PERMISSION):
        return ReviewRequest.objects.none()
    groups = user.groups.values_list("name", flat=True)
    return (
        ReviewRequest.objects.filter(run__status=RunStatus.AWAITING_REVIEW, decision__isnull=True)
        .exclude(run__started_by_user_id=user.pk)
        .filter(Q(reviewer_group="") | Q(reviewer_group__in=groups))
        .select_related("run__procedure", "run__version")
        .order_by("created_at", "id")
    )


def key_values(shown_values) -> list[tuple[str, object]]:
    """The few shown values that say what a review is about (amounts first)."""
    if not isinstance(shown_values, dict):
        return []
    return [(name, shown_values[name]) for name in KEY_VALUE_NAMES if name in shown_values][
        :MAX_KEY_VALUES
    ]
