"""The digests a run record is made of: event hashes, row digests and ledger leaf bytes.

These are the product's hashing rules (runs.integrity, reviews.integrity) restated over plain
dicts, so that a bundle exported from the database can be checked without it. They must stay
byte-identical to what the product stored: change them and every existing run stops verifying.
"""

import hashlib

from rapidfolio_verify.canonical import canonical_json, digest

# The prev_hash of a run's first event.
GENESIS_HASH = "0" * 64

STEP_FIELDS = (
    "sequence",
    "node_id",
    "node_type",
    "tool",
    "status",
    "attempt",
    "input",
    "output",
    "request",
    "response",
    "idempotency_key",
    "error",
    "error_kind",
    "started_at",
    "finished_at",
)
REVIEW_REQUEST_FIELDS = (
    "review",
    "node_id",
    "shown_values",
    "overridable_fields",
    "reviewer_group",
)
DECISION_FIELDS = (
    "review",
    "reviewer_id",
    "decision",
    "comment",
    "shown_values",
    "overrides",
    "decided_at",
)
# Since review policies (quorum, deadlines, bound decisions) a request also pins its policy
# and deadline, and a decision its place among the request's decisions, who decided (a
# person or the system), the rest of what it was shown and that view's digest, what was
# confirmed, whether it closed the request, and an escalation's new deadline. Rows recorded
# before carry none of these and keep the digest they were recorded with.
REVIEW_REQUEST_FIELDS_V2 = (*REVIEW_REQUEST_FIELDS, "policy", "deadline")
DECISION_FIELDS_V2 = (
    *DECISION_FIELDS,
    "sequence",
    "decided_by",
    "shown_context",
    "shown_sha256",
    "confirmed",
    "final",
    "deadline",
)
# What a ledger leaf commits to: the whole event, its chain links included.
LEAF_FIELDS = ("run", "sequence", "type", "actor", "data", "created_at", "prev_hash", "hash")


def event_hash(
    *,
    prev_hash: str,
    run_public_id: str,
    sequence: int,
    type: str,
    actor: str,
    data: dict,
    created_at: str | None,
) -> str:
    """sha256(prev_hash ‖ canonical JSON of the event), hex. created_at is an ISO string."""
    body = canonical_json(
        {
            "run": run_public_id,
            "sequence": sequence,
            "type": type,
            "actor": actor,
            "data": data,
            "created_at": created_at,
        }
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def _digest_of(row: dict, fields: tuple[str, ...]) -> str:
    # A missing field raises KeyError rather than hashing a default: a row without a field
    # is not the row that was recorded.
    return digest({field: row[field] for field in fields})


def step_digest(step: dict) -> str:
    """The digest a step.recorded event carries (datetimes already ISO strings)."""
    return _digest_of(step, STEP_FIELDS)


def review_request_digest(request: dict) -> str:
    """The digest a review.requested event carries; "review" is the request's public id.
    A request with a policy is digested with it (emptying the policy changes the digest)."""
    fields = REVIEW_REQUEST_FIELDS_V2 if request.get("policy") else REVIEW_REQUEST_FIELDS
    return _digest_of(request, fields)


def decision_digest(decision: dict) -> str:
    """The digest a review.decided event carries; "review" is the request's public id.
    A decision bound to what it was shown (a shown_sha256) is digested with all of it."""
    fields = DECISION_FIELDS_V2 if decision.get("shown_sha256") else DECISION_FIELDS
    return _digest_of(decision, fields)


def review_key(data: dict):
    """The review request a review.requested event (or a request row) names."""
    return data.get("review")


def decision_key(data: dict):
    """The decision a review.decided event (or a decision row) names: its review's id, and
    after a review's first decision its place among them ("rev_…#2"). A decision recorded
    before quorums is its review's only one, and names no place."""
    review, sequence = data.get("review"), data.get("sequence", 1)
    return review if sequence == 1 or review is None else f"{review}#{sequence}"


def leaf_bytes(event: dict) -> bytes:
    """The ledger leaf of one run event: the canonical JSON of the event and its chain links.
    Keys other than LEAF_FIELDS (a bundle's index and proof) are not part of the leaf."""
    return canonical_json({field: event[field] for field in LEAF_FIELDS}).encode()
