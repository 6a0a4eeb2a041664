"""A procedure's page, with its Run form, versions and recent runs, and the Run action.

They live in runs because the page lists runs and its form starts one; procedures (below runs)
keeps the list page and what needs no runs: the Run form built from the schema
(procedures.forms.run_form) and the readable definition (procedures.views.readable_nodes).
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from procedures.connections import live_readiness
from procedures.forms import LIVE_CONFIRMATION_FIELD, run_form
from procedures.models import Environment, Procedure
from procedures.views import NO_PROCEDURE_ACCESS, VIEW_PERMISSION, readable_nodes
from rapidfolio.views import forbidden, navigate, render_page
from runs.errors import InputValidationError, RunError
from runs.models import RunType
from runs.selectors import list_runs, visible_environments
from runs.services import start_run

RECENT_RUNS = 10


@login_required
@require_GET
def procedure_detail(request, public_id):
    if not request.user.has_perm(VIEW_PERMISSION):
        return forbidden(request, NO_PROCEDURE_ACCESS)
    procedure = get_object_or_404(Procedure, public_id=public_id)
    return _render_detail(request, procedure)


@login_required
@require_POST
def start(request, public_id):
    if not request.user.has_perm(VIEW_PERMISSION):
        return forbidden(request, NO_PROCEDURE_ACCESS)
    procedure = get_object_or_404(Procedure, public_id=public_id)
    version = procedure.current_version
    if version is None:
        return forbidden(request, "This procedure has no version to run yet.")
    if not request.user.has_perm("runs.start_run"):
        return forbidden(request, "You do not have permission to start runs.")
    # Only the environments the user may see are offered, and accepted: a sandbox-only operator
    # who names live gets the field's error, and start_run refuses it again for any caller.
    environments = visible_environments(request.user)
    readiness = live_readiness(version.definition) if Environment.LIVE in environments else None
    form = run_form(
        version.input_schema,
        data=request.POST,
        environments=environments,
        live_refusal=readiness and readiness.refusal,
    )
    if request.POST.get("change_values"):
        # Back from the live confirmation with the same values, to change them.
        return _render_detail(request, procedure, form=form)
    if form.is_valid():
        confirmation = _live_confirmation(request, form, version, readiness)
        if confirmation is not None:
            return _render_detail(request, procedure, form=form, confirmation=confirmation)
        try:
            run = start_run(
                version=version,
                environment=form.environment(),
                inputs=form.inputs(),
                type=RunType.MANUAL,
                user=request.user,
            )
        except InputValidationError as exc:
            form.add_input_errors(exc.details)
        except RunError as exc:
            if exc.status_code == 403:
                return forbidden(request, exc.message)
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Run {run.public_id} started in {run.environment}.")
            return navigate(request, reverse("runs:detail", args=[run.public_id]))
    return _render_detail(request, procedure, form=form, status=422)


def _live_confirmation(request, form, version, readiness) -> dict | None:
    """What the live confirmation shows, or None when the run may start: a sandbox run, or a
    live one confirmed, within the last minutes, for exactly these values and this version.

    The page carries a signed digest of what it named; values changed on the way back, a new
    version or an old page ask again, saying so.
    """
    if form.environment() != Environment.LIVE:
        return None
    context = f"{version.pk}:{request.user.pk}"
    token = request.POST.get(LIVE_CONFIRMATION_FIELD, "")
    if token and form.is_confirmed(token, context):
        return None
    return {
        "token": form.confirmation_token(context),
        "stale": bool(token),
        "rows": form.summary(),
        "money": list(form.money().values()),
        "connections": readiness.connections if readiness else [],
    }


def _render_detail(request, procedure: Procedure, *, form=None, confirmation=None, status=200):
    versions = list(procedure.versions.select_related("created_by").order_by("-number"))
    current = versions[0] if versions else None
    environments = visible_environments(request.user)
    can_start = request.user.has_perm("runs.start_run") and bool(environments)
    live_refusal = None
    if current is not None and can_start and Environment.LIVE in environments:
        live_refusal = live_readiness(current.definition).refusal
    if form is None and current is not None and can_start:
        form = run_form(current.input_schema, environments=environments, live_refusal=live_refusal)
    context = {
        "nav": "procedures",
        "procedure": procedure,
        "current": current,
        "versions": [(version, readable_nodes(version.definition)) for version in versions],
        "form": form,
        "confirmation": confirmation,
        "live_refusal": live_refusal,
        "can_start": can_start,
        "recent_runs": list_runs(
            {"procedure": procedure.public_id}, viewer=request.user, page_size=RECENT_RUNS
        ).runs,
    }
    return render_page(
        request, "procedures/detail.html", context, partial="run-form", status=status
    )
