"""/healthz says the process is up; /readyz says whether it can work (database reachable and
migrated, broker reachable, scheduler beating, sealer keeping up), 200 or 503, with the
detail for staff and the health token only. Failures are real: a database connection to a
port where nothing listens, a Redis broker on one, a heartbeat left to go stale."""

import socket
from datetime import timedelta

import dramatiq
import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from dramatiq.brokers.redis import RedisBroker

from rapidfolio import scheduler
from rapidfolio.test_client import Client
from runs import ledger
from runs.health import beat_scheduler
from runs.models import SchedulerHeartbeat
from tests.conftest import make_user

TOKEN = "health-token-for-tests"
CHECKS = {"database", "migrations", "broker", "scheduler", "ledger_sealer"}


def closed_port() -> int:
    """A local port where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ready(client, **headers):
    return client.get("/readyz", headers=headers)


def with_token(client):
    return ready(client, Authorization=f"Bearer {TOKEN}")


@pytest.fixture(autouse=True)
def health_token(settings):
    settings.HEALTH_TOKEN = TOKEN


@pytest.fixture
def scheduler_alive(db):
    beat_scheduler(interval_seconds=10)


@pytest.fixture
def broker_down():
    """The process's broker is a Redis on a port where nothing listens."""
    working = dramatiq.get_broker()
    dramatiq.set_broker(RedisBroker(url=f"redis://127.0.0.1:{closed_port()}/0"))
    yield
    dramatiq.set_broker(working)


@pytest.fixture
def database_down(transactional_db):
    """The default connection points where no database answers: on PostgreSQL a port where
    nothing listens, on SQLite a file in a directory that does not exist. Restored after."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.settings_dict["PORT"] = closed_port()
        connection.settings_dict["HOST"] = "127.0.0.1"
    else:
        connection.settings_dict["NAME"] = "/nonexistent-rapidfolio-dir/db.sqlite3"
    yield
    connection.close()
    connection.settings_dict.clear()
    connection.settings_dict.update(saved)


# --- /healthz -------------------------------------------------------------------------------
def test_healthz_answers_ok_without_touching_the_database(client):
    # No `db` fixture: any query would fail the test.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_healthz_answers_while_the_database_is_down(client, database_down):
    assert client.get("/healthz").status_code == 200


# --- /readyz: everything up -----------------------------------------------------------------
def test_readyz_is_ok_when_everything_is_up(client, scheduler_alive):
    response = ready(client)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_the_health_token_shows_each_check(client, scheduler_alive):
    body = with_token(client).json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == CHECKS
    assert all(check["status"] == "ok" for check in body["checks"].values())
    assert all(check["time_ms"] >= 0 for check in body["checks"].values())


def test_staff_see_each_check(client, scheduler_alive):
    client.force_login(make_user("sam", staff=True))
    assert set(ready(client).json()["checks"]) == CHECKS


def test_a_wrong_token_or_a_user_who_is_not_staff_sees_no_detail(client, scheduler_alive, operator):
    assert ready(client, Authorization="Bearer not-the-token").json() == {"status": "ok"}
    client.force_login(operator)
    assert ready(client).json() == {"status": "ok"}


def test_without_a_configured_token_no_bearer_token_shows_the_detail(
    client, scheduler_alive, settings
):
    settings.HEALTH_TOKEN = ""
    assert ready(client, Authorization="Bearer ").json() == {"status": "ok"}


def test_readyz_needs_no_session_and_no_csrf_token(scheduler_alive):
    strict = Client(enforce_csrf_checks=True)
    response = ready(strict, Authorization=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert "sessionid" not in response.cookies


def test_a_locked_out_address_still_gets_its_health_answers(client, scheduler_alive):
    for n in range(20):  # LOGIN_ADDRESS_FAILURE_LIMIT: this address is now locked out
        client.post("/login/", {"username": f"user{n}", "password": "wrong"})
    assert client.post("/login/", {"username": "x", "password": "y"}).status_code == 429
    assert client.get("/healthz").status_code == 200
    assert with_token(client).status_code == 200
    assert with_token(client).json()["status"] == "ok"


# --- /readyz: something down ----------------------------------------------------------------
def test_readyz_is_unavailable_with_the_database_down(client, database_down):
    response = with_token(client)
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "unavailable"
    # The checks that need the database are not tried again (each could wait for a timeout).
    for name in ("migrations", "scheduler", "ledger_sealer"):
        assert checks[name] == {
            "status": "unavailable",
            "message": "not checked: the database is unavailable",
            "time_ms": 0.0,
        }
    assert checks["broker"]["status"] == "ok"


def test_with_the_database_down_anonymous_clients_learn_only_that(client, database_down):
    response = ready(client)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


@pytest.fixture
def staff_browser(transactional_db):
    browser = Client()
    browser.force_login(make_user("sam", staff=True))
    return browser


def test_a_staff_session_gets_its_answer_while_the_database_is_down(staff_browser, database_down):
    # The session is in the database: without it, nobody can be told apart from anonymous.
    response = ready(staff_browser)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


def test_readyz_is_unavailable_with_the_broker_down(client, scheduler_alive, broker_down):
    response = with_token(client)
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["broker"]["status"] == "unavailable"
    assert "Redis did not answer PING" in checks["broker"]["message"]
    assert {name for name, check in checks.items() if check["status"] == "ok"} == CHECKS - {
        "broker"
    }


def test_the_broker_down_is_hidden_from_anonymous_clients(client, scheduler_alive, broker_down):
    response = ready(client)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


def test_a_stale_scheduler_heartbeat_makes_readyz_unavailable(client, scheduler_alive):
    SchedulerHeartbeat.objects.update(beat_at=timezone.now() - timedelta(minutes=5))
    response = with_token(client)
    assert response.status_code == 503
    message = response.json()["checks"]["scheduler"]["message"]
    assert "the scheduler last beat 300 s ago (allowed 60 s" in message


def test_no_heartbeat_at_all_means_no_scheduler_has_run(client, db):
    response = with_token(client)
    assert response.status_code == 503
    assert "no scheduler has ever run" in response.json()["checks"]["scheduler"]["message"]


def test_a_slow_ticking_scheduler_is_allowed_three_of_its_ticks(client, db):
    beat_scheduler(interval_seconds=120, now=timezone.now() - timedelta(seconds=300))
    assert ready(client).status_code == 200


def test_the_scheduler_loop_beats_once_per_tick(transactional_db):
    # transactional: the loop closes its connection after each piece of work, as it must.
    class OnePass:
        """Lets the loop go round once: its wait ends the loop."""

        def __init__(self):
            self.stopped = False

        def is_set(self):
            return self.stopped

        def wait(self, seconds):
            self.stopped = True

    scheduler.run_forever(OnePass(), interval=15)
    beat = SchedulerHeartbeat.objects.get()
    assert beat.interval_seconds == 15
    assert timezone.now() - beat.beat_at < timedelta(seconds=5)


def test_an_unapplied_migration_makes_readyz_unavailable(client, scheduler_alive):
    MigrationRecorder(connection).migration_qs.filter(
        app="runs", name="0007_scheduler_heartbeat"
    ).delete()
    response = with_token(client)
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"]["message"] == (
        "Unavailable: 1 unapplied migration(s): runs.0007_scheduler_heartbeat"
    )


def test_a_sealer_that_fell_behind_makes_readyz_unavailable(
    client, scheduler_alive, finished_run, settings
):
    settings.LEDGER_SEAL_MAX_DELAY_SECONDS = 0  # the run's events, queued just now, are late
    response = with_token(client)
    assert response.status_code == 503
    assert "the sealer is behind" in response.json()["checks"]["ledger_sealer"]["message"]
    ledger.seal()
    assert ready(client).status_code == 200
