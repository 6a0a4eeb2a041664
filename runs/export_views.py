"""The Runs list's Export: /runs/export.csv and /runs/export.jsonl with the list's querystring.

The streaming and the columns are runs.export's; these only check who asks and which filters.
"""

from django.http import HttpResponse
from django.views.decorators.http import require_GET

from runs import export
from runs.views import runs_page


@runs_page
@require_GET
def export_csv(request):
    return _export(request, export.CSV)


@runs_page
@require_GET
def export_json_lines(request):
    return _export(request, export.JSON_LINES)


def _export(request, format: str):
    try:
        prepared = export.prepare_export(request.GET, viewer=request.user)
    except export.InvalidFilters as exc:
        message = "Some filters are not valid, so nothing was exported:\n" + "\n".join(
            f"- {line}" for line in exc.messages
        )
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
    who = {"user": request.user.get_username()}
    return export.response(prepared, format=format, request=request, who=who)
