"""The review queue and Approve / Reject on the run page."""

import re

import pytest
from django.urls import reverse

from reviews.models import ReviewDecision, ReviewRequest
from runs import engine
from runs.models import Run
from tests.conftest import make_version
from tests.test_dashboard_runs import HTMX, PAYMENT_WITH_REVIEW, body, detail_url, start

INPUTS = {"invoice_id": "INV-1001", "customer_id": "cus_acme", "amount": 700000, "currency": "usd"}


@pytest.fixture
def review_version(db):
    return make_version(PAYMENT_WITH_REVIEW, name="Pay invoice")


@pytest.fixture
def paused_run(review_version, operator):
    return start(review_version, operator, INPUTS)


@pytest.fixture
def review(paused_run):
    return ReviewRequest.objects.get(run=paused_run)


def grouped_version(group_name: str):
    definition = {**PAYMENT_WITH_REVIEW, "nodes": {**PAYMENT_WITH_REVIEW["nodes"]}}
    definition["nodes"]["approval"] = {
        **definition["nodes"]["approval"],
        "reviewer_group": group_name,
    }
    return make_version(definition, name=f"Pay invoice ({group_name})")


# --- the queue ------------------------------------------------------------------------------
def test_queue_lists_reviews_the_user_may_decide_with_key_values(client, reviewer, paused_run):
    client.force_login(reviewer)
    page = body(client.get(reverse("reviews:queue")))
    assert paused_run.public_id in page
    assert "Approve invoice payment" in page
    assert "Pay invoice" in page and "env-sandbox" in page
    assert "700000" in page and "usd" in page
    assert '<th scope="col">Waiting</th>' in page


def test_queue_excludes_runs_the_user_started(client, operator_reviewer, review_version):
    own = start(review_version, operator_reviewer, INPUTS)
    client.force_login(operator_reviewer)
    page = body(client.get(reverse("reviews:queue")))
    assert own.public_id not in page
    assert "Nothing is waiting for your review." in page


def test_queue_respects_the_reviewer_group(client, reviewer, second_reviewer, operator):
    from django.contrib.auth.models import Group

    Group.objects.create(name="Treasury")
    second_reviewer.groups.add(Group.objects.get(name="Treasury"))
    run = start(grouped_version("Treasury"), operator, INPUTS)
    client.force_login(reviewer)
    assert run.public_id not in body(client.get(reverse("reviews:queue")))
    client.force_login(second_reviewer)
    assert run.public_id in body(client.get(reverse("reviews:queue")))


def test_queue_lists_oldest_first(client, reviewer, review_version, operator):
    first = start(review_version, operator, INPUTS)
    second = start(review_version, operator, INPUTS)
    client.force_login(reviewer)
    page = body(client.get(reverse("reviews:queue")))
    assert page.index(first.public_id) < page.index(second.public_id)


def test_queue_leaves_out_decided_and_cancelled_runs(client, reviewer, review, operator):
    from reviews.services import approve
    from runs.services import cancel_run

    other = start(review.run.version, operator, INPUTS)
    approve(request=review, reviewer=reviewer)
    cancel_run(run=other, user=operator)
    client.force_login(reviewer)
    page = body(client.get(reverse("reviews:queue")))
    assert review.run.public_id not in page and other.public_id not in page


def test_nav_shows_the_count_of_waiting_reviews(client, reviewer, paused_run):
    client.force_login(reviewer)
    page = body(client.get(reverse("runs:list")))
    assert re.search(r'Reviews<span id="review-count"> <span class="count"[^>]*>1</span>', page)


def test_deciding_updates_the_nav_count_in_the_same_swap(client, reviewer, review):
    client.force_login(reviewer)
    response = client.post(
        reverse("reviews:approve", args=[review.public_id]), {"override_amount": "5"}, **HTMX
    )
    assert '<span id="review-count" hx-swap-oob="true"></span>' in body(response)


def test_operator_without_review_role_sees_an_empty_queue(client, second_operator, paused_run):
    client.force_login(second_operator)
    page = body(client.get(reverse("reviews:queue")))
    assert paused_run.public_id not in page
    assert "You do not have the Reviewers role" in page


# --- the review panel -----------------------------------------------------------------------
def test_reviewer_sees_shown_values_editable_overrides_comment_and_buttons(
    client, reviewer, paused_run
):
    client.force_login(reviewer)
    page = body(client.get(detail_url(paused_run)))
    for name, value in [("invoice", "INV-1001"), ("customer", "cus_acme"), ("amount", "700000")]:
        assert re.search(rf'<th scope="row">{name}</th><td class="mono">{value}</td>', page)
    assert re.search(r'<input type="number" name="override_amount" value="700000"', page)
    assert '<textarea name="comment"' in page
    assert ">Approve</button>" in page and ">Reject</button>" in page


def test_starter_gets_no_approve_button_and_is_told_why(client, operator_reviewer, review_version):
    run = start(review_version, operator_reviewer, INPUTS)
    client.force_login(operator_reviewer)
    page = body(client.get(detail_url(run)))
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


def test_approve_with_override_swaps_the_run_page_and_records_it(client, reviewer, review):
    client.force_login(reviewer)
    response = client.post(
        reverse("reviews:approve", args=[review.public_id]),
        {"override_amount": "650000", "comment": "Partial payment agreed", "tab": "events"},
        HTTP_HX_TARGET="run-page",
        **HTMX,
    )
    page = body(response)
    assert response.status_code == 200
    assert page.lstrip().startswith('<div id="run-page"')
    assert "Approved; the run continues." in page
    assert "amount: 700000 → 650000" in page
    decision = ReviewDecision.objects.get(request=review)
    assert decision.overrides == [{"field": "amount", "before": 700000, "after": 650000}]
    assert decision.comment == "Partial payment agreed"


def test_step_log_shows_the_override_after_the_run_completes(client, reviewer, review):
    client.force_login(reviewer)
    client.post(reverse("reviews:approve", args=[review.public_id]), {"override_amount": "650000"})
    engine.drive(review.run_id)
    run = Run.objects.get(pk=review.run_id)
    assert run.status == "completed"
    page = body(client.get(detail_url(run, "step-log")))
    assert "Approved</span> by <strong>rita</strong>" in page
    assert "amount: 700000 → 650000" in page


def test_approve_without_javascript_redirects_to_the_run(client, reviewer, review):
    client.force_login(reviewer)
    response = client.post(
        reverse("reviews:approve", args=[review.public_id]), {"override_amount": "700000"}
    )
    assert response.status_code == 302
    assert response.url == detail_url(review.run)
    assert ReviewDecision.objects.get(request=review).overrides == []


def test_invalid_override_shows_an_error_beside_the_field(client, reviewer, review):
    client.force_login(reviewer)
    response = client.post(
        reverse("reviews:approve", args=[review.public_id]), {"override_amount": "0"}, **HTMX
    )
    assert response.status_code == 422
    page = body(response)
    assert "Ensure this value is greater than or equal to 1." in page
    assert not ReviewDecision.objects.filter(request=review).exists()


def test_reject_fails_the_run_with_the_comment(client, reviewer, review):
    client.force_login(reviewer)
    response = client.post(
        reverse("reviews:reject", args=[review.public_id]),
        {"comment": "Not our invoice", "override_amount": "not a number"},
        **HTMX,
    )
    assert "Rejected; the run has failed." in body(response)
    run = Run.objects.get(pk=review.run_id)
    assert run.status == "failed" and run.failure_kind == "rejected"
    assert run.failure_reason == "Rejected by rita: Not our invoice"


def test_second_decision_is_refused_with_a_message(client, reviewer, second_reviewer, review):
    client.force_login(reviewer)
    client.post(reverse("reviews:approve", args=[review.public_id]), {"override_amount": "5"})
    client.force_login(second_reviewer)
    response = client.post(
        reverse("reviews:reject", args=[review.public_id]), {"comment": "late"}, **HTMX
    )
    assert response.status_code == 409
    assert "not awaiting review" in body(response) or "already been decided" in body(response)


def test_unknown_review_is_not_found(client, reviewer):
    client.force_login(reviewer)
    assert client.post("/reviews/rev_nope/approve/").status_code == 404


def test_review_in_another_group_is_not_offered(client, reviewer, operator):
    run = start(grouped_version("Treasury"), operator, INPUTS)
    client.force_login(reviewer)
    page = body(client.get(detail_url(run)))
    assert ">Approve</button>" not in page
    assert "Only members of Treasury may decide this review." in page
