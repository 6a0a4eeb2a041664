"""The demo seed: realistic runs in every status, produced by the engine, idempotent.

Seeding waits out real retry backoffs (a few seconds), so these tests seed once each.
"""

import pytest
from django.core.management import call_command

from procedures.models import Connection, Procedure, Trigger
from rapidfolio.management.demo import DEMO_LOGINS, DEMO_PASSWORD
from reviews.models import ReviewDecision
from runs.integrity import verify_run
from runs.models import ApiKey, Run, RunStatus, WebhookEndpoint


@pytest.fixture
def seeded(db):
    call_command("seed_demo", verbosity=0)


def test_the_demo_has_engine_produced_runs_in_every_status(seeded, client):
    assert set(Run.objects.values_list("status", flat=True)) == set(RunStatus.values)
    kinds = set(Run.objects.filter(status="failed").values_list("failure_kind", flat=True))
    # "business": the declined credit check, the procedure's answer (its fail node's outcome).
    assert kinds == {"transient", "permanent", "rejected", "business"}
    assert Run.objects.filter(failure_kind="business", outcome="declined").exists()
    for run in Run.objects.all():
        assert verify_run(run).intact, run.public_id
    assert Run.objects.filter(steps__node_type="tool").distinct().count() >= 10
    assert any(decision.overrides for decision in ReviewDecision.objects.all())
    assert Run.objects.filter(retry_of__isnull=False).exists()
    assert Procedure.objects.count() >= 4
    assert Procedure.objects.get(name="Pay invoice").versions.count() == 2
    # A payment above 50,000.00 approved once, waiting for its second approver (issue 13).
    waiting = Run.objects.get(status="awaiting_review", inputs__invoice_id="INV-10011")
    [first] = waiting.review_decisions.all()
    assert first.decision == "approved" and not first.final
    assert waiting.review_requests.get().policy["approvals"] == 2
    for username in DEMO_LOGINS:
        assert client.login(username=username, password=DEMO_PASSWORD)


def test_seeding_twice_changes_nothing(seeded, capsys):
    def counts():
        models = (Run, Procedure, Trigger, Connection, ApiKey, WebhookEndpoint)
        return [model.objects.count() for model in models]

    before = counts()
    call_command("seed_demo")
    assert counts() == before
    assert "already present" in capsys.readouterr().out
