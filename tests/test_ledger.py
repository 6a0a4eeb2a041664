"""The ledger: every event a leaf of one Merkle log, sealed by signed checkpoints that are also
written outside the database; tampering with the database shows against those checkpoints."""

import base64
import os

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext

from rapidfolio import keys
from rapidfolio_verify import facts, merkle, note
from runs import engine, evidence, ledger
from runs.checks import check_ledger_signing_key
from runs.models import Checkpoint, LedgerLeaf, LedgerQueue, Run, RunEvent
from runs.services import start_run
from tests.tampering import tamper


@pytest.fixture(autouse=True)
def checkpoint_dir(tmp_path, settings):
    settings.LEDGER_CHECKPOINT_DIR = tmp_path / "checkpoints"
    return settings.LEDGER_CHECKPOINT_DIR


def finished_run(version, amount=5000) -> Run:
    run = start_run(
        version=version,
        environment="sandbox",
        inputs={"amount": amount, "currency": "usd"},
        type="api",
    )
    engine.drive(run.pk)
    return Run.objects.select_related("procedure", "version").get(pk=run.pk)


def seal(**kwargs):
    """ledger.seal, with what it does after its commit (writing the checkpoint file) run too:
    these tests' transactions never commit."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return ledger.seal(**kwargs)


def leaf_hashes_from_events() -> list[bytes]:
    """The tree recomputed from scratch: every event's leaf, in leaf order."""
    leaves = LedgerLeaf.objects.order_by("index").values_list("event_id", flat=True)
    events = {e["id"]: e for e in RunEvent.objects.values(*ledger.EVENT_FIELDS)}
    return [merkle.leaf_hash(ledger.event_leaf(events[event_id])) for event_id in leaves]


def test_every_committed_event_is_queued_by_the_database(simple_version):
    run = finished_run(simple_version)
    assert set(LedgerQueue.objects.values_list("event_id", flat=True)) == set(
        run.events.values_list("id", flat=True)
    )


def test_seal_appends_queued_events_in_order_and_signs_the_tree(simple_version, checkpoint_dir):
    run = finished_run(simple_version)
    sealed = seal()
    assert sealed.leaves_added == run.events.count()
    assert not LedgerQueue.objects.exists()
    # Queue order is commit order within the run: the leaves follow the run's sequence.
    assert list(LedgerLeaf.objects.order_by("index").values_list("event__sequence", flat=True)) == (
        list(range(1, run.events.count() + 1))
    )
    root = merkle.root(leaf_hashes_from_events())
    assert sealed.checkpoint.root_hash == root.hex()
    body = note.open_note(
        sealed.checkpoint.note, "rapidfolio.local/ledger", keys.public_key_bytes()
    )
    assert note.parse_checkpoint(body)[:3] == ("rapidfolio.local/ledger", run.events.count(), root)
    written = checkpoint_dir / f"{sealed.checkpoint.tree_size:015d}.note"
    assert written.read_text() == sealed.checkpoint.note


def test_nothing_queued_seals_nothing(db):
    assert seal() is None
    assert not Checkpoint.objects.exists()


def test_each_checkpoint_proves_it_extends_the_one_before(simple_version):
    finished_run(simple_version)
    first = seal().checkpoint
    for amount in (1, 2, 3):
        finished_run(simple_version, amount)
    second = seal().checkpoint
    assert second.previous_size == first.tree_size
    proof = [bytes.fromhex(h) for h in second.consistency_proof]
    assert merkle.verify_consistency(
        first.tree_size,
        second.tree_size,
        bytes.fromhex(first.root_hash),
        bytes.fromhex(second.root_hash),
        proof,
    )
    assert merkle.root(leaf_hashes_from_events()).hex() == second.root_hash


def test_a_batch_limit_seals_in_several_checkpoints_with_the_same_tree(simple_version):
    for amount in range(1, 6):
        finished_run(simple_version, amount)
    sizes = []
    while (sealed := seal(batch=7)) is not None:
        sizes.append(sealed.checkpoint.tree_size)
    assert sizes == sorted(sizes) and len(sizes) > 2
    assert Checkpoint.objects.latest().root_hash == merkle.root(leaf_hashes_from_events()).hex()


def test_the_sealer_refuses_to_sign_a_tree_that_does_not_extend_the_published_one(simple_version):
    finished_run(simple_version)
    seal()
    tamper("runs_ledgernode", "UPDATE runs_ledgernode SET hash = %s", ["ab" * 32])
    finished_run(simple_version, 7)
    with pytest.raises(ledger.LedgerForked):
        seal()


def test_a_sealed_run_is_reported_sealed_in_its_checkpoint(simple_version):
    run = finished_run(simple_version)
    assert {p.problem for p in evidence.ledger_status(run).problems} == {"not yet sealed"}
    checkpoint = seal().checkpoint
    status = evidence.ledger_status(run)
    assert status.sealed and status.sealed_in == checkpoint.tree_size


def test_an_event_changed_after_sealing_is_named(simple_version):
    run = finished_run(simple_version)
    seal()
    event = run.events.get(sequence=2)
    tamper("runs_runevent", "UPDATE runs_runevent SET actor = %s WHERE id = %s", ["x", event.pk])
    status = evidence.ledger_status(run)
    assert not status.intact
    assert [str(p) for p in status.problems] == [f"event #2 ({event.type}): changed"]


def test_a_rewritten_event_with_its_leaf_recomputed_is_forged_against_the_checkpoint(
    simple_version,
):
    """The attacker rewrites the event and its leaf hash (our own code, no key needed): the
    published checkpoint, signed and outside the database, no longer includes it."""
    run = finished_run(simple_version)
    finished_run(simple_version, 9)
    seal()
    event = run.events.get(sequence=2)
    tamper("runs_runevent", "UPDATE runs_runevent SET actor = %s WHERE id = %s", ["x", event.pk])
    row = RunEvent.objects.filter(pk=event.pk).values(*ledger.EVENT_FIELDS).get()
    new_leaf = merkle.leaf_hash(ledger.event_leaf(row)).hex()
    tamper(
        "runs_ledgerleaf",
        "UPDATE runs_ledgerleaf SET leaf_hash = %s WHERE event_id = %s",
        [new_leaf, event.pk],
    )
    problems = [str(p) for p in evidence.ledger_status(run).problems]
    # Its neighbour's proof runs through the rewritten leaf, so it cannot be proved either.
    assert f"event #2 ({event.type}): forged" in problems
    assert {problem.rsplit(": ", 1)[1] for problem in problems} == {"forged"}


def test_a_deleted_leaf_is_missing(simple_version):
    run = finished_run(simple_version)
    seal()
    event = run.events.get(sequence=1)
    tamper("runs_ledgerleaf", "DELETE FROM runs_ledgerleaf WHERE event_id = %s", [event.pk])
    assert "event #1 (run.created): missing" in [
        str(p) for p in evidence.ledger_status(run).problems
    ]


def test_verify_runs_names_the_run_and_the_fact(simple_version, capsys):
    run = finished_run(simple_version)
    seal()
    call_command("verify_runs", run.public_id)
    assert (
        f"sealed in checkpoint {Checkpoint.objects.latest().tree_size}" in capsys.readouterr().out
    )
    event = run.events.get(sequence=2)
    tamper("runs_runevent", "UPDATE runs_runevent SET actor = %s WHERE id = %s", ["x", event.pk])
    with pytest.raises(SystemExit) as exited:
        call_command("verify_runs", run.public_id)
    assert exited.value.code == 1
    assert f"{run.public_id}: BROKEN" in capsys.readouterr().out


def test_verify_ledger_passes_an_intact_ledger_and_fails_a_rewritten_one(simple_version, capsys):
    finished_run(simple_version)
    seal()
    finished_run(simple_version, 2)
    seal()
    call_command("verify_ledger")
    assert "2 checkpoint file(s) checked, 0 problem(s)." in capsys.readouterr().out
    tamper(
        "runs_ledgerleaf",
        'UPDATE runs_ledgerleaf SET leaf_hash = %s WHERE "index" = 0',
        ["cd" * 32],
    )
    tamper("runs_ledgernode", "DELETE FROM runs_ledgernode")
    with pytest.raises(SystemExit) as exited:
        call_command("verify_ledger")
    assert exited.value.code == 1
    assert "was rewritten" in capsys.readouterr().out


def test_a_checkpoint_signed_by_another_key_is_not_accepted(simple_version, checkpoint_dir):
    finished_run(simple_version)
    sealed = seal().checkpoint
    other = base64.b64encode(os.urandom(32)).decode()
    with override_settings(LEDGER_SIGNING_KEY=other):
        keys.forget_cached_keys()
        try:
            with pytest.raises(note.NoteError):
                ledger.read_published(checkpoint_dir / f"{sealed.tree_size:015d}.note")
        finally:
            keys.forget_cached_keys()


def test_the_public_key_command_prints_a_verifier_key(db, capsys):
    call_command("ledger_public_key")
    name, public_key = note.parse_vkey(capsys.readouterr().out.strip())
    assert (name, public_key) == ("rapidfolio.local/ledger", keys.public_key_bytes())


def test_leaf_bytes_are_the_event_as_recorded(simple_version):
    run = finished_run(simple_version)
    event = run.events.get(sequence=1)
    row = RunEvent.objects.filter(pk=event.pk).values(*ledger.EVENT_FIELDS).get()
    leaf = ledger.event_leaf(row)
    assert (
        facts.event_hash(
            prev_hash=event.prev_hash,
            run_public_id=run.public_id,
            sequence=1,
            type=event.type,
            actor=event.actor,
            data=event.data,
            created_at=event.created_at.isoformat(),
        )
        == event.hash
    )
    assert b'"hash":"' + event.hash.encode() in leaf


def test_check_deploy_requires_a_configured_signing_key(settings):
    settings.LEDGER_SIGNING_KEY = ""
    settings.LEDGER_SIGNING_KEY_FILE = ""
    assert [m.id for m in check_ledger_signing_key()] == ["rapidfolio.E005"]
    settings.LEDGER_SIGNING_KEY = base64.b64encode(os.urandom(32)).decode()
    keys.forget_cached_keys()
    try:
        assert check_ledger_signing_key() == []
        settings.LEDGER_SIGNING_KEY = "not base64!"
        keys.forget_cached_keys()
        assert [m.id for m in check_ledger_signing_key()] == ["rapidfolio.E004"]
    finally:
        keys.forget_cached_keys()


def test_the_generated_key_file_is_private(tmp_path, settings):
    settings.LEDGER_SIGNING_KEY = ""
    settings.LEDGER_GENERATED_KEY_FILE = tmp_path / "ledger-signing.key"
    keys.forget_cached_keys()
    try:
        keys.public_key_bytes()
        assert (tmp_path / "ledger-signing.key").stat().st_mode & 0o777 == 0o600
    finally:
        keys.forget_cached_keys()


def test_a_seal_costs_the_same_few_queries_however_big_the_tree(simple_version):
    """Not one query per node: the tree's frontier and the consistency proof's nodes are each
    read in one go (make bench measured a sealer spending its time on per-node reads)."""
    counts = []
    for amount in range(1, 40):
        finished_run(simple_version, amount)
        with CaptureQueriesContext(connection) as captured:
            seal()
        counts.append(len(captured.captured_queries))
    assert max(counts) <= 12, counts  # 10-11 here, at 4 leaves as at 160
