"""The run pages: the Runs list, a run with its tabs, and the Cancel and Retry actions."""

import json
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from rapidfolio.views import forbidden, is_swap, navigate, render_page
from runs import selectors
from runs.errors import RunError
from runs.evidence import NotSealed, bundle, verify_and_check
from runs.filters import RunFilter
from runs.models import FailureKind, Run, RunEvent, RunStatus
from runs.picture import outcome_label, run_picture
from runs.services import cancel_run, retry_run
from runs.templatetags.run_tags import row_token

TABS = {
    "overview": "Overview",
    "inputs": "Inputs",
    "step-log": "Step Log",
    "output": "Output",
    "events": "Events",
}
DEFAULT_TAB = "overview"
PAGE_SIZE = selectors.DEFAULT_PAGE_SIZE
NO_RUN_ACCESS = (
    "Your account may not see runs. Ask an administrator for the Operators or Reviewers role."
)


def runs_page(view):
    """A page that shows runs: log in first, and a 403 for a user who may see no run at all."""

    @login_required
    @wraps(view)
    def page(request, *args, **kwargs):
        if not selectors.may_view_runs(request.user):
            return forbidden(request, NO_RUN_ACCESS)
        return view(request, *args, **kwargs)

    return page


def run_page(view):
    """A page, partial, download or action about one run, which the view gets instead of its id.

    A run the user may not see (another environment's) is the same 404 as an unknown id.
    """

    @runs_page
    @wraps(view)
    def page(request, public_id, *args, **kwargs):
        return view(request, visible_run(request, public_id), *args, **kwargs)

    return page


def visible_run(request, public_id: str) -> Run:
    try:
        return selectors.run_detail(public_id, viewer=request.user)
    except Run.DoesNotExist:
        raise Http404("No such run.") from None


@runs_page
@require_GET
def run_list(request):
    cursor_error = ""
    try:
        page = selectors.list_runs(
            request.GET,
            viewer=request.user,
            cursor=request.GET.get("cursor") or None,
            page_size=PAGE_SIZE,
        )
    except selectors.InvalidCursor as exc:
        cursor_error = str(exc)
        page = selectors.RunPage([], None, RunFilter(request.GET, queryset=Run.objects.none()))
    filtered = any(request.GET.getlist(name) for name in page.filter.form.fields)
    context = {"nav": "runs", "page": page, "filtered": filtered, "cursor_error": cursor_error}
    return render_page(request, "runs/list.html", context, partial="results")


@runs_page
@require_GET
def run_row(request, public_id):
    """A run's row of the Runs list, which polls it while the run is under way: 204 while
    nothing it shows has changed; a settled run's row polls no more. A plain GET (no HTMX) goes
    to the run's page."""
    try:
        run = selectors.run_list_row(public_id, viewer=request.user)
    except Run.DoesNotExist:
        raise Http404("No such run.") from None
    if not is_swap(request):
        return redirect("runs:detail", run.public_id)
    if request.GET.get("seen") == row_token(run):
        return HttpResponse(status=204)
    return render_page(request, "runs/list.html", {"run": run}, partial="run-row")


@run_page
@require_GET
def run_detail(request, run, tab=DEFAULT_TAB):
    if is_swap(request) and request.GET.get("seen") == change_token(run):
        return HttpResponse(status=204)  # nothing happened since the last poll: keep the page
    return render_run_page(request, run, tab)


@run_page
@require_GET
def integrity(request, run):
    """The hash-chain check of one run: the header's badge for HTMX, else the whole page.

    It is its own request because it reads and hashes every step and event: a run with a
    thousand steps must not make every tab wait for it.
    """
    if is_swap(request):
        verification, ledger = verify_and_check(run)
        context = {"run": run, "verification": verification, "ledger": ledger}
        return render_page(request, "runs/detail.html", context, partial="integrity")
    return render_run_page(request, run, DEFAULT_TAB, verify=True)


@run_page
@require_GET
def evidence_bundle(request, run):
    """The run's evidence bundle as a download (docs/evidence.md), once it is sealed."""
    try:
        document = bundle(run)
    except NotSealed as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain; charset=utf-8")
    response = HttpResponse(
        json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True),
        content_type="application/json; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{run.public_id}-evidence.json"'
    return response


@run_page
@require_POST
def cancel(request, run):
    try:
        run = cancel_run(run=run, user=request.user)
    except RunError as exc:
        return refuse(request, run, exc)
    return after_action(request, run, f"Run {run.public_id} was cancelled.")


@run_page
@require_POST
def retry(request, run):
    try:
        new_run = retry_run(run=run, user=request.user)
    except RunError as exc:
        return refuse(request, run, exc)
    # The retry is a new run: land on it as a whole page, the message shown there once.
    messages.success(request, f"Run {new_run.public_id} started as a retry of {run.public_id}.")
    return navigate(request, tab_url(new_run, DEFAULT_TAB))


def tab_url(run: Run, tab: str) -> str:
    if tab == DEFAULT_TAB:
        return reverse("runs:detail", args=[run.public_id])
    return reverse("runs:tab", args=[run.public_id, tab])


def page_title(run: Run, tab: str) -> str:
    """'Run run_… · Failed · Step Log': what the tab shows, kept in step by every swap."""
    status = (
        outcome_label(run.outcome) if run.failure_kind == FailureKind.BUSINESS else None
    ) or run.get_status_display()
    parts = [f"Run {run.public_id}", status]
    if tab != DEFAULT_TAB:
        parts.append(TABS[tab])
    return " · ".join(parts)


def change_token(run: Run) -> str:
    """Changes whenever the run's page would: a new status, step, review or decision.

    Webhook deliveries do not count, so a reviewer typing into the review form keeps it.
    """
    last = (
        RunEvent.objects.filter(run=run)
        .exclude(type="webhook.delivery")
        .order_by("-sequence")
        .values_list("sequence", flat=True)
        .first()
    )
    return f"{run.status}.{last or 0}"


def requested_tab(request) -> str:
    tab = request.POST.get("tab") or request.GET.get("tab") or DEFAULT_TAB
    return tab if tab in TABS else DEFAULT_TAB


def render_run_page(
    request, run, tab, *, extra_context=None, notice="", error="", status=200, verify=False
):
    """The run page, or the part HTMX targets: the tab strip and panel, or the whole run.

    `extra_context` is for the parts other apps plug into the page by template tag (the review
    panel takes its bound form from there, so its errors show beside the fields).
    """
    partial = "run-tabs" if request.htmx and request.htmx.target == "run-tabs" else "run-page"
    context = run_page_context(request, run, tab, verify=verify)
    context.update(extra_context or {}, notice=notice, error=error)
    return render_page(request, "runs/detail.html", context, partial=partial, status=status)


def _page_start(request) -> int:
    try:
        return max(1, int(request.GET.get("start", 1)))
    except ValueError:
        return 1


def run_page_context(request, run: Run, tab: str, *, verify=False) -> dict:
    """What the run page shows; each tab reads only what it displays.

    The run's review requests and decisions are part of its record, read through their related
    names; the pending one's panel (who may decide, the form) is the review_panel tag's.
    """
    user = request.user
    review_requests = list(run.review_requests.prefetch_related("decisions__reviewer"))
    # A run awaiting review waits on its latest request: every earlier one was decided.
    pending_review = (
        review_requests[-1] if review_requests and run.status == RunStatus.AWAITING_REVIEW else None
    )
    retries = list(run.retries.order_by("created_at"))
    # Verified on request (see `integrity`), unless this page is that request.
    verification, ledger = verify_and_check(run) if verify else (None, None)
    return {
        "nav": "runs",
        "run": run,
        "tab": tab,
        "page_title": page_title(run, tab),
        "tabs": [(key, label, tab_url(run, key)) for key, label in TABS.items()],
        "tab_url": tab_url(run, tab),
        "token": change_token(run),
        "step_page": (
            selectors.run_step_page(run, _page_start(request)) if tab == "step-log" else None
        ),
        "step_summary": selectors.run_step_summary(run) if tab == "overview" else None,
        "picture": (
            run_picture(
                run,
                waiting_node_id=pending_review.node_id if pending_review else "",
                waiting_since=pending_review.created_at if pending_review else None,
            )
            if tab == "overview"
            else None
        ),
        "event_page": (
            selectors.run_event_page(run, _page_start(request)) if tab == "events" else None
        ),
        "reviews_by_step": {r.step_sequence: r for r in review_requests},
        # The Events tab reads a decision's overrides in its review's currency.
        "reviews_by_id": {r.public_id: r for r in review_requests},
        "review_requests": review_requests,
        "pending_review": pending_review,
        "retries": retries,
        "verification": verification,
        "ledger": ledger,
        "can_cancel": not run.is_terminal and user.has_perm("runs.cancel_run"),
        "can_retry": (
            run.status == RunStatus.FAILED
            and run.failure_kind == FailureKind.TRANSIENT
            and not retries
            and user.has_perm("runs.retry_run")
        ),
    }


def after_action(request, run: Run, notice: str):
    """A done action: swap the run's page in place, or POST-redirect-GET without JavaScript."""
    tab = requested_tab(request)
    if is_swap(request):
        run = selectors.run_detail(run.public_id, viewer=request.user)
        return render_run_page(request, run, tab, notice=notice)
    messages.success(request, notice)
    return redirect(tab_url(run, tab))


def refuse(request, run: Run, error: RunError):
    """A refused action: the 403 page for what the user may not do, else say why on the page."""
    if error.status_code == 403:
        return forbidden(request, error.message)
    if is_swap(request):
        run = selectors.run_detail(run.public_id, viewer=request.user)
        return render_run_page(
            request, run, requested_tab(request), error=error.message, status=error.status_code
        )
    messages.error(request, error.message)
    return redirect(tab_url(run, requested_tab(request)))
