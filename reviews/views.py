"""The home page, the review queue and the Approve / Reject actions (shown on the run page).

The home page lives here because it shows both reviews and runs, and reviews is the app that
may import runs.
"""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from rapidfolio.views import forbidden
from reviews import services
from reviews.errors import InvalidOverrides
from reviews.forms import DecisionForm
from reviews.models import ReviewRequest
from reviews.selectors import key_values, reviews_awaiting_decision
from runs.errors import RunError
from runs.selectors import list_runs
from runs.views import after_action, refuse, render_run_page, requested_tab


@login_required
def home(request):
    context = {
        "nav": "home",
        "waiting_reviews": reviews_awaiting_decision(request.user)[:5],
        "recent_runs": list_runs({}, page_size=8).runs,
    }
    return render(request, "home.html", context)


@login_required
@require_GET
def queue(request):
    reviews = [
        (review, key_values(review.shown_values))
        for review in reviews_awaiting_decision(request.user)
    ]
    return render(request, "reviews/queue.html", {"nav": "reviews", "reviews": reviews})


@login_required
@require_POST
def approve(request, public_id):
    return _decide(request, public_id, approve=True)


@login_required
@require_POST
def reject(request, public_id):
    return _decide(request, public_id, approve=False)


def _decide(request, public_id: str, *, approve: bool):
    review = get_object_or_404(ReviewRequest.objects.select_related("run"), public_id=public_id)
    run = review.run
    reason = services.refusal_reason(review, request.user)
    if reason:
        return forbidden(request, reason)
    form = DecisionForm(review, request.POST, with_overrides=approve)
    try:
        if not form.is_valid():
            raise InvalidOverrides("Some values are not valid.")
        if approve:
            services.approve(
                request=review,
                reviewer=request.user,
                overrides=form.overrides(),
                comment=form.cleaned_data["comment"],
            )
        else:
            services.reject(
                request=review, reviewer=request.user, comment=form.cleaned_data["comment"]
            )
    except InvalidOverrides as exc:
        form.add_override_errors(exc.details)
        tab = requested_tab(request)
        context = {"review_form": form}  # the review panel shows it, errors beside the fields
        return render_run_page(request, run, tab, extra_context=context, status=422)
    except RunError as exc:
        return refuse(request, run, exc)
    verdict = "Approved; the run continues." if approve else "Rejected; the run has failed."
    return after_action(request, run, verdict)
