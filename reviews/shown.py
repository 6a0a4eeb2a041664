"""What a reviewer is shown, as one JSON document, and its digest.

The review panel renders this view and carries its digest in the form; a decision recomputes
the view under the run's lock and is refused as stale when the digest differs, so nobody
decides on a page the run has moved away from (another approval, an escalation, a cancel, a
new possible duplicate). The decision records the view (values in shown_values, the rest in
shown_context) and its digest, so an auditor can recompute exactly what was on the screen.
"""

from reviews.duplicates import duplicates_of
from reviews.models import Decision
from reviews.state import ReviewState
from runs.integrity import digest, iso


def shown_view(state: ReviewState, duplicates: list | None = None) -> dict:
    """The view of `state` (with `duplicates`, else they are looked up)."""
    request, run, policy = state.request, state.run, state.policy
    if duplicates is None:
        duplicates = duplicates_of([request]).get(request.pk, [])
    policy_shown = policy.as_json()
    del policy_shown["excluded_reviewer_ids"]  # who may not decide is not on the screen
    return {
        "review": request.public_id,
        "run": {"id": run.public_id, "status": run.status, "environment": run.environment},
        "values": state.values,
        "overridable": request.overridable_fields if state.may_override else [],
        "policy": policy_shown,
        "decisions": [
            {
                "sequence": d.sequence,
                "decision": d.decision,
                "by": d.decider_label,
                "overrides": d.overrides,
            }
            for d in state.decisions
        ],
        "approvals_needed": state.approvals_needed,
        "groups": list(state.groups),
        "deadline": iso(state.deadline),
        "duplicates": [{"run": other.public_id, "status": other.status} for other in duplicates],
    }


def view_digest(view: dict) -> str:
    return digest(view)


def split_view(view: dict) -> tuple[dict, dict]:
    """(shown_values, shown_context) as a decision records them."""
    context = {key: value for key, value in view.items() if key != "values"}
    return view["values"], context


def what_changed(state: ReviewState, seen_at, duplicates: list[str]) -> str:
    """Why the page a decision was taken on is out of date, in words: what happened since
    `seen_at` (when the page was shown; None if unknown). `duplicates`: the public ids of the
    runs the review now lists as possible duplicates."""
    later = [d for d in state.decisions if seen_at is None or d.decided_at > seen_at]
    for decision in later:
        if decision.decision == Decision.ESCALATED:
            return (
                f"The deadline passed and the review was escalated to {state.policy.escalate_to}"
                " after this page was shown."
            )
        if decision.decision == Decision.APPROVED:
            changed = ", ".join(change["field"] for change in decision.overrides)
            extra = f" and changed {changed}" if changed else ""
            return f"{decision.decider_label} approved{extra} after this page was shown."
    if duplicates:
        runs = ", ".join(duplicates)
        return (
            "The review changed after this page was shown; it now lists possible duplicates "
            f"(run {runs}, with the same values)."
        )
    return "The review changed after this page was shown."
