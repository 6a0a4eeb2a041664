"""The engine's and the run lifecycle's metrics (rapidfolio.metrics serves them on /metrics).

Each function is called by the code that already knows the event (the writer's create,
transition and flush; the tool call; the reaper; a webhook attempt) and counts it once the
transaction that makes it true has committed: `transaction.on_commit`, robust, so a rolled
back transaction counts nothing and a metrics failure never fails its caller. Outside a
transaction it counts at once. Nothing here adds a query per step: a run's procedure is
labelled by its public id, read once per procedure per process (and `rapidfolio_procedure_info`
gives each id its name, for dashboards to join on).

The gauges (runs awaiting review, the ledger's backlog, the scheduler's heartbeat) are read
from the database when scraped, each with one query served by an index.
"""

from functools import partial

from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from procedures.models import Environment, Procedure
from rapidfolio.metrics import LATENCY_BUCKETS, collect_at_scrape
from runs.health import heartbeat_age, oldest_unsealed_event_age
from runs.models import TERMINAL_STATUSES, LedgerQueue, Run, RunStatus

RUN_LABELS = ["procedure", "environment", "type"]

RUNS_STARTED = Counter(
    "rapidfolio_runs_started_total",
    "Runs created (pending): by the API, a trigger, the dashboard or a retry.",
    RUN_LABELS,
)
RUNS_FINISHED = Counter(
    "rapidfolio_runs_finished_total",
    "Runs that reached a terminal status (outcome), with the failure's kind when failed.",
    [*RUN_LABELS, "outcome", "failure_kind"],
)
STEP_DURATION = Histogram(
    "rapidfolio_step_duration_seconds",
    "Duration of a recorded step (one node execution), by node type.",
    ["node_type"],
    # A human review's step lasts until its decision: minutes to days.
    buckets=(*LATENCY_BUCKETS, 60, 300, 3600, 86400),
)
TOOL_CALL_DURATION = Histogram(
    "rapidfolio_tool_call_duration_seconds",
    "Latency of an integration tool call, by tool, environment and outcome (ok or the error's "
    "kind).",
    ["tool", "environment", "outcome"],
    buckets=LATENCY_BUCKETS,
)
TOOL_ERRORS = Counter(
    "rapidfolio_tool_errors_total",
    "Tool calls that failed, by tool and kind (transient: retried; permanent: fails the run).",
    ["tool", "kind"],
)
REAPER_REENQUEUED = Counter(
    "rapidfolio_reaper_reenqueued_runs_total",
    "Runs the reaper sent to the workers again because their lease ran out.",
)
WEBHOOK_DELIVERIES = Counter(
    "rapidfolio_webhook_deliveries_total",
    "Outbound webhook delivery attempts, by outcome: delivered, retrying (failed, another "
    "attempt is scheduled), failed (the last attempt failed), skipped (endpoint removed or "
    "disabled).",
    ["outcome"],
)

_procedure_ids: dict[int, str] = {}


def after_commit(count) -> None:
    transaction.on_commit(count, robust=True)


def procedure_label(run: Run) -> str:
    # The procedure loaded with the run first (a start, the engine's drive): a pk is reused for
    # another procedure in a test database after a rollback, so the process's memory of ids
    # serves only the runs read without theirs.
    if Run.procedure.is_cached(run):
        return run.procedure.public_id
    label = _procedure_ids.get(run.procedure_id)
    if label is None:
        found = Procedure.objects.filter(pk=run.procedure_id).values_list("public_id", flat=True)
        label = found.first() or str(run.procedure_id)
        _procedure_ids[run.procedure_id] = label
    return label


# --- called where the event happens -----------------------------------------------------------
def run_created(run: Run) -> None:
    after_commit(partial(_count_start, run, run.environment, run.type))


def _count_start(run: Run, environment: str, type: str) -> None:
    RUNS_STARTED.labels(procedure_label(run), environment, type).inc()


def run_transitioned(run: Run, to_status: str) -> None:
    if to_status in TERMINAL_STATUSES:
        kind = run.failure_kind if to_status == RunStatus.FAILED else ""
        after_commit(partial(_count_finish, run, run.environment, run.type, to_status, kind))


def _count_finish(run: Run, environment: str, type: str, outcome: str, kind: str) -> None:
    RUNS_FINISHED.labels(procedure_label(run), environment, type, outcome, kind).inc()


def steps_recorded(steps: list) -> None:
    durations = [
        (step.node_type, (step.finished_at - step.started_at).total_seconds())
        for step in steps
        if step.finished_at is not None and step.started_at is not None
    ]
    if durations:
        after_commit(partial(_observe_steps, durations))


def _observe_steps(durations: list[tuple[str, float]]) -> None:
    for node_type, seconds in durations:
        STEP_DURATION.labels(node_type).observe(max(0.0, seconds))


def tool_called(*, tool: str, environment: str, seconds: float, error_kind: str = "") -> None:
    """A tool call is made outside any transaction: it happened, whatever is recorded next."""
    TOOL_CALL_DURATION.labels(tool, environment, error_kind or "ok").observe(max(0.0, seconds))
    if error_kind:
        TOOL_ERRORS.labels(tool, error_kind).inc()


def runs_reaped(count: int) -> None:
    if count:
        after_commit(partial(REAPER_REENQUEUED.inc, count))


def webhook_attempted(outcome: str) -> None:
    after_commit(WEBHOOK_DELIVERIES.labels(outcome).inc)


# --- read when scraped ------------------------------------------------------------------------
class RunsCollector:
    name = "database"

    def collect(self):
        now = timezone.now()
        yield from _awaiting_review(now)
        procedures = GaugeMetricFamily(
            "rapidfolio_procedure_info",
            "Each procedure's public id (the procedure label) and name.",
            labels=["procedure", "name"],
        )
        for public_id, name in Procedure.objects.values_list("public_id", "name"):
            procedures.add_metric([public_id, name], 1)
        yield procedures
        yield from _ledger_and_scheduler(now)


def _awaiting_review(now):
    count = GaugeMetricFamily(
        "rapidfolio_runs_awaiting_review",
        "Runs waiting for a reviewer's decision.",
        labels=["environment"],
    )
    oldest = GaugeMetricFamily(
        "rapidfolio_oldest_awaiting_review_age_seconds",
        "Age (since it was created) of the oldest run awaiting review.",
        labels=["environment"],
    )
    # run_status_created_idx (status, -created_at, -id): only the awaiting runs' entries.
    rows = (
        Run.objects.filter(status=RunStatus.AWAITING_REVIEW)
        .order_by()
        .values("environment")
        .annotate(runs=Count("id"), since=Min("created_at"))
    )
    found = {row["environment"]: row for row in rows}
    for environment in Environment.values:
        row = found.get(environment)
        count.add_metric([environment], row["runs"] if row else 0)
        oldest.add_metric([environment], (now - row["since"]).total_seconds() if row else 0)
    yield count
    yield oldest


# Counting the ledger queue stops here: a backlog this long is an outage either way.
LEDGER_COUNT_CAP = 100_000


def _ledger_and_scheduler(now):
    age = oldest_unsealed_event_age(now)
    yield GaugeMetricFamily(
        "rapidfolio_ledger_unsealed_events",
        f"Events waiting for the sealer (counted up to {LEDGER_COUNT_CAP}).",
        value=LedgerQueue.objects.order_by()[:LEDGER_COUNT_CAP].count(),
    )
    yield GaugeMetricFamily(
        "rapidfolio_ledger_oldest_unsealed_age_seconds",
        "How long the oldest event waiting for the sealer has waited (0 when none waits).",
        value=age.total_seconds() if age is not None else 0,
    )
    beat, beat_age = heartbeat_age(now)
    if beat is not None:
        yield GaugeMetricFamily(
            "rapidfolio_scheduler_heartbeat_age_seconds",
            "Seconds since a scheduler last went round its loop.",
            value=beat_age.total_seconds(),
        )


collect_at_scrape(RunsCollector())
