"""Evidence bundles: rapidfolio_verify.bundle and the `python -m rapidfolio_verify` command.

Each bundle is built here with the package's own functions: a run (two steps, a review, a
decision) whose events are leaves of a small ledger among other runs' random leaves, and a
checkpoint signed with a fresh Ed25519 key.
"""

import ast
import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import rapidfolio_verify
from rapidfolio_verify import facts, merkle, note
from rapidfolio_verify.bundle import FORMAT, VerificationError, format_account, verify_bundle
from rapidfolio_verify.canonical import digest

REPO = Path(__file__).resolve().parent.parent
ORIGIN = "runs.example.com/ledger"
RUN = "run_7Hq2"
TREE_SIZE = 12
EVENT_LEAVES = [1, 3, 4, 6, 8, 9, 11]  # the other leaves are other runs' events
KEY = Ed25519PrivateKey.generate()
PUBLIC_KEY = note.raw_public_key(KEY)
VKEY = note.vkey(ORIGIN, PUBLIC_KEY)


def at(second: int) -> str:
    return f"2025-03-01T09:00:{second:02d}.000123+00:00"


def make_run(status: str) -> dict:
    """A run of two steps (a payment, then its approval) in `status` completed or failed."""
    inputs = {"vendor": "Acme Ltd", "amount": {"value": "1250.00", "currency": "EUR"}}
    header = dict(procedure="proc_pay", version=3, environment="live", type="api")
    header.update(inputs_sha256=digest(inputs), retry_of=None, trigger_event_id="")
    header.update(started_by_user_id=None, started_by_api_key_id=4, started_by_trigger_id=None)
    charge = dict(sequence=1, node_id="charge", node_type="tool", tool="stripe.create_payment")
    charge.update(status="succeeded", attempt=1, input={"amount": 125000}, output={"id": "pi_1"})
    charge.update(request='{"amount": 125000}', response='{"id": "pi_1", "status": "ok"}')
    charge.update(idempotency_key=f"{RUN}:charge:1", error="", error_kind="")
    charge.update(started_at=at(2), finished_at=at(3))
    approval = {**charge, "sequence": 2, "node_id": "approve", "node_type": "human_review"}
    approval.update(tool="", request="", response="", input=None, idempotency_key="")
    shown = {"amount": "1250.00"}
    request = dict(review="rev_9", node_id="approve", shown_values=shown, reviewer_group="fin")
    request.update(overridable_fields=["amount"], title="Approve the payment")
    verdict = "approved" if status == "completed" else "rejected"
    decision = dict(review="rev_9", reviewer_id=12, reviewer="rita", decision=verdict)
    decision.update(comment="Matches invoice 2291", shown_values=shown, overrides=[])
    decision.update(decided_at=at(5))
    run = dict(id=RUN, procedure={"id": "proc_pay", "name": "Pay a vendor"}, version=3)
    run.update(environment="live", type="api", status=status, inputs=inputs, header=header)
    run.update(output={"paid": True} if status == "completed" else None, failure=None)
    run.update(started_by="api key ci-backend", steps=[charge, approval])
    run.update(review_requests=[request], decisions=[decision])
    return run


def event_data(run: dict) -> list[tuple[str, str, dict]]:
    """(type, actor, data) of the run's events, as the product records them."""
    charge, approval = (facts.step_digest(step) for step in run["steps"])
    request = facts.review_request_digest(run["review_requests"][0])
    decision = facts.decision_digest(run["decisions"][0])
    final = {"from": "running", "to": run["status"]}
    if run["status"] == "completed":
        final["output_sha256"] = digest(run["output"])
    else:
        final.update(reason="Rejected by rita", kind="rejected", failed_step=2)
    return [
        ("run.created", "api_key:4", {"header": dict(run["header"])}),
        ("run.status_changed", "worker", {"from": "pending", "to": "running"}),
        ("step.recorded", "worker", {"step": 1, "node": "charge", "sha256": charge}),
        ("review.requested", "worker", {"review": "rev_9", "sha256": request}),
        ("review.decided", "user:12", {"review": "rev_9", "sha256": decision}),
        ("step.recorded", "user:12", {"step": 2, "node": "approve", "sha256": approval}),
        ("run.status_changed", "worker", final),
    ]


def chain(run: dict) -> list[dict]:
    events, prev_hash = [], facts.GENESIS_HASH
    for sequence, (event_type, actor, data) in enumerate(event_data(run), start=1):
        fields = dict(sequence=sequence, type=event_type, actor=actor, data=data)
        fields["created_at"] = at(sequence)
        event_hash = facts.event_hash(prev_hash=prev_hash, run_public_id=RUN, **fields)
        events.append({"run": RUN, **fields, "prev_hash": prev_hash, "hash": event_hash})
        prev_hash = event_hash
    return events


def make_bundle(status: str = "completed", key: Ed25519PrivateKey = KEY) -> dict:
    run = make_run(status)
    events = chain(run)
    leaves = [merkle.leaf_hash(os.urandom(40)) for _ in range(TREE_SIZE)]
    for index, event in zip(EVENT_LEAVES, events, strict=True):
        leaves[index] = merkle.leaf_hash(facts.leaf_bytes(event))

    def subtree_hash(start, end):
        return merkle.root(leaves[start:end])

    for index, event in zip(EVENT_LEAVES, events, strict=True):
        proof = merkle.inclusion_proof(index, TREE_SIZE, subtree_hash)
        event.update(index=index, inclusion_proof=[h.hex() for h in proof])
    body = note.checkpoint_body(ORIGIN, TREE_SIZE, merkle.root(leaves))
    return {
        "format": FORMAT,
        "run": run,
        "events": events,
        "checkpoint": note.sign_note(body, ORIGIN, key),
        "tree_size": TREE_SIZE,
        "origin": ORIGIN,
        "key_id": note.key_id(ORIGIN, note.raw_public_key(key)).hex(),
    }


BUNDLE = make_bundle()


@pytest.fixture
def bundle():
    return copy.deepcopy(BUNDLE)


def failure_of(bundle: dict, public_key: bytes = PUBLIC_KEY) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        verify_bundle(bundle, public_key)
    return caught.value


def flip_hex(text: str) -> str:
    return ("1" if text[0] == "0" else "0") + text[1:]


def test_an_honest_bundle_verifies(bundle):
    a = verify_bundle(bundle, PUBLIC_KEY)
    assert (a.run_id, a.status, a.procedure_id, a.version) == (RUN, "completed", "proc_pay", 3)
    assert (a.environment, a.run_type) == ("live", "api")
    assert (a.started_by, a.created_by) == ("api key ci-backend", "api_key:4")
    steps = [(s.sequence, s.node_id, s.status, s.attempt) for s in a.steps]
    assert steps == [(1, "charge", "succeeded", 1), (2, "approve", "succeeded", 1)]
    response = bundle["run"]["steps"][0]["response"]
    assert a.steps[0].response_sha256 == hashlib.sha256(response.encode()).hexdigest()
    decisions = [(d.reviewer, d.decision, d.comment) for d in a.decisions]
    assert decisions == [("rita", "approved", "Matches invoice 2291")]
    assert a.output == {"paid": True} and a.failure is None
    assert (a.events, a.tree_size, a.origin) == (7, TREE_SIZE, ORIGIN)


def test_the_account_reads_as_a_report(bundle):
    text = format_account(verify_bundle(bundle, PUBLIC_KEY))
    for expected in [RUN, "proc_pay", "'Pay a vendor' (*)", "version 3", "live", "rita (*)"]:
        assert expected in text
    assert "Matches invoice 2291" in text and '"paid": true' in text
    assert f"tree of {TREE_SIZE} leaves of {ORIGIN}" in text


def test_a_failed_run_verifies_with_its_failure():
    bundle = make_bundle("failed")
    bundle["run"]["failure"] = {"reason": "Rejected by rita", "kind": "rejected", "step": 2}
    account = verify_bundle(bundle, PUBLIC_KEY)
    assert account.failure["kind"] == "rejected"
    assert "Failure" in format_account(account)
    bundle["run"]["failure"]["reason"] = "Timed out"
    assert failure_of(bundle).fact == "run failure"


def test_the_key_name_can_differ_from_the_origin():
    key = Ed25519PrivateKey.generate()
    bundle = make_bundle(key=key)
    body = note.open_note(bundle["checkpoint"], ORIGIN, note.raw_public_key(key))
    bundle["checkpoint"] = note.sign_note(body, "ledger-signer-2025", key)
    bundle["key_id"] = note.key_id("ledger-signer-2025", note.raw_public_key(key)).hex()
    verify_bundle(bundle, note.raw_public_key(key), key_name="ledger-signer-2025")
    with pytest.raises(VerificationError):
        verify_bundle(bundle, note.raw_public_key(key))


@pytest.mark.parametrize("position", range(len(EVENT_LEAVES)))
@pytest.mark.parametrize("field", facts.LEAF_FIELDS)
def test_changing_any_leaf_field_fails_at_that_event(bundle, position, field):
    event = bundle["events"][position]
    event[field] = {"tampered": event[field]}
    error = failure_of(bundle)
    assert error.fact.startswith("event #")
    assert "inclusion proof" in error.problem


def test_an_edited_event_with_a_recomputed_chain_is_still_caught(bundle):
    # Whoever can rewrite the database can recompute hashes; they cannot re-sign the ledger.
    events = bundle["events"]
    events[1]["data"]["to"] = "cancelled"
    prev_hash = facts.GENESIS_HASH
    for event in events:
        fields = {k: event[k] for k in ("sequence", "type", "actor", "data", "created_at")}
        event["prev_hash"] = prev_hash
        event["hash"] = prev_hash = facts.event_hash(
            prev_hash=prev_hash, run_public_id=RUN, **fields
        )
    error = failure_of(bundle)
    assert error.fact == f"event #2 (run.status_changed) of {RUN}"
    assert "inclusion proof" in error.problem


@pytest.mark.parametrize(
    ("mutate", "fact"),
    [
        (lambda b: b["run"]["steps"][0].update(response='{"id": "pi_2"}'), "step #1 (charge)"),
        (lambda b: b["run"]["steps"][1].update(attempt=2), "step #2 (approve)"),
        (lambda b: b["run"]["inputs"].update(vendor="Evil Ltd"), "run inputs"),
        (lambda b: b["run"]["decisions"][0].update(comment="ok"), "the decision on rev_9"),
        (lambda b: b["run"]["decisions"][0].update(reviewer_id=13), "the decision on rev_9"),
        (
            lambda b: b["run"]["review_requests"][0]["shown_values"].update(amount="12.50"),
            "review request rev_9",
        ),
        (lambda b: b["run"].update(output={"paid": False}), "run output"),
        (lambda b: b["run"].update(status="failed"), "run status"),
        (lambda b: b["run"].update(version=4), "run version"),
        (lambda b: b["run"].update(failure={"reason": "x", "kind": "k", "step": 1}), "run failure"),
        (lambda b: b["run"]["procedure"].update(id="proc_other"), "run procedure"),
        (lambda b: b["run"]["header"].update(version=4), "run header"),
        (lambda b: b["run"]["steps"].append({**b["run"]["steps"][0], "sequence": 3}), "step #3"),
        (lambda b: b["run"]["steps"].pop(0), "step #1"),
        (lambda b: b["run"]["steps"].append(b["run"]["steps"][0]), "step #1"),
        (lambda b: b["run"]["decisions"].clear(), "the decision on rev_9"),
        (
            lambda b: b["run"]["review_requests"].append({"review": "rev_x"}),
            "review request rev_x",
        ),
        (lambda b: b["events"].pop(3), f"event #5 (review.decided) of {RUN}"),
        (lambda b: b["events"].pop(), "run status"),
        (lambda b: b["events"].insert(0, b["events"].pop(1)), "event #2 "),
        (lambda b: b["events"].append(b["events"][-1]), "event #7 "),
        (lambda b: b["events"].clear(), "events"),
        (lambda b: b.update(tree_size=TREE_SIZE + 1), "checkpoint"),
        (lambda b: b.update(origin="other.example.com/ledger"), "checkpoint signature"),
        (lambda b: b.update(key_id="00000000"), "checkpoint signature"),
        (lambda b: b.update(format="rapidfolio-evidence/2"), "bundle"),
        (lambda b: b["events"][0].update(index=0), f"event #1 (run.created) of {RUN}"),
        (lambda b: b["events"][0].update(index=TREE_SIZE), f"event #1 (run.created) of {RUN}"),
    ],
)
def test_changing_a_fact_names_it(bundle, mutate, fact):
    mutate(bundle)
    assert failure_of(bundle).fact.startswith(fact)


@pytest.mark.parametrize("position", range(len(EVENT_LEAVES)))
def test_changing_any_proof_element_fails_at_that_event(bundle, position):
    event = bundle["events"][position]
    for i, element in enumerate(event["inclusion_proof"]):
        tampered = copy.deepcopy(bundle)
        tampered["events"][position]["inclusion_proof"][i] = flip_hex(element)
        assert failure_of(tampered).fact == f"event #{position + 1} ({event['type']}) of {RUN}"
    for proof in [event["inclusion_proof"][:-1], event["inclusion_proof"] + [64 * "0"], ["zz"]]:
        tampered = copy.deepcopy(bundle)
        tampered["events"][position]["inclusion_proof"] = proof
        assert failure_of(tampered).fact.startswith(f"event #{position + 1} ")


def test_a_tampered_checkpoint_signature_fails(bundle):
    body, line = bundle["checkpoint"].rsplit("\n\u2014 ", 1)
    name, blob = line.split(" ")
    flipped = blob[:20] + ("A" if blob[20] != "A" else "B") + blob[21:]
    bundle["checkpoint"] = f"{body}\n\u2014 {name} {flipped}"
    error = failure_of(bundle)
    assert error.fact == "checkpoint signature"


def test_a_tampered_checkpoint_body_fails(bundle):
    bundle["checkpoint"] = bundle["checkpoint"].replace(f"\n{TREE_SIZE}\n", "\n13\n", 1)
    error = failure_of(bundle)
    assert error.fact == "checkpoint signature"
    assert error.problem == f"invalid signature for key {ORIGIN}+{BUNDLE['key_id']}"


def test_a_checkpoint_re_signed_with_another_key_fails(bundle):
    forger = Ed25519PrivateKey.generate()
    body = note.open_note(bundle["checkpoint"], ORIGIN, PUBLIC_KEY)
    bundle["checkpoint"] = note.sign_note(body, ORIGIN, forger)
    bundle["key_id"] = note.key_id(ORIGIN, note.raw_public_key(forger)).hex()
    assert failure_of(bundle).fact == "checkpoint signature"
    assert verify_bundle(bundle, note.raw_public_key(forger))  # only with the forger's key


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.pop("run"),
        lambda b: b["events"][2].pop("inclusion_proof"),
        lambda b: b["events"].__setitem__(2, "not an event"),
        lambda b: b["events"][2].update(run=["not", "hashable"]),
        lambda b: b["run"].update(steps="none"),
        lambda b: b["run"]["steps"].__setitem__(0, None),
        lambda b: b["run"].update(header=None),
        lambda b: b["run"]["decisions"][0].pop("decided_at"),
        lambda b: b.update(checkpoint=None),
        lambda b: b.update(tree_size="12"),
        lambda b: b["events"][6]["data"].pop("output_sha256"),
        lambda b: b["run"].update(procedure="proc_pay"),
    ],
)
def test_a_malformed_bundle_fails_verification_without_crashing(bundle, mutate):
    mutate(bundle)
    error = failure_of(bundle)
    assert error.fact and error.problem


def test_verify_bundle_refuses_what_is_not_a_bundle():
    for not_a_bundle in [None, [], "text", {"format": FORMAT}]:
        assert failure_of(not_a_bundle).fact in ("bundle", "checkpoint signature")


# --- the command ----------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "rapidfolio_verify", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def write(path: Path, bundle) -> str:
    path.write_text(json.dumps(bundle, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_cli_verifies_with_an_inline_key(tmp_path, bundle):
    result = run_cli(write(tmp_path / "bundle.json", bundle), "--public-key", VKEY)
    assert result.returncode == 0, result.stderr
    assert f"VERIFIED: run {RUN}" in result.stdout
    assert "charge" in result.stdout


def test_cli_verifies_with_a_key_file_and_reports_tampering(tmp_path, bundle):
    key_file = tmp_path / "ledger.vkey"
    key_file.write_text(f"# pinned 2025-03-01\n{VKEY}\n", encoding="utf-8")
    path = write(tmp_path / "bundle.json", bundle)
    assert run_cli(path, "--public-key", str(key_file)).returncode == 0
    bundle["run"]["inputs"]["amount"]["value"] = "9999.00"
    result = run_cli(write(tmp_path / "bundle.json", bundle), "--public-key", str(key_file))
    assert result.returncode == 1
    assert result.stdout.startswith("NOT VERIFIED: run inputs: ")


def test_cli_refuses_another_key(tmp_path, bundle):
    other = note.vkey(ORIGIN, note.raw_public_key(Ed25519PrivateKey.generate()))
    result = run_cli(write(tmp_path / "bundle.json", bundle), "--public-key", other)
    assert result.returncode == 1
    assert result.stdout.startswith("NOT VERIFIED: checkpoint signature: ")


@pytest.mark.parametrize(
    ("content", "key", "message"),
    [
        (None, VKEY, "cannot read the bundle"),
        ("{not json", VKEY, "not valid JSON"),
        ('{"a": 1, "a": 2}', VKEY, "duplicate key"),
        ('{"a": NaN}', VKEY, "not valid JSON"),
        ("[1, 2]", VKEY, "not a JSON object"),
        ("{}", "not-a-key", "not a verifier key"),
        ("{}", VKEY[:-2], "not a verifier key"),
    ],
    # The key is generated per process: ids without it keep parallel workers' collections equal.
    ids=["no file", "not json", "duplicate key", "nan", "not an object", "bad key", "short key"],
)
def test_cli_exits_2_on_unreadable_input(tmp_path, content, key, message):
    path = tmp_path / "bundle.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = run_cli(str(path), "--public-key", key)
    assert result.returncode == 2
    assert message in result.stderr


# --- what the package may import ------------------------------------------------------------


def test_the_package_imports_only_the_standard_library_and_cryptography():
    allowed = set(sys.stdlib_module_names) | {"cryptography", "rapidfolio_verify"}
    package = Path(rapidfolio_verify.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 7
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["rapidfolio_verify"]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{module.name} imports {name}"
