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


def request_fact(request: ReviewRequest) -> dict:
    """A request as its digest and an evidence bundle record it."""
    return {
        "review": request.public_id,
        "node_id": request.node_id,
        "shown_values": request.shown_values,
        "overridable_fields": request.overridable_fields,
        "reviewer_group": request.reviewer_group,
        "policy": request.policy,
        "deadline": iso(request.deadline),
    }


def decision_fact(decision: ReviewDecision) -> dict:
    """A decision as its digest and an evidence bundle record it."""
    return {
        "review": decision.request.public_id,
        "reviewer_id": decision.reviewer_id,
        "decision": decision.decision,
        "comment": decision.comment,
        "shown_values": decision.shown_values,
        "overrides": decision.overrides,
        "decided_at": iso(decision.decided_at),
        "sequence": decision.sequence,
        "decided_by": decision.decided_by,
        "shown_context": decision.shown_context,
        "shown_sha256": decision.shown_sha256,
        "confirmed": decision.confirmed,
        "final": decision.final,
        "deadline": iso(decision.deadline),
    }


def review_request_digest(request: ReviewRequest) -> str:
    return facts.review_request_digest(request_fact(request))


def decision_digest(decision: ReviewDecision) -> str:
    return facts.decision_digest(decision_fact(decision))


def _requests_of(run) -> dict:
    return {request.public_id: request for request in run.review_requests.all()}


def _decisions_of(run) -> dict:
    decisions = run.review_decisions.select_related("request")
    return {facts.decision_key(decision_fact(decision)): decision for decision in decisions}


def _request_dict(request: ReviewRequest) -> dict:
    return {**request_fact(request), "title": request.title}


def _decision_dict(decision: ReviewDecision) -> dict:
    # The reviewer's name is the bundle's label (not pinned): reviewer_id is.
    return {**decision_fact(decision), "reviewer": decision.decider_label}


def _bundle_requests(run) -> list[dict]:
    return [_request_dict(request) for request in run.review_requests.order_by("created_at")]


def _bundle_decisions(run) -> list[dict]:
    decisions = run.review_decisions.select_related("request", "reviewer").order_by(
        "decided_at", "sequence"
    )
    return [_decision_dict(decision) for decision in decisions]


def _describe_decision(key) -> str:
    review, _, sequence = str(key).partition("#")
    return f"decision {sequence} on {review}" if sequence else f"the decision on {review}"


def register() -> None:
    register_bundle_section("review_requests", _bundle_requests)
    register_bundle_section("decisions", _bundle_decisions)
    register_pinned_rows(
        PinnedRows(
            event_type=REVIEW_REQUESTED,
            key_of=facts.review_key,
            rows_of=_requests_of,
            digest=review_request_digest,
            describe=lambda key: f"review request {key}",
        )
    )
    register_pinned_rows(
        PinnedRows(
            event_type=REVIEW_DECIDED,
            key_of=facts.decision_key,
            rows_of=_decisions_of,
            digest=decision_digest,
            describe=_describe_decision,
        )
    )
