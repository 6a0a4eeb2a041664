"""The Procedures list page, and the readable definition the procedure page shows.

The procedure page itself and its Run action are in runs.procedure_views (they list and start
runs, and procedures sits below runs); runs.procedure_urls routes all three.
"""

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max
from django.shortcuts import render
from django.views.decorators.http import require_GET

from procedures.models import Procedure
from rapidfolio.views import forbidden

VIEW_PERMISSION = "procedures.view_procedure"
NO_PROCEDURE_ACCESS = (
    "Your account may not see procedures. Ask an administrator for the Operators or Reviewers role."
)


@login_required
@require_GET
def procedure_list(request):
    if not request.user.has_perm(VIEW_PERMISSION):
        return forbidden(request, NO_PROCEDURE_ACCESS)
    procedures = Procedure.objects.annotate(
        version_count=Count("versions"), latest_version=Max("versions__number")
    ).order_by("name")
    return render(request, "procedures/list.html", {"nav": "procedures", "procedures": procedures})


def readable_nodes(definition: dict) -> list[dict]:
    """The definition's nodes in order of appearance, with the start node first."""
    nodes = definition.get("nodes") or {}
    start_id = definition.get("start")
    ordered = sorted(nodes.items(), key=lambda item: item[0] != start_id)
    return [
        {
            "id": node_id,
            "is_start": node_id == start_id,
            "type": node.get("type", ""),
            "tool": node.get("tool", ""),
            "expression": node.get("expression", ""),
            "title": node.get("title", ""),
            "description": node.get("description", ""),
            "next": node.get("next", ""),
            "then": node.get("then", ""),
            "else": node.get("else", ""),
            "reviewer_group": node.get("reviewer_group", ""),
            "reason": node.get("reason", ""),
        }
        for node_id, node in ordered
        if isinstance(node, dict)
    ]
