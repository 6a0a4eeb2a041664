"""The parts of other pages that reviews provide: the nav bar's count and the run page's panel.

The run page knows only the panel's template tag, so runs never imports reviews.
"""

from django import template

from reviews.forms import DecisionForm
from reviews.selectors import reviews_awaiting_decision
from reviews.services import refusal_reason

register = template.Library()


@register.simple_tag
def waiting_review_count(user) -> int:
    """How many reviews wait for a decision this user may take (the nav bar's badge)."""
    if not user.is_authenticated:
        return 0
    return reviews_awaiting_decision(user).count()


@register.inclusion_tag("reviews/panel.html", takes_context=True)
def review_panel(context, review) -> dict:
    """The pending review on the run page: what reviewers are shown, and the Approve / Reject
    form, or why this user may not decide.

    A re-rendered page after a refused decision puts its bound form in the context as
    `review_form`, so its errors stay beside the fields.
    """
    refusal = refusal_reason(review, context["request"].user)
    form = context.get("review_form")
    if form is None and not refusal:
        form = DecisionForm(review)
    return {
        "pending_review": review,
        "review_form": form,
        "review_refusal": refusal,
        "tab": context.get("tab"),
    }
