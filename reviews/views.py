"""The home page, the review queue and the Approve / Reject actions (shown on the run page).

The home page lives here because it shows both reviews and runs, and reviews is the app that
may import runs.
"""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from rapidfolio.views import forbidden
from reviews import services
from reviews.confirmation import approval_confirmation, approval_notice, rejection_confirmation
from reviews.errors import InvalidDecision
from reviews.forms import DecisionForm, RejectForm
from reviews.models import ReviewRequest
from reviews.otp_policy import VerificationRequired
from reviews.selectors import review_queue, reviews_awaiting_decision
from reviews.state import review_state
from runs.errors import RunError
from runs.selectors import list_runs, may_view_runs, rows_of_visible_runs
from runs.views import after_action, refuse, render_run_page, requested_tab, runs_page


@login_required
def home(request):
    """Everyone's landing page after login, so never a 403: it shows what the user may see."""
    context = {
        "nav": "home",
        "can_view_runs": may_view_runs(request.user),
        "waiting_reviews": reviews_awaiting_decision(request.user)[:5],
        "recent_runs": list_runs({}, viewer=request.user, page_size=8).runs,
    }
    return render(request, "home.html", context)


@runs_page
@require_GET
def queue(request):
    context = {"nav": "reviews", "items": review_queue(request.user), "now": timezone.now()}
    return render(request, "reviews/queue.html", context)


@runs_page
@require_POST
def approve(request, public_id):
    return _decide(request, public_id, approve=True)


@runs_page
@require_POST
def reject(request, public_id):
    return _decide(request, public_id, approve=False)


def _visible_review(request, public_id: str) -> ReviewRequest:
    """The review, if its run is one the user may see; else the same 404 as an unknown id."""
    reviews = rows_of_visible_runs(request.user, ReviewRequest.objects.select_related("run"))
    try:
        return reviews.get(public_id=public_id)
    except ReviewRequest.DoesNotExist:
        raise Http404("No such review.") from None


def _decide(request, public_id: str, *, approve: bool):
    """Approve or Reject, in two steps: the checked decision is shown for confirmation (its
    changes before -> after, the amount and payee of a live or large payment, the rejection),
    then recorded once confirmed. Nothing is recorded before; any error is shown beside its
    field, or as the page's message (a stale page, a decided review)."""
    review = _visible_review(request, public_id)
    state = review_state(review)
    reason = services.refusal_reason(review, request.user, state)
    if reason:
        return forbidden(request, reason)
    form = (DecisionForm if approve else RejectForm)(state, request.POST)
    key = "review_form" if approve else "reject_form"
    try:
        services.check_may_decide(state, request.user)
        if not form.is_valid():
            raise InvalidDecision("Some values are not valid.")
        if "back" in request.POST:  # from the confirmation, to change the decision
            return _panel(request, review.run, {key: form})
        if approve:
            return _approve(request, state, form)
        return _reject(request, state, form)
    except VerificationRequired as exc:
        form.add_error(None, exc.message)  # above the buttons, with what to do
        return _panel(request, review.run, {key: form}, status=403)
    except InvalidDecision as exc:
        form.add_decision_errors(exc.details)  # the panel shows them beside the fields
        return _panel(request, review.run, {key: form}, status=422)
    except RunError as exc:
        return refuse(request, review.run, exc)


def _panel(request, run, context: dict, status: int = 200):
    return render_run_page(
        request, run, requested_tab(request), extra_context=context, status=status
    )


def _approve(request, state, form):
    seen = form.cleaned_data["seen"], form.cleaned_data["seen_at"]
    proposal = services.check_approval(
        request=state.request,
        reviewer=request.user,
        overrides=form.overrides(),
        comment=form.cleaned_data["comment"],
        seen=seen,
    )
    if set(proposal.confirm) - set(form.confirmed_items()):
        confirmation = approval_confirmation(proposal, form)
        return _panel(request, state.run, {"review_confirmation": confirmation})
    decision = services.approve(
        request=state.request,
        reviewer=request.user,
        overrides=form.overrides(),
        comment=form.cleaned_data["comment"],
        seen=seen[0],
        seen_at=seen[1],
        confirmed=proposal.confirm,
    )
    return after_action(request, state.run, approval_notice(decision, proposal.state))


def _reject(request, state, form):
    seen = form.cleaned_data["seen"], form.cleaned_data["seen_at"]
    reason = form.cleaned_data["reason"]
    services.check_rejection(
        request=state.request, reviewer=request.user, comment=reason, seen=seen
    )
    if services.CONFIRM_REJECTION not in form.confirmed_items():
        confirmation = rejection_confirmation(state, form)
        return _panel(request, state.run, {"review_confirmation": confirmation})
    services.reject(
        request=state.request,
        reviewer=request.user,
        comment=reason,
        seen=seen[0],
        seen_at=seen[1],
        confirmed=(services.CONFIRM_REJECTION,),
    )
    return after_action(request, state.run, "Rejected; the run has failed.")
