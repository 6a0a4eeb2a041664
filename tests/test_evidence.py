"""Evidence bundles: a sealed run exported (command, API, run page) and verified offline by
rapidfolio_verify, which refuses any edit of a leaf, a proof or the signature."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import TestCase

from rapidfolio import keys
from rapidfolio_verify import bundle as offline
from rapidfolio_verify import note
from rapidfolio_verify.account import format_account
from reviews.models import ReviewRequest
from reviews.services import approve
from runs import engine, evidence, ledger
from runs.api_keys import create_api_key
from runs.models import Run
from runs.services import start_run
from tests.conftest import REVIEWED_DEFINITION, make_version

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def checkpoint_dir(tmp_path, settings):
    settings.LEDGER_CHECKPOINT_DIR = tmp_path / "checkpoints"


def seal():
    with TestCase.captureOnCommitCallbacks(execute=True):
        while ledger.seal() is not None:
            pass


@pytest.fixture
def sealed_run(db, reviewer):
    version = make_version(REVIEWED_DEFINITION, "Pay supplier")
    run = start_run(
        version=version,
        environment="sandbox",
        inputs={"amount": 2400000, "payee": "Acme GmbH"},
        type="api",
    )
    engine.drive(run.pk)
    approve(
        request=ReviewRequest.objects.get(run=run),
        reviewer=reviewer,
        overrides={"amount": 2000000},
        comment="Partial payment agreed",
    )
    engine.drive(run.pk)
    seal()
    return Run.objects.select_related("procedure", "version").get(pk=run.pk)


def public_key() -> bytes:
    return keys.public_key_bytes()


def test_a_sealed_runs_bundle_verifies_offline_and_tells_who_approved_what(sealed_run):
    document = evidence.bundle(sealed_run)
    account = offline.verify_bundle(document, public_key())
    text = format_account(account)
    assert sealed_run.status == "completed"
    assert "rita" in text and "Partial payment agreed" in text
    assert document["tree_size"] == ledger.tree_size()


def test_the_bundle_is_plain_json_that_survives_a_round_trip(sealed_run):
    document = json.loads(json.dumps(evidence.bundle(sealed_run)))
    offline.verify_bundle(document, public_key())


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b["run"]["inputs"].update(amount=99999900),
        lambda b: b["run"]["steps"][0].update(output={"amount": 99999900, "payee": "Acme GmbH"}),
        lambda b: b["run"]["decisions"][0].update(comment="Approved in full"),
        lambda b: b["events"][1]["data"].update(to="completed"),
        lambda b: b["events"][0]["inclusion_proof"].reverse(),
        lambda b: b.update(checkpoint=b["checkpoint"].replace("\n\n", "\n\n\n", 1)),
        lambda b: b.update(tree_size=b["tree_size"] + 1),
    ],
    ids=["inputs", "step output", "decision comment", "event", "proof", "signature", "size"],
)
def test_any_edit_of_the_bundle_fails_offline_verification(sealed_run, edit):
    document = copy.deepcopy(evidence.bundle(sealed_run))
    edit(document)
    with pytest.raises(offline.VerificationError):
        offline.verify_bundle(document, public_key())


def test_a_run_not_yet_sealed_has_no_bundle(db, simple_version):
    run = start_run(
        version=simple_version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type="api",
    )
    with pytest.raises(evidence.NotSealed):
        evidence.bundle(run)


def test_export_run_writes_a_bundle_the_standalone_verifier_accepts(sealed_run, tmp_path):
    path = tmp_path / "bundle.json"
    call_command("export_run", sealed_run.public_id, "-o", str(path))
    key_file = tmp_path / "ledger.vkey"
    key_file.write_text(note.vkey(settings.LEDGER_ORIGIN, public_key()))
    verified = subprocess.run(
        [sys.executable, "-m", "rapidfolio_verify", str(path), "--public-key", str(key_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "VERIFIED" in verified.stdout and sealed_run.public_id in verified.stdout
    document = json.loads(path.read_text())
    document["run"]["steps"][0]["output"] = {"amount": 1}
    path.write_text(json.dumps(document))
    refused = subprocess.run(
        [sys.executable, "-m", "rapidfolio_verify", str(path), "--public-key", str(key_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1 and "NOT VERIFIED" in refused.stdout


def test_the_api_gives_the_bundle_of_a_run_of_the_keys_environment(client, sealed_run):
    _, raw = create_api_key(name="Auditor", environment="sandbox")
    answer = client.get(
        f"/v1/runs/{sealed_run.public_id}/evidence", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert answer.status_code == 200
    offline.verify_bundle(answer.json(), public_key())
    _, live = create_api_key(name="Live", environment="live")
    other = client.get(
        f"/v1/runs/{sealed_run.public_id}/evidence", HTTP_AUTHORIZATION=f"Bearer {live}"
    )
    assert other.status_code in (403, 404)


def test_the_api_answers_409_while_a_run_is_not_sealed(client, simple_version):
    _, raw = create_api_key(name="Auditor", environment="sandbox")
    run = start_run(
        version=simple_version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type="api",
    )
    answer = client.get(f"/v1/runs/{run.public_id}/evidence", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "not_sealed"


def test_the_run_page_offers_the_bundle_once_sealed(client, operator, sealed_run):
    client.force_login(operator)
    badge = client.get(f"/runs/{sealed_run.public_id}/integrity/", HTTP_HX_REQUEST="true")
    assert f"sealed in checkpoint {ledger.tree_size()}" in badge.content.decode()
    download = client.get(f"/runs/{sealed_run.public_id}/evidence.json")
    assert download.status_code == 200
    assert "attachment" in download["Content-Disposition"]
    offline.verify_bundle(json.loads(download.content), public_key())
