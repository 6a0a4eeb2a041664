"""/healthz and /readyz (README "Health and metrics").

- `/healthz`: the process is up and answering. No database, no broker, no authentication:
  what a load balancer or a liveness probe asks every few seconds.
- `/readyz`: whether this process can do its work: each check below, run in turn, answered
  `{"status": "ok" | "unavailable"}` with 200 or 503. The per-check detail (status, message,
  time taken) is added for staff sessions and for `Authorization: Bearer <HEALTH_TOKEN>`:
  anyone may learn that the service is not ready, not why.

The checks are django-health-check's (`health_check.HealthCheck`: a `run` that raises its
`ServiceUnavailable`), its `Database` check included; the ones that read the apps' tables are
in runs.health, and rapidfolio/urls.py assembles the list. Its own view is not used: it runs
sync checks in executor threads, each on a Django connection of its own outside the request's
(left open by any check that is not its Database), it answers 500 rather than 503, and it
shows every check to anyone. Ours runs them in the request's thread, in order, and once the
database check fails it does not try again for each check that needs the database. Its Redis
check is not used either: it needs an asyncio client built from a URL, where ours pings the
broker's own Redis (and knows the embedded broker).

Neither view takes a session, a CSRF token or a password: a token is compared here, never
through `authenticate`, so a wrong one is not a failed sign-in for django-axes to count.
"""

import dataclasses
import hmac
import logging
import time
from datetime import timedelta
from functools import cache
from typing import ClassVar

import dramatiq
import redis
from django.conf import settings
from django.db import DatabaseError, connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from health_check import Database, HealthCheck
from health_check.exceptions import HealthCheckException, ServiceUnavailable

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 2.0


# --- checks -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Migrations(HealthCheck):
    """Every migration on disk is applied: new code must not serve an old schema."""

    alias: str = "default"
    needs_database: ClassVar[bool] = True

    def run(self):
        try:
            missing = unapplied_migrations(connections[self.alias])
        except DatabaseError as exc:
            raise ServiceUnavailable(f"cannot read django_migrations: {exc}") from exc
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ServiceUnavailable(f"{len(missing)} unapplied migration(s): {shown}")


@cache
def _migrations_on_disk() -> dict[tuple[str, str], tuple]:
    """The migration files this code ships (read once: they cannot change under a running
    process), each with the migrations it replaces when it is a squash."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return {key: tuple(migration.replaces) for key, migration in loader.graph.nodes.items()}


def unapplied_migrations(connection) -> list[str]:
    """`app.name` of each migration on disk the database has not applied (two small queries,
    where Django's own plan would load and build the whole graph again)."""
    applied = MigrationRecorder(connection).applied_migrations()
    return sorted(
        f"{app}.{name}"
        for (app, name), replaces in _migrations_on_disk().items()
        if (app, name) not in applied and not (replaces and all(r in applied for r in replaces))
    )


@dataclasses.dataclass
class Broker(HealthCheck):
    """Dramatiq's broker takes messages: Redis answers PING within PROBE_TIMEOUT_SECONDS. The
    embedded StubBroker lives in this process, so it is up whenever the process is."""

    timeout = timedelta(seconds=PROBE_TIMEOUT_SECONDS)

    def run(self):
        broker = dramatiq.get_broker()
        if isinstance(broker, StubBroker):
            return
        if not isinstance(broker, RedisBroker):
            raise ServiceUnavailable(f"no check for a {type(broker).__name__}")
        client = probe_client(broker)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis did not answer PING: {exc}") from exc
        finally:
            client.close()


def probe_client(broker: RedisBroker) -> redis.Redis:
    """A client to the broker's Redis with short timeouts of its own: the broker's client has
    none, and a probe must answer while Redis is unreachable. Close it after use."""
    pool = broker.client.connection_pool
    kwargs = {
        **pool.connection_kwargs,
        "socket_timeout": PROBE_TIMEOUT_SECONDS,
        "socket_connect_timeout": PROBE_TIMEOUT_SECONDS,
    }
    # from_pool: closing the client closes (disconnects) its pool too.
    return redis.Redis.from_pool(
        redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    )


# --- running them -----------------------------------------------------------------------------
@dataclasses.dataclass
class Result:
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error

    def as_json(self) -> dict:
        status = {"status": "ok" if self.ok else "unavailable"}
        if self.error:
            status["message"] = self.error
        return {**status, "time_ms": round(self.seconds * 1000, 1)}


def run_checks(checks: dict[str, HealthCheck]) -> dict[str, Result]:
    """Each check's result, in order. Once the database check fails, the checks that need the
    database are reported unavailable without trying (each try could wait for a timeout)."""
    results: dict[str, Result] = {}
    database_down = False
    for name, check in checks.items():
        if database_down and getattr(check, "needs_database", False):
            results[name] = Result(error="not checked: the database is unavailable")
            continue
        results[name] = result = _run(check)
        database_down = database_down or (isinstance(check, Database) and not result.ok)
    return results


def _run(check: HealthCheck) -> Result:
    started = time.perf_counter()
    try:
        check.run()
    except HealthCheckException as exc:
        error = str(exc)
        logger.warning("readiness check %r failed: %s", check, error)
    except Exception:  # noqa: BLE001 — as django-health-check: logged, never shown
        logger.exception("readiness check %r crashed", check)
        error = "unknown error (logged)"
    else:
        error = ""
    return Result(error=error, seconds=time.perf_counter() - started)


# --- who may see what -------------------------------------------------------------------------
def bearer_token(request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant-time; an unset token (empty setting) matches nothing."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def may_see_detail(request) -> bool:
    if token_matches(bearer_token(request), settings.HEALTH_TOKEN):
        return True
    try:
        user = request.user
        return bool(user.is_active and user.is_staff)
    except DatabaseError:
        # A staff session is read from the database, which may be what is down: the answer
        # must still come, without the detail.
        return False


# --- views ------------------------------------------------------------------------------------
@never_cache
@require_safe
def healthz(request):
    return JsonResponse({"status": "ok"})


def readiness_view(checks: dict[str, HealthCheck]):
    """The /readyz view over `checks` (name -> check), as rapidfolio/urls.py lists them."""

    @never_cache
    @require_safe
    def readyz(request):
        results = run_checks(checks)
        ready = all(result.ok for result in results.values())
        body: dict = {"status": "ok" if ready else "unavailable"}
        if may_see_detail(request):
            body["checks"] = {name: result.as_json() for name, result in results.items()}
        return JsonResponse(body, status=200 if ready else 503)

    return readyz
