"""Settings come from the environment: embedded SQLite + in-process broker by default,
PostgreSQL and Redis when DATABASE_URL and REDIS_URL say so."""

import json
import os
import subprocess
import sys

from django.conf import settings

PROBE = """
import json, django, dramatiq
django.setup()
from django.conf import settings
from django.db import connection
print(json.dumps({
    "engine": connection.vendor,
    "name": str(settings.DATABASES["default"]["NAME"]),
    "broker": type(dramatiq.get_broker()).__name__,
    "debug": settings.DEBUG,
    "secret_key_set": bool(settings.SECRET_KEY),
    "whitenoise": "whitenoise.middleware.WhiteNoiseMiddleware" in settings.MIDDLEWARE,
}))
"""


def _settings_with(tmp_path, **env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY")
    }
    clean.update(
        RAPIDFOLIO_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="rapidfolio.settings", **env
    )
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=clean,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_embedded_default_is_sqlite_under_var_with_the_in_process_broker(tmp_path):
    probed = _settings_with(tmp_path)
    assert probed["engine"] == "sqlite"
    assert probed["name"] == str(tmp_path / "rapidfolio.sqlite3")
    assert probed["broker"] == "StubBroker"
    assert probed["debug"] is False
    assert probed["whitenoise"] is True


def test_embedded_default_generates_and_keeps_a_secret_key(tmp_path):
    _settings_with(tmp_path)
    key = (tmp_path / "secret_key").read_text()
    assert len(key) >= 50
    _settings_with(tmp_path)
    assert (tmp_path / "secret_key").read_text() == key
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"


def test_database_url_selects_postgresql_and_redis_url_the_redis_broker(tmp_path):
    probed = _settings_with(
        tmp_path,
        DATABASE_URL="postgres://u@127.0.0.1:5432/x",
        REDIS_URL="redis://127.0.0.1:6379/0",
        SECRET_KEY="s" * 50,
    )
    assert probed["engine"] == "postgresql"
    assert probed["name"] == "x"
    assert probed["broker"] == "RedisBroker"
    assert not (tmp_path / "secret_key").exists()


def test_debug_is_on_only_when_asked(tmp_path):
    assert _settings_with(tmp_path, DEBUG="1")["debug"] is True
    assert _settings_with(tmp_path, DEBUG="0")["debug"] is False
