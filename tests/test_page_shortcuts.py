"""The shortcuts the pages take for speed (docs/benchmarks.md, seventh round) give exactly what
the long way gives."""

import datetime
import json

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.urls import reverse

from rapidfolio_verify.canonical import canonical_json
from runs import evidence
from runs.api import _moment
from runs.integrity import verify_run
from runs.templatetags.run_tags import run_page_url
from tests.tampering import tamper
from tests.test_ledger import finished_run, seal

PLUS_ONE = datetime.timezone(datetime.timedelta(hours=1))


def _status(status):
    return status.sealed_in, [(p.fact, p.problem) for p in status.problems]


def test_one_read_check_matches_the_two_checks_on_an_unsealed_run(simple_version):
    run = finished_run(simple_version)
    verification, status = evidence.verify_and_check(run)
    assert verification == verify_run(run)
    assert _status(status) == _status(evidence.ledger_status(run))
    assert {p.problem for p in status.problems} == {"not yet sealed"}


def test_one_read_check_matches_the_two_checks_on_a_sealed_run(simple_version):
    run = finished_run(simple_version)
    checkpoint = seal().checkpoint
    verification, status = evidence.verify_and_check(run)
    assert verification.intact and status.sealed_in == checkpoint.tree_size
    assert _status(status) == _status(evidence.ledger_status(run))


def test_one_read_check_names_an_event_changed_after_sealing(simple_version):
    run = finished_run(simple_version)
    seal()
    event = run.events.get(sequence=2)
    tamper("runs_runevent", "UPDATE runs_runevent SET actor = %s WHERE id = %s", ["x", event.pk])
    verification, status = evidence.verify_and_check(run)
    assert verification == verify_run(run) and not verification.intact
    assert [str(p) for p in status.problems] == [f"event #2 ({event.type}): changed"]


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [1.5, None, True, "é\u2028\x00"], "c": {"z": {}, "y": []}},
        "plain",
        12,
        [datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.UTC)],  # default=str
    ],
)
def test_canonical_json_is_json_dumps_with_the_canonical_options(value):
    assert canonical_json(value) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


@pytest.mark.parametrize(
    "moment",
    [
        datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.UTC),
        datetime.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=datetime.UTC),
        datetime.datetime(2026, 12, 1, 10, 0, 0, 500, tzinfo=datetime.UTC),
        datetime.datetime(2026, 12, 1, 11, 0, tzinfo=PLUS_ONE),
        None,
    ],
)
def test_an_api_moment_is_written_as_the_renderer_writes_it(moment):
    assert json.dumps(_moment(moment)) == json.dumps(moment, cls=DjangoJSONEncoder)


@pytest.mark.parametrize(
    "public_id", ["run_01m8s4kt73746v89zrjpxkr6za", "RUN_X", "run with space", "run%2F", "ü"]
)
def test_run_page_url_is_the_detail_route(public_id):
    assert run_page_url(public_id) == reverse("runs:detail", args=[public_id])
