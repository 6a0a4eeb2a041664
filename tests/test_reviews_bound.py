"""Decisions bound to what was shown: the digest of the reviewer's page is recorded and pinned;
a decision on a page the run has moved away from is refused as stale, saying why. Possible
duplicates: the same values under review again within the window."""

from datetime import timedelta

import pytest
from django.test import TestCase
from django.utils import timezone

from rapidfolio import keys
from rapidfolio_verify import bundle as offline
from rapidfolio_verify import facts
from rapidfolio_verify.account import format_account
from rapidfolio_verify.canonical import digest
from reviews.duplicates import possible_duplicates
from reviews.errors import StaleReview
from reviews.services import approve, reject
from reviews.shown import shown_view, view_digest
from reviews.state import review_state
from reviews.timeouts import decide_expired_reviews
from runs import engine, evidence, ledger
from runs.integrity import verify_run
from runs.models import Run
from runs.services import cancel_run, retry_run
from tests.conftest import make_version
from tests.tampering import tamper
from tests.test_engine import REVIEW_DEFINITION
from tests.test_reviews import paused, quorum_definition


def page(review) -> str:
    """What a reviewer's page carries: the digest of the view it shows."""
    return view_digest(shown_view(review_state(review)))


@pytest.fixture
def quorum_review(db, operator):
    return paused(make_version(quorum_definition(), name="Two-person payment"), operator)


def test_a_decision_records_the_digest_of_exactly_what_was_shown(quorum_review, reviewer):
    seen = page(quorum_review)
    decision = approve(request=quorum_review, reviewer=reviewer, seen=seen, comment="ok")
    assert decision.shown_sha256 == seen
    # An auditor recomputes it from what the decision recorded.
    assert digest({**decision.shown_context, "values": decision.shown_values}) == seen
    assert decision.shown_context["run"]["status"] == "awaiting_review"
    assert decision.shown_context["approvals_needed"] == 2
    assert decision.shown_context["policy"]["approvals"] == 2


def test_a_page_shown_before_another_approval_is_stale(quorum_review, reviewer, second_reviewer):
    seen_by_ravi, shown_at = page(quorum_review), timezone.now()
    approve(request=quorum_review, reviewer=reviewer, overrides={"amount": 800000}, comment="Less")
    with pytest.raises(StaleReview) as refused:
        approve(
            request=quorum_review, reviewer=second_reviewer, seen=seen_by_ravi, seen_at=shown_at
        )
    assert refused.value.message == (
        "rita approved and changed amount after this page was shown. Read it again before you "
        "decide."
    )
    assert quorum_review.decisions.count() == 1
    assert approve(request=quorum_review, reviewer=second_reviewer, seen=page(quorum_review)).final


def test_a_rejection_on_a_stale_page_is_refused_too(quorum_review, reviewer, second_reviewer):
    seen = page(quorum_review)
    approve(request=quorum_review, reviewer=reviewer)
    with pytest.raises(StaleReview):
        reject(request=quorum_review, reviewer=second_reviewer, comment="No", seen=seen)
    assert Run.objects.get(pk=quorum_review.run_id).status == "awaiting_review"


def test_a_page_shown_before_a_cancel_is_refused_as_decided(quorum_review, reviewer, operator):
    seen = page(quorum_review)
    cancel_run(run=quorum_review.run, user=operator)
    with pytest.raises(Exception, match="cancelled, not awaiting review"):
        approve(request=quorum_review, reviewer=reviewer, seen=seen)


def test_a_possible_duplicate_appearing_after_the_page_was_shown_makes_it_stale(
    quorum_review, operator, reviewer
):
    seen = page(quorum_review)
    twin = paused(quorum_review.run.version, operator)
    with pytest.raises(StaleReview, match=f"possible duplicates \\(run {twin.run.public_id}"):
        approve(request=quorum_review, reviewer=reviewer, seen=seen)


def test_an_altered_shown_context_breaks_the_record(quorum_review, reviewer):
    decision = approve(request=quorum_review, reviewer=reviewer, seen=page(quorum_review))
    tamper(
        "reviews_reviewdecision",
        "UPDATE reviews_reviewdecision SET shown_sha256 = %s WHERE id = %s",
        ["0" * 64, decision.pk],
    )
    verification = verify_run(quorum_review.run)
    assert not verification.intact
    assert "the decision on" in verification.problem


# --- quorums and timeouts as an auditor reads them --------------------------------------------
def seal():
    with TestCase.captureOnCommitCallbacks(execute=True):
        while ledger.seal() is not None:
            pass


def test_a_quorum_and_a_timeout_verify_offline_and_read_as_such(quorum_review, reviewer, operator):
    approve(request=quorum_review, reviewer=reviewer, comment="First of two")
    later = paused(make_version(quorum_definition(timeout="1h"), name="Timed payment"), operator, 5)
    decide_expired_reviews(now=later.deadline + timedelta(seconds=1))
    seal()
    for run in (quorum_review.run, later.run):
        run = Run.objects.select_related("procedure", "version").get(pk=run.pk)
        account = offline.verify_bundle(evidence.bundle(run), keys.public_key_bytes())
        text = format_account(account)
        if run.pk == quorum_review.run_id:
            assert "approved by rita (*)" in text and "review still open" in text
            assert "shown    sha256 " in text
        else:
            assert "rejected by the system (no reviewer: the deadline passed)" in text
            assert "No decision by the deadline" in text


# --- possible duplicates --------------------------------------------------------------------
def test_the_same_values_under_review_twice_are_possible_duplicates(quorum_review, operator):
    twin = paused(quorum_review.run.version, operator)
    other = paused(quorum_review.run.version, operator, amount=5)
    assert possible_duplicates(quorum_review) == [twin.run]
    assert possible_duplicates(twin) == [quorum_review.run]
    assert possible_duplicates(other) == []


def test_runs_further_apart_than_the_window_are_not_duplicates(quorum_review, operator, settings):
    twin = paused(quorum_review.run.version, operator)
    # created_at is not one of a run's fixed columns; an awaiting run's row may still move.
    Run.objects.filter(pk=twin.run_id).update(
        created_at=quorum_review.run.created_at + timedelta(hours=25)
    )
    twin.run.refresh_from_db()
    assert possible_duplicates(quorum_review) == []
    settings.REVIEW_DUPLICATE_WINDOW_HOURS = 48
    assert possible_duplicates(quorum_review) == [twin.run]


def test_a_retry_is_not_a_duplicate_of_the_run_it_retries(db, operator, reviewer, second_operator):
    definition = {**REVIEW_DEFINITION, "nodes": {**REVIEW_DEFINITION["nodes"]}}
    definition["nodes"]["pay"] = {**definition["nodes"]["pay"], "retry": {"max_attempts": 1}}
    version = make_version(definition, name="Payment that times out")
    # The card network never answers: approved, then failed transiently at the charge.
    first = paused(version, operator, customer="cust_timeout")
    approve(request=first, reviewer=reviewer)
    engine.drive(first.run_id)
    original = Run.objects.get(pk=first.run_id)
    assert original.status == "failed" and original.failure_kind == "transient"
    retry = retry_run(run=original, user=second_operator)
    engine.drive(retry.pk)
    retried = retry.review_requests.get()
    assert retried.values_sha256 == first.values_sha256
    assert possible_duplicates(retried) == []


# --- the digests: what they cover ---------------------------------------------------------------
LEGACY_DECISION = {
    "review": "rev_1",
    "reviewer_id": 12,
    "decision": "approved",
    "comment": "ok",
    "shown_values": {"amount": 100},
    "overrides": [],
    "decided_at": "2026-01-01T00:00:00+00:00",
}
BOUND_DECISION = {
    **LEGACY_DECISION,
    "sequence": 2,
    "decided_by": "person",
    "shown_context": {"run": {"status": "awaiting_review"}, "approvals_needed": 1},
    "shown_sha256": "a" * 64,
    "confirmed": ["amount"],
    "final": True,
    "deadline": None,
}


def test_a_decision_recorded_before_policies_keeps_its_digest():
    defaults = dict(sequence=1, decided_by="person", shown_context={}, shown_sha256="")
    defaults.update(confirmed=[], final=True, deadline=None)
    assert facts.decision_digest({**LEGACY_DECISION, **defaults}) == facts.decision_digest(
        LEGACY_DECISION
    )


@pytest.mark.parametrize(
    "field", ["sequence", "decided_by", "shown_context", "confirmed", "final", "deadline"]
)
def test_a_bound_decisions_digest_covers_what_it_was_shown_and_confirmed(field):
    changed = {**BOUND_DECISION, field: "changed"}
    assert facts.decision_digest(changed) != facts.decision_digest(BOUND_DECISION)


def test_emptying_a_bound_decisions_shown_digest_changes_its_digest():
    emptied = {**BOUND_DECISION, "shown_sha256": ""}
    assert facts.decision_digest(emptied) != facts.decision_digest(BOUND_DECISION)


def test_decision_keys_name_each_decision_of_a_quorum():
    assert facts.decision_key(LEGACY_DECISION) == "rev_1"
    assert facts.decision_key({**BOUND_DECISION, "sequence": 1}) == "rev_1"
    assert facts.decision_key(BOUND_DECISION) == "rev_1#2"
