"""Tamper evidence: the per-run hash chain of RunEvents and its verification.

Each event's hash is sha256(prev_hash ‖ canonical JSON of the event). Events that record a
step, the inputs or the output carry a sha256 digest of that row's content, and so do the
events that pin rows of apps above runs (review requests and decisions: `PinnedRows`), so
editing any of them (or an event) breaks the chain at a point that `verify_run` can name.

Anyone with database access can recompute a chain, though: the run's header and every step
also carry an HMAC tag under a key outside the database (runs.authenticity), and `verify_run`
names the first of them whose tag does not verify, so a forged or rewritten row shows even
when the attacker recomputed its digests and the chain.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.db.migrations.recorder import MigrationRecorder

from procedures.run_listing import NO_LISTING, Listing, listing_of
from rapidfolio_verify import facts
from rapidfolio_verify.canonical import canonical_json, digest
from rapidfolio_verify.facts import GENESIS_HASH, STEP_FIELDS
from runs.authenticity import header_tag_matches, step_tag_matches
from runs.selectors import event_rows, step_rows

# The hashing itself is rapidfolio_verify's, the standalone verifier's: one copy of it, which
# the auditors' offline check and this one share.
__all__ = ["GENESIS_HASH", "canonical_json", "digest"]

# A fact whose tag (runs.authenticity) is missing or wrong: written without this installation's
# key, so by something other than its write path, even when its digests and hashes add up.
NOT_OURS = "was not recorded by this installation: its authentication tag does not verify"
LISTING_MIGRATION = "0008_run_search"


def iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def event_hash(
    *,
    prev_hash: str,
    run_public_id: str,
    sequence: int,
    type: str,
    actor: str,
    data: dict,
    created_at,
) -> str:
    return facts.event_hash(
        prev_hash=prev_hash,
        run_public_id=run_public_id,
        sequence=sequence,
        type=type,
        actor=actor,
        data=data,
        created_at=iso(created_at),
    )


def step_fact(step) -> dict:
    """A Step (or a step row) as its digest and an evidence bundle record it."""
    values = {name: getattr(step, name) for name in STEP_FIELDS}
    values["started_at"], values["finished_at"] = iso(step.started_at), iso(step.finished_at)
    return values


def step_digest(step) -> str:
    return facts.step_digest(step_fact(step))


def run_header(run) -> dict:
    """What the run.created event pins down about the run itself."""
    retry_of = run.retry_of.public_id if run.retry_of_id else None
    return header_of(run, run.procedure.public_id, run.version.number, retry_of)


def header_of(run, procedure_public_id: str | None, version_number, retry_of: str | None) -> dict:
    """`run_header` from the run's own columns and the public ids and number it points at, for
    a caller that read those with the run's row (runs.sql.lock_run) and not as related rows."""
    return {
        "procedure": procedure_public_id,
        "version": version_number,
        "environment": run.environment,
        "type": run.type,
        "inputs_sha256": digest(run.inputs),
        "retry_of": retry_of,
        "started_by_user_id": run.started_by_user_id,
        "started_by_api_key_id": run.started_by_api_key_id,
        "started_by_trigger_id": run.started_by_trigger_id,
        "trigger_event_id": run.trigger_event_id,
    }


def listing_columns(run) -> Listing:
    """The listing as the run's row holds it (procedures.run_listing computes what it must be)."""
    return Listing(
        references=run.reference_values,
        search_text=run.search_text,
        amount_minor=run.amount_minor,
        amount_currency=run.amount_currency,
    )


_listing_since: list = []


def _from_before_listings(run, stored: Listing) -> bool:
    """An empty listing is a run's from before listings existed (migration 0008 leaves a large
    table's older runs without one): it hides nothing a list would show wrongly. Only then."""
    if stored != NO_LISTING:
        return False
    if not _listing_since:
        applied = (
            MigrationRecorder.Migration.objects.filter(app="runs", name=LISTING_MIGRATION)
            .values_list("applied", flat=True)
            .first()
        )
        if applied is None:
            return True  # not migrated this far: nothing has a listing yet
        _listing_since.append(applied)
    return run.created_at < _listing_since[0]


@dataclass(frozen=True)
class PinnedRows:
    """Rows of another app that a run's events pin by digest (the reviews app's requests and
    decisions), registered from that app's AppConfig.ready so runs imports no app above it.

    Each event of `event_type` names its row by `key_of(data)` and carries `data["sha256"]`.
    """

    event_type: str
    key_of: Callable[[dict], object]  # event data -> the key of the row it pins
    rows_of: Callable[[object], dict]  # run -> {key: row}
    digest: Callable[[object], str]
    describe: Callable[[str], str]  # key -> "review request rev_…"


PINNED_ROWS: list[PinnedRows] = []


def register_pinned_rows(pinned: PinnedRows) -> None:
    if all(p.event_type != pinned.event_type for p in PINNED_ROWS):
        PINNED_ROWS.append(pinned)


@dataclass(frozen=True)
class Verification:
    run_public_id: str
    intact: bool
    problem: str = ""
    events_checked: int = 0

    def __str__(self):
        if self.intact:
            return f"{self.run_public_id}: intact ({self.events_checked} events)"
        return f"{self.run_public_id}: BROKEN: {self.problem}"


class Broken(Exception):
    def __init__(self, problem: str, checked: int):
        super().__init__(problem)
        self.problem, self.checked = problem, checked


def verify_run(run, *, events: list | None = None) -> Verification:
    """Recompute the chain and every digest it carries; name the first broken link.

    `events`: the run's events in order, as rows with selectors.EVENT_ROW_FIELDS for
    attributes, when the caller has read them already (runs.evidence.verify_and_check).
    """
    try:
        checked = _ChainCheck(run, events).verify()
    except Broken as broken:
        return Verification(run.public_id, False, broken.problem, broken.checked)
    return Verification(run.public_id, True, "", checked)


class _ChainCheck:
    def __init__(self, run, events: list | None = None):
        self.run = run
        self.events = event_rows(run) if events is None else events
        self.steps = {step.sequence: step for step in step_rows(run)}
        self.pinned = {p.event_type: (p, p.rows_of(run)) for p in PINNED_ROWS}
        self.seen: dict[str, set] = {event_type: set() for event_type in self.pinned}
        self.seen_steps: set[int] = set()
        self.last_status = None
        self.last_completion = None
        self.last_failure = None

    def verify(self) -> int:
        prev = GENESIS_HASH
        for position, event in enumerate(self.events, start=1):
            self._check_link(event, position, prev)
            prev = event.hash
            self._check_content(event, f"event #{event.sequence} ({event.type})", position)
        checked = len(self.events)
        if not self.events or self.events[0].type != "run.created":
            raise Broken("the run.created event is missing", checked)
        self._check_nothing_unrecorded(checked)
        self._check_final_state(checked)
        return checked

    def _check_link(self, event, position: int, prev: str) -> None:
        label = f"event #{event.sequence} ({event.type})"
        if event.sequence != position:
            raise Broken(f"event #{position} is missing (found #{event.sequence})", position - 1)
        if event.prev_hash != prev:
            raise Broken(f"{label} does not link to the event before it", position - 1)
        expected = event_hash(
            prev_hash=prev,
            run_public_id=self.run.public_id,
            sequence=event.sequence,
            type=event.type,
            actor=event.actor,
            data=event.data,
            created_at=event.created_at,
        )
        if event.hash != expected:
            raise Broken(f"{label} was altered: its hash does not match its contents", position - 1)

    def _check_content(self, event, label: str, position: int) -> None:
        data = event.data
        if event.type == "run.created":
            self._check_header(data, label, position)
        if event.type == "step.recorded":
            step = self.steps.get(data.get("step"))
            if step is None:
                raise Broken(f"step #{data.get('step')} recorded by {label} is missing", position)
            if step_digest(step) != data.get("sha256"):
                raise Broken(
                    f"step #{step.sequence} ({step.node_id}) differs from what {label} recorded",
                    position,
                )
            if not step_tag_matches(
                data.get("tag"), self.run.public_id, step.sequence, data["sha256"]
            ):
                raise Broken(f"step #{step.sequence} ({step.node_id}) {NOT_OURS}", position)
            self.seen_steps.add(step.sequence)
        if event.type in self.pinned:
            pinned, rows = self.pinned[event.type]
            key = pinned.key_of(data)
            row = rows.get(key)
            if row is None or pinned.digest(row) != data.get("sha256"):
                raise Broken(f"{pinned.describe(key)} differs from what {label} recorded", position)
            self.seen[event.type].add(key)
        if event.type == "run.status_changed":
            self.last_status = data.get("to")
            if self.last_status == "completed":
                self.last_completion = data
            if self.last_status == "failed":
                self.last_failure = data

    def _check_header(self, data: dict, label: str, position: int) -> None:
        header = data.get("header")
        if header != run_header(self.run):
            raise Broken(f"the run's inputs or header differ from what {label} recorded", position)
        if not header_tag_matches(data.get("tag"), self.run.public_id, digest(header)):
            raise Broken(f"the run's header ({label}) {NOT_OURS}", position)
        # The inputs are pinned by the header; what the Runs list shows of them must be them.
        stored = listing_columns(self.run)
        expected = listing_of(self.run.version.definition, self.run.inputs)
        if stored != expected and not _from_before_listings(self.run, stored):
            raise Broken(
                "the run's listing (the references, search text and amount the Runs list "
                "shows) differs from its inputs",
                position,
            )

    def _check_nothing_unrecorded(self, checked: int) -> None:
        for sequence, step in sorted(self.steps.items()):
            if sequence not in self.seen_steps:
                raise Broken(
                    f"step #{sequence} ({step.node_id}) was added outside the record", checked
                )
        for event_type, (pinned, rows) in self.pinned.items():
            for key in rows:
                if key not in self.seen[event_type]:
                    raise Broken(f"{pinned.describe(key)} was added outside the record", checked)

    def _check_final_state(self, checked: int) -> None:
        run, last_status = self.run, self.last_status
        if (last_status or "pending") != run.status:
            raise Broken(
                f"the run's status is {run.status} but its events end at "
                f"{last_status or 'pending'}",
                checked,
            )
        completion, failure = self.last_completion, self.last_failure
        if completion is not None and completion.get("output_sha256") != digest(run.output):
            raise Broken(
                "the run's output differs from what its completion event recorded", checked
            )
        # A business outcome is named by the event that ended the run, and nowhere else.
        ending = (completion if last_status == "completed" else failure) or {}
        if ending.get("outcome", "") != run.outcome:
            raise Broken(
                "the run's business outcome differs from what its status events recorded",
                checked,
            )
        if failure is None:
            return
        step = self.steps.get(failure.get("failed_step")) if failure.get("failed_step") else None
        if (
            failure.get("reason") != run.failure_reason
            or failure.get("kind") != run.failure_kind
            or (step.pk if step else None) != run.failed_step_id
        ):
            raise Broken("the run's failure differs from what its failure event recorded", checked)
