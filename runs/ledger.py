"""The ledger: one append-only Merkle log (RFC 9162) of every run event, sealed by signed
checkpoints that are also kept outside the database.

`seal()` appends the queued events (runs_ledgerqueue, filled by a trigger in the transaction
that inserts each event) as leaves in queue order, stores the hash of every complete subtree,
and signs a checkpoint (C2SP signed note) of the new tree with the Ed25519 key of
rapidfolio.keys. Before signing it proves the new tree extends the last checkpoint written to
LEDGER_CHECKPOINT_DIR (the copy outside the database that an attacker with the database
cannot rewrite) and refuses to sign otherwise. The checkpoint file is written once the
transaction commits, so a sealer killed mid-seal leaves neither a leaf nor a file behind, and
the next seal takes the same queued events again.
"""

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from rapidfolio import keys
from rapidfolio_verify import facts, merkle, note
from runs import sql
from runs.integrity import iso
from runs.models import Checkpoint, LedgerLeaf, LedgerNode, LedgerQueue, RunEvent
from runs.webhooks import sign

logger = logging.getLogger(__name__)

SEAL_BATCH = 5000
CHECKPOINT_SUFFIX = ".note"


class LedgerBroken(Exception):
    """The database's tree is not the one the checkpoints signed."""


class LedgerForked(LedgerBroken):
    """The database's tree does not extend the last checkpoint published outside it."""


class MissingNode(LedgerBroken):
    def __init__(self, level: int, position: int):
        kind = "leaf" if level == 0 else f"node {level}/{position}"
        super().__init__(f"the ledger's {kind}{'' if level else f' {position}'} is missing")


# --- the tree's stored nodes ------------------------------------------------------------------
class NodeStore:
    """Hashes of complete subtrees: leaves from LedgerLeaf (level 0), the rest from LedgerNode,
    with the nodes a seal adds held in memory until they are inserted."""

    def __init__(self):
        self.known: dict[tuple[int, int], bytes] = {}

    def prefetch(self, wanted) -> None:
        """Read the wanted nodes not known yet: one query for leaves, one for the rest."""
        missing = {key for key in wanted if key not in self.known}
        leaves = [position for level, position in missing if level == 0]
        if leaves:
            found = LedgerLeaf.objects.filter(index__in=leaves).values_list("index", "leaf_hash")
            for index, leaf_hash in found:
                self.known[(0, index)] = bytes.fromhex(leaf_hash)
        levels: dict[int, list[int]] = {}
        for level, position in missing:
            if level:
                levels.setdefault(level, []).append(position)
        if not levels:
            return
        where = Q()
        for level, positions in levels.items():
            where |= Q(level=level, position__in=positions)
        for level, position, node_hash in LedgerNode.objects.filter(where).values_list(
            "level", "position", "hash"
        ):
            self.known[(level, position)] = bytes.fromhex(node_hash)

    def prefetch_frontier(self, size: int) -> None:
        """The complete subtrees that make up a tree of `size` leaves (at most log2 of it):
        all that appending to it and computing its root need."""
        frontier: set[tuple[int, int]] = set()
        _complete_subtrees(0, size, frontier)
        self.prefetch(frontier)

    def node(self, level: int, position: int) -> bytes:
        if (level, position) not in self.known:
            self.prefetch([(level, position)])
        if (level, position) not in self.known:
            raise MissingNode(level, position)
        return self.known[(level, position)]

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end), from the complete subtrees that make it up."""
        size = end - start
        if size == 0:
            return merkle.EMPTY_ROOT
        if size & (size - 1) == 0 and start % size == 0:
            return self.node(size.bit_length() - 1, start // size)
        split = merkle.largest_power_of_two_below(size)
        return merkle.node_hash(
            self.subtree_hash(start, start + split), self.subtree_hash(start + split, end)
        )

    def batched(self, produce):
        """Run `produce(subtree_hash)` twice: once recording the nodes it needs (fetched in
        one query per level), once for real: a proof costs a few queries, not one per node."""
        wanted: set[tuple[int, int]] = set()

        def record(start: int, end: int) -> bytes:
            _complete_subtrees(start, end, wanted)
            return b"\x00" * 32

        produce(record)
        self.prefetch(wanted)
        return produce(self.subtree_hash)


def _complete_subtrees(start: int, end: int, into: set) -> None:
    size = end - start
    if size == 0:
        return
    if size & (size - 1) == 0 and start % size == 0:
        into.add((size.bit_length() - 1, start // size))
        return
    split = merkle.largest_power_of_two_below(size)
    _complete_subtrees(start, start + split, into)
    _complete_subtrees(start + split, end, into)


def tree_size() -> int:
    last = LedgerLeaf.objects.aggregate(last=Max("index"))["last"]
    return 0 if last is None else last + 1


def event_fact(event: dict) -> dict:
    """An event row read with `EVENT_FIELDS` as the ledger and a bundle record it."""
    return {
        "run": event["run__public_id"],
        "sequence": event["sequence"],
        "type": event["type"],
        "actor": event["actor"],
        "data": event["data"],
        "created_at": iso(event["created_at"]),
        "prev_hash": event["prev_hash"],
        "hash": event["hash"],
    }


def event_leaf(event: dict) -> bytes:
    """The leaf bytes of an event row read with `EVENT_FIELDS` (and its run's public id)."""
    return facts.leaf_bytes(event_fact(event))


EVENT_FIELDS = (
    "id",
    "run_id",
    "run__public_id",
    "sequence",
    "type",
    "actor",
    "data",
    "created_at",
    "prev_hash",
    "hash",
)


# --- sealing ----------------------------------------------------------------------------------
@dataclass
class Sealed:
    checkpoint: Checkpoint
    leaves_added: int


def seal(*, batch: int = SEAL_BATCH) -> Sealed | None:
    """Append the queued events as leaves and sign a checkpoint; None when nothing is queued."""
    with transaction.atomic():
        sql.lock_ledger()
        queued = list(LedgerQueue.objects.order_by("id").values_list("id", "event_id")[:batch])
        if not queued:
            return None
        store = NodeStore()
        old_size = tree_size()
        store.prefetch_frontier(old_size)
        new_size = _append_leaves(store, old_size, [event_id for _, event_id in queued])
        LedgerQueue.objects.filter(id__in=[queue_id for queue_id, _ in queued]).delete()
        root = store.subtree_hash(0, new_size)
        previous = latest_published() or _latest_in_database()
        proof = _proof_from(store, previous, new_size, root)
        body = note.checkpoint_body(settings.LEDGER_ORIGIN, new_size, root)
        checkpoint = Checkpoint.objects.create(
            tree_size=new_size,
            root_hash=root.hex(),
            note=note.sign_note(body, settings.LEDGER_ORIGIN, keys.signing_key()),
            previous_size=previous.size if previous else None,
            consistency_proof=[step.hex() for step in proof],
            created_at=timezone.now(),
        )
        transaction.on_commit(lambda: publish(checkpoint))
    return Sealed(checkpoint, new_size - old_size)


def _append_leaves(store: NodeStore, size: int, event_ids: list[int]) -> int:
    events = RunEvent.objects.filter(id__in=event_ids).values(*EVENT_FIELDS)
    by_id = {event["id"]: event for event in events}
    leaves, nodes = [], []
    for event_id in event_ids:  # queue order: the order the log appends
        event = by_id[event_id]
        leaf_hash = merkle.leaf_hash(event_leaf(event))
        leaves.append(
            LedgerLeaf(
                index=size, event_id=event_id, run_id=event["run_id"], leaf_hash=leaf_hash.hex()
            )
        )
        store.known[(0, size)] = leaf_hash
        nodes += _completed_nodes(store, size)
        size += 1
    LedgerLeaf.objects.bulk_create(leaves)
    LedgerNode.objects.bulk_create(nodes)
    return size


def _completed_nodes(store: NodeStore, index: int) -> list[LedgerNode]:
    """The subtrees that leaf `index` completes, bottom up."""
    completed, level, position = [], 0, index
    while position % 2 == 1:
        node_hash = merkle.node_hash(store.node(level, position - 1), store.node(level, position))
        level, position = level + 1, position // 2
        store.known[(level, position)] = node_hash
        completed.append(LedgerNode(level=level, position=position, hash=node_hash.hex()))
    return completed


def _proof_from(store: NodeStore, previous, new_size: int, new_root: bytes) -> list[bytes]:
    """The consistency proof from the last checkpoint, checked before anything is signed."""
    if previous is None:
        return []
    if previous.size > new_size:
        raise LedgerForked(
            f"the database's tree has {new_size} leaves, fewer than the {previous.size} of the "
            "last checkpoint published"
        )
    try:
        proof = store.batched(
            lambda subtree: merkle.consistency_proof(previous.size, new_size, subtree)
        )
    except MissingNode as exc:
        raise LedgerForked(f"{exc}: refusing to sign") from exc
    if not merkle.verify_consistency(previous.size, new_size, previous.root, new_root, proof):
        raise LedgerForked(
            f"the database's tree of {new_size} leaves does not extend the checkpoint of "
            f"{previous.size} leaves published outside it: refusing to sign"
        )
    return proof


# --- checkpoints outside the database ---------------------------------------------------------
def checkpoint_dir() -> Path:
    return Path(settings.LEDGER_CHECKPOINT_DIR)


def checkpoint_path(size: int, directory: Path | None = None) -> Path:
    return (directory or checkpoint_dir()) / f"{size:015d}{CHECKPOINT_SUFFIX}"


def publish(checkpoint: Checkpoint) -> None:
    """Write the checkpoint's file (never rewritten) and POST it to the auditor, if any."""
    path = checkpoint_path(checkpoint.tree_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        logger.error("checkpoint file %s exists already; not rewritten", path)
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(checkpoint.note)
    if settings.LEDGER_CHECKPOINT_WEBHOOK_URL:
        _post_to_auditor(checkpoint)


def _post_to_auditor(checkpoint: Checkpoint) -> None:
    body = json.dumps(
        {
            "type": "ledger.checkpoint",
            "tree_size": checkpoint.tree_size,
            "root_hash": checkpoint.root_hash,
            "note": checkpoint.note,
        },
        separators=(",", ":"),
    )
    headers = {"Content-Type": "application/json", "Rapidfolio-Event": "ledger.checkpoint"}
    headers["Rapidfolio-Signature"] = sign(body, settings.LEDGER_CHECKPOINT_WEBHOOK_SECRET)
    try:
        httpx.post(settings.LEDGER_CHECKPOINT_WEBHOOK_URL, content=body, headers=headers, timeout=5)
    except httpx.HTTPError:
        logger.exception("checkpoint %s not delivered to the auditor", checkpoint.tree_size)


@dataclass(frozen=True)
class Published:
    size: int
    root: bytes
    note: str
    path: Path | None


def read_published(path: Path) -> Published:
    """A checkpoint file, its signature checked against this installation's public key."""
    text = path.read_text(encoding="utf-8")
    body = note.open_note(text, settings.LEDGER_ORIGIN, keys.public_key_bytes())
    head = note.parse_checkpoint(body)
    if head.origin != settings.LEDGER_ORIGIN:
        raise note.NoteError(
            f"{path} is a checkpoint of {head.origin}, not {settings.LEDGER_ORIGIN}"
        )
    return Published(head.size, head.root, text, path)


def published_paths(directory: Path | None = None) -> list[Path]:
    directory = directory or checkpoint_dir()
    if not directory.is_dir():
        return []
    return sorted(directory.glob(f"*{CHECKPOINT_SUFFIX}"))


def latest_published(directory: Path | None = None) -> Published | None:
    paths = published_paths(directory)
    return read_published(paths[-1]) if paths else None


def _latest_in_database() -> Published | None:
    latest = Checkpoint.objects.order_by("-tree_size").first()
    if latest is None:
        return None
    return Published(latest.tree_size, bytes.fromhex(latest.root_hash), latest.note, None)
