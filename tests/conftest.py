"""Shared fixtures. Tests use the real database and the real broker: SQLite and the in-memory
StubBroker on the embedded run, PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set."""

import io
import os

import dramatiq
import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import connection
from django.db.backends.base.operations import BaseDatabaseOperations

from procedures.models import Procedure, ProcedureVersion
from rapidfolio import broker as embedded
from rapidfolio.roles import LIVE_ENVIRONMENT, OPERATORS, REVIEWERS
from runs import engine
from runs.append_only import allow_purge, purge_sql
from runs.integrity import verify_run
from runs.services import start_run

if os.environ.get("RAPIDFOLIO_REQUIRE_SERVICES") and not (
    settings.DATABASE_IS_POSTGRES and settings.REDIS_URL
):
    # CI's second run must exercise PostgreSQL and Redis; never let it pass by skipping them.
    pytest.exit(
        "RAPIDFOLIO_REQUIRE_SERVICES is set but DATABASE_URL and REDIS_URL do not select "
        "PostgreSQL and Redis",
        returncode=2,
    )

# Test users' passwords: PBKDF2's 1.2 million iterations were most of the suite's time; the
# hasher is not what the tests are about (healthchecks' test settings do the same).
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

needs_postgres = pytest.mark.skipif(
    not settings.DATABASE_IS_POSTGRES, reason="needs PostgreSQL (DATABASE_URL)"
)
needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (REDIS_URL)")

# The test flush between transactional tests must empty append-only tables: on SQLite that is a
# DELETE the triggers refuse unless this process says so, on PostgreSQL a TRUNCATE they refuse
# unless the flush's transaction says so and we own the tables (see runs.append_only).
_original_flush = BaseDatabaseOperations.execute_sql_flush


def _flush_allowing_purge(self, sql_list):
    with allow_purge():
        return _original_flush(self, purge_sql(self.connection.vendor, sql_list))


BaseDatabaseOperations.execute_sql_flush = _flush_allowing_purge


def pytest_report_header(config):
    return (
        f"rapidfolio: database={settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]} "
        f"broker={settings.DRAMATIQ_BROKER['BROKER'].rsplit('.', 1)[-1]}"
    )


@pytest.fixture(scope="session", autouse=True)
def _empty_broker():
    dramatiq.get_broker().flush_all()
    yield
    dramatiq.get_broker().flush_all()


# --- people ---------------------------------------------------------------------------------
def make_user(username: str, *groups: str, staff: bool = False) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "correct-horse-42")
    user.is_staff = staff
    user.save()
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    return user


@pytest.fixture
def client():
    """pytest-django's client, routed as production routes requests: the API's paths through
    the API's own middleware stack (rapidfolio/handlers.py)."""
    from rapidfolio.test_client import Client

    return Client()


@pytest.fixture
def operator(db):
    return make_user("olivia", OPERATORS)


@pytest.fixture
def live_operator(db):
    """An operator who may also see and start live runs."""
    return make_user("lena", OPERATORS, LIVE_ENVIRONMENT)


@pytest.fixture
def second_operator(db):
    return make_user("oscar", OPERATORS)


@pytest.fixture
def reviewer(db):
    return make_user("rita", REVIEWERS)


@pytest.fixture
def second_reviewer(db):
    return make_user("ravi", REVIEWERS)


@pytest.fixture
def operator_reviewer(db):
    return make_user("paula", OPERATORS, REVIEWERS)


@pytest.fixture
def admin_user(db):
    user = make_user("ada", staff=True)
    user.is_superuser = True
    user.save()
    return user


# --- procedures -----------------------------------------------------------------------------
def make_version(definition: dict, name: str = "Pay invoice", user=None) -> ProcedureVersion:
    procedure, _ = Procedure.objects.get_or_create(name=name, defaults={"description": name})
    number = (
        procedure.versions.order_by("-number").values_list("number", flat=True).first() or 0
    ) + 1
    return ProcedureVersion.objects.create(
        procedure=procedure, number=number, definition=definition, created_by=user
    )


# A one-review procedure: the reviewer sees the amount and payee and may override the amount.
REVIEWED_DEFINITION = {
    "input_schema": {
        "type": "object",
        "properties": {"amount": {"type": "integer"}, "payee": {"type": "string"}},
        "required": ["amount", "payee"],
    },
    "start": "check",
    "nodes": {
        "check": {
            "type": "human_review",
            "title": "Check the payment",
            "show": {"amount": "inputs.amount", "payee": "inputs.payee"},
            "overridable": {"amount": {"type": "integer", "minimum": 1}},
            "next": "done",
        },
        "done": {"type": "output", "value": {"paid": "steps.check.output.amount"}},
    },
}


SIMPLE_DEFINITION = {
    "input_schema": {
        "type": "object",
        "properties": {
            "amount": {"type": "integer", "minimum": 1},
            "currency": {"type": "string", "enum": ["usd", "eur"]},
        },
        "required": ["amount", "currency"],
        "additionalProperties": False,
    },
    "start": "big",
    "nodes": {
        "big": {
            "type": "condition",
            "expression": "inputs.amount > 1000",
            "then": "big_out",
            "else": "small_out",
        },
        "big_out": {"type": "output", "value": {"size": "'big'", "amount": "inputs.amount"}},
        "small_out": {"type": "output", "value": {"size": "'small'", "amount": "inputs.amount"}},
    },
}


@pytest.fixture
def simple_version(db):
    return make_version(SIMPLE_DEFINITION, name="Classify payment")


@pytest.fixture
def finished_run(simple_version):
    """A run of the simple procedure, completed by the engine, its record intact."""
    run = start_run(
        version=simple_version,
        environment="sandbox",
        inputs={"amount": 5000, "currency": "usd"},
        type="api",
    )
    engine.drive(run.pk)
    run.refresh_from_db()
    assert run.status == "completed" and verify_run(run).intact
    return run


# --- the runtime database role (PostgreSQL) ---------------------------------------------
def _runtime_role_name() -> str:
    # Roles are the cluster's, not the database's: one per test database, so that concurrent
    # test sessions (other databases, xdist workers) never share or drop each other's.
    return f"rapidfolio_test_runtime_{connection.settings_dict['NAME']}"[:63]


def _drop_role(cursor, role: str) -> None:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
    if cursor.fetchone():
        cursor.execute(f'DROP OWNED BY "{role}"')  # its grants in this database
        cursor.execute(f'DROP ROLE "{role}"')


@pytest.fixture(scope="session")
def runtime_role(django_db_setup, django_db_blocker):
    """A plain login role with the grants `grant_runtime_role` gives, committed."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    with django_db_blocker.unblock():
        role = _runtime_role_name()
        with connection.cursor() as cursor:
            _drop_role(cursor, role)
            cursor.execute(f'CREATE ROLE "{role}" LOGIN')
        call_command("grant_runtime_role", role, stdout=io.StringIO())
        yield role
        with connection.cursor() as cursor:
            _drop_role(cursor, role)


# --- the worker -----------------------------------------------------------------------------
class WorkerHandle:
    def __init__(self, worker):
        self.worker = worker
        self.broker = worker.broker

    def drain(self, timeout_ms: int = 30000):
        """Wait until every queued (and delayed) message has been processed."""
        for queue in embedded.QUEUES:
            self.broker.join(queue, timeout=timeout_ms)
        self.worker.join()


@pytest.fixture
def worker(transactional_db):
    """A real Dramatiq worker on the configured broker (StubBroker or Redis), in this process."""
    dramatiq.get_broker().flush_all()  # nothing left over from earlier tests
    handle = WorkerHandle(embedded.start_worker(threads=2))
    yield handle
    handle.worker.stop()
    connection.close()


@pytest.fixture(autouse=True)
def _checkpoints_of_this_test_only(tmp_path, settings):
    # A seal writes its checkpoint file outside the database: never into the shared var/.
    settings.LEDGER_CHECKPOINT_DIR = tmp_path / "checkpoints"


@pytest.fixture(autouse=True)
def _var_dir_of_this_test_only(tmp_path, settings):
    # Nor does the demo seed keep its API key's file there (rapidfolio/management/demo.py).
    settings.VAR_DIR = tmp_path


@pytest.fixture(autouse=True)
def _no_procedure_labels_from_earlier_tests():
    # The metrics remember procedures' public ids by pk for the process; a test database gives
    # a rolled-back procedure's pk to the next test's.
    from runs import metrics

    metrics._procedure_ids.clear()


@pytest.fixture(autouse=True)
def _no_leftover_env(monkeypatch):
    # Tests that set RAPIDFOLIO_* for a subprocess must not leak into others.
    for key in list(os.environ):
        if key.startswith("RAPIDFOLIO_TEST_"):
            monkeypatch.delenv(key)
