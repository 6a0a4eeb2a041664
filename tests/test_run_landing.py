"""Run and Retry land on the new run as a whole page, its message shown there once.

With HTMX the answer is HX-Redirect (the browser loads the run page itself: site header,
title, messages); without JavaScript a 302. Swaps that stay on a page carry its <title>.
"""

import re

import pytest
from django.urls import reverse

from runs.models import Run
from tests.conftest import make_version
from tests.test_dashboard_procedures import LIVE, VALID, confirmation_token, stripe_live  # noqa: F401
from tests.test_dashboard_runs import CREDIT_CHECK, HTMX, PAYMENT_WITH_REVIEW, body, start


@pytest.fixture
def version(db):
    return make_version(PAYMENT_WITH_REVIEW, name="Pay invoice")


@pytest.fixture
def credit_version(db):
    return make_version(CREDIT_CHECK, name="Credit check")


@pytest.fixture
def transient_run(credit_version, operator):
    return start(credit_version, operator, {"customer_id": "cust_timeout"})


def run_url(version):
    return reverse("procedures:start", args=[version.procedure.public_id])


def detail_url(run):
    return reverse("runs:detail", args=[run.public_id])


def title_of(page: str) -> str:
    return re.search(r"<title>(.*?)</title>", page, re.S).group(1)


def test_run_via_htmx_answers_hx_redirect_to_the_new_run(client, operator, version):
    client.force_login(operator)
    response = client.post(run_url(version), VALID, **HTMX)
    run = Run.objects.get()
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == detail_url(run)
    assert "HX-Location" not in response.headers
    assert response.content == b""  # nothing to swap: the browser navigates


def test_run_without_htmx_is_a_302_to_the_new_run(client, operator, version):
    client.force_login(operator)
    response = client.post(run_url(version), VALID)
    assert response.status_code == 302
    assert response.url == detail_url(Run.objects.get())


def test_the_landing_page_is_whole_with_its_title_and_the_message_once(client, operator, version):
    client.force_login(operator)
    client.post(run_url(version), VALID, **HTMX)
    run = Run.objects.get()
    page = body(client.get(detail_url(run)))  # what the browser loads for HX-Redirect
    message = f"Run {run.public_id} started in sandbox."
    assert '<header class="topbar">' in page and 'aria-label="Main"' in page
    assert title_of(page) == f"Run {run.public_id} · Pending · Rapidfolio"
    assert page.count(message) == 1
    assert message not in body(client.get(reverse("runs:list")))  # not again, elsewhere


def test_a_confirmed_live_run_lands_on_it_the_same_way(
    client,
    live_operator,
    version,
    stripe_live,  # noqa: F811
):
    client.force_login(live_operator)
    token = confirmation_token(body(client.post(run_url(version), LIVE, **HTMX)))
    response = client.post(run_url(version), {**LIVE, "live_confirmation": token}, **HTMX)
    run = Run.objects.get()
    assert run.environment == "live"
    assert response.headers["HX-Redirect"] == detail_url(run)
    assert body(client.get(detail_url(run))).count(f"Run {run.public_id} started in live.") == 1


def test_an_invalid_run_form_stays_a_swap_of_the_form(client, operator, version):
    client.force_login(operator)
    response = client.post(run_url(version), {**VALID, "invoice_id": ""}, **HTMX)
    assert response.status_code == 422 and "HX-Redirect" not in response.headers
    assert body(response).lstrip().startswith('<div id="run-form"')


def test_retry_via_htmx_lands_on_the_new_run(client, operator, transient_run):
    client.force_login(operator)
    response = client.post(reverse("runs:retry", args=[transient_run.public_id]), **HTMX)
    retry = Run.objects.get(retry_of=transient_run)
    assert response.headers["HX-Redirect"] == detail_url(retry)
    page = body(client.get(detail_url(retry)))
    message = f"Run {retry.public_id} started as a retry of {transient_run.public_id}."
    assert page.count(message) == 1
    assert f'<a class="mono" href="{detail_url(transient_run)}">' in page  # "Retry of" links back
    assert title_of(page).startswith(f"Run {retry.public_id} · ")
    assert message not in body(client.get(detail_url(retry)))


def test_retry_without_htmx_is_a_302_to_the_new_run(client, operator, transient_run):
    client.force_login(operator)
    response = client.post(reverse("runs:retry", args=[transient_run.public_id]))
    assert response.status_code == 302
    assert response.url == detail_url(Run.objects.get(retry_of=transient_run))


def test_a_tab_swap_carries_the_title_of_the_tab(client, operator, transient_run):
    client.force_login(operator)
    url = reverse("runs:tab", args=[transient_run.public_id, "step-log"])
    page = body(client.get(url, HTTP_HX_TARGET="run-tabs", **HTMX))
    # First in the response, so htmx takes it for document.title and swaps the rest.
    assert page.startswith(f"<title>Run {transient_run.public_id} · Failed · Step Log · Rapidfolio")
    assert page.count("<title>") == 1


def test_the_polled_run_page_carries_its_title_and_the_whole_page_has_one(
    client, operator, transient_run
):
    client.force_login(operator)
    swap = body(client.get(detail_url(transient_run), **HTMX))
    assert swap.startswith(f"<title>Run {transient_run.public_id} · Failed · Rapidfolio</title>")
    assert swap.count("<title>") == 1
    assert body(client.get(detail_url(transient_run))).count("<title>") == 1


def test_cancel_still_swaps_the_run_page_in_place(client, operator, credit_version):
    run = start(credit_version, operator, {"customer_id": "cust_anna"}, drive=False)
    client.force_login(operator)
    response = client.post(reverse("runs:cancel", args=[run.public_id]), **HTMX)
    assert "HX-Redirect" not in response.headers
    page = body(response)
    assert page.startswith(f"<title>Run {run.public_id} · Cancelled · Rapidfolio</title>")
    assert f"Run {run.public_id} was cancelled." in page
