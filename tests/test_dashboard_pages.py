"""What every dashboard page shares: login, the nav bar, error pages, no inline script/style."""

import re

import pytest
from django.urls import reverse

from reviews.models import ReviewRequest
from tests.conftest import make_version
from tests.test_dashboard_runs import PAYMENT_WITH_REVIEW, body, detail_url, start

INPUTS = {"invoice_id": "INV-1", "customer_id": "cus_acme", "amount": 700000, "currency": "usd"}


@pytest.fixture
def paused_run(db, operator):
    return start(make_version(PAYMENT_WITH_REVIEW, name="Pay invoice"), operator, INPUTS)


def page_urls(run):
    review = ReviewRequest.objects.get(run=run)
    return [
        reverse("home"),
        reverse("runs:list"),
        reverse("runs:list") + "?status=failed&status=pending",
        detail_url(run),
        detail_url(run, "inputs"),
        detail_url(run, "step-log"),
        detail_url(run, "output"),
        detail_url(run, "events"),
        reverse("reviews:queue"),
        reverse("procedures:list"),
        reverse("procedures:detail", args=[run.procedure.public_id]),
    ], review


def test_every_dashboard_page_requires_login(client, paused_run):
    urls, _ = page_urls(paused_run)
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("login")), url


def test_every_action_requires_login(client, paused_run):
    _, review = page_urls(paused_run)
    for url in [
        reverse("runs:cancel", args=[paused_run.public_id]),
        reverse("runs:retry", args=[paused_run.public_id]),
        reverse("reviews:approve", args=[review.public_id]),
        reverse("reviews:reject", args=[review.public_id]),
        reverse("procedures:start", args=[paused_run.procedure.public_id]),
    ]:
        response = client.post(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("login")), url


def test_pages_have_no_inline_script_or_style(client, reviewer, paused_run):
    urls, _ = page_urls(paused_run)
    client.force_login(reviewer)
    for url in [*urls, "/runs/run_missing/"]:
        page = body(client.get(url))
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", page), url
        assert " style=" not in page, url
        assert "https://" not in page.split("<body")[0], url  # nothing from a CDN


def test_nav_links_to_runs_reviews_and_procedures(client, operator, paused_run):
    client.force_login(operator)
    page = body(client.get(reverse("runs:list")))
    nav = re.search(r'<nav class="nav".*?</nav>', page, re.S).group(0)
    assert f'href="{reverse("runs:list")}"' in nav
    assert f'href="{reverse("reviews:queue")}"' in nav
    assert f'href="{reverse("procedures:list")}"' in nav
    assert 'aria-current="page">Runs</a>' in nav


def test_admin_link_only_for_staff(client, operator, admin_user):
    client.force_login(operator)
    assert ">Admin</a>" not in body(client.get(reverse("runs:list")))
    client.force_login(admin_user)
    assert ">Admin</a>" in body(client.get(reverse("runs:list")))


def test_status_badges_carry_colour_class_and_text(client, operator, paused_run):
    client.force_login(operator)
    page = body(client.get(reverse("runs:list")))
    assert '<span class="badge status-awaiting_review">Awaiting review</span>' in page


def test_not_found_page_is_friendly(client, operator):
    client.force_login(operator)
    response = client.get("/runs/run_missing/")
    assert response.status_code == 404
    assert "Back to runs" in body(response)


def test_login_then_lands_on_the_dashboard(client, operator):
    response = client.post(
        reverse("login"), {"username": "olivia", "password": "correct-horse-42"}, follow=True
    )
    assert response.status_code == 200
    assert "Welcome, olivia" in body(response)
