"""Who may see what: every dashboard URL, Django admin's run records and every API read, for
each kind of user (or API key), against the table of what each may see.

The rule (rapidfolio.roles, runs.selectors.visible_runs): Operators and Reviewers see sandbox
runs; "Live environment" adds live runs; a user in no group sees no run (run pages are a 403);
a superuser sees everything. A run the user may not see answers exactly what an unknown id
answers (404), byte for byte but the id typed, so nobody learns that it exists. An API key sees
its own environment's runs only, with the same rule.

Each user's test walks the whole table against one set of runs and reports every cell that
disagrees, so one run shows all that is wrong, not only the first.
"""

import re
from dataclasses import dataclass
from urllib.parse import urlparse

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import TestCase
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from procedures.models import Procedure
from rapidfolio import ids
from rapidfolio.api import api as api_root
from rapidfolio.roles import LIVE_ENVIRONMENT, OPERATORS, REVIEWERS
from reviews.models import ReviewRequest
from runs import engine, ledger
from runs.api_keys import create_api_key
from runs.models import Run
from runs.services import start_run
from runs.views import change_token
from tests.conftest import REVIEWED_DEFINITION, SIMPLE_DEFINITION, make_user, make_version

START_FORM = {"amount": "700", "currency": "usd"}

# --- the people and what the table says they may see and do ----------------------------------
USERS = [
    "anonymous",
    "nobody",  # logged in, in no group
    "operator",  # Operators: sandbox only
    "live_operator",  # Operators + Live environment
    "reviewer",  # Reviewers: sandbox only
    "live_reviewer",  # Reviewers + Live environment
    "staff",  # staff (Django admin), Operators + Reviewers, sandbox only
    "admin",  # superuser
]
SEES = {
    "anonymous": (),
    "nobody": (),
    "operator": ("sandbox",),
    "live_operator": ("sandbox", "live"),
    "reviewer": ("sandbox",),
    "live_reviewer": ("sandbox", "live"),
    "staff": ("sandbox",),
    "admin": ("sandbox", "live"),
}
OPERATES = {"operator", "live_operator", "staff", "admin"}  # start, cancel, retry
DECIDES = {"reviewer", "live_reviewer", "staff", "admin"}
IN_ADMIN = {"staff", "admin"}
LOGIN = "302 /login/"
ADMIN_LOGIN = "302 /admin/login/"


def make_person(kind: str) -> User | None:
    if kind == "anonymous":
        return None
    groups = {
        "nobody": [],
        "operator": [OPERATORS],
        "live_operator": [OPERATORS, LIVE_ENVIRONMENT],
        "reviewer": [REVIEWERS],
        "live_reviewer": [REVIEWERS, LIVE_ENVIRONMENT],
        "staff": [OPERATORS, REVIEWERS],
        "admin": [],
    }[kind]
    user = make_user(kind, *groups, staff=kind in IN_ADMIN)
    if kind == "admin":
        user.is_superuser = True
        user.save()
    return user


# --- the runs everyone is asked about ------------------------------------------------------------
@dataclass
class World:
    runs: dict  # "sandbox_done", "live_done" (completed, sealed), "sandbox_paused", "live_paused"
    reviews: dict  # "sandbox", "live": the paused runs' review requests
    simple: Procedure
    reviewed: Procedure
    unknown_run: str
    unknown_review: str

    def run_ids(self, keys) -> str:
        return ",".join(sorted(keys)) or "-"

    def shown(self, body: str, keys=None) -> str:
        """Which of the world's runs a page shows (by public id), as a sorted list of keys."""
        keys = self.runs if keys is None else keys
        return self.run_ids(key for key in keys if self.runs[key].public_id in body)


def _run(version, environment: str, inputs: dict) -> Run:
    run = start_run(version=version, environment=environment, inputs=inputs, type="api")
    engine.drive(run.pk)
    return Run.objects.get(pk=run.pk)


def build_world() -> World:
    simple = make_version(SIMPLE_DEFINITION, name="Classify payment")
    reviewed = make_version(REVIEWED_DEFINITION, name="Pay supplier")
    runs = {}
    for environment in ("sandbox", "live"):
        runs[f"{environment}_done"] = _run(simple, environment, {"amount": 5, "currency": "usd"})
        runs[f"{environment}_paused"] = _run(reviewed, environment, {"amount": 9, "payee": "Ac"})
    assert [run.status for run in runs.values()] == ["completed", "awaiting_review"] * 2
    with TestCase.captureOnCommitCallbacks(execute=True):
        while ledger.seal() is not None:  # the evidence download needs the runs sealed
            pass
    reviews = {
        environment: ReviewRequest.objects.get(run=runs[f"{environment}_paused"])
        for environment in ("sandbox", "live")
    }
    return World(
        runs=runs,
        reviews=reviews,
        simple=simple.procedure,
        reviewed=reviewed.procedure,
        unknown_run=ids.run_id(),
        unknown_review=ids.review_id(),
    )


# --- the dashboard's table ---------------------------------------------------------------------
@dataclass
class Target:
    """One URL asked in one way; `expect(user)` is what the table says it answers."""

    label: str
    url_name: str
    method: str
    path: object  # world -> path
    expect: object  # (user kind, world) -> outcome
    data: object = None  # world -> POST data
    headers: object = None  # world -> extra request headers
    shows: object = None  # (world, body) -> what a 200 page shows, or None


HTMX = {"HTTP_HX_REQUEST": "true"}


def run_rule(environment: str, allowed: str):
    """A page about one run: the 403 for a user who sees no run at all, the 404 of an unknown
    id for a run of an environment the user may not see, else `allowed`."""

    def expect(user, world):
        if user == "anonymous":
            return LOGIN
        if not SEES[user]:
            return "403"
        return allowed if environment in SEES[user] else "404"

    return expect


def action_rule(environment: str, doers: set, allowed: str):
    """An action on one run: as a page, then a 403 for a user whose role may not do it."""
    page = run_rule(environment, allowed)

    def expect(user, world):
        outcome = page(user, world)
        if outcome == allowed and user not in doers:
            return "403"
        return outcome

    return expect


def list_rule(keys_of):
    """A page listing runs: the runs it shows are those the user may see among `keys_of`."""

    def expect(user, world):
        if user == "anonymous":
            return LOGIN
        if not SEES[user]:
            return "403"
        keys = [key for key in keys_of(user) if world.runs[key].environment in SEES[user]]
        return f"200 {world.run_ids(keys)}"

    return expect


def run_path(key: str, name: str, *extra):
    return lambda world: reverse(name, args=[world.runs[key].public_id, *extra])


def review_path(environment: str, name: str):
    return lambda world: reverse(name, args=[world.reviews[environment].public_id])


ALL_RUNS = ["sandbox_done", "sandbox_paused", "live_done", "live_paused"]
PAUSED = ["sandbox_paused", "live_paused"]


def run_targets(key: str) -> list[Target]:
    environment = key.split("_")[0]
    on = f"{key} run"
    targets = [
        Target(f"run page, {on}", "runs:detail", "GET", run_path(key, "runs:detail"), None),
        *[
            Target(f"{tab} tab, {on}", "runs:tab", "GET", run_path(key, "runs:tab", tab), None)
            for tab in ("inputs", "step-log", "output", "events")
        ],
        Target(
            f"tab swap, {on}",
            "runs:detail",
            "GET",
            run_path(key, "runs:detail"),
            None,
            headers=lambda world: {**HTMX, "HTTP_HX_TARGET": "run-tabs"},
        ),
        Target(
            f"poll with nothing new (204), {on}",
            "runs:detail",
            "GET",
            lambda world: (
                reverse("runs:detail", args=[world.runs[key].public_id])
                + f"?seen={change_token(world.runs[key])}"
            ),
            run_rule(environment, "204"),
            headers=lambda world: HTMX,
        ),
        Target(
            f"integrity page, {on}", "runs:integrity", "GET", run_path(key, "runs:integrity"), None
        ),
        Target(
            f"integrity badge partial, {on}",
            "runs:integrity",
            "GET",
            run_path(key, "runs:integrity"),
            None,
            headers=lambda world: HTMX,
        ),
        Target(
            f"evidence.json, {on}", "runs:evidence", "GET", run_path(key, "runs:evidence"), None
        ),
        # The run's row of the Runs list, which polls it while it is under way.
        Target(
            f"list row partial, {on}",
            "runs:row",
            "GET",
            run_path(key, "runs:row"),
            None,
            headers=lambda world: HTMX,
        ),
        Target(
            f"list row without htmx, {on}",
            "runs:row",
            "GET",
            run_path(key, "runs:row"),
            run_rule(environment, "302 /runs/<run>/"),
        ),
        # Completed runs: whoever may act on them is told why not (409), nothing changes.
        Target(
            f"cancel, {on}",
            "runs:cancel",
            "POST",
            run_path(key, "runs:cancel"),
            action_rule(environment, OPERATES, "409"),
            headers=lambda world: HTMX,
        ),
        Target(
            f"retry, {on}",
            "runs:retry",
            "POST",
            run_path(key, "runs:retry"),
            action_rule(environment, OPERATES, "409"),
            headers=lambda world: HTMX,
        ),
    ]
    for target in targets:
        target.expect = target.expect or run_rule(environment, "200")
    return targets


def review_targets(environment: str) -> list[Target]:
    key = f"{environment}_paused"
    return [
        Target(
            f"run page with the review panel, {key} run",
            "runs:detail",
            "GET",
            run_path(key, "runs:detail"),
            run_rule(environment, "200"),
        ),
        # Invalid decisions (an override below its minimum, an over-long comment): whoever may
        # decide gets the form's errors (422) and nothing is recorded.
        Target(
            f"approve, {environment} review",
            "reviews:approve",
            "POST",
            review_path(environment, "reviews:approve"),
            action_rule(environment, DECIDES, "422"),
            data=lambda world: {"override_amount": "0"},
            headers=lambda world: HTMX,
        ),
        Target(
            f"reject, {environment} review",
            "reviews:reject",
            "POST",
            review_path(environment, "reviews:reject"),
            action_rule(environment, DECIDES, "422"),
            data=lambda world: {"comment": "x" * 5001},
            headers=lambda world: HTMX,
        ),
    ]


def unknown_targets() -> list[Target]:
    def unknown(user, world):
        return LOGIN if user == "anonymous" else ("403" if not SEES[user] else "404")

    return [
        Target(
            "run page, unknown id",
            "runs:detail",
            "GET",
            lambda world: reverse("runs:detail", args=[world.unknown_run]),
            unknown,
        ),
        Target(
            "approve, unknown review",
            "reviews:approve",
            "POST",
            lambda world: reverse("reviews:approve", args=[world.unknown_review]),
            unknown,
        ),
    ]


def home_expect(user, world):
    if user == "anonymous":
        return LOGIN
    keys = [key for key in ALL_RUNS if world.runs[key].environment in SEES[user]]
    return f"200 {world.run_ids(keys)}"


def status_rule(allowed: str, who=lambda user: bool(SEES[user])):
    def expect(user, world):
        if user == "anonymous":
            return LOGIN
        return allowed if who(user) else "403"

    return expect


def start_rule(environment: str):
    def expect(user, world):
        if user == "anonymous":
            return LOGIN
        if user not in OPERATES:
            return "403"  # no group, or Reviewers: they may not start runs
        if environment not in SEES[user]:
            return "422"  # live is not offered to a sandbox-only operator: the field's error
        # A sandbox run starts; a live one first asks to confirm what it will do (200).
        return "302 /runs/<run>/" if environment == "sandbox" else "200"

    return expect


def shows_runs(world, body):
    return world.shown(body)


def list_targets() -> list[Target]:
    return [
        Target("home", "home", "GET", lambda world: reverse("home"), home_expect, shows=shows_runs),
        Target(
            "runs list",
            "runs:list",
            "GET",
            lambda world: reverse("runs:list"),
            list_rule(lambda user: ALL_RUNS),
            shows=shows_runs,
        ),
        Target(
            "runs list, filtered to live, swapped table",
            "runs:list",
            "GET",
            lambda world: reverse("runs:list") + "?environment=live",
            list_rule(lambda user: ["live_done", "live_paused"]),
            headers=lambda world: HTMX,
            shows=shows_runs,
        ),
        # The list's exports hold what the list shows: every run the user may see.
        *[
            Target(
                f"runs list export, {name}",
                f"runs:export_{name}",
                "GET",
                lambda world, name=name: reverse(f"runs:export_{name}"),
                list_rule(lambda user: ALL_RUNS),
                shows=shows_runs,
            )
            for name in ("csv", "jsonl")
        ],
        Target(
            "review queue",
            "reviews:queue",
            "GET",
            lambda world: reverse("reviews:queue"),
            list_rule(lambda user: PAUSED if user in DECIDES else []),
            shows=shows_runs,
        ),
        Target(
            "procedures list",
            "procedures:list",
            "GET",
            lambda world: reverse("procedures:list"),
            status_rule("200"),
        ),
        Target(
            "procedure page with its recent runs",
            "procedures:detail",
            "GET",
            lambda world: reverse("procedures:detail", args=[world.reviewed.public_id]),
            list_rule(lambda user: PAUSED),
            shows=shows_runs,
        ),
    ]


def start_targets() -> list[Target]:
    # Last in the table: a started run would show on the lists above.
    return [
        Target(
            f"start a {environment} run",
            "procedures:start",
            "POST",
            lambda world: reverse("procedures:start", args=[world.simple.public_id]),
            start_rule(environment),
            data=lambda world, environment=environment: {
                **START_FORM,
                "environment": environment,
            },
        )
        for environment in ("sandbox", "live")
    ]


def admin_targets() -> list[Target]:
    def admin_rule(allowed_for):
        def expect(user, world):
            if user not in IN_ADMIN:
                return ADMIN_LOGIN
            return allowed_for(user, world)

        return expect

    def change(key):
        environment = world_environment(key)
        return admin_rule(lambda user, world: "200" if environment in SEES[user] else "302 /admin/")

    def listed(keys):
        return admin_rule(
            lambda user, world: (
                "200 " + world.run_ids(k for k in keys if world.runs[k].environment in SEES[user])
            )
        )

    return [
        Target(
            "admin: runs",
            "admin",
            "GET",
            lambda world: reverse("admin:runs_run_changelist"),
            listed(ALL_RUNS),
            shows=shows_runs,
        ),
        *[
            Target(
                f"admin: {key} run",
                "admin",
                "GET",
                lambda world, key=key: reverse("admin:runs_run_change", args=[world.runs[key].pk]),
                change(key),
            )
            for key in ("sandbox_done", "live_done")
        ],
        Target(
            "admin: review requests",
            "admin",
            "GET",
            lambda world: reverse("admin:reviews_reviewrequest_changelist"),
            listed(PAUSED),
            shows=shows_runs,
        ),
    ]


def world_environment(key: str) -> str:
    return key.split("_")[0]


DASHBOARD = [
    *list_targets(),
    *[target for key in ALL_RUNS if key.endswith("_done") for target in run_targets(key)],
    *review_targets("sandbox"),
    *review_targets("live"),
    *unknown_targets(),
    *admin_targets(),
    *start_targets(),
]


def outcome(response, target: Target, world: World) -> str:
    status = str(response.status_code)
    if response.status_code in (301, 302):
        location = urlparse(response["Location"]).path
        return f"{status} {re.sub(r'/runs/run_[0-9a-z]+/', '/runs/<run>/', location)}"
    if response.status_code == 200 and target.shows is not None:
        # An export is streamed: its rows are read as a client reads them.
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return f"{status} {target.shows(world, body.decode())}"
    return status


def ask(client, target: Target, world: World):
    path = target.path(world)
    headers = target.headers(world) if target.headers else {}
    if target.method == "POST":
        return client.post(path, target.data(world) if target.data else {}, **headers)
    return client.get(path, **headers)


def wrong_cells(client, user: str, world: World, table) -> list[str]:
    wrong = []
    for target in table:
        expected = target.expect(user, world)
        got = outcome(ask(client, target, world), target, world)
        if got != expected:
            wrong.append(f"{user} / {target.label}: expected {expected}, got {got}")
    return wrong


@pytest.mark.parametrize("user", USERS)
def test_every_dashboard_url_answers_each_user_as_the_table_says(client, db, user):
    world = build_world()
    person = make_person(user)
    if person is not None:
        client.force_login(person)
    wrong = wrong_cells(client, user, world, DASHBOARD)
    assert not wrong, f"{len(wrong)} of {len(DASHBOARD)} cells wrong:\n" + "\n".join(wrong)


def test_asking_the_table_changes_no_run(client, db):
    """The table's actions on runs are all refused or invalid, so each cell sees the same runs
    (only the Run buttons, last, start new ones)."""
    world = build_world()
    client.force_login(make_person("admin"))
    before = {key: run.status for key, run in world.runs.items()}
    wrong_cells(client, "admin", world, [t for t in DASHBOARD if t.url_name != "procedures:start"])
    after = {key: Run.objects.get(pk=run.pk).status for key, run in world.runs.items()}
    assert after == before
    assert not ReviewRequest.objects.filter(decisions__isnull=False).exists()


def dashboard_url_names() -> set[str]:
    """Every named URL of the dashboard: the home page and the runs, reviews and procedures
    namespaces (the pages to sign in and out show no run; webhook receivers, the API and admin
    have their own tables or tests)."""
    names = set()
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLPattern) and entry.name == "home":
            names.add(entry.name)
        elif isinstance(entry, URLResolver) and entry.namespace in (
            "runs",
            "reviews",
            "procedures",
        ):
            names.update(f"{entry.namespace}:{p.name}" for p in entry.url_patterns)
    return names


def test_the_table_covers_every_dashboard_url():
    covered = {target.url_name for target in DASHBOARD} - {"admin"}
    assert dashboard_url_names() == covered


# --- the same 404 for a run one may not see as for no run at all -------------------------------
CSRF_TOKEN = re.compile(r"[A-Za-z0-9]{64}")


def normalised(response, typed_id: str) -> tuple:
    """Status, headers and body, with the id the client typed and what is new in every
    response (the CSRF mask, the request id) taken out: all that may differ between two
    answers that reveal the same."""
    body = CSRF_TOKEN.sub("<csrf>", response.content.decode()).replace(typed_id, "<id>")
    headers = {
        name: value.replace(typed_id, "<id>")
        for name, value in response.headers.items()
        if name != "X-Request-ID"
    }
    return response.status_code, headers, body


HIDDEN_PATHS = {
    "run page": lambda run_id: reverse("runs:detail", args=[run_id]),
    "events tab": lambda run_id: reverse("runs:tab", args=[run_id, "events"]),
    "integrity badge": lambda run_id: reverse("runs:integrity", args=[run_id]),
    "evidence.json": lambda run_id: reverse("runs:evidence", args=[run_id]),
    "list row": lambda run_id: reverse("runs:row", args=[run_id]),
    "cancel": lambda run_id: reverse("runs:cancel", args=[run_id]),
    "retry": lambda run_id: reverse("runs:retry", args=[run_id]),
}


@pytest.mark.parametrize("user", ["operator", "reviewer", "staff"])
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_a_live_run_is_the_same_404_as_an_unknown_id_to_a_sandbox_only_user(client, db, user, htmx):
    world = build_world()
    client.force_login(make_person(user))
    live, unknown = world.runs["live_done"].public_id, world.unknown_run
    headers = HTMX if htmx else {}
    for name, path in HIDDEN_PATHS.items():
        method = client.post if name in ("cancel", "retry") else client.get
        hidden = method(path(live), **headers)
        missing = method(path(unknown), **headers)
        assert hidden.status_code == 404, name
        assert normalised(hidden, live) == normalised(missing, unknown), name
    review, unknown_review = world.reviews["live"].public_id, world.unknown_review
    hidden = client.post(reverse("reviews:approve", args=[review]), **headers)
    missing = client.post(reverse("reviews:approve", args=[unknown_review]), **headers)
    assert hidden.status_code == 404
    assert normalised(hidden, review) == normalised(missing, unknown_review)


def test_a_user_in_no_group_is_told_why_on_a_403(client, db):
    build_world()
    client.force_login(make_person("nobody"))
    response = client.get(reverse("runs:list"))
    assert response.status_code == 403
    assert "Ask an administrator for the Operators or Reviewers role." in response.content.decode()
    home = client.get(reverse("home")).content.decode()
    assert "Your account may not see runs yet." in home


@pytest.mark.parametrize(("user", "waiting"), [("reviewer", 1), ("live_reviewer", 2)])
def test_the_nav_count_counts_only_reviews_of_runs_the_reviewer_may_see(client, db, user, waiting):
    build_world()
    client.force_login(make_person(user))
    page = client.get(reverse("runs:list")).content.decode()
    assert f'title="{waiting} waiting for your decision"' in page


def test_the_demo_people_still_see_every_run_of_both_environments(client, db):
    call_command("seed_demo", verbosity=0)
    every_run = set(Run.objects.values_list("public_id", flat=True))
    assert Run.objects.filter(environment="live").exists()
    for username in ("operator", "reviewer", "controller", "admin"):
        client.force_login(User.objects.get(username=username))
        page = client.get(reverse("runs:list")).content.decode()
        assert {run_id for run_id in every_run if run_id in page} == every_run, username


# --- the API ----------------------------------------------------------------------------------
KEYS = ["no key", "sandbox key", "live key"]


@dataclass
class ApiTarget:
    label: str
    method: str
    route: str  # as the OpenAPI document names it
    path: object  # world -> path
    expect: object  # (key kind, world) -> outcome
    shows: bool = False


RUN_ROUTE = "/v1/runs/{run_id}"


def api_run_rule(key: str, allowed: str):
    environment = world_environment(key)

    def expect(kind, world):
        if kind == "no key":
            return "401"
        return allowed if kind.startswith(environment) else "404 not_found"

    return expect


def api_targets() -> list[ApiTarget]:
    targets = []
    for key in ("sandbox_done", "live_done", "sandbox_paused", "live_paused"):
        done = key.endswith("_done")
        targets += [
            ApiTarget(
                f"GET run, {key}",
                "GET",
                RUN_ROUTE,
                lambda world, key=key: f"/v1/runs/{world.runs[key].public_id}",
                api_run_rule(key, "200"),
            ),
            ApiTarget(
                f"GET evidence, {key}",
                "GET",
                RUN_ROUTE + "/evidence",
                lambda world, key=key: f"/v1/runs/{world.runs[key].public_id}/evidence",
                api_run_rule(key, "200"),
            ),
            ApiTarget(
                f"POST cancel, {key}",
                "POST",
                RUN_ROUTE + "/cancel",
                lambda world, key=key: f"/v1/runs/{world.runs[key].public_id}/cancel",
                # A paused run is cancelled: last, so that nothing above sees it changed.
                api_run_rule(key, "409 cancel_not_allowed" if done else "200"),
            ),
            ApiTarget(
                f"POST retry, {key}",
                "POST",
                RUN_ROUTE + "/retry",
                lambda world, key=key: f"/v1/runs/{world.runs[key].public_id}/retry",
                api_run_rule(key, "409 retry_not_allowed"),
            ),
        ]

    def list_expect(environment_filter):
        def expect(kind, world):
            if kind == "no key":
                return "401"
            environment = kind.split()[0]
            if environment_filter not in (None, environment):
                return "403 wrong_environment"
            return "200 " + world.run_ids(
                k for k in ALL_RUNS if world.runs[k].environment == environment
            )

        return expect

    unknown = lambda kind, world: "401" if kind == "no key" else "404 not_found"  # noqa: E731
    # The paused runs' cancels come last, so every read above finds them paused.
    targets.sort(key=lambda t: t.label.startswith("POST cancel") and "paused" in t.label)
    return [
        ApiTarget(
            "GET runs", "GET", "/v1/runs", lambda world: "/v1/runs", list_expect(None), shows=True
        ),
        ApiTarget(
            "GET runs?environment=sandbox",
            "GET",
            "/v1/runs",
            lambda world: "/v1/runs?environment=sandbox",
            list_expect("sandbox"),
            shows=True,
        ),
        ApiTarget(
            "GET run, unknown id",
            "GET",
            RUN_ROUTE,
            lambda world: f"/v1/runs/{world.unknown_run}",
            unknown,
        ),
        ApiTarget(
            "GET evidence, unknown id",
            "GET",
            RUN_ROUTE + "/evidence",
            lambda world: f"/v1/runs/{world.unknown_run}/evidence",
            unknown,
        ),
        *targets,
    ]


API = api_targets()


def api_outcome(response, target: ApiTarget, world: World) -> str:
    status = str(response.status_code)
    if response.status_code == 401:
        return status
    body = response.json()
    if response.status_code >= 400:
        return f"{status} {body['error']['code']}"
    if target.shows:
        return f"{status} {world.shown(' '.join(run['id'] for run in body['runs']))}"
    return status


@pytest.mark.parametrize("kind", KEYS)
def test_every_api_read_answers_each_key_as_the_table_says(client, db, kind):
    world = build_world()
    headers = {}
    if kind != "no key":
        _, raw = create_api_key(name=kind, environment=kind.split()[0])
        headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    wrong = []
    for target in API:
        method = client.post if target.method == "POST" else client.get
        got = api_outcome(method(target.path(world), **headers), target, world)
        expected = target.expect(kind, world)
        if got != expected:
            wrong.append(f"{kind} / {target.label}: expected {expected}, got {got}")
    assert not wrong, f"{len(wrong)} of {len(API)} cells wrong:\n" + "\n".join(wrong)


def test_the_api_table_covers_every_run_endpoint(db):
    paths = api_root.get_openapi_schema()["paths"]
    documented = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/v1/runs")
        for method in operations
    }
    assert documented == {(target.method, target.route) for target in API}


@pytest.mark.parametrize("what", ["", "/evidence", "/cancel", "/retry"])
def test_another_environments_run_is_the_same_404_as_an_unknown_id_to_an_api_key(client, db, what):
    world = build_world()
    _, raw = create_api_key(name="Billing", environment="sandbox")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    method = client.post if what in ("/cancel", "/retry") else client.get
    live, unknown = world.runs["live_done"].public_id, world.unknown_run
    hidden = method(f"/v1/runs/{live}{what}", **headers)
    missing = method(f"/v1/runs/{unknown}{what}", **headers)
    assert hidden.status_code == 404
    assert normalised(hidden, live) == normalised(missing, unknown)
    assert Run.objects.get(public_id=live).status == "completed"
