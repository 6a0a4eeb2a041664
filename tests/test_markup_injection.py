"""Stored HTML injection: what procedure authors, users, webhooks and integrations write is shown
as text on every page, never as markup.

A procedure whose every author-written field, and runs whose every user-, webhook- and
integration-written field, hold hostile markup are rendered on every dashboard page and HTMX
partial, Django admin and the login page, as the users who see them. Each answer is parsed with
the standard library's html.parser: no element may carry an event handler, a `javascript:` URL,
or an element or attribute the payloads would create (each carries the marker "pwn"). htmx runs
with eval, script tags and cross-origin requests off, and the regions that show recorded data
carry `hx-disable`, so even markup that slipped through could not act as the viewer.
"""

import hashlib
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
from django.apps import apps
from django.urls import reverse
from django.utils.html import escape

from procedures.models import Connection, RejectedDelivery, Trigger
from rapidfolio.roles import OPERATORS, REVIEWERS
from rapidfolio.test_client import Client
from reviews.models import ReviewRequest
from runs import engine, webhooks
from runs.api_keys import create_api_key
from runs.models import IdempotencyRecord, Run, WebhookEndpoint
from runs.services import cancel_run, start_run
from tests.conftest import make_user, make_version
from tests.test_dashboard_reviews import decide

MARK = "pwn"
# Each payload, printed unescaped, makes an element or an attribute carrying the marker: an
# attribute named "pwn", an hx-* value with "/pwn", or a tag named x-pwn.
PAYLOADS = (
    '<img src=x hx-post="/runs/pwn/cancel/" hx-trigger="load" onerror=alert(1) pwn>',
    '"><div hx-get="/pwn" hx-trigger="load" pwn>',
    "'><svg onload=alert(1) pwn>",
    '</textarea></title><x-pwn hx-get="/pwn"></x-pwn>',
    '<a href="javascript:alert(1)" pwn>x</a>',
    "</script><script pwn>alert(1)</script>",
    "{{ pwn }}{% now 'Y' %}",
    '" hx-get="/pwn" onfocus="alert(1)" pwn="',
)
HOSTILE = " ".join(PAYLOADS)
TITLE = " ".join(PAYLOADS[:6])  # a review's title is at most 300 characters
SHORT = '"><img src=x onerror=alert(1) hx-get="/pwn" pwn>{{pwn}}'  # for short fields
JS_URL = "javascript:alert('pwn')"
HTMX = {"HTTP_HX_REQUEST": "true"}
HTMX_TABS = {**HTMX, "HTTP_HX_TARGET": "run-tabs"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "data", "poster"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
TABS = ("overview", "inputs", "step-log", "output", "events")


def hostile_definition() -> dict:
    text = {"title": HOSTILE, "description": HOSTILE}
    return {
        "description": HOSTILE,
        "input_schema": {
            "type": "object",
            **text,
            "additionalProperties": False,
            "required": ["customer_id", "amount"],
            "properties": {
                "customer_id": {"type": "string", "minLength": 1, "maxLength": 100, **text},
                "amount": {"type": "integer", "minimum": 1, **text},
                "note": {"type": "string", "default": HOSTILE, **text},
                "choice": {"type": "string", "enum": [SHORT, "plain"], **text},
                "details": {"type": "object", **text},
                "link": {"type": "string", "default": JS_URL, **text},
                SHORT: {"type": "string", **text},
            },
        },
        "start": "check",
        "nodes": {
            "check": {
                "type": "tool",
                "tool": "credit.check",
                "input": {"customer_id": "inputs.customer_id"},
                "retry": {"max_attempts": 1},
                "description": HOSTILE,
                "next": "approval",
            },
            "approval": {
                "type": "human_review",
                "title": TITLE,
                "instructions": HOSTILE,
                "description": HOSTILE,
                "show": {
                    "customer": "inputs.customer_id",
                    "note": "inputs.note",
                    "report": "steps.check.output",
                    SHORT: "inputs.details",
                },
                "overridable": {"note": {"type": "string", **text}},
                "next": "done",
            },
            "done": {"type": "output", "value": {"customer": "inputs.customer_id", "x": "inputs"}},
        },
    }


FAILING = {"input_schema": {"type": "object"}, "start": "stop", "nodes": {}}
FAILING["nodes"]["stop"] = {"type": "fail", "reason": HOSTILE, "description": HOSTILE}
INPUTS = {
    "customer_id": SHORT,
    "amount": 700000,
    "note": HOSTILE,
    "choice": SHORT,
    "details": {"html": HOSTILE, SHORT: JS_URL},
    "link": JS_URL,
    SHORT: HOSTILE,
}


# --- reading a page ------------------------------------------------------------------------
class Page(HTMLParser):
    """Every element with its attributes and ancestors, and every text with its ancestors."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements, self.texts, self._open = [], [], []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, attrs, tuple(self._open)))
        if tag not in VOID:
            self._open.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, attrs, tuple(self._open)))

    def handle_endtag(self, tag):
        for depth in range(len(self._open) - 1, -1, -1):
            if self._open[depth][0] == tag:
                del self._open[depth:]
                return

    def handle_data(self, data):
        self.texts.append((data, tuple(self._open)))

    def text(self) -> str:
        return "".join(data for data, _ in self.texts)


def injected(page: Page) -> list[str]:
    """What the payloads would have made, had anything printed them as markup."""
    problems = []
    for tag, attrs, _ in page.elements:
        if MARK in tag:
            problems.append(f"an injected <{tag}> element")
        named = dict(attrs)
        for name, value in attrs:
            value = value or ""
            bare = re.sub(r"[\s\x00-\x1f]", "", value).lower()
            if MARK in name:
                problems.append(f"an injected attribute on <{tag}>: {name}")
            elif name.startswith("on"):
                problems.append(f"an event handler on <{tag}>: {name}={value!r}")
            elif name.startswith(("hx-", "data-hx-")) and "/pwn" in value:
                problems.append(f"an injected htmx attribute on <{tag}>: {name}={value!r}")
            elif name in URL_ATTRIBUTES and bare.startswith(("javascript:", "vbscript:")):
                problems.append(f"a script URL on <{tag}>: {name}={value!r}")
        if tag == "script" and not named.get("src") and named.get("type") != "application/json":
            problems.append(f"an inline script: {attrs}")
    for data, ancestors in page.texts:
        if ancestors and ancestors[-1][0] == "script" and "<" in data:
            problems.append(f"markup inside a script: {data[:80]!r}")
    return problems


def shows(page: Page, needle: str = MARK) -> bool:
    """Whether the hostile text is on the page at all, as text or as an attribute's value."""
    values = (value or "" for _, attrs, _ in page.elements for _, value in attrs)
    return needle in page.text() or any(needle in value for value in values)


def fetch(client, url: str, method: str = "get", data=None, **headers) -> Page:
    response = getattr(client, method)(url, data or {}, **headers)
    assert response.status_code < 500, (url, response.status_code)
    return Page(response.content.decode())


# --- a world full of hostile text -----------------------------------------------------------
@dataclass
class World:
    operator: object
    reviewer: object
    procedure: object
    paused: Run
    runs: list = field(default_factory=list)


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = HOSTILE.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _deliver_hostile_webhook(run: Run) -> None:
    """A subscriber answers with hostile markup, recorded on the run's Events tab."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = WebhookEndpoint(
            url=f"http://127.0.0.1:{server.server_port}/hook",
            environment="sandbox",
            events=["run.completed"],
            description=HOSTILE[:200],
        )
        endpoint.set_secret("whsec_markup")
        endpoint.save()
        webhooks.deliver(
            endpoint_id=endpoint.pk,
            run_id=run.pk,
            delivery_id="whd_markup",
            event_type="run.completed",
            body=json.dumps({"id": "whd_markup"}),
            attempt=1,
        )
    finally:
        server.shutdown()
        server.server_close()


def _linear_deliveries(client, version) -> None:
    """One signed Linear issue with hostile fields (it starts a run), one forged delivery."""
    trigger = Trigger(
        procedure=version.procedure,
        environment="sandbox",
        kind="linear",
        name=SHORT,
        input_mapping={"customer_id": "event.data.title", "amount": "event.data.priority"},
    )
    trigger.set_signing_secret("lin_markup")
    trigger.save()
    issue = {
        "action": "create",
        "type": "Issue",
        "data": {"id": SHORT, "title": SHORT, "priority": 2, "description": HOSTILE},
        "url": JS_URL,
        "createdAt": "2026-01-05T10:00:00.000Z",
        "webhookId": SHORT,
        "webhookTimestamp": int(time.time() * 1000),
    }
    body = json.dumps(issue).encode()
    signature = hmac.new(b"lin_markup", body, hashlib.sha256).hexdigest()
    url = f"/hooks/linear/{trigger.public_id}"
    headers = {"HTTP_LINEAR_SIGNATURE": signature, "HTTP_LINEAR_DELIVERY": SHORT}
    assert client.post(url, body, "application/json", **headers).status_code == 202
    forged = HOSTILE.encode()
    client.post(url, forged, "application/json", HTTP_LINEAR_SIGNATURE=SHORT)
    assert RejectedDelivery.objects.filter(trigger=trigger).exists()


def _decide(client, review: ReviewRequest, action: str, **fields) -> None:
    # Through the page and its confirmation step, as a reviewer clicks (issue 13).
    assert decide(client, review, action, fields).status_code == 302


@pytest.fixture
def world(db):
    operator = make_user(f"op{SHORT}", OPERATORS)
    reviewer = make_user(f"rv{SHORT}", REVIEWERS)
    version = make_version(hostile_definition(), name=f"Pay {SHORT}", user=operator)
    version.procedure.description = HOSTILE
    version.procedure.save()
    failing = make_version(FAILING, name=f"Fail {SHORT}")

    def driven(inputs=INPUTS, on=version, **starter):
        started = start_run(version=on, environment="sandbox", inputs=inputs, **starter)
        engine.drive(started.pk)
        return Run.objects.get(pk=started.pk)

    manual = {"type": "manual", "user": operator}
    paused, approved, rejected, cancelled = (driven(**manual) for _ in range(4))
    transient = driven({**INPUTS, "customer_id": f"timeout{SHORT}"[:100]}, **manual)
    failed = driven({}, on=failing, **manual)
    api_key, _ = create_api_key(name=HOSTILE[:200], environment="sandbox")
    by_key = driven(type="api", api_key=api_key)
    IdempotencyRecord.objects.create(
        api_key=api_key,
        key=SHORT,
        method="POST",
        path=f"/v1/procedures/{version.procedure.public_id}/sandbox",
        request_hash="0" * 64,
        response_status=202,
        response_body={"note": HOSTILE},
    )
    reviewing = Client()
    reviewing.force_login(reviewer)
    request_of = {r.run_id: r for r in ReviewRequest.objects.all()}
    _decide(reviewing, request_of[approved.pk], "approve", comment=HOSTILE, override_note=SHORT)
    engine.drive(approved.pk)
    _decide(reviewing, request_of[rejected.pk], "reject", **{"reject-reason": HOSTILE})
    cancel_run(run=cancelled, user=operator, reason=HOSTILE)
    _deliver_hostile_webhook(Run.objects.get(pk=approved.pk))
    _linear_deliveries(Client(), version)
    connection = Connection(integration="credit", environment="live", name=SHORT)
    connection.config = {"base_url": JS_URL, "note": HOSTILE}
    connection.set_secret("sk_markup")
    connection.save()
    by_trigger = Run.objects.get(type="trigger")
    engine.drive(by_trigger.pk)
    made = [paused, approved, rejected, cancelled, transient, failed, by_key, by_trigger]
    everything = list(Run.objects.filter(pk__in=[run.pk for run in made]).order_by("pk"))
    assert Run.objects.get(pk=approved.pk).status == "completed"
    return World(operator, reviewer, version.procedure, Run.objects.get(pk=paused.pk), everything)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def tab_url(run: Run, tab: str) -> str:
    if tab == "overview":
        return reverse("runs:detail", args=[run.public_id])
    return reverse("runs:tab", args=[run.public_id, tab])


def run_pages(client, run: Run):
    """Every tab of a run, whole and as the HTMX swaps ask for them, and the integrity badge."""
    for tab in TABS:
        url = tab_url(run, tab)
        yield url, fetch(client, url)
        yield f"{url} (HTMX tabs)", fetch(client, url, **HTMX_TABS)
        yield f"{url} (HTMX page)", fetch(client, url, **HTMX)
    url = reverse("runs:integrity", args=[run.public_id])
    yield f"{url} (HTMX integrity badge)", fetch(client, url, **HTMX)


def operator_pages(world: World):
    client = logged_in(world.operator)
    procedure = world.procedure.public_id
    runs_list = reverse("runs:list")
    filters = {
        "status": ["completed", "failed", "awaiting_review"],
        "procedure": procedure,
        "environment": "sandbox",
        "type": "manual",
    }
    hostile_filters = {"status": [SHORT], "procedure": SHORT, "created_from": HOSTILE}
    yield "home", fetch(client, reverse("home"))
    yield "runs list", fetch(client, runs_list)
    yield "runs list, filtered", fetch(client, runs_list, data=filters)
    yield "runs list, filtered (HTMX)", fetch(client, runs_list, data=filters, **HTMX)
    yield "runs list, hostile filters", fetch(client, runs_list, data=hostile_filters)
    hostile_cursor = {"cursor": HOSTILE, "procedure": procedure}
    yield "runs list, hostile cursor", fetch(client, runs_list, data=hostile_cursor, **HTMX)
    for run in world.runs:
        yield from run_pages(client, run)
    yield "procedures", fetch(client, reverse("procedures:list"))
    yield "procedure", fetch(client, reverse("procedures:detail", args=[procedure]))
    start = reverse("procedures:start", args=[procedure])
    typed = {"customer_id": SHORT, "amount": HOSTILE, "note": HOSTILE, "choice": HOSTILE}
    typed.update({"details": HOSTILE, "link": JS_URL, SHORT: HOSTILE, "environment": SHORT})
    yield "Run form with errors", fetch(client, start, "post", typed)
    yield "Run form with errors (HTMX)", fetch(client, start, "post", typed, **HTMX)
    yield "not found", fetch(client, f"/runs/{quote(SHORT)}/")
    completed = next(run for run in world.runs if run.status == "completed")
    cancel = reverse("runs:cancel", args=[completed.public_id])
    yield "refused Cancel (HTMX)", fetch(client, cancel, "post", {"tab": SHORT}, **HTMX)


def reviewer_pages(world: World):
    client = logged_in(world.reviewer)
    yield "home", fetch(client, reverse("home"))
    yield "review queue", fetch(client, reverse("reviews:queue"))
    yield "sign-in security", fetch(client, reverse("account_security"))
    yield from run_pages(client, world.paused)
    review = ReviewRequest.objects.get(run=world.paused)
    approve = reverse("reviews:approve", args=[review.public_id])
    refused = {"comment": HOSTILE, "override_note": "", "tab": "inputs"}
    yield "Approve refused (HTMX)", fetch(client, approve, "post", refused, **HTMX)
    yield "Approve refused", fetch(client, approve, "post", refused)


ADMIN_MODELS = (
    ("procedures", "procedure"),
    ("procedures", "procedureversion"),
    ("procedures", "connection"),
    ("procedures", "trigger"),
    ("procedures", "triggerevent"),
    ("procedures", "rejecteddelivery"),
    ("runs", "run"),
    ("runs", "step"),
    ("runs", "runevent"),
    ("runs", "apikey"),
    ("runs", "idempotencyrecord"),
    ("runs", "webhookendpoint"),
    ("reviews", "reviewrequest"),
    ("reviews", "reviewdecision"),
    ("auth", "user"),
)


def admin_pages(admin):
    client = logged_in(admin)
    for app, name in ADMIN_MODELS:
        changelist = reverse(f"admin:{app}_{name}_changelist")
        yield name, fetch(client, changelist)
        yield name, fetch(client, changelist, data={"q": SHORT})
        for pk in apps.get_model(app, name).objects.order_by("-pk").values_list("pk", flat=True):
            change = reverse(f"admin:{app}_{name}_change", args=[pk])
            yield name, fetch(client, change)


def login_pages():
    client = Client()
    yield "login", fetch(client, reverse("login"), data={"next": HOSTILE})
    wrong = {"username": SHORT, "password": "wrong", "next": HOSTILE}
    yield "login refused", fetch(client, reverse("login"), "post", wrong)
    yield "admin login", fetch(client, reverse("admin:login"), data={"next": HOSTILE})


def shows_no_record(label: str) -> bool:
    """The answers that may show no recorded text: the integrity badge, a refused cursor, and
    a tab swapped alone (an Output tab of a cancelled run says only that it was cancelled)."""
    return any(part in label for part in ("badge", "cursor", "(HTMX tabs)"))


def assert_only_text(pages: list) -> None:
    problems = [f"{label}: {problem}" for label, page in pages for problem in injected(page)]
    assert problems == []


# --- the pages ------------------------------------------------------------------------------
def test_the_check_finds_every_payload_printed_as_markup_and_none_escaped():
    for payload in PAYLOADS:
        if "{{" in payload:
            continue  # template syntax is no markup: it must simply never be evaluated
        contexts = (f"<p>{payload}</p>", f'<input value="{payload}">', f"<i title='{payload}'>")
        assert any(injected(Page(html)) for html in contexts), payload
        escaped = (html.replace(payload, escape(payload)) for html in contexts)
        assert not any(injected(Page(html)) for html in escaped), payload


def test_an_operator_sees_hostile_text_as_text_on_every_dashboard_page(world):
    pages = list(operator_pages(world))
    assert_only_text(pages)
    # Each page showed the hostile text, so the check above looked at it.
    assert [label for label, page in pages if not shows(page) and not shows_no_record(label)] == []


def test_recorded_values_are_printed_as_they_were_recorded(world):
    client = logged_in(world.operator)
    inputs = fetch(client, tab_url(world.paused, "inputs")).text()
    assert HOSTILE in inputs and JS_URL in inputs
    procedure = fetch(client, reverse("procedures:detail", args=[world.procedure.public_id]))
    assert "{{ pwn }}{% now 'Y' %}" in procedure.text()  # never evaluated as a template


def test_a_reviewer_sees_hostile_text_as_text_on_the_queue_and_the_review_panel(world):
    pages = list(reviewer_pages(world))
    assert_only_text(pages)
    assert [label for label, page in pages if not shows(page) and not shows_no_record(label)] == []


def test_admin_pages_show_hostile_text_as_text(world, admin_user):
    pages = list(admin_pages(admin_user))
    assert_only_text(pages)
    # Each model's pages showed the hostile text somewhere (its list or a record).
    assert {name for name, page in pages if shows(page)} == {name for _, name in ADMIN_MODELS}


def test_the_login_pages_show_what_was_typed_as_text(db):
    pages = list(login_pages())
    assert_only_text(pages)
    assert all(shows(page) for _, page in pages)


# --- htmx and the CSP -----------------------------------------------------------------------
def _has(attrs, name: str) -> bool:
    return any(attr == name for attr, _ in attrs)


def _classes(attrs) -> list[str]:
    return (dict(attrs).get("class") or "").split()


def _inside(ancestors, tag: str, css_class: str) -> bool:
    return any(t == tag and css_class in _classes(attrs) for t, attrs in ancestors)


def _disabled(ancestors) -> bool:
    return any(_has(attrs, "hx-disable") for _, attrs in ancestors)


def test_htmx_runs_without_eval_script_tags_or_cross_origin_requests(client, operator):
    client.force_login(operator)
    page = fetch(client, reverse("home"))
    [config] = [dict(a)["content"] for t, a, _ in page.elements if ("name", "htmx-config") in a]
    config = json.loads(config)
    assert config["allowEval"] is False
    assert config["allowScriptTags"] is False
    assert config["selfRequestsOnly"] is True


def test_recorded_data_on_run_pages_is_shown_inside_hx_disable(world):
    client = logged_in(world.operator)
    for run in world.runs:
        for tab in TABS:
            page = fetch(client, tab_url(run, tab))
            exposed = [
                data
                for data, ancestors in page.texts
                if MARK in data and _inside(ancestors, "div", "tab-panel")
                if not _disabled(ancestors)
            ]
            assert exposed == [], (run.public_id, tab)


def test_what_the_reviewer_is_shown_is_inside_hx_disable(world):
    client = logged_in(world.reviewer)
    page = fetch(client, reverse("runs:detail", args=[world.paused.public_id]))
    exposed = [
        data
        for data, ancestors in page.texts
        if MARK in data and _inside(ancestors, "section", "review-panel")
        if not _disabled(ancestors) and not any(tag == "form" for tag, _ in ancestors)
    ]
    assert exposed == []
    shown = [
        a for t, a, up in page.elements if t == "table" and _inside(up, "section", "review-panel")
    ]
    assert shown and all(_has(attrs, "hx-disable") for attrs in shown)
    queue = fetch(client, reverse("reviews:queue"))
    cells = [a for t, a, _ in queue.elements if t == "td" and ("data-label", "Key values") in a]
    assert cells and all(_has(attrs, "hx-disable") for attrs in cells)


def test_a_procedures_definition_is_shown_inside_hx_disable(world):
    client = logged_in(world.operator)
    page = fetch(client, reverse("procedures:detail", args=[world.procedure.public_id]))
    [versions] = [a for t, a, _ in page.elements if "procedure-versions" in _classes(a)]
    assert _has(versions, "hx-disable")


def test_the_pages_own_htmx_controls_are_never_inside_hx_disable(world):
    pages = [*operator_pages(world), *reviewer_pages(world)]
    dead = [
        (label, tag, attrs)
        for label, page in pages
        for tag, attrs, ancestors in page.elements
        if any(name.startswith("hx-") and name != "hx-disable" for name, _ in attrs)
        if _disabled(ancestors)
    ]
    assert dead == []


def test_pages_keep_the_strict_content_security_policy(world, admin_user):
    urls = [reverse("home"), tab_url(world.paused, "inputs"), reverse("procedures:list")]
    for user, url in [(world.operator, u) for u in urls] + [(admin_user, "/admin/runs/run/")]:
        policy = logged_in(user).get(url)["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
        assert directives["script-src"] == "'self'", url
        assert directives["default-src"] == "'self'"
        assert directives["object-src"] == "'none'" and directives["base-uri"] == "'self'"
