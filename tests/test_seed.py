"""The demo seed: realistic runs in every status, produced by the engine, idempotent.

Seeding waits out real retry backoffs (a few seconds), so these tests seed once each.
"""

import pytest
from django.core.management import call_command

from procedures.models import Procedure
from reviews.models import ReviewDecision
from runs.integrity import verify_run
from runs.models import Run, RunStatus


@pytest.fixture
def seeded(db):
    call_command("seed_demo", verbosity=0)


def test_the_demo_has_engine_produced_runs_in_every_status(seeded, client):
    assert set(Run.objects.values_list("status", flat=True)) == set(RunStatus.values)
    kinds = set(Run.objects.filter(status="failed").values_list("failure_kind", flat=True))
    assert kinds == {"transient", "permanent", "rejected"}
    for run in Run.objects.all():
        assert verify_run(run).intact, run.public_id
    assert Run.objects.filter(steps__node_type="tool").distinct().count() >= 10
    assert any(decision.overrides for decision in ReviewDecision.objects.all())
    assert Run.objects.filter(retry_of__isnull=False).exists()
    assert Procedure.objects.count() >= 4
    assert Procedure.objects.get(name="Pay invoice").versions.count() == 2
    for username in ("operator", "reviewer", "admin"):
        assert client.login(username=username, password="rapidfolio-demo")


def test_seeding_twice_changes_nothing(seeded, capsys):
    before = (Run.objects.count(), Procedure.objects.count())
    call_command("seed_demo")
    assert (Run.objects.count(), Procedure.objects.count()) == before
    assert "already present" in capsys.readouterr().out
