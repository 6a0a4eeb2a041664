"""What a run's events pin of the reviews app's rows: the digest of each review request and
decision (rapidfolio_verify.facts computes it, for the offline verifier too), checked by
runs.integrity.verify_run through the PinnedRows registered here, and the rows as an evidence
bundle carries them."""

from rapidfolio_verify import facts
from reviews.models import ReviewDecision, ReviewRequest
from runs.evidence import register_bundle_section
from runs.integrity import PinnedRows, iso, register_pinned_rows

REVIEW_REQUESTED = "review.requested"
REVIEW_DECIDED = "review.decided"


def review_request_digest(request: ReviewRequest) -> str:
    return facts.review_request_digest(
        {
            "review": request.public_id,
            "node_id": request.node_id,
            "shown_values": request.shown_values,
            "overridable_fields": request.overridable_fields,
            "reviewer_group": request.reviewer_group,
        }
    )


def decision_digest(decision: ReviewDecision) -> str:
    return facts.decision_digest(
        {
            "review": decision.request.public_id,
            "reviewer_id": decision.reviewer_id,
            "decision": decision.decision,
            "comment": decision.comment,
            "shown_values": decision.shown_values,
            "overrides": decision.overrides,
            "decided_at": iso(decision.decided_at),
        }
    )


def _requests_of(run) -> dict:
    return {request.public_id: request for request in run.review_requests.all()}


def _decisions_of(run) -> dict:
    decisions = run.review_decisions.select_related("request")
    return {decision.request.public_id: decision for decision in decisions}


def _request_dict(request: ReviewRequest) -> dict:
    return {
        "review": request.public_id,
        "node_id": request.node_id,
        "title": request.title,
        "shown_values": request.shown_values,
        "overridable_fields": request.overridable_fields,
        "reviewer_group": request.reviewer_group,
    }


def _decision_dict(decision: ReviewDecision) -> dict:
    return {
        "review": decision.request.public_id,
        "reviewer_id": decision.reviewer_id,
        "reviewer": decision.reviewer.get_username(),
        "decision": decision.decision,
        "comment": decision.comment,
        "shown_values": decision.shown_values,
        "overrides": decision.overrides,
        "decided_at": iso(decision.decided_at),
    }


def _bundle_requests(run) -> list[dict]:
    return [_request_dict(request) for request in run.review_requests.order_by("created_at")]


def _bundle_decisions(run) -> list[dict]:
    decisions = run.review_decisions.select_related("request", "reviewer").order_by("decided_at")
    return [_decision_dict(decision) for decision in decisions]


def register() -> None:
    register_bundle_section("review_requests", _bundle_requests)
    register_bundle_section("decisions", _bundle_decisions)
    register_pinned_rows(
        PinnedRows(
            event_type=REVIEW_REQUESTED,
            key="review",
            rows_of=_requests_of,
            digest=review_request_digest,
            describe=lambda key: f"review request {key}",
        )
    )
    register_pinned_rows(
        PinnedRows(
            event_type=REVIEW_DECIDED,
            key="review",
            rows_of=_decisions_of,
            digest=decision_digest,
            describe=lambda key: f"the decision on {key}",
        )
    )
