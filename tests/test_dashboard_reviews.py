"""The review queue and the review panel on the run page: Approve with a confirmation of every
change, Reject with a reason and a confirmation, decisions bound to the page, quorums,
deadlines and possible duplicates."""

import html
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from rapidfolio.roles import LIVE_ENVIRONMENT, REVIEWERS
from reviews.models import ReviewDecision, ReviewRequest
from reviews.services import approve
from reviews.timeouts import decide_expired_reviews
from runs import engine
from runs.models import Run
from runs.services import cancel_run
from tests.conftest import make_user, make_version
from tests.test_dashboard_runs import (
    HTMX,
    PAYMENT_WITH_REVIEW,
    body,
    detail_url,
    start,
    without_title,
)

INPUTS = {"invoice_id": "INV-1001", "customer_id": "cus_acme", "amount": 700000, "currency": "usd"}
HIDDEN = re.compile(r'<input type="hidden" name="([\w-]+)" value="([^"]*)"')


def with_review(**review):
    definition = {**PAYMENT_WITH_REVIEW, "nodes": {**PAYMENT_WITH_REVIEW["nodes"]}}
    definition["nodes"]["approval"] = {**definition["nodes"]["approval"], **review}
    return definition


POLICY = with_review(
    overridable={"amount": {"schema": {"type": "integer", "minimum": 1}, "direction": "decrease"}},
    payment={"amount": "amount", "payee": "customer"},
    approvals="2 if inputs.amount > 5000000 else 1",
    timeout="24h",
    confirm_above=1000000,
)


@pytest.fixture
def review_version(db):
    return make_version(PAYMENT_WITH_REVIEW, name="Pay invoice")


@pytest.fixture
def paused_run(review_version, operator):
    return start(review_version, operator, INPUTS)


@pytest.fixture
def review(paused_run):
    return ReviewRequest.objects.get(run=paused_run)


@pytest.fixture
def policy_version(db):
    return make_version(POLICY, name="Pay invoice with policy")


def grouped_version(group_name: str):
    return make_version(with_review(reviewer_group=group_name), name=f"Pay ({group_name})")


def page_of(client, run) -> str:
    return body(client.get(detail_url(run)))


def shown(page: str) -> dict:
    """The hidden fields the page's forms carry (what was shown, when)."""
    return {name: html.unescape(value) for name, value in HIDDEN.findall(page)}


def post(client, review, action, data, page=None, **headers):
    """POST an action as the run page would, with the page's hidden fields."""
    page = page if page is not None else page_of(client, review.run)
    fields = {**shown(page), **data}
    return client.post(reverse(f"reviews:{action}", args=[review.public_id]), fields, **headers)


def decide(client, review, action, data, **headers):
    """An action and its confirmation, as a reviewer clicking through would."""
    first = post(client, review, action, data, **headers)
    page = body(first)
    if "Confirm approval" not in page and "Confirm the rejection" not in page:
        return first
    return post(client, review, action, {}, page=page, **headers)


# --- the queue ------------------------------------------------------------------------------
def test_queue_lists_reviews_the_user_may_decide_with_key_values(client, reviewer, paused_run):
    client.force_login(reviewer)
    page = body(client.get(reverse("reviews:queue")))
    assert paused_run.public_id in page
    assert "Approve invoice payment" in page
    assert "Pay invoice" in page and "env-sandbox" in page
    assert "USD\xa07,000.00" in page and "usd" in page
    assert '<th scope="col">Waiting</th>' in page and '<th scope="col">Deadline</th>' in page


def test_queue_shows_approvals_waited_and_the_deadline(client, reviewer, policy_version, operator):
    big = start(policy_version, operator, {**INPUTS, "amount": 7_500_000})
    approve(request=big.review_requests.get(), reviewer=make_user("rosa", REVIEWERS))
    client.force_login(reviewer)
    page = body(client.get(reverse("reviews:queue")))
    row = page[page.index(big.public_id) :]
    assert "1 of 2" in row
    assert re.search(r'data-relative="ago">in 23 h</time>', row)  # the 24 h timeout
    assert "USD\xa075,000.00" in row


def test_queue_excludes_runs_the_user_started(client, operator_reviewer, review_version):
    own = start(review_version, operator_reviewer, INPUTS)
    client.force_login(operator_reviewer)
    page = body(client.get(reverse("reviews:queue")))
    assert own.public_id not in page
    assert "Nothing is waiting for your review." in page


def test_queue_excludes_reviews_the_user_already_approved(
    client, reviewer, policy_version, operator
):
    big = start(policy_version, operator, {**INPUTS, "amount": 7_500_000})
    approve(request=big.review_requests.get(), reviewer=reviewer)
    client.force_login(reviewer)
    assert big.public_id not in body(client.get(reverse("reviews:queue")))


def test_queue_respects_the_reviewer_group(client, reviewer, second_reviewer, operator):
    Group.objects.create(name="Treasury")
    second_reviewer.groups.add(Group.objects.get(name="Treasury"))
    run = start(grouped_version("Treasury"), operator, INPUTS)
    client.force_login(reviewer)
    assert run.public_id not in body(client.get(reverse("reviews:queue")))
    client.force_login(second_reviewer)
    assert run.public_id in body(client.get(reverse("reviews:queue")))


def test_queue_lists_oldest_first(client, reviewer, review_version, operator):
    first = start(review_version, operator, INPUTS)
    second = start(review_version, operator, {**INPUTS, "invoice_id": "INV-1002"})
    client.force_login(reviewer)
    page = body(client.get(reverse("reviews:queue")))
    assert page.index(first.public_id) < page.index(second.public_id)


def test_queue_leaves_out_decided_and_cancelled_runs(client, reviewer, review, operator):
    other = start(review.run.version, operator, INPUTS)
    approve(request=review, reviewer=reviewer)
    cancel_run(run=other, user=operator)
    client.force_login(reviewer)
    page = body(client.get(reverse("reviews:queue")))
    assert review.run.public_id not in page and other.public_id not in page


def test_queue_flags_possible_duplicates_and_links_them(client, reviewer, review, operator):
    twin = start(review.run.version, operator, INPUTS)
    client.force_login(reviewer)
    page = body(client.get(reverse("reviews:queue")))
    assert page.count("Possible duplicate") == 2
    assert f'href="/runs/{twin.public_id}/"' in page
    assert f'href="/runs/{review.run.public_id}/"' in page


def test_nav_shows_the_count_of_waiting_reviews(client, reviewer, paused_run):
    client.force_login(reviewer)
    page = body(client.get(reverse("runs:list")))
    assert re.search(r'Reviews<span id="review-count"> <span class="count"[^>]*>1</span>', page)


def test_deciding_updates_the_nav_count_in_the_same_swap(client, reviewer, review):
    client.force_login(reviewer)
    response = decide(client, review, "approve", {}, **HTMX)
    assert '<span id="review-count" hx-swap-oob="true"></span>' in body(response)


def test_operator_without_review_role_sees_an_empty_queue(client, second_operator, paused_run):
    client.force_login(second_operator)
    page = body(client.get(reverse("reviews:queue")))
    assert paused_run.public_id not in page
    assert "You do not have the Reviewers role" in page


# --- the panel ------------------------------------------------------------------------------
def test_reviewer_sees_money_overrides_comment_and_the_two_actions(client, reviewer, paused_run):
    client.force_login(reviewer)
    page = page_of(client, paused_run)
    for name, value in [("invoice", "INV-1001"), ("customer", "cus_acme")]:
        assert re.search(rf'<th scope="row">{name}</th><td class="mono">{value}</td>', page)
    assert '<th scope="row">amount</th><td class="mono">USD\xa07,000.00</td>' in page
    assert re.search(r'<input type="text" name="override_amount" value="7000.00"', page)
    assert "Amount (USD)" in page
    assert '<textarea name="comment"' in page and '<textarea name="reject-reason"' in page
    assert ">Approve</button>" in page and ">Reject</button>" in page
    assert "<summary>Reject this run…</summary>" in page  # kept apart from Approve
    assert len(shown(page)["seen"]) == 64


def test_the_panel_shows_the_policy_beside_the_field(client, reviewer, policy_version, operator):
    run = start(policy_version, operator, INPUTS)
    client.force_login(reviewer)
    page = page_of(client, run)
    assert "You may only lower it." in page
    assert "0 of 1" in page and "Deadline" in page


def test_starter_gets_no_approve_button_and_is_told_why(client, operator_reviewer, review_version):
    run = start(review_version, operator_reviewer, INPUTS)
    client.force_login(operator_reviewer)
    page = page_of(client, run)
    assert ">Approve</button>" not in page and ">Reject</button>" not in page
    assert "another person must review it" in page


def test_crafted_approve_by_the_starter_gets_403_saying_why(
    client, operator_reviewer, review_version
):
    run = start(review_version, operator_reviewer, INPUTS)
    review = ReviewRequest.objects.get(run=run)
    client.force_login(operator_reviewer)
    response = client.post(reverse("reviews:approve", args=[review.public_id]))
    assert response.status_code == 403
    assert "You started this run; another person must review it" in body(response)
    assert not ReviewDecision.objects.filter(request=review).exists()


def test_crafted_reject_by_an_operator_gets_403(client, second_operator, review):
    client.force_login(second_operator)
    response = client.post(reverse("reviews:reject", args=[review.public_id]))
    assert response.status_code == 403
    assert "You do not have permission to decide reviews." in body(response)


def test_a_post_without_what_the_page_showed_records_nothing(client, reviewer, review):
    client.force_login(reviewer)
    response = client.post(reverse("reviews:approve", args=[review.public_id]), {}, **HTMX)
    assert response.status_code == 422
    assert "This page did not say what it showed you: reload it, then decide." in body(response)
    assert not ReviewDecision.objects.exists()


# --- approve: overrides, confirmation -------------------------------------------------------
def test_an_approval_without_changes_is_recorded_at_once_bound_to_the_page(
    client, reviewer, review
):
    client.force_login(reviewer)
    page = page_of(client, review.run)
    response = post(client, review, "approve", {"comment": "Checked"}, page=page, **HTMX)
    assert "Approved; the run continues." in body(response)
    decision = ReviewDecision.objects.get(request=review)
    assert decision.comment == "Checked" and decision.confirmed == []
    assert decision.shown_sha256 == shown(page)["seen"]


def test_an_override_is_confirmed_before_it_is_recorded(client, reviewer, review):
    client.force_login(reviewer)
    data = {"override_amount": "6500.00", "comment": "Partial payment agreed", "tab": "events"}
    response = post(client, review, "approve", data, HTTP_HX_TARGET="run-page", **HTMX)
    page = body(response)
    assert response.status_code == 200
    assert "Confirm your approval" in page
    assert re.search(
        r'<th scope="row">amount</th><td class="mono">USD\xa07,000.00</td><td class="mono">'
        r"<strong>USD\xa06,500.00</strong></td><td class=\"mono\">−USD\xa0500.00 \(−7.1 %\)</td>",
        page,
    )
    assert not ReviewDecision.objects.exists()
    confirmed = post(client, review, "approve", {}, page=page, HTTP_HX_TARGET="run-page", **HTMX)
    assert without_title(body(confirmed)).startswith('<div id="run-page"')
    assert "Approved; the run continues." in body(confirmed)
    decision = ReviewDecision.objects.get(request=review)
    assert decision.overrides == [{"field": "amount", "before": 700000, "after": 650000}]
    assert decision.comment == "Partial payment agreed"
    assert decision.confirmed == ["overrides"]


def test_going_back_from_the_confirmation_keeps_the_values_and_records_nothing(
    client, reviewer, review
):
    client.force_login(reviewer)
    data = {"override_amount": "6500.00", "comment": "Partial"}
    confirmation = body(post(client, review, "approve", data, **HTMX))
    back = post(client, review, "approve", {"back": "1"}, page=confirmation, **HTMX)
    page = body(back)
    assert 'name="override_amount" value="6500.00"' in page
    assert "Confirm your approval" not in page
    assert not ReviewDecision.objects.exists()


def test_an_override_outside_its_policy_is_refused_beside_the_field(
    client, reviewer, policy_version, operator
):
    run = start(policy_version, operator, INPUTS)
    review = run.review_requests.get()
    client.force_login(reviewer)
    data = {"override_amount": "9999999.99", "comment": "More"}
    response = post(client, review, "approve", data, **HTMX)
    assert response.status_code == 422
    page = body(response)
    assert "You may only lower amount from USD\xa07,000.00, not raise it." in page
    assert 'class="field has-error"' in page
    assert not ReviewDecision.objects.exists()


def test_an_override_without_a_comment_is_refused_beside_the_comment(client, reviewer, review):
    client.force_login(reviewer)
    response = post(client, review, "approve", {"override_amount": "6500.00"}, **HTMX)
    assert response.status_code == 422
    assert "Say why you changed amount: an override needs a comment." in body(response)
    assert not ReviewDecision.objects.exists()


def test_invalid_override_shows_an_error_beside_the_field(client, reviewer, review):
    client.force_login(reviewer)
    response = post(client, review, "approve", {"override_amount": "0"}, **HTMX)
    assert response.status_code == 422
    assert "Enter at least USD\xa00.01." in body(response)
    assert not ReviewDecision.objects.filter(request=review).exists()


def test_approving_above_confirm_above_names_the_amount_and_payee(
    client, reviewer, policy_version, operator
):
    run = start(policy_version, operator, {**INPUTS, "amount": 2_400_000})
    review = run.review_requests.get()
    client.force_login(reviewer)
    page = body(post(client, review, "approve", {}, **HTMX))
    assert (
        "You are approving <strong>USD\xa024,000.00</strong> to <strong>cus_acme</strong>" in page
    )
    assert "above the USD\xa010,000.00 that needs a confirmation" in page
    assert not ReviewDecision.objects.exists()
    post(client, review, "approve", {}, page=page, **HTMX)
    assert ReviewDecision.objects.get(request=review).confirmed == ["amount"]


def test_approving_a_live_run_asks_for_confirmation_naming_the_amount_and_payee(
    client, policy_version, live_operator
):
    live_reviewer = make_user("lars", REVIEWERS, LIVE_ENVIRONMENT)
    run = start(policy_version, live_operator, INPUTS, environment="live")
    review = run.review_requests.get()
    client.force_login(live_reviewer)
    assert '<span class="live-mark">Live</span>' in page_of(client, run)
    page = body(post(client, review, "approve", {}, **HTMX))
    assert "This is a live run: approving pays <strong>USD\xa07,000.00</strong> to" in page
    assert "<strong>cus_acme</strong> for real." in page
    post(client, review, "approve", {}, page=page, **HTMX)
    assert ReviewDecision.objects.get(request=review).confirmed == ["live"]


def test_step_log_shows_the_override_after_the_run_completes(client, reviewer, review):
    client.force_login(reviewer)
    decide(client, review, "approve", {"override_amount": "6500.00", "comment": "Partial"})
    engine.drive(review.run_id)
    run = Run.objects.get(pk=review.run_id)
    assert run.status == "completed"
    page = body(client.get(detail_url(run, "step-log")))
    assert "Approved</span> by <strong>rita</strong>" in page
    assert "amount: USD\xa07,000.00 → USD\xa06,500.00" in page


def test_approve_without_javascript_redirects_to_the_run(client, reviewer, review):
    client.force_login(reviewer)
    response = post(client, review, "approve", {"override_amount": "7000.00"})
    assert response.status_code == 302
    assert response.url == detail_url(review.run)
    assert ReviewDecision.objects.get(request=review).overrides == []


# --- reject: a reason and a confirmation ----------------------------------------------------
def test_reject_needs_a_reason_shown_beside_the_field(client, reviewer, review):
    client.force_login(reviewer)
    response = post(client, review, "reject", {"reject-reason": ""}, **HTMX)
    assert response.status_code == 422
    page = body(response)
    assert "Give the reason for rejecting." in page
    assert '<details class="reject-box" open>' in page
    assert not ReviewDecision.objects.exists()


def test_reject_asks_for_confirmation_then_fails_the_run_with_the_reason(
    client, reviewer, policy_version, operator
):
    review = start(policy_version, operator, INPUTS).review_requests.get()
    client.force_login(reviewer)
    page = body(post(client, review, "reject", {"reject-reason": "Not our invoice"}, **HTMX))
    assert "Confirm the rejection" in page and "A rejected run cannot be retried" in page
    assert "USD\xa07,000.00 to cus_acme is not paid" in page
    assert Run.objects.get(pk=review.run_id).status == "awaiting_review"
    response = post(client, review, "reject", {}, page=page, **HTMX)
    assert "Rejected; the run has failed." in body(response)
    run = Run.objects.get(pk=review.run_id)
    assert run.status == "failed" and run.failure_kind == "rejected"
    assert run.failure_reason == "Rejected by rita: Not our invoice"
    assert ReviewDecision.objects.get(request=review).confirmed == ["rejection"]


# --- bound to the page ----------------------------------------------------------------------
def test_a_decision_on_a_stale_page_is_refused_and_says_why(
    client, reviewer, second_reviewer, policy_version, operator
):
    run = start(policy_version, operator, {**INPUTS, "amount": 7_500_000})
    review = run.review_requests.get()
    client.force_login(second_reviewer)
    old_page = page_of(client, run)
    approve(request=review, reviewer=reviewer, comment="First")
    response = post(client, review, "approve", {}, page=old_page, **HTMX)
    assert response.status_code == 409
    assert "rita approved after this page was shown. Read it again before you decide." in body(
        response
    )
    assert review.decisions.count() == 1


def test_the_second_approver_sees_the_first_approval_and_completes_the_quorum(
    client, reviewer, second_reviewer, policy_version, operator
):
    run = start(policy_version, operator, {**INPUTS, "amount": 7_500_000})
    review = run.review_requests.get()
    client.force_login(reviewer)
    first = decide(client, review, "approve", {"override_amount": "70000.00", "comment": "PO"})
    assert first.status_code == 302
    client.force_login(second_reviewer)
    page = page_of(client, run)
    assert "1 of 2" in page and "approved by <strong>rita</strong>" in page
    assert "(was USD\xa075,000.00; changed by rita)" in page
    assert 'name="override_amount"' not in page  # the second approver confirms the values
    response = decide(client, review, "approve", {}, **HTMX)
    assert "Approved; the run continues." in body(response)
    assert Run.objects.get(pk=run.pk).status == "running"


def test_the_first_of_two_approvals_says_another_is_needed(
    client, reviewer, policy_version, operator
):
    run = start(policy_version, operator, {**INPUTS, "amount": 7_500_000})
    client.force_login(reviewer)
    response = decide(client, run.review_requests.get(), "approve", {}, **HTMX)
    assert "Approved (1 of 2); 1 more approval from other reviewers before the run" in body(
        response
    )


def test_second_decision_is_refused_with_a_message(client, reviewer, second_reviewer, review):
    client.force_login(second_reviewer)
    old_page = page_of(client, review.run)
    client.force_login(reviewer)
    decide(client, review, "approve", {})
    client.force_login(second_reviewer)
    response = post(client, review, "reject", {"reject-reason": "late"}, page=old_page, **HTMX)
    assert response.status_code == 409
    assert "not awaiting review" in body(response) or "already been decided" in body(response)


def test_the_panel_flags_a_possible_duplicate_with_a_link(client, reviewer, review, operator):
    twin = start(review.run.version, operator, INPUTS)
    client.force_login(reviewer)
    page = page_of(client, review.run)
    assert "Possible duplicate." in page
    assert f'<a class="mono" href="/runs/{twin.public_id}/">{twin.public_id}</a>' in page


# --- deadlines ------------------------------------------------------------------------------
def test_a_timeout_shows_on_the_events_tab_as_decided_by_the_system(
    client, reviewer, policy_version, operator
):
    run = start(policy_version, operator, INPUTS)
    review = run.review_requests.get()
    decide_expired_reviews(now=review.deadline + timedelta(seconds=1))
    client.force_login(reviewer)
    page = body(client.get(detail_url(run, "events")))
    assert "by the system: the deadline passed" in page
    assert "system:review-timeout" in page
    assert "No decision by the deadline" in page
    overview = body(client.get(detail_url(run)))
    assert "by <strong>the system</strong>" in overview


# --- misc -----------------------------------------------------------------------------------
def test_unknown_review_is_not_found(client, reviewer):
    client.force_login(reviewer)
    assert client.post("/reviews/rev_nope/approve/").status_code == 404


def test_review_in_another_group_is_not_offered(client, reviewer, operator):
    run = start(grouped_version("Treasury"), operator, INPUTS)
    client.force_login(reviewer)
    page = page_of(client, run)
    assert ">Approve</button>" not in page
    assert "Only members of Treasury may decide this review." in page
