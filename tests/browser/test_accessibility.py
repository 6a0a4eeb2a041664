"""Every page of ours passes axe-core with no serious or critical violation, at desktop and phone
width (issue 16, point 6).

axe-core is the copy the PyPI package axe-playwright-python ships (a dev dependency), not a CDN's.
The audit runs WCAG 2.0 and 2.1 A and AA rules and the best-practice ones on each page state:
login, home, the Runs list (unfiltered, filtered, with filter errors, empty), every tab of a run in
each status (with the integrity check's result loaded), the procedures, the Run form with errors
and the live confirmation, the review queue, the review panel with its errors and confirmations,
the Security (two-factor) pages and the code step of sign-in, 403 and 404.

Speed: the pages' data is made once for the module, through our own services and engine, and each
user visits all their pages in one browser context; a page is audited at desktop width, resized to
a phone and audited again. The audit runs once (the `audit` fixture); each parametrized test then
reports one page at one width, so a failure names both. It does not take pytest-django's
`transactional_db` per test (a flush each), so the fixture empties the database itself when the
module ends.
"""

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import axe_playwright_python
import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import modify_settings, override_settings
from django_otp.plugins.otp_totp.models import TOTPDevice

from procedures.models import Connection
from rapidfolio.roles import LIVE_ENVIRONMENT, OPERATORS, REVIEWERS
from reviews import services as review_services
from reviews.models import ReviewRequest
from runs import engine
from runs.models import Run
from runs.services import cancel_run, start_run
from tests.browser.conftest import DESKTOP, PASSWORD, PHONE, SCREENSHOTS
from tests.conftest import make_user, make_version
from tests.factories import force_status
from tests.test_dashboard_runs import CREDIT_CHECK, PAYMENT_WITH_REVIEW
from tests.test_login_security import current_code

# Plain `db`, so that pytest-django sets up the test database for this module; each test's
# rolled-back transaction costs nothing, unlike transactional_db's flush per test.
pytestmark = pytest.mark.django_db

AXE_SOURCE = (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
FAILING_IMPACTS = {"serious", "critical"}
WIDTHS = {"desktop": DESKTOP, "phone": PHONE}
REPORT = SCREENSHOTS.parent / "axe-report.json"
# A screenshot of every page state at both widths adds about a sixth to the module's time: on
# with A11Y_SCREENSHOTS=1 (to look at the pages); a page that could not be audited always gets one.
TAKE_SCREENSHOTS = os.environ.get("A11Y_SCREENSHOTS") == "1"

INVOICE = {"invoice_id": "INV-1001", "customer_id": "cus_acme", "amount": 700000, "currency": "usd"}
TABS = ["overview", "inputs", "step-log", "output", "events"]
# The run states whose every tab is audited, by the operator who started them.
RUN_STATES = [
    "pending",
    "running",
    "awaiting_review",
    "completed",
    "approved_and_paid",
    "failed_transient",
    "failed_permanent",
    "rejected",
    "cancelled",
]


# --- the data -------------------------------------------------------------------------------
def make_pages_data() -> dict:
    """Users, procedures and a run in each status, made as the product makes them."""
    operator = make_user("lena", OPERATORS, LIVE_ENVIRONMENT)
    reviewer = make_user("rita", REVIEWERS, LIVE_ENVIRONMENT)
    enrolling = make_user("ravi", REVIEWERS)
    Connection.objects.create(integration="stripe", environment="live", name="Acme Stripe (live)")
    credit = make_version(CREDIT_CHECK, name="Credit check")
    payment = make_version(PAYMENT_WITH_REVIEW, name="Pay invoice")

    def started(version, inputs, environment="sandbox", drive=True):
        run = start_run(
            version=version, environment=environment, inputs=inputs, type="manual", user=operator
        )
        if drive:
            engine.drive(run.pk)
        return Run.objects.get(pk=run.pk)

    def review_of(run):
        return ReviewRequest.objects.get(run=run)

    runs = {
        "pending": started(credit, {"customer_id": "cust_anna"}, drive=False),
        "completed": started(credit, {"customer_id": "cust_anna"}),
        "failed_transient": started(credit, {"customer_id": "cust_timeout"}),
        "failed_permanent": started(credit, {"customer_id": "cust_blocked"}),
        "awaiting_review": started(payment, INVOICE),
        "awaiting_live": started(payment, {**INVOICE, "invoice_id": "INV-1002"}, "live"),
    }
    with transaction.atomic():
        runs["running"] = force_status(
            started(credit, {"customer_id": "cust_x"}, drive=False), "running"
        )
    runs["cancelled"] = cancel_run(
        run=started(credit, {"customer_id": "cust_y"}, drive=False),
        user=operator,
        reason="Duplicate",
    )
    paid = started(payment, {**INVOICE, "invoice_id": "INV-1003"})
    review_services.approve(
        request=review_of(paid), reviewer=reviewer, overrides={"amount": 650000}, comment="Partial"
    )
    engine.drive(paid.pk)
    runs["approved_and_paid"] = Run.objects.get(pk=paid.pk)
    rejected = started(payment, {**INVOICE, "invoice_id": "INV-1004"})
    review_services.reject(request=review_of(rejected), reviewer=reviewer, comment="Not ours")
    runs["rejected"] = Run.objects.get(pk=rejected.pk)
    return {
        "users": {"operator": operator, "reviewer": reviewer, "enrolling": enrolling},
        "runs": runs,
        "payment": payment.procedure,
    }


# --- the pages --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageState:
    id: str
    user: str  # a key of data["users"], or "anonymous"
    visit: Callable  # visit(page, data): bring the page to the state to audit


def goto(path):
    return lambda page, data: page.goto(path(data) if callable(path) else path)


def run_tab(state, tab):
    return goto(lambda data: f"/runs/{data['runs'][state].public_id}/{tab}/")


def procedure_page(data):
    return f"/procedures/{data['payment'].public_id}/"


def run_form_with_errors(page, data):
    page.goto(procedure_page(data))
    page.get_by_role("button", name="Run", exact=True).click()
    page.locator("#run-form .has-error").first.wait_for()


def live_confirmation(page, data):
    page.goto(procedure_page(data))
    page.get_by_label("Invoice number").fill("INV-2024")
    page.get_by_label("Customer").fill("cus_acme")
    page.get_by_label("Currency").select_option("usd")
    page.get_by_label("Amount (USD)").fill("24,000.00")
    page.get_by_label("Live", exact=True).check()
    page.get_by_role("button", name="Review live run").click()
    page.locator("form.live-confirmation").wait_for()


def run_started(page, data):
    page.goto(procedure_page(data))
    page.get_by_label("Invoice number").fill("INV-2025")
    page.get_by_label("Customer").fill("cus_acme")
    page.get_by_label("Currency").select_option("usd")
    page.get_by_label("Amount (USD)").fill("1,250.00")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(lambda url: "/runs/run_" in url)


def time_zone_saved(page, data):
    page.goto("/account/time-zone/")
    page.get_by_label("Time zone").select_option("Europe/Paris")
    page.get_by_role("button", name="Save time zone").click()
    page.locator(".messages").wait_for()


def review_run(state="awaiting_review"):
    return goto(lambda data: f"/runs/{data['runs'][state].public_id}/")


def approve_with_a_bad_amount(page, data):
    review_run()(page, data)
    page.get_by_label("Amount (USD)").fill("not money")
    page.get_by_role("button", name="Approve", exact=True).click()
    page.locator("#review-panel .has-error").first.wait_for()


def reject_without_a_reason(page, data):
    review_run()(page, data)
    page.get_by_text("Reject this run…").click()
    page.get_by_role("button", name="Reject", exact=True).click()
    page.locator("#review-panel .reject-box .has-error").first.wait_for()


def approval_confirmation(state, amount=None):
    def visit(page, data):
        review_run(state)(page, data)
        if amount:
            page.get_by_label("Amount (USD)").fill(amount)
            page.get_by_label("Comment").fill("The customer agreed to a partial payment")
        page.get_by_role("button", name="Approve", exact=True).click()
        page.locator(".review-confirmation, #review-panel .form-error").first.wait_for()

    return visit


def reject_confirmation(page, data):
    review_run()(page, data)
    page.get_by_text("Reject this run…").click()
    page.get_by_label("Reason").fill("The invoice was paid already")
    page.get_by_role("button", name="Reject", exact=True).click()
    page.locator(".reject-confirmation").wait_for()


def security_set_up_started(page, data):
    page.goto("/account/security/")
    page.get_by_role("button", name="Set up an authenticator app").click()
    page.get_by_label("QR code of your authenticator secret").wait_for()


def security_wrong_code(page, data):
    page.get_by_label("Code from your authenticator app").fill("000000")
    page.get_by_role("button", name="Turn on").click()
    page.locator(".has-error").first.wait_for()


def security_turned_on(page, data):
    device = TOTPDevice.objects.get(user=data["users"]["enrolling"])
    # The wrong code before this one paused the device for a second; as if it had passed.
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None)
    page.get_by_label("Code from your authenticator app").fill(current_code(device))
    page.get_by_role("button", name="Turn on").click()
    page.get_by_text("Two-factor sign-in is on").wait_for()


def sign_in_code_step(page, data):
    page.get_by_role("button", name="Log out").click()
    log_in(page, data["users"]["enrolling"], expect_code=True)


def sign_in_wrong_code(page, data):
    page.get_by_label("Code from your authenticator app").fill("000000")
    page.get_by_role("button", name="Verify").click()
    page.locator(".has-error").first.wait_for()


def login_failed(page, data):
    page.goto("/login/")
    page.get_by_label("Username").fill("lena")
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Log in").click()
    page.locator(".form-error").wait_for()


PAGES = [
    PageState("login", "anonymous", goto("/login/")),
    PageState("login-failed", "anonymous", login_failed),
    PageState("home", "operator", goto("/")),
    PageState("runs-list", "operator", goto("/runs/")),
    PageState("runs-list-filtered", "operator", goto("/runs/?status=failed&environment=sandbox")),
    PageState("runs-list-filter-errors", "operator", goto("/runs/?created_from=yesterday")),
    PageState("runs-list-empty", "operator", goto("/runs/?status=cancelled&environment=live")),
    PageState("procedures", "operator", goto("/procedures/")),
    PageState("procedure", "operator", goto(procedure_page)),
    PageState("run-form-errors", "operator", run_form_with_errors),
    PageState("live-run-confirmation", "operator", live_confirmation),
    *[
        PageState(f"run-{state}-{tab}", "operator", run_tab(state, tab))
        for state in RUN_STATES
        for tab in TABS
    ],
    PageState("403", "operator", goto("/account/security/")),
    PageState("404", "operator", goto("/runs/run_doesnotexist/")),
    PageState("time-zone", "operator", goto("/account/time-zone/")),
    PageState("time-zone-saved", "operator", time_zone_saved),
    # Last of the operator's: it adds a run (pending: no worker here) that the lists above
    # would otherwise show.
    PageState("run-started", "operator", run_started),
    PageState("home-reviewer", "reviewer", goto("/")),
    PageState("review-queue", "reviewer", goto("/reviews/")),
    PageState("review-panel", "reviewer", review_run()),
    PageState("review-panel-approve-errors", "reviewer", approve_with_a_bad_amount),
    PageState("review-panel-reject-errors", "reviewer", reject_without_a_reason),
    PageState(
        "review-approval-confirmation",
        "reviewer",
        approval_confirmation("awaiting_review", "6,500.00"),
    ),
    PageState("review-reject-confirmation", "reviewer", reject_confirmation),
    PageState("review-panel-live", "reviewer", review_run("awaiting_live")),
    PageState("review-live-approval", "reviewer", approval_confirmation("awaiting_live")),
    # One reviewer's two-factor set-up, in order: each state follows from the one before.
    PageState("security-off", "enrolling", goto("/account/security/")),
    PageState("security-set-up", "enrolling", security_set_up_started),
    PageState("security-wrong-code", "enrolling", security_wrong_code),
    PageState("security-on", "enrolling", security_turned_on),
    PageState("sign-in-code", "enrolling", sign_in_code_step),
    PageState("sign-in-wrong-code", "enrolling", sign_in_wrong_code),
]


# --- the audit ----------------------------------------------------------------------------
def log_in(page, user, expect_code=False):
    page.goto("/login/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login/" not in url or (expect_code and "/code/" in url))


# Wait for what loads after the page (the integrity check, htmx swaps) and then hold the page
# still: a poll swapping #run-page under axe would audit half a page.
SETTLE = """() => !document.querySelector(
    'a.integrity[hx-trigger], .htmx-request, .htmx-swapping, .htmx-settling')"""
FREEZE = """() => {
  if (!window.__a11yFreezeInstalled) {
    window.__a11yFreezeInstalled = true;
    document.addEventListener("htmx:beforeRequest", (e) => {
      if (window.__a11yFrozen) e.preventDefault();
    });
  }
  window.__a11yFrozen = true;
}"""
RUN_AXE = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags},
                                          resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({target: n.target.join(" "), summary: n.failureSummary})),
  }));
}"""


def axe_violations(page) -> list[dict]:
    # Evaluated through the DevTools protocol, which our CSP (script-src 'self') does not
    # govern; a <script> tag with axe's text in it would be refused, as it should be.
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_SOURCE)
    return page.evaluate(RUN_AXE, AXE_TAGS)


def audit_page(page, state: PageState, data) -> dict:
    results = {}
    server_errors = []

    def on_response(response):
        if response.status >= 500:
            server_errors.append(f"{response.status} {response.url}")

    page.on("response", on_response)
    try:
        state.visit(page, data)
        page.wait_for_function(SETTLE)
    finally:
        page.remove_listener("response", on_response)
    if server_errors:
        raise AssertionError(f"the server answered {', '.join(server_errors)}")
    page.evaluate(FREEZE)
    for width, viewport in WIDTHS.items():
        page.set_viewport_size(viewport)
        results[width] = axe_violations(page)
        if TAKE_SCREENSHOTS:
            page.screenshot(path=SCREENSHOTS / f"a11y-{state.id}-{width}.png", full_page=True)
    page.set_viewport_size(DESKTOP)
    page.evaluate("() => { window.__a11yFrozen = false; }")
    return results


@pytest.fixture(scope="module")
def audit(request, browser, django_db_setup, django_db_blocker, tmp_path_factory):
    """{page id: {width: [violation, ...]} or an error string}, every page audited once."""
    # Not a dependency of the fixture: pytest-django would then flush the database before
    # each of this module's tests (see the module's docstring).
    server = request.getfixturevalue("live_server")
    var = tmp_path_factory.mktemp("a11y")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    results, seconds = {}, {}
    with (
        django_db_blocker.unblock(),
        override_settings(LEDGER_CHECKPOINT_DIR=var / "checkpoints", VAR_DIR=var),
        modify_settings(ALLOWED_HOSTS={"append": urlsplit(server.url).hostname}),
    ):
        try:
            data = make_pages_data()
            users = {"anonymous": None, **data["users"]}
            for key, user in users.items():
                context = browser.new_context(base_url=server.url, viewport=DESKTOP)
                context.set_default_timeout(5_000)
                page = context.new_page()
                if user is not None:
                    log_in(page, user)
                for state in [s for s in PAGES if s.user == key]:
                    started = time.monotonic()
                    try:
                        results[state.id] = audit_page(page, state, data)
                    except Exception as exc:  # reported by that page's test, the rest go on
                        results[state.id] = f"{type(exc).__name__}: {exc}"
                        page.screenshot(path=SCREENSHOTS / f"a11y-{state.id}-error.png")
                    seconds[state.id] = round(time.monotonic() - started, 2)
                context.close()
            write_report(results, seconds)
            yield results
        finally:
            call_command("flush", verbosity=0, interactive=False)


def write_report(results: dict, seconds: dict) -> None:
    """test-artifacts/axe-report.json: every violation, and counts by impact."""
    counts = Counter()
    for by_width in results.values():
        if isinstance(by_width, dict):
            for violations in by_width.values():
                counts.update(v["impact"] for v in violations for _ in v["nodes"])
    REPORT.write_text(
        json.dumps({"counts": counts, "seconds": seconds, "pages": results}, indent=1)
    )


def describe(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['impact']}: {v['id']} ({v['help']}) {v['helpUrl']}")
        lines.extend(f"    {node['target']}" for node in v["nodes"][:10])
        if len(v["nodes"]) > 10:
            lines.append(f"    … and {len(v['nodes']) - 10} more")
    return "\n".join(lines)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page_id", [state.id for state in PAGES])
def test_page_has_no_serious_or_critical_axe_violation(audit, page_id, width):
    result = audit[page_id]
    assert isinstance(result, dict), f"{page_id} could not be brought to its state: {result}"
    failing = [v for v in result[width] if v["impact"] in FAILING_IMPACTS]
    assert not failing, f"{page_id} at {width} width:\n{describe(failing)}"
