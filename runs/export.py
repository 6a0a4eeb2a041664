"""Exports of the Runs list: every run a filter selects, as CSV or as JSON Lines, streamed.

The same filters and the same visibility as the list (runs.filters.RunFilter over
selectors.visible_runs), but all the matching runs, not a page. Memory stays flat however many
runs match: runs.export_rows reads them in batches of BATCH_SIZE by the list's own keyset (it
says why batches) and turns each run into its values; this module writes each batch out and
drops it before the next is read.

CSV is RFC 4180 (the csv module: CRLF, quotes doubled), UTF-8, with a header row. A text cell
that a spreadsheet would read as a formula (starting with = + - @, a tab or a carriage return)
gets a leading apostrophe, as OWASP advises against CSV injection: a failure reason or a payee
comes from outside. Numbers are written as numbers and are never changed. JSON Lines has one
object per run with the same keys, numbers as numbers and nothing as null (the amount in major
units is a decimal string). docs/export.md describes the columns.
"""

import csv
import datetime
import io
import json
import logging
import time
from collections.abc import Iterator

from django.http import StreamingHttpResponse

from procedures.models import ProcedureVersion
from procedures.run_listing import REFERENCE_FIELDS, reference_fields
from rapidfolio import log_context
from rapidfolio.public_url import base_url
from runs.cursors import filter_scope
from runs.export_rows import REFERENCE_PREFIX, RowWriter, RunExport, batches
from runs.filters import RunFilter
from runs.selectors import visible_runs

logger = logging.getLogger("runs.export")

# 2,000 runs a statement: about 0.6 MB of CSV, a few milliseconds of index scan. Fewer
# statements buy little more speed; the batch is what the process holds in memory.
BATCH_SIZE = 2000

CSV = "csv"
JSON_LINES = "jsonl"
CONTENT_TYPES = {CSV: "text/csv; charset=utf-8", JSON_LINES: "application/x-ndjson"}

# Cells a spreadsheet reads as a formula or a command (OWASP, "CSV Injection").
FORMULA_STARTS = frozenset("=+-@\t\r")

# The columns whose text comes from outside (people, integrations, definitions): guarded in CSV.
OUTSIDE_TEXT_COLUMNS = frozenset(
    {"procedure", "failure_reason", "started_by", "started_by_name", "trigger_event"}
)


class InvalidFilters(ValueError):
    """The filter values cannot select runs; `messages` says why, one line per problem."""

    def __init__(self, messages: list[str], errors: dict):
        super().__init__("; ".join(messages))
        self.messages = messages
        self.errors = errors  # the form's errors by field, for the API's details


def prepare_export(params, *, viewer) -> RunExport:
    """The export of the runs `viewer` may see that match the Runs list filter `params` (a
    QueryDict or a dict; a page cursor in it is ignored). Raises InvalidFilters."""
    run_filter = RunFilter(params, queryset=visible_runs(viewer))
    if run_filter.is_valid():
        run_filter.clean_dates()
    form = run_filter.form
    if form.errors:
        messages = [
            f"{form.fields[field].label if field in form.fields else 'Filters'}: {error}"
            for field, errors in form.errors.items()
            for error in errors
        ]
        raise InvalidFilters(messages, form.errors.get_json_data())
    as_of = datetime.datetime.now(datetime.UTC)
    return RunExport(
        runs=run_filter.qs.filter(created_at__lte=as_of),
        statuses=list(form.cleaned_data.get("status") or []),
        filters=_filters_for_the_log(form.cleaned_data),
        cleaned=form.cleaned_data,
        as_of=as_of,
        reference_names=_reference_names(form.cleaned_data.get("procedure")),
    )


def _filters_for_the_log(cleaned: dict) -> str:
    """The filters in one canonical string (runs.cursors.filter_scope), the search text left
    out: it is a payee's or a customer's name as often as an invoice number, and personal data
    stays out of the logs (rapidfolio/request_log.py logs no query string either)."""
    if cleaned.get("q"):
        cleaned = {**cleaned, "q": f"<{len(cleaned['q'])} characters>"}
    return filter_scope(cleaned)


def _reference_names(procedure) -> list[str]:
    """The reference fields that the versions of `procedure` (of every procedure when None)
    declare, each once, by procedure name and version: the export's reference columns, fixed
    before the first row. Only that key of each definition is read."""
    versions = ProcedureVersion.objects.order_by("procedure__name", "procedure_id", "number")
    if procedure is not None:
        versions = versions.filter(procedure=procedure)
    declared = versions.values_list(f"definition__{REFERENCE_FIELDS}", flat=True)
    return list(
        dict.fromkeys(
            name for fields in declared for name in reference_fields({REFERENCE_FIELDS: fields})
        )
    )


# --- writing the runs ---------------------------------------------------------------------------
def spreadsheet_safe(value):
    """A text cell that a spreadsheet would run as a formula, behind an apostrophe (OWASP)."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def _outside_text_positions(columns: tuple[str, ...]) -> list[int]:
    """Where the cells that can hold outside text are: names, reasons, references."""
    return [
        position
        for position, column in enumerate(columns)
        if column in OUTSIDE_TEXT_COLUMNS or column.startswith(REFERENCE_PREFIX)
    ]


def csv_chunks(rows: Iterator[list[tuple]], writer: RowWriter) -> Iterator[bytes]:
    buffer = io.StringIO()
    out = csv.writer(buffer)  # RFC 4180: CRLF line ends, fields quoted when they need it
    out.writerow(writer.columns)
    text_positions = _outside_text_positions(writer.columns)
    for batch in rows:
        for row in batch:
            values = writer.values(row)
            # Only the cells that can hold outside text: ids, statuses, times, numbers and
            # URLs are ours and never start with a formula character (tested).
            for position in text_positions:
                values[position] = spreadsheet_safe(values[position])
            out.writerow(values)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # nothing matched: the header alone
        yield buffer.getvalue().encode()


def json_lines_chunks(rows: Iterator[list[tuple]], writer: RowWriter) -> Iterator[bytes]:
    # The amount's Decimal as a string ("24000.00"): a JSON number would be read as a float,
    # which has no decimal places to keep, and cannot hold every amount exactly.
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
    columns = writer.columns
    for batch in rows:
        lines = [encode(dict(zip(columns, writer.values(row), strict=True))) for row in batch]
        lines.append("")
        yield "\n".join(lines).encode()


CHUNKS = {CSV: csv_chunks, JSON_LINES: json_lines_chunks}


def stream(export: RunExport, *, format: str, request, who: dict) -> Iterator[bytes]:
    """The export's bytes, batch by batch; when it ends (or the client goes away), one log
    line says who exported what: the audit trail of records that left the system."""
    # Read now, in the view: the server iterates the stream after the request's middleware
    # has returned, when the request's log fields (its id) are gone.
    fields = {**log_context.current(), **who}
    counted = _Counter(batches(export, batch_size=BATCH_SIZE))
    chunks = CHUNKS[format](counted, RowWriter(export, base_url(request)))
    return _logged(chunks, export=export, counted=counted, format=format, fields=fields)


def _logged(chunks, *, export: RunExport, counted, format: str, fields: dict) -> Iterator[bytes]:
    started = time.perf_counter()
    finished = False
    try:
        yield from chunks
        finished = True
    finally:
        seconds = time.perf_counter() - started
        with log_context.bind(**fields):
            logger.info(
                "export %s of %d runs %s in %.1fs (filters: %s)",
                format,
                counted.rows,
                "finished" if finished else "interrupted",
                seconds,
                export.filters or "none",
                extra={
                    "export_format": format,
                    "export_rows": counted.rows,
                    "export_filters": export.filters,
                    "export_finished": finished,
                    "export_as_of": export.as_of.isoformat(),
                    "duration_ms": round(seconds * 1000, 1),
                },
            )


class _Counter:
    """The batches, counting the runs that went by."""

    def __init__(self, batches: Iterator[list[tuple]]):
        self.batches = batches
        self.rows = 0

    def __iter__(self):
        for batch in self.batches:
            self.rows += len(batch)
            yield batch


def response(export: RunExport, *, format: str, request, who: dict, content_type=None):
    """The streamed download of `export` in `format` (CSV or JSON_LINES)."""
    answer = StreamingHttpResponse(
        stream(export, format=format, request=request, who=who),
        content_type=content_type or CONTENT_TYPES[format],
    )
    answer["Content-Disposition"] = f'attachment; filename="{export.filename(format)}"'
    # Financial records: no cache keeps a copy. A proxy (nginx) passes the stream on as it
    # comes instead of buffering all of it first.
    answer["Cache-Control"] = "private, no-store"
    answer["X-Accel-Buffering"] = "no"
    return answer
