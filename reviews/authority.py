"""Who may decide a review: the rules the panel, the queue and every decision apply.

A decision re-reads the reviewer (their permissions and groups as committed now) inside the
transaction that holds the run's lock, so a role taken away after the page was shown is a
refusal, not a decision.
"""

from django.contrib.auth import get_user_model

from reviews.state import ReviewState, lineage_starters

DECIDE_PERMISSION = "reviews.decide_review"


def fresh_user(user):
    """The user as the database has them now, without the permission caches of `user`."""
    if not user.is_authenticated:
        return user
    return get_user_model()._default_manager.get(pk=user.pk)


def refusal_reason(state: ReviewState, user) -> str | None:
    """Why `user` may not decide the review now, or None when they may."""
    if not user.is_authenticated:
        return "You must be logged in to decide reviews."
    if not user.is_active or not user.has_perm(DECIDE_PERMISSION):
        return "You do not have permission to decide reviews."
    if state.run.environment == "live" and not user.has_perm("runs.view_live_run"):
        return "You may not decide reviews of live runs."
    lineage = _lineage_reason(state, user)
    if lineage:
        return lineage
    mine = next((d for d in state.decisions if d.reviewer_id == user.pk), None)
    if mine is not None:
        needed = state.approvals_needed
        more = (
            f" {needed} more approval{'s' if needed != 1 else ''} must come from other reviewers."
            if needed
            else ""
        )
        return (
            f"You have already {mine.decision} this review; a quorum is of distinct people.{more}"
        )
    return _group_reason(state, user)


def _lineage_reason(state: ReviewState, user) -> str | None:
    run = state.run
    if run.started_by_user_id == user.pk:
        return "You started this run; another person must review it (four-eyes rule)."
    starters = lineage_starters(run)
    if user.pk in starters:
        return (
            f"You started run {starters[user.pk]}, which this run retries; another person "
            "must review it (four-eyes rule)."
        )
    if user.pk in state.policy.excluded_reviewer_ids:
        return "You started a run this run retries; another person must review it (four-eyes rule)."
    return None


def _group_reason(state: ReviewState, user) -> str | None:
    groups = state.groups
    if not groups or user.groups.filter(name__in=groups).exists():
        return None
    if state.escalation is not None:
        return (
            f"This review was escalated to {groups[0]} when its deadline passed; only its "
            "members may decide it now."
        )
    return f"Only members of {' or '.join(groups)} may decide this review."
