"""Reads behind the run pages and the API, so both share them and the benchmark measures them.

The Runs list is keyset-paginated, newest first, on (created_at, id): a page costs the same at
row 10 or row 10,000,000, never runs COUNT(*), and stays stable while new runs arrive.
"""

from dataclasses import dataclass

from django.db import connection
from django.db.models import Prefetch, Q, QuerySet, Subquery

from procedures.models import Environment, ProcedureVersion
from procedures.run_listing import reference_titles
from rapidfolio_verify.facts import STEP_FIELDS
from runs.cursors import InvalidCursor as InvalidCursor  # views and the API catch it here
from runs.cursors import decode_cursor, encode_cursor, filter_scope
from runs.filters import RunFilter
from runs.models import ApiKey, Run, RunEvent, Step

DEFAULT_PAGE_SIZE = 50
# The Runs list's order, also its keyset: the indexes in runs.models end in these columns.
NEWEST_FIRST = ("-created_at", "-id")
MAX_PAGE_SIZE = 200


# --- who may see which runs -------------------------------------------------------------------
# Every read of runs below takes the viewer (a dashboard user or an API key) and narrows to what
# it may see, so a page cannot show a run by forgetting to check. A run the viewer may not see
# is read as "does not exist": the same 404 as an unknown id, which reveals nothing about it.
VIEW_PERMISSION = "runs.view_run"
VIEW_LIVE_PERMISSION = "runs.view_live_run"


def visible_environments(viewer) -> tuple[str, ...]:
    """The environments whose runs `viewer` may read: an API key its own; a user none without
    runs.view_run, sandbox with it, and live too with runs.view_live_run (superusers all)."""
    if isinstance(viewer, ApiKey):
        return (viewer.environment,)
    if not viewer.is_authenticated or not viewer.has_perm(VIEW_PERMISSION):
        return ()
    if viewer.has_perm(VIEW_LIVE_PERMISSION):
        return tuple(Environment.values)
    return (Environment.SANDBOX,)


def may_view_runs(viewer) -> bool:
    """Whether `viewer` may see any run at all (else the run pages are a 403)."""
    return bool(visible_environments(viewer))


def _narrowed(rows: QuerySet, viewer, environment_field: str) -> QuerySet:
    environments = visible_environments(viewer)
    if not environments:
        return rows.none()
    if len(environments) == len(Environment.values):
        return rows  # no filter at all, so the Runs list keeps its indexes' plans
    return rows.filter(**{f"{environment_field}__in": environments})


def visible_runs(viewer, runs: QuerySet[Run] | None = None) -> QuerySet[Run]:
    """`runs` (all runs by default) narrowed to those `viewer` may see."""
    return _narrowed(Run.objects.all() if runs is None else runs, viewer, "environment")


def rows_of_visible_runs(viewer, rows: QuerySet, *, run_field: str = "run") -> QuerySet:
    """Rows that belong to a run (review requests, steps, events) narrowed to those of runs
    `viewer` may see; `run_field` is the rows' foreign key to the run."""
    return _narrowed(rows, viewer, f"{run_field}__environment")


def cursor_kind(viewer) -> str:
    """Whose list a cursor pages (runs.cursors): a dashboard cursor is no API cursor."""
    return "api" if isinstance(viewer, ApiKey) else "dashboard"


def _after_cursor(queryset: QuerySet[Run], cursor: str, *, kind: str, scope: str):
    """The runs older than the cursor's run: (created_at, id) below its own.

    The cursor carries the run's public id, not its id; the id comes from a scalar subquery on
    the public id's unique index, so the page is still one statement. The leading
    created_at <= bound lets PostgreSQL start the index scan at the cursor; the OR alone is
    only a filter, applied to every newer run on the way down.
    """
    created_at, public_id = decode_cursor(cursor, kind=kind, scope=scope)
    last_id = Subquery(Run.objects.filter(public_id=public_id).order_by().values("pk")[:1])
    return queryset.filter(
        Q(created_at__lte=created_at),
        Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=last_id),
    )


@dataclass
class RunPage:
    runs: list[Run]
    next_cursor: str | None
    filter: RunFilter

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None


def list_runs(
    params, *, viewer, cursor: str | None = None, page_size: int = DEFAULT_PAGE_SIZE
) -> RunPage:
    """One page of the runs `viewer` may see matching the filter params (a QueryDict or dict),
    newest first.

    Raises InvalidCursor for a cursor not signed for this kind of list and these filters
    (runs.cursors). Invalid filter values are reported on `page.filter.form` and the page is
    empty.
    """
    page_size = max(1, min(int(page_size), MAX_PAGE_SIZE))
    run_filter = RunFilter(params, queryset=visible_runs(viewer, run_list_queryset()))
    if not run_filter.is_valid():
        return RunPage(runs=[], next_cursor=None, filter=run_filter)
    run_filter.clean_dates()
    if run_filter.form.errors:
        return RunPage(runs=[], next_cursor=None, filter=run_filter)
    queryset = run_filter.qs
    kind, scope = cursor_kind(viewer), filter_scope(run_filter.form.cleaned_data)
    if cursor:
        queryset = _after_cursor(queryset, cursor, kind=kind, scope=scope)
    statuses = run_filter.form.cleaned_data.get("status") or []
    if len(statuses) > 1 and connection.features.supports_slicing_ordering_in_compound:
        rows = _newest_of_each_status(queryset, statuses, page_size + 1)
    else:
        rows = list(queryset.order_by(*NEWEST_FIRST)[: page_size + 1])
    next_cursor = None
    if len(rows) > page_size:
        next_cursor = encode_cursor(rows[page_size - 1], kind=kind, scope=scope)
    return RunPage(
        runs=with_references(rows[:page_size]), next_cursor=next_cursor, filter=run_filter
    )


def _newest_of_each_status(queryset: QuerySet[Run], statuses, limit: int) -> list[Run]:
    """The newest `limit` runs of several statuses, read as the newest `limit` of each status
    merged, then the page's rows by primary key.

    `status IN (a, b)` ordered by date can only walk the date index and skip the runs of other
    statuses, which is slow when the newest runs are mostly of another status (a month-end burst
    of completed payouts above the failed and cancelled runs an operator is after); PostgreSQL
    cannot merge two ranges of the (status, date) index in order. Each status's own range can
    stop after `limit` rows, and the merge of a few pages is cheap.
    """
    newest = [
        queryset.filter(status=status)
        .order_by(*NEWEST_FIRST)
        .values_list("created_at", "pk")[:limit]
        for status in statuses
    ]
    merged = newest[0].union(*newest[1:], all=True).order_by(*NEWEST_FIRST)[:limit]
    pks = [pk for _, pk in merged]
    by_pk = run_list_queryset().in_bulk(pks)
    return [by_pk[pk] for pk in pks]


def run_list_queryset() -> QuerySet[Run]:
    return Run.objects.select_related("procedure", "version").only(
        "public_id",
        "procedure__public_id",
        "procedure__name",
        "version__number",
        "environment",
        "status",
        "type",
        "created_at",
        "started_at",
        "finished_at",
        "failure_kind",
        # A business outcome (declined) reads as such, not as a failure.
        "outcome",
        # The listing (procedures.run_listing): the references and amount the list shows.
        "reference_values",
        "amount_minor",
        "amount_currency",
    )


def run_list_row(public_id: str, *, viewer) -> Run:
    """One run as the Runs list shows it (its row refreshes itself while the run is under way);
    raises Run.DoesNotExist, also for a run `viewer` may not see."""
    run = visible_runs(viewer, run_list_queryset()).get(public_id=public_id)
    return with_references([run])[0]


def with_references(runs: list[Run]) -> list[Run]:
    """Sets each run's `references`, [(title, value)] in the version's declared order, as the
    list shows them; the titles from the page's versions' definitions (one query).

    Not cached per process, though versions never change: a test database reuses a rolled
    back version's pk for another version, and the query costs a few tenths of a millisecond
    of a page's thirty."""
    version_ids = {run.version_id for run in runs}
    titles_by_version = {
        pk: reference_titles(definition)
        for pk, definition in ProcedureVersion.objects.filter(pk__in=version_ids).values_list(
            "pk", "definition"
        )
    }
    for run in runs:
        # In the declared order, which a jsonb column does not keep.
        titles = titles_by_version.get(run.version_id, {})
        values = run.reference_values or {}
        run.references = [(title, values[name]) for name, title in titles.items() if name in values]
    return runs


# What a run's header shows besides the run itself: who started it, retries, the failed step.
RUN_HEADER_RELATIONS = (
    "procedure",
    "version",
    "started_by_user",
    "started_by_api_key",
    "started_by_trigger",
    "trigger_event",
    "retry_of",
    "failed_step",
)


def run_detail(public_id: str, *, viewer) -> Run:
    """The run with what its header needs; raises Run.DoesNotExist, also for a run `viewer`
    may not see."""
    runs = Run.objects.select_related(*RUN_HEADER_RELATIONS)
    return visible_runs(viewer, runs).get(public_id=public_id)


LOG_PAGE_SIZE = 100
# A step shows up to four JSON bodies (input, output, request, response), each pretty-printed:
# a hundred of them took 75-107 ms to render at 1,000 steps (make bench), over the page's
# 100 ms target on a 2-core machine; fifty keep it well under.
STEP_PAGE_SIZE = 50


@dataclass
class LogPage:
    """A window of a run's step log or timeline: rows `start` .. `start + size - 1` by
    sequence, so a run with thousands of steps or events is read a page at a time."""

    rows: list
    start: int
    total: int
    size: int = LOG_PAGE_SIZE

    @property
    def end(self) -> int:
        return self.rows[-1].sequence if self.rows else self.start - 1

    @property
    def previous_start(self) -> int | None:
        return max(1, self.start - self.size) if self.start > 1 else None

    @property
    def next_start(self) -> int | None:
        return self.start + self.size if self.start + self.size <= self.total else None


def page_start(sequence: int, size: int = LOG_PAGE_SIZE) -> int:
    """The first sequence of the page that shows row `sequence`."""
    return ((max(sequence, 1) - 1) // size) * size + 1


def _log_page(rows: QuerySet, start: int, size: int) -> LogPage:
    # Sequences run 1..n without gaps (unique per run), so the last one is the count.
    total = rows.order_by("-sequence").values_list("sequence", flat=True).first() or 0
    # Past the end (an old link, a typed URL): show the last page rather than nothing.
    start = page_start(min(start, max(total, 1)), size)
    window = rows.filter(sequence__gte=start, sequence__lt=start + size).order_by("sequence")
    return LogPage(rows=list(window), start=start, total=total, size=size)


def run_step_page(run: Run, start: int = 1, size: int = STEP_PAGE_SIZE) -> LogPage:
    return _log_page(Step.objects.filter(run=run), start, size)


def run_event_page(run: Run, start: int = 1, size: int = LOG_PAGE_SIZE) -> LogPage:
    return _log_page(RunEvent.objects.filter(run=run), start, size)


def run_step_summary(run: Run) -> tuple[int, Step | None]:
    """How many steps the run has and its last one, without loading the log."""
    last = (
        Step.objects.filter(run=run)
        .order_by("-sequence")
        .only("sequence", "node_id", "status", "run_id")
        .first()
    )
    return (last.sequence if last else 0), last


def run_steps(run: Run) -> QuerySet[Step]:
    return Step.objects.filter(run=run).order_by("sequence")


def run_events(run: Run) -> QuerySet[RunEvent]:
    return RunEvent.objects.filter(run=run).order_by("sequence")


# A step and an event as the whole record (the API, the integrity check) reads them: every
# column the record shows, with the step's key, which a failed run points at.
# The step's fields are exactly those its digest covers (rapidfolio_verify.facts).
STEP_ROW_FIELDS = ("pk", *STEP_FIELDS)
EVENT_ROW_FIELDS = ("sequence", "type", "actor", "data", "created_at", "prev_hash", "hash")


def step_rows(run: Run) -> list:
    """The run's whole step log in order, as named tuples with STEP_ROW_FIELDS.

    Rows, not model instances: a run can have a thousand steps, and building instances was
    half the time of the API's whole record and of the integrity check (cProfile, make bench).
    Values are converted as the model's fields convert them (JSON parsed, datetimes aware).
    """
    return list(run_steps(run).values_list(*STEP_ROW_FIELDS, named=True))


def event_rows(run: Run) -> list:
    """The run's whole timeline in order, as named tuples with EVENT_ROW_FIELDS."""
    return list(run_events(run).values_list(*EVENT_ROW_FIELDS, named=True))


@dataclass
class RunRecord:
    """A run with everything recorded about it: its header (with review requests, decisions
    and retries) and its step log and timeline as rows."""

    run: Run
    steps: list
    events: list


def _related_rows(related_name: str) -> QuerySet:
    """All rows of the model that points at runs as `related_name`, found through the relation.

    Review requests are part of the run's record; this reads them without importing reviews.
    """
    return Run._meta.get_field(related_name).related_model._default_manager.all()


def run_with_everything(public_id: str, *, viewer) -> RunRecord:
    """The whole record for the API; raises Run.DoesNotExist, also for a run `viewer` may not
    see."""
    review_requests = _related_rows("review_requests").prefetch_related("decisions__reviewer")
    run = (
        visible_runs(viewer, Run.objects.select_related(*RUN_HEADER_RELATIONS))
        .prefetch_related(
            Prefetch("review_requests", queryset=review_requests.order_by("created_at")),
            "retries",
        )
        .get(public_id=public_id)
    )
    return RunRecord(run=run, steps=step_rows(run), events=event_rows(run))
