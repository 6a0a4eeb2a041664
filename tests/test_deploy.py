"""The deploy story (docs/deploy.md): `manage.py check --deploy` is clean with a production
environment, and each process of the Procfile starts, says it is ready and logs JSON only.

Both run the real commands in subprocesses, with the environment docs/deploy.md sets: on
PostgreSQL connected as the runtime role (README "Database roles"), on the embedded run on a
SQLite file.
"""

import base64
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(settings.BASE_DIR)
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
# Everything a deployment sets; the test process's own values must not leak into it.
DEPLOYMENT_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DRAMATIQ_NAMESPACE",
    "LOG_FORMAT",
    "PORT",
    # The browser tests' conftest sets it for Playwright's event loop, in every test process.
    "DJANGO_ALLOW_ASYNC_UNSAFE",
)
DEPLOYMENT_PREFIXES = ("HTTPS", "HSTS_", "LEDGER_", "SENTRY_", "PROMETHEUS_", "RAPIDFOLIO_")
# Each process loads Django (about 5 s of CPU); on a busy machine that takes a while.
READY_WITHIN_SECONDS = 120


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(match.groups() for line in lines if (match := PROCFILE_LINE.match(line)))


def production_environment(var_dir: Path, **env) -> dict[str, str]:
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in DEPLOYMENT_VARIABLES and not key.startswith(DEPLOYMENT_PREFIXES)
    }
    return {
        **clean,
        "RAPIDFOLIO_VAR_DIR": str(var_dir),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "runs.example.com,127.0.0.1",
        "CSRF_TRUSTED_ORIGINS": "https://runs.example.com",
        "PUBLIC_BASE_URL": "https://runs.example.com",
        "HTTPS": "1",
        "HTTPS_PROXY_HEADER": "X-Forwarded-Proto",
        "LEDGER_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
        **env,
    }


def database_url(user: str | None = None) -> str:
    """The test database, as the app's DATABASE_URL names it."""
    database = connection.settings_dict
    if connection.vendor != "postgresql":
        return f"sqlite:///{database['NAME']}"
    user = user or database["USER"]
    password = (
        f":{database['PASSWORD']}" if database["PASSWORD"] and user == database["USER"] else ""
    )
    host = f"{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}"
    return f"postgres://{user}{password}@{host}/{database['NAME']}"


# --- manage.py check --deploy -----------------------------------------------------------------
@pytest.fixture
def app_database(request, django_db_setup) -> dict[str, str]:
    """On PostgreSQL the runtime role (never the owner nor a superuser); on the embedded run,
    none: SQLite has no roles to check."""
    if connection.vendor != "postgresql":
        return {}
    return {"DATABASE_URL": database_url(request.getfixturevalue("runtime_role"))}


def test_check_deploy_is_clean_in_a_production_environment(tmp_path, app_database):
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=production_environment(tmp_path, **app_database),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout


# --- the systemd units of docs/deploy.md ------------------------------------------------------
def documented_units() -> dict[str, str]:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    names = re.findall(r"`/etc/systemd/system/(rapidfolio-[a-z]+\.service)`", doc)
    return dict(zip(names, re.findall(r"```ini\n(.*?)```", doc, re.S), strict=True))


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_the_documented_systemd_units_verify(tmp_path):
    units = documented_units()
    assert set(units) == {f"rapidfolio-{name}.service" for name in procfile()} | {
        "rapidfolio-migrate.service"
    }
    for name, text in units.items():
        # This checkout stands for /srv/rapidfolio: systemd checks that each command exists.
        text = text.replace("/srv/rapidfolio/.venv/bin", str(Path(sys.executable).parent))
        (tmp_path / name).write_text(text.replace("/srv/rapidfolio", str(ROOT)))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


# --- the Procfile -----------------------------------------------------------------------------
def test_the_procfile_has_web_worker_and_scheduler_processes():
    processes = procfile()
    assert set(processes) == {"web", "worker", "scheduler"}
    assert processes["web"].startswith("gunicorn rapidfolio.wsgi ")
    assert "--skip-logging" in processes["worker"]  # the app's LOGGING, not Dramatiq's
    assert "--access-logfile" not in processes["web"]  # rapidfolio.request_log logs requests


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    def __init__(self, name: str, command: str, env: dict, logs: Path):
        self.name = name
        self.stdout_path = logs / f"{name}.out"
        self.stderr_path = logs / f"{name}.err"
        with open(self.stdout_path, "w") as stdout, open(self.stderr_path, "w") as stderr:
            # As a Procfile runner does: through the shell, in a session of its own.
            self.popen = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=ROOT,
                env=env,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )

    def output(self) -> tuple[str, str]:
        return self.stdout_path.read_text(), self.stderr_path.read_text()

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def stop(self) -> None:
        if self.exited():
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _get_login(port: int) -> int | None:
    """GET /login/ as the TLS proxy forwards it; None while nothing listens yet."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READY_WITHIN_SECONDS)
        conn.request(
            "GET",
            "/login/",
            headers={"X-Forwarded-Proto": "https", "X-Request-ID": "procfile-web-1"},
        )
        status = conn.getresponse().status
        conn.close()
        return status
    except ConnectionRefusedError:
        return None


def _ready(name: str, process: Process, port: int) -> bool:
    stdout, stderr = process.output()
    if name == "web":
        return _get_login(port) == 200
    if name == "worker":
        return "Worker process is ready for action." in stderr
    return "Scheduler running every" in stdout


@pytest.fixture
def started(tmp_path, transactional_db):
    """The Procfile's processes on the test database (and Redis when configured), until each
    says it is ready; stopped afterwards."""
    port = _free_port()
    env = production_environment(
        tmp_path,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        DATABASE_URL=database_url(),
        PORT=str(port),
        WEB_CONCURRENCY="1",
        WEB_THREADS="2",
        DRAMATIQ_NPROCS="1",
        DRAMATIQ_NTHREADS="1",
    )
    if settings.REDIS_URL:
        # Production: JSON lines without being asked (rapidfolio.log_context.log_format).
        env.update(REDIS_URL=settings.REDIS_URL, DRAMATIQ_NAMESPACE=f"rf-procfile-{os.getpid()}")
    else:
        env.update(LOG_FORMAT="json")  # without Redis the default is make run's plain text
    processes = {name: Process(name, cmd, env, tmp_path) for name, cmd in procfile().items()}
    waiting = set(processes)
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    try:
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                process = processes[name]
                assert not process.exited(), f"{name} exited: {process.output()}"
                if _ready(name, process, port):
                    waiting.discard(name)
            time.sleep(0.2)
        assert not waiting, {name: processes[name].output() for name in waiting}
        yield processes
    finally:
        for process in processes.values():
            process.stop()


def test_each_procfile_process_starts_and_writes_only_json_lines(started):
    for process in started.values():
        process.stop()  # its lines about stopping are JSON too
    for name, process in started.items():
        stdout, stderr = process.output()
        lines = _json_lines(stderr)  # fails on the first line that is not JSON
        assert all({"time", "level", "logger", "message"} <= set(line) for line in lines), name
    worker_lines = _json_lines(started["worker"].output()[1])
    assert any(line["message"] == "Worker process is ready for action." for line in worker_lines)
    web_lines = _json_lines(started["web"].output()[1])
    gunicorns = [line["message"] for line in web_lines if line["logger"] == "gunicorn.error"]
    assert any(message.startswith("Listening at: ") for message in gunicorns)  # its own, too
    assert not any("Control socket" in message for message in gunicorns)
    [request] = [line for line in web_lines if line.get("request_id") == "procfile-web-1"]
    assert (request["logger"], request["level"]) == ("rapidfolio.request", "INFO")
    assert (request["method"], request["path"], request["status"]) == ("GET", "/login/", 200)
