"""Possible duplicates: the same values under review again, such as one invoice started twice.

Two review requests are possible duplicates when they are at the same node of the same
procedure, show exactly the same values (their values_sha256: the canonical JSON's digest)
and their runs were created within REVIEW_DUPLICATE_WINDOW_HOURS (default 24) of each other.
A run's own retry lineage is not a duplicate of it: a retry is the same payment on purpose.
"""

from datetime import timedelta

from django.conf import settings

from reviews.models import ReviewRequest
from reviews.state import lineage_run_ids
from runs.integrity import digest

DEFAULT_WINDOW_HOURS = 24


def window() -> timedelta:
    return timedelta(
        hours=float(getattr(settings, "REVIEW_DUPLICATE_WINDOW_HOURS", DEFAULT_WINDOW_HOURS))
    )


def values_digest(values) -> str:
    return digest(values)


def possible_duplicates(request: ReviewRequest) -> list:
    """The other runs with the same values under review at the same node, oldest first."""
    return duplicates_of([request]).get(request.pk, [])


def duplicates_of(requests: list[ReviewRequest]) -> dict[int, list]:
    """{request pk: [runs that may duplicate it]} for many requests, in one query."""
    requests = [r for r in requests if r.values_sha256]
    if not requests:
        return {}
    span = window()
    # The digest index finds the candidates; the rest is compared here.
    candidates = list(
        ReviewRequest.objects.filter(values_sha256__in={r.values_sha256 for r in requests})
        .select_related("run")
        .order_by("run__created_at", "run_id")
    )
    found: dict[int, list] = {}
    for request in requests:
        lineage = lineage_run_ids(request.run) if request.run.retry_of_id else set()
        for other in candidates:
            if (
                other.run_id != request.run_id
                and other.run_id not in lineage
                and other.run.retry_of_id != request.run_id
                and other.values_sha256 == request.values_sha256
                and other.node_id == request.node_id
                and other.run.procedure_id == request.run.procedure_id
                # A sandbox rehearsal does not duplicate a live payment; and a reviewer must
                # not learn of runs in an environment they may not see.
                and other.run.environment == request.run.environment
                and abs(other.run.created_at - request.run.created_at) <= span
                and other.run not in found.get(request.pk, [])
            ):
                found.setdefault(request.pk, []).append(other.run)
    return found
