"""Verify an evidence bundle: one run's record, its events' ledger leaves with inclusion proofs,
and the signed checkpoint they lead to.

The trust chain, checked from the top down so that the first failure names the fact that
broke: the checkpoint's Ed25519 signature (by a key pinned out of band) -> its tree size and
root -> each event's leaf included in that tree -> the events' hash chain -> the digests those
events carry -> the run's rows (header, inputs, steps, review requests, decisions, status,
output, failure). Labels the record does not pin (names, "started by" text) are reported as
such, never as verified.
"""

import hashlib
import re

from rapidfolio_verify import facts, merkle, note
from rapidfolio_verify.account import Account, DecisionAccount, StepAccount, format_account
from rapidfolio_verify.canonical import canonical_json, digest

__all__ = ["FORMAT", "Account", "VerificationError", "format_account", "verify_bundle"]

FORMAT = "rapidfolio-evidence/1"
_HEX_HASH = re.compile(r"[0-9a-f]{64}")


class VerificationError(Exception):
    """The first fact of a bundle that does not verify, and what is wrong with it."""

    def __init__(self, fact: str, problem: str):
        super().__init__(f"{fact}: {problem}")
        self.fact, self.problem = fact, problem


def _same(a, b) -> bool:
    # Compare as the record hashes them: in Python 1 == 1.0 == True, in canonical JSON not.
    return canonical_json(a) == canonical_json(b)


def _text_sha256(text) -> str:
    raw = text if isinstance(text, str) else canonical_json(text)
    return hashlib.sha256(raw.encode()).hexdigest()


def _hashes(proof) -> list[bytes] | None:
    if not isinstance(proof, list):
        return None
    if not all(isinstance(item, str) and _HEX_HASH.fullmatch(item) for item in proof):
        return None
    return [bytes.fromhex(item) for item in proof]


def _label(event, position: int) -> str:
    if isinstance(event, dict):
        return f"event #{event.get('sequence')} ({event.get('type')}) of {event.get('run')}"
    return f"event {position + 1} of the bundle"


def _problem(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"malformed: field {exc.args[0]!r} is missing"
    return f"malformed: {exc}"


def verify_bundle(bundle: dict, public_key: bytes, key_name: str | None = None) -> Account:
    """Check every fact of the bundle against the checkpoint signed by `public_key`, whose key
    name is `key_name` (default: the bundle's origin). Raises VerificationError naming the
    first fact that does not verify; returns the Account of a bundle that does."""
    check = _BundleCheck(bundle, public_key, key_name)
    try:
        return check.verify()
    except VerificationError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # A bundle shaped wrongly is not evidence; say where the shape broke.
        raise VerificationError(check.fact, _problem(exc)) from None


class _BundleCheck:
    def __init__(self, bundle, public_key: bytes, key_name: str | None):
        self.bundle, self.public_key, self.key_name = bundle, public_key, key_name
        self.fact = "bundle"

    def fail(self, problem: str, fact: str | None = None):
        raise VerificationError(fact or self.fact, problem)

    def verify(self) -> Account:
        bundle = self.bundle
        if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
            self.fail(f"not a {FORMAT} evidence bundle")
        self.run = bundle["run"]
        checkpoint, signer = self._checkpoint()
        events = bundle["events"]
        if not isinstance(events, list) or not events:
            self.fail("it has no events", "events")
        self._included(events, checkpoint)
        self._chains(events)
        run_events = [event for event in events if event["run"] == self.run["id"]]
        self._header(run_events)
        self._steps(run_events)
        self._pinned(run_events, "review.requested", "review_requests")
        self._pinned(run_events, "review.decided", "decisions")
        self._final_state(run_events)
        return self._account(run_events, checkpoint, signer)

    def _checkpoint(self) -> tuple[note.Checkpoint, str]:
        self.fact = "checkpoint signature"
        origin = self.bundle["origin"]
        name = self.key_name or origin
        pinned_id = note.key_id(name, self.public_key).hex()
        if self.bundle["key_id"] != pinned_id:
            self.fail(
                f"the bundle says key id {self.bundle['key_id']!r} signed it, "
                f"but the pinned key is {name}+{pinned_id}"
            )
        try:
            body = note.open_note(self.bundle["checkpoint"], name, self.public_key)
        except note.NoteError as exc:
            self.fail(str(exc))
        self.fact = "checkpoint"
        try:
            checkpoint = note.parse_checkpoint(body)
        except note.NoteError as exc:
            self.fail(str(exc))
        if checkpoint.origin != origin:
            self.fail(f"its origin is {checkpoint.origin!r}, not the bundle's {origin!r}")
        if not _same(checkpoint.size, self.bundle["tree_size"]):
            self.fail(
                f"it signs a tree of {checkpoint.size} leaves, "
                f"not the bundle's tree_size {self.bundle['tree_size']!r}"
            )
        return checkpoint, f"{name}+{pinned_id}"

    def _included(self, events: list, checkpoint: note.Checkpoint) -> None:
        for position, event in enumerate(events):
            self.fact = _label(event, position)
            proof = _hashes(event["inclusion_proof"])
            if proof is None:
                self.fail("its inclusion proof is not a list of hex SHA-256 hashes")
            leaf = merkle.leaf_hash(facts.leaf_bytes(event))
            if not merkle.verify_inclusion(
                event["index"], checkpoint.size, leaf, proof, checkpoint.root
            ):
                self.fail(
                    f"it is not leaf {event['index']!r} of the signed tree of "
                    f"{checkpoint.size} (its inclusion proof does not lead to the root)"
                )

    def _chains(self, events: list) -> None:
        # Each run's events form one chain from the genesis hash, in sequence, without gaps.
        heads: dict[str, tuple[int, str]] = {}
        for position, event in enumerate(events):
            self.fact = _label(event, position)
            run_id = event["run"]
            sequence, prev_hash = heads.get(run_id, (0, facts.GENESIS_HASH))
            if not _same(event["sequence"], sequence + 1):
                self.fail(f"event #{sequence + 1} of {run_id} should come here: a gap or reorder")
            if event["prev_hash"] != prev_hash:
                self.fail("it does not link to the event before it (prev_hash)")
            expected = facts.event_hash(
                prev_hash=prev_hash,
                run_public_id=run_id,
                sequence=event["sequence"],
                type=event["type"],
                actor=event["actor"],
                data=event["data"],
                created_at=event["created_at"],
            )
            if event["hash"] != expected:
                self.fail("it was altered: its hash does not match its contents")
            heads[run_id] = (sequence + 1, expected)

    def _header(self, run_events: list) -> None:
        run = self.run
        self.fact = "run header"
        if not run_events or run_events[0]["type"] != "run.created":
            self.fail(f"the first event of {run['id']} is not run.created")
        header = run_events[0]["data"]["header"]
        if not _same(header, run["header"]):
            self.fail("the bundle's header differs from what the run.created event recorded")
        if header["inputs_sha256"] != digest(run["inputs"]):
            self.fail("they differ from the digest the run.created event recorded", "run inputs")
        pinned = {"procedure": run["procedure"]["id"]}
        for field in ("version", "environment", "type"):
            pinned[field] = run[field]
        for field, value in pinned.items():
            if not _same(header[field], value):
                self.fail(
                    f"the bundle says {value!r}, the run.created event {header[field]!r}",
                    f"run {field}",
                )

    def _steps(self, run_events: list) -> None:
        self.fact = "steps"
        steps = _by_key(
            self.run["steps"], lambda step: step["sequence"], lambda key: f"step #{key}", self.fact
        )
        recorded = set()
        for event in (e for e in run_events if e["type"] == "step.recorded"):
            sequence = event["data"]["step"]
            self.fact = f"step #{sequence}"
            step = steps.get(sequence)
            if step is None:
                self.fail(f"{_label(event, 0)} records it, but the bundle does not hold it")
            self.fact = f"step #{sequence} ({step['node_id']})"
            if facts.step_digest(step) != event["data"]["sha256"]:
                self.fail(f"it differs from what {_label(event, 0)} recorded")
            recorded.add(sequence)
        for sequence, step in steps.items():
            if sequence not in recorded:
                self.fail("no step.recorded event pins it", f"step #{sequence} ({step['node_id']})")

    def _pinned(self, run_events: list, event_type: str, rows_key: str) -> None:
        """Review requests and decisions: each row is pinned by exactly one kind of event,
        naming it (facts.review_key, facts.decision_key) and carrying its digest in
        data["sha256"]."""
        self.fact = rows_key
        key_of, row_digest, describe = facts.review_key, facts.review_request_digest, _request
        if event_type == "review.decided":
            key_of, row_digest, describe = facts.decision_key, facts.decision_digest, _decision
        rows = _by_key(self.run[rows_key], key_of, describe, self.fact)
        seen = set()
        for event in (e for e in run_events if e["type"] == event_type):
            key = key_of(event["data"])
            self.fact = describe(key)
            row = rows.get(key)
            if row is None:
                self.fail(f"{_label(event, 0)} records it, but the bundle does not hold it")
            if row_digest(row) != event["data"]["sha256"]:
                self.fail(f"it differs from what {_label(event, 0)} recorded")
            seen.add(key)
        for key in rows:
            if key not in seen:
                self.fail(f"no {event_type} event pins it", describe(key))

    def _final_state(self, run_events: list) -> None:
        run = self.run
        self.fact = "run status"
        changes = [e["data"] for e in run_events if e["type"] == "run.status_changed"]
        last = changes[-1] if changes else None
        recorded = last["to"] if last else "pending"
        if not _same(run["status"], recorded):
            self.fail(f"the bundle says {run['status']!r}, the events end at {recorded!r}")
        self.fact = "run output"
        if recorded == "completed":
            if last["output_sha256"] != digest(run["output"]):
                self.fail("it differs from the digest the completion event recorded")
        elif run["output"] is not None:
            self.fail("the run did not complete, yet the bundle shows an output")
        self.fact = "run failure"
        if recorded == "failed":
            expected = {"reason": last["reason"], "kind": last["kind"], "step": last["failed_step"]}
            failure = run["failure"]
            if not isinstance(failure, dict) or not _same(failure, expected):
                self.fail(f"the bundle says {failure!r}, the failure event {expected!r}")
        elif run["failure"] is not None:
            self.fail("the run did not fail, yet the bundle shows a failure")

    def _account(self, run_events: list, checkpoint: note.Checkpoint, signer: str) -> Account:
        run = self.run
        self.fact = "bundle"
        steps = sorted(run["steps"], key=lambda step: step["sequence"])
        return Account(
            run_id=run["id"],
            procedure_id=run["procedure"]["id"],
            procedure_name=str(run["procedure"].get("name", "")),
            version=run["version"],
            environment=run["environment"],
            run_type=run["type"],
            status=run["status"],
            started_by=str(run.get("started_by", "")),
            created_by=run_events[0]["actor"],
            inputs_sha256=run["header"]["inputs_sha256"],
            steps=tuple(_step_account(step) for step in steps),
            decisions=tuple(_decision_account(d) for d in run["decisions"]),
            output=run["output"],
            failure=run["failure"],
            events=len(run_events),
            tree_size=checkpoint.size,
            origin=checkpoint.origin,
            key=signer,
        )


def _request(key) -> str:
    return f"review request {key}"


def _decision(key) -> str:
    review, _, sequence = str(key).partition("#")
    return f"decision {sequence} on {review}" if sequence else f"the decision on {review}"


def _by_key(rows, key_of, describe, section: str) -> dict:
    """The bundle's rows of `section` by `key_of(row)`; each may appear once."""
    if not isinstance(rows, list):
        raise VerificationError(section, "malformed: not a list")
    by_key = {}
    for row in rows:
        key = key_of(row)
        if key is None:
            raise KeyError("review")
        if key in by_key:
            raise VerificationError(describe(key), "it appears twice in the bundle")
        by_key[key] = row
    return by_key


def _step_account(step: dict) -> StepAccount:
    return StepAccount(
        sequence=step["sequence"],
        node_id=step["node_id"],
        status=step["status"],
        attempt=step["attempt"],
        request_sha256=_text_sha256(step["request"]),
        response_sha256=_text_sha256(step["response"]),
    )


def _decision_account(decision: dict) -> DecisionAccount:
    return DecisionAccount(
        review=decision["review"],
        reviewer=str(decision.get("reviewer", "")),
        reviewer_id=decision["reviewer_id"],
        decision=decision["decision"],
        comment=decision["comment"],
        overrides=decision["overrides"],
        sequence=decision.get("sequence", 1),
        decided_by=decision.get("decided_by", "person"),
        final=decision.get("final", True),
        shown_sha256=decision.get("shown_sha256", ""),
        confirmed=tuple(decision.get("confirmed") or ()),
        deadline=decision.get("deadline"),
    )
