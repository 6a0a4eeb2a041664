"""A run checked against the ledger, and exported as an evidence bundle.

`ledger_status(run)` names, for each of the run's events, whether it is sealed in the latest
checkpoint published outside the database, and what is wrong when it is not (changed, missing,
forged, not yet sealed). `bundle(run)` gives the self-contained JSON that rapidfolio_verify
checks offline: the record, each event as its leaf with an inclusion proof, and the signed
checkpoint (docs/evidence.md).
"""

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter

from django.conf import settings

from rapidfolio import keys
from rapidfolio_verify import merkle, note
from runs import ledger, selectors
from runs.integrity import Verification, digest, run_header, step_fact, verify_run
from runs.models import LedgerLeaf, LedgerQueue, Run, RunEvent

BUNDLE_FORMAT = "rapidfolio-evidence/1"

# Sections of a bundle that apps above runs add (the reviews app: requests and decisions),
# registered from their AppConfig.ready: name -> run -> list of dicts.
BUNDLE_SECTIONS: dict[str, Callable[[Run], list[dict]]] = {}


def register_bundle_section(name: str, rows_of: Callable[[Run], list[dict]]) -> None:
    BUNDLE_SECTIONS[name] = rows_of


@dataclass
class LedgerProblem:
    fact: str
    problem: str  # changed | missing | forged | not yet sealed

    def __str__(self):
        return f"{self.fact}: {self.problem}"


@dataclass
class LedgerStatus:
    sealed_in: int | None = None  # the checkpoint's tree size, when every event is sealed
    problems: list[LedgerProblem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not any(p.problem != "not yet sealed" for p in self.problems)

    @property
    def sealed(self) -> bool:
        return self.sealed_in is not None and not self.problems


@dataclass
class _Leaves:
    events: list[dict]
    leaf_index: dict[int, int]  # event id -> leaf index
    stored_hash: dict[int, str]  # event id -> the leaf hash the ledger stored
    queued: set[int]


def ledger_event_rows(run: Run) -> list[dict]:
    """The run's events in order, as dicts with ledger.EVENT_FIELDS (what a leaf is made of)."""
    return list(selectors.run_events(run).values(*ledger.EVENT_FIELDS))


def _leaves_of(run: Run, events: list[dict] | None = None) -> _Leaves:
    if events is None:
        events = ledger_event_rows(run)
    # The run's events as a subquery, not as a list of their ids: binding a thousand ids (and
    # psycopg parsing the statement with a thousand placeholders) cost more than reading the
    # rows did, twice per integrity check of a long run (make bench).
    of_run = RunEvent.objects.filter(run_id=run.pk).values("pk")
    leaves = list(
        LedgerLeaf.objects.filter(event_id__in=of_run).values_list("event_id", "index", "leaf_hash")
    )
    queued = set(LedgerQueue.objects.filter(event_id__in=of_run).values_list("event_id", flat=True))
    return _Leaves(
        events,
        {event_id: index for event_id, index, _ in leaves},
        {event_id: leaf_hash for event_id, _, leaf_hash in leaves},
        queued,
    )


def ledger_status(
    run: Run, published: ledger.Published | None = None, *, events: list[dict] | None = None
) -> LedgerStatus:
    """Check every event of the run against the latest checkpoint published outside the
    database (or the one given). `events`: the run's ledger_event_rows, when already read."""
    published = published or ledger.latest_published()
    found = _leaves_of(run, events)
    status = LedgerStatus()
    store = ledger.NodeStore()
    to_prove = []
    for event in found.events:
        fact = f"event #{event['sequence']} ({event['type']})"
        index = found.leaf_index.get(event["id"])
        if index is None:
            # No leaf to compare with: hashing the event would tell nothing more.
            problem = "not yet sealed" if event["id"] in found.queued else "missing"
            status.problems.append(LedgerProblem(fact, problem))
            continue
        leaf_hash = merkle.leaf_hash(ledger.event_leaf(event))
        if found.stored_hash[event["id"]] != leaf_hash.hex():
            status.problems.append(LedgerProblem(fact, "changed"))
        elif published is None or index >= published.size:
            status.problems.append(LedgerProblem(fact, "not yet sealed"))
        else:
            to_prove.append((fact, index, leaf_hash))
    if published is not None and to_prove:
        _check_inclusion(store, published, to_prove, status)
    if published is not None and not status.problems:
        status.sealed_in = published.size
    return status


_EventRow = namedtuple("_EventRow", selectors.EVENT_ROW_FIELDS)
_event_row_values = itemgetter(*selectors.EVENT_ROW_FIELDS)


def verify_and_check(run: Run) -> tuple[Verification, LedgerStatus]:
    """verify_run and ledger_status of the run (the page's integrity badge), from one read of
    its events: a long run's thousand events, their JSON parsed, were read once for each."""
    events = ledger_event_rows(run)
    rows = [_EventRow._make(_event_row_values(event)) for event in events]
    return verify_run(run, events=rows), ledger_status(run, events=events)


def _check_inclusion(store, published, to_prove, status: LedgerStatus) -> None:
    def proofs(subtree):
        return [merkle.inclusion_proof(index, published.size, subtree) for _, index, _ in to_prove]

    try:
        all_proofs = store.batched(proofs)
    except ledger.MissingNode:
        for fact, _, _ in to_prove:
            status.problems.append(LedgerProblem(fact, "forged"))
        return
    for (fact, index, leaf_hash), proof in zip(to_prove, all_proofs, strict=True):
        if not merkle.verify_inclusion(index, published.size, leaf_hash, proof, published.root):
            status.problems.append(LedgerProblem(fact, "forged"))


# --- the bundle -------------------------------------------------------------------------------
class NotSealed(Exception):
    """The run has events that no published checkpoint covers yet."""


def bundle(run: Run) -> dict:
    """The evidence bundle of a run whose every event is sealed (else NotSealed)."""
    published = ledger.latest_published()
    status = ledger_status(run, published)
    if not status.sealed:
        problems = "; ".join(str(p) for p in status.problems) or "no checkpoint published yet"
        raise NotSealed(f"Run {run.public_id} is not sealed in a checkpoint yet: {problems}")
    found = _leaves_of(run)
    store = ledger.NodeStore()
    indexes = [found.leaf_index[event["id"]] for event in found.events]
    proofs = store.batched(
        lambda subtree: [merkle.inclusion_proof(i, published.size, subtree) for i in indexes]
    )
    events = [
        {**ledger.event_fact(event), "index": index, "inclusion_proof": [p.hex() for p in proof]}
        for event, index, proof in zip(found.events, indexes, proofs, strict=True)
    ]
    public_key = keys.public_key_bytes()
    return {
        "format": BUNDLE_FORMAT,
        "run": run_section(run),
        "events": events,
        "checkpoint": published.note,
        "tree_size": published.size,
        "origin": settings.LEDGER_ORIGIN,
        "key_id": note.key_id(settings.LEDGER_ORIGIN, public_key).hex(),
        "public_key": note.vkey(settings.LEDGER_ORIGIN, public_key),
    }


def run_section(run: Run) -> dict:
    failed = run.failed_step
    section = {
        "id": run.public_id,
        "procedure": {"id": run.procedure.public_id, "name": run.procedure.name},
        "version": run.version.number,
        "environment": run.environment,
        "type": run.type,
        "status": run.status,
        "inputs": run.inputs,
        "output": run.output,
        "failure": None
        if run.status != "failed"
        else {
            "reason": run.failure_reason,
            "kind": run.failure_kind,
            "step": failed.sequence if failed else None,
        },
        "header": run_header(run),
        "inputs_sha256": digest(run.inputs),
        "started_by": run.started_by_label,
        "steps": [step_fact(step) for step in selectors.step_rows(run)],
    }
    for name, rows_of in BUNDLE_SECTIONS.items():
        section[name] = rows_of(run)
    return section
