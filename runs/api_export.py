"""GET /v1/runs as a file: the list endpoint (runs/api.py) answers an Accept of CSV or JSON Lines
with every run its filters select, streamed by runs/export.py.

What runs/export_views.py is to the dashboard's Export links: who asks (the API key, its
environment already in the filters) and which filters; the reading and writing are runs.export's.
"""

from django.http import QueryDict

from runs import export
from runs.api_auth import ApiError

# The exports by the media type the client prefers over JSON. With the charset, "text/csv"
# matches an Accept of text/csv with or without it (Django's rule).
MEDIA_TYPES = {
    "text/csv; charset=utf-8": export.CSV,
    "application/x-ndjson": export.JSON_LINES,
    "application/jsonl": export.JSON_LINES,
}
# The list endpoint's OpenAPI: its description's last paragraph and its 200's other contents.
DESCRIPTION = (
    "\n\nExport: with `Accept: text/csv` the answer is every run the filters select (not one "
    "page: `cursor` and `limit` do not apply) as CSV (RFC 4180, UTF-8, a header row; text "
    "cells that start with `=`, `+`, `-`, `@`, a tab or a carriage return get a leading `'` "
    "so that a spreadsheet does not run them as formulas); with `Accept: application/x-ndjson` "
    "or `application/jsonl` the same as JSON Lines, one object per run. Both are streamed, "
    "newest first; any other Accept gets the JSON page."
)
CONTENT = {
    "text/csv": {"schema": {"type": "string"}},
    "application/x-ndjson": {"schema": {"type": "string"}},
    "application/jsonl": {"schema": {"type": "string"}},
}


def requested_media_type(request) -> str | None:
    """The export's media type when the client prefers one to JSON; None for the JSON page
    (no Accept, */*, application/json, text/html)."""
    media_type = request.get_preferred_type(["application/json", *MEDIA_TYPES])
    return media_type if media_type in MEDIA_TYPES else None


def invalid_filters(errors: dict) -> ApiError:
    """The run list's 422 for filters that are not valid (`errors`: a form's get_json_data())."""
    return ApiError(
        422,
        "invalid_filters",
        "Some filters are not valid.",
        details=[
            {"field": field, "message": error["message"]}
            for field, field_errors in errors.items()
            for error in field_errors
        ],
    )


def response(request, params: QueryDict, media_type: str):
    """Every run the filters `params` select, streamed as `media_type`; filters that are not
    valid are the JSON list's 422 invalid_filters, before any byte of a file."""
    try:
        prepared = export.prepare_export(params, viewer=request.auth)
    except export.InvalidFilters as exc:
        raise invalid_filters(exc.errors) from None
    who = {"api_key": request.auth.prefix}
    return export.response(
        prepared,
        format=MEDIA_TYPES[media_type],
        request=request,
        who=who,
        content_type=media_type,
    )
