"""The sealer killed mid-seal, and restarted: no fork, no lost leaf (PostgreSQL: a real process
is SIGKILLed at the worst moments)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import TestCase

from rapidfolio_verify import merkle
from runs import engine, ledger
from runs.models import Checkpoint, LedgerLeaf, LedgerQueue, RunEvent
from runs.services import start_run
from tests.conftest import needs_postgres

BASE_DIR = Path(__file__).resolve().parent.parent

# A sealer that dies by SIGKILL at `KILL_AT`: inside its transaction, after the leaves and
# nodes are written but before it commits ("before_commit"), or after the commit, before the
# checkpoint file is written ("before_file").
SEALER = textwrap.dedent(
    """
    import os, signal, django
    django.setup()
    from runs import ledger
    die = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
    if os.environ["KILL_AT"] == "before_commit":
        ledger.Checkpoint.objects.create = die
    else:
        ledger.publish = die
    ledger.seal()
    """
)


def _sealer(kill_at: str, checkpoint_dir: Path) -> int:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "LEDGER_CHECKPOINT_DIR": str(checkpoint_dir),
        "KILL_AT": kill_at,
        "DJANGO_SETTINGS_MODULE": "rapidfolio.settings",
    }
    done = subprocess.run([sys.executable, "-c", SEALER], cwd=BASE_DIR, env=env, timeout=60)
    return done.returncode


def _runs(version, count):
    for amount in range(1, count + 1):
        run = start_run(
            version=version,
            environment="sandbox",
            inputs={"amount": amount, "currency": "usd"},
            type="api",
        )
        engine.drive(run.pk)


def _seal_here():
    with TestCase.captureOnCommitCallbacks(execute=True):
        while ledger.seal() is not None:
            pass


def _tree_is_every_event_once():
    leaves = list(LedgerLeaf.objects.order_by("index").values_list("index", "event_id"))
    assert [index for index, _ in leaves] == list(range(len(leaves)))
    assert sorted(event for _, event in leaves) == sorted(
        RunEvent.objects.values_list("id", flat=True)
    )
    events = {e["id"]: e for e in RunEvent.objects.values(*ledger.EVENT_FIELDS)}
    root = merkle.root([merkle.leaf_hash(ledger.event_leaf(events[e])) for _, e in leaves])
    assert Checkpoint.objects.latest().root_hash == root.hex()


@needs_postgres
@pytest.mark.parametrize("kill_at", ["before_commit", "before_file"])
def test_a_sealer_killed_mid_seal_loses_no_leaf_and_forks_nothing(
    transactional_db, simple_version, kill_at, capsys
):
    checkpoint_dir = Path(settings.LEDGER_CHECKPOINT_DIR)
    _runs(simple_version, 2)
    _seal_here()  # a first checkpoint, published
    _runs(simple_version, 3)
    queued = LedgerQueue.objects.count()
    assert _sealer(kill_at, checkpoint_dir) == -9
    if kill_at == "before_commit":
        assert LedgerQueue.objects.count() == queued  # rolled back: still queued, no leaf
    else:
        assert not LedgerQueue.objects.exists()  # committed, but its file was never written
    _runs(simple_version, 1)
    _seal_here()  # the restarted sealer
    assert not LedgerQueue.objects.exists()
    _tree_is_every_event_once()
    call_command("verify_ledger")
    assert "0 problem(s)" in capsys.readouterr().out
