"""A worker killed with SIGKILL mid-run loses nothing and never repeats a finished tool call; a
process killed between a run's commit and its message's send loses nothing either.

Real `manage.py rundramatiq` worker processes on Redis and PostgreSQL; the integration is a
local HTTP server that, like Stripe, performs each Idempotency-Key's effect once.
"""

import datetime
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from runs import outbox
from runs.integrity import verify_run
from runs.models import OutboxMessage, Run
from runs.services import reap_stuck_runs, start_run
from tests.conftest import make_version, needs_postgres, needs_redis

pytestmark = [needs_postgres, needs_redis, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(settings.BASE_DIR)


class IdempotentPaymentServer:
    """Counts raw requests per path and performs each idempotency key's effect once."""

    def __init__(self):
        self.requests = Counter()
        self.effects: dict[str, list[str]] = {}
        self.slow_arrived = threading.Event()
        self.answers: dict[str, bytes] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers["Idempotency-Key"]
                with server.lock:
                    server.requests[self.path] += 1
                    first_time = key not in server.answers
                    if first_time:
                        server.effects.setdefault(self.path, []).append(key)
                        server.answers[key] = json.dumps({"paid": True, "key": key}).encode()
                if self.path == "/slow" and first_time:
                    server.slow_arrived.set()
                    time.sleep(30)  # the worker is killed while it waits for this answer
                body = server.answers[key]
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the caller was killed

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()


@pytest.fixture
def payments():
    server = IdempotentPaymentServer()
    yield server
    server.stop()


def _definition(url):
    return {
        "input_schema": {"type": "object"},
        "start": "reserve",
        "nodes": {
            "reserve": {
                "type": "tool",
                "tool": "http.request",
                "input": {"method": "'POST'", "url": f"'{url}/fast'", "body": {"n": 1}},
                "next": "pay",
            },
            "pay": {
                "type": "tool",
                "tool": "http.request",
                "input": {
                    "method": "'POST'",
                    "url": f"'{url}/slow'",
                    "body": {"n": 2},
                    "timeout_seconds": 60,
                },
                "next": "done",
            },
            "done": {"type": "output", "value": {"paid": "steps.pay.output.body.paid"}},
        },
    }


def _environment(role: str, **extra_env) -> dict:
    """A product process's environment, connected as `role`: the runtime role, as in
    production."""
    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{role}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "DRAMATIQ_NAMESPACE": settings.DRAMATIQ_NAMESPACE,
        "SECRET_KEY": settings.SECRET_KEY,
        **extra_env,
    }


def _start_worker(role: str, **extra_env) -> subprocess.Popen:
    """A rundramatiq worker connected as `role`."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "2"],
        cwd=BASE_DIR,
        env=_environment(role, **extra_env),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill(worker: subprocess.Popen) -> None:
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)


def _wait_for(predicate, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _status(run):
    return Run.objects.get(pk=run.pk).status


def _assert_each_call_happened_once(run, payments):
    run = Run.objects.get(pk=run.pk)
    assert run.status == "completed", run.failure_reason
    assert run.output == {"paid": True}
    assert payments.requests["/fast"] == 1  # finished before the crash: never repeated
    assert len(payments.effects["/slow"]) == 1  # repeated once, with the same key: paid once
    assert [s.node_id for s in run.steps.order_by("sequence")] == ["reserve", "pay", "done"]
    assert run.steps.get(node_id="pay").idempotency_key == payments.effects["/slow"][0]
    assert verify_run(run).intact


def test_sigkilled_worker_message_is_redelivered_and_the_run_completes_once(payments, runtime_role):
    version = make_version(_definition(payments.url), name="Crash test payment")
    fast_failover = {
        "DRAMATIQ_HEARTBEAT_TIMEOUT_MS": "2000",
        "DRAMATIQ_MAINTENANCE_CHANCE": "1000000",
    }
    first = _start_worker(runtime_role, **fast_failover)
    second = None
    try:
        run = start_run(version=version, environment="sandbox", type="api", inputs={})
        assert payments.slow_arrived.wait(60), "the first worker never reached the slow call"
        _kill(first)
        assert _status(run) == "running"
        second = _start_worker(runtime_role, **fast_failover)
        assert _wait_for(lambda: _status(run) == "completed"), _status(run)
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                _kill(worker)
    _assert_each_call_happened_once(run, payments)
    assert payments.requests["/slow"] == 2


def test_sigkilled_worker_run_is_completed_by_the_reaper(payments, runtime_role):
    version = make_version(_definition(payments.url), name="Crash test payment")
    first = _start_worker(runtime_role)
    second = None
    try:
        run = start_run(version=version, environment="sandbox", type="api", inputs={})
        assert payments.slow_arrived.wait(60), "the first worker never reached the slow call"
        _kill(first)
        # Dead worker's message stays unacknowledged (default 60 s heartbeat): the reaper acts.
        second = _start_worker(runtime_role)
        later = timezone.now() + datetime.timedelta(seconds=settings.RUN_LEASE_SECONDS + 1)
        assert reap_stuck_runs(now=later) == [run.pk]
        assert reap_stuck_runs(now=later) == []  # sent once per backoff step, not per tick
        assert _wait_for(lambda: _status(run) == "completed"), _status(run)
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                _kill(worker)
    _assert_each_call_happened_once(run, payments)


# The run commits, then the process dies before its message is sent: the kill is the first of the
# transaction's on-commit callbacks, so dispatch's send (registered after it) never runs.
KILLED_AFTER_COMMIT = """
import os, signal
from django.db import transaction
from procedures.models import ProcedureVersion
from runs.services import start_run
version = ProcedureVersion.objects.get(pk={version_pk})
with transaction.atomic():
    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
    run = start_run(version=version, environment="sandbox", type="api", inputs={{}})
    print(run.pk, flush=True)
"""

QUICK_DEFINITION = {
    "input_schema": {"type": "object"},
    "start": "done",
    "nodes": {"done": {"type": "output", "value": {"n": "1"}}},
}


def test_a_process_killed_between_commit_and_send_loses_nothing(runtime_role):
    version = make_version(QUICK_DEFINITION, name="Quick")
    web = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            KILLED_AFTER_COMMIT.format(version_pk=version.pk),
        ],
        cwd=BASE_DIR,
        env=_environment(runtime_role),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert web.returncode == -signal.SIGKILL, web.stderr
    run = Run.objects.get(pk=int(web.stdout.split()[-1]))
    assert run.status == "pending"
    [message] = OutboxMessage.objects.filter(run=run)  # committed with the run
    assert message.attempts == 0 and message.last_error == ""
    worker = _start_worker(runtime_role)
    try:
        # Never sent: the relay sends it once its send at commit would have had time to work,
        # long before the lease (RUN_LEASE_SECONDS) would have the reaper do it.
        assert outbox.send_outbox(now=message.created_at) == 0
        assert outbox.send_outbox(now=message.next_attempt_at) == 1
        assert _wait_for(lambda: _status(run) == "completed"), _status(run)
    finally:
        _kill(worker)
    assert Run.objects.get(pk=run.pk).output == {"n": 1}
