"""The parts of other pages that reviews provide: the nav bar's count and the run page's panel.

The run page knows only the panel's template tag, so runs never imports reviews.
"""

from django import template
from django.utils import timezone

from reviews.amounts import money_of, show_value
from reviews.duplicates import possible_duplicates
from reviews.forms import DecisionForm, RejectForm
from reviews.otp_policy import verification_refusal
from reviews.selectors import reviews_awaiting_decision
from reviews.services import refusal_reason
from reviews.shown import shown_view
from reviews.state import review_state

register = template.Library()


@register.simple_tag
def waiting_review_count(user) -> int:
    """How many reviews wait for a decision this user may take (the nav bar's badge)."""
    if not user.is_authenticated:
        return 0
    return reviews_awaiting_decision(user).count()


@register.inclusion_tag("reviews/panel.html", takes_context=True)
def review_panel(context, review) -> dict:
    """The pending review on the run page: where it stands (approvals, deadline, possible
    duplicates), the values under review, and the Approve and Reject forms, or why this user
    may not decide, or the confirmation of their decision.

    A re-rendered page after a refused decision puts its bound form in the context as
    `review_form` (Approve) or `reject_form`, so its errors stay beside the fields; a decision
    to confirm is `review_confirmation`.
    """
    user = context["request"].user
    state = review_state(review)
    duplicates = possible_duplicates(review)
    view = shown_view(state, duplicates)  # what the forms bind the decision to
    refusal = refusal_reason(review, user, state)
    # Said before anyone submits; the decision path refuses it again (reviews.otp_policy).
    otp_notice = None if refusal else verification_refusal(review.run, user)
    form, reject_form = context.get("review_form"), context.get("reject_form")
    if not refusal:
        form = form or DecisionForm(state, view=view)
        reject_form = reject_form or RejectForm(state, view=view)
    else:
        form = reject_form = None
    return {
        "pending_review": review,
        "state": state,
        "values": _value_rows(state),
        "duplicates": duplicates,
        "deadline_passed": state.deadline is not None and state.deadline <= timezone.now(),
        "review_form": form,
        "reject_form": reject_form,
        "review_confirmation": None if refusal else context.get("review_confirmation"),
        "review_refusal": refusal,
        "otp_notice": otp_notice,
        "tab": context.get("tab"),
    }


def _value_rows(state) -> list[tuple[str, object, object, str]]:
    """(name, value now, value shown at first when an approver changed it, who changed it)."""
    money = money_of(state)
    original = state.request.shown_values or {}
    changed_by = {
        change["field"]: approval.decider_label
        for approval in state.approvals
        for change in approval.overrides
    }
    rows = []
    for name, value in state.values.items():
        before = original.get(name) if name in changed_by else None
        rows.append(
            (
                name,
                show_value(state, name, value, money),
                show_value(state, name, before, money) if name in changed_by else None,
                changed_by.get(name, ""),
            )
        )
    return rows
