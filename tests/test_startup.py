"""Serving processes take what they loaded at start-up out of the garbage collector's full
passes (rapidfolio.startup): the web application, `serve`, and rundramatiq workers."""

import os
import subprocess
import sys

from django.conf import settings


def _run(code: str) -> str:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "rapidfolio.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_wsgi_application_has_loaded_every_view_and_frozen_them():
    frozen, views_loaded = _run(
        "import gc, sys\n"
        "import rapidfolio.wsgi\n"
        "print(gc.get_freeze_count(), 'runs.views' in sys.modules and 'runs.api' in sys.modules)"
    ).split()
    assert int(frozen) > 50_000  # Django and every view module
    assert views_loaded == "True"


def test_a_worker_process_freezes_after_loading_the_tools_but_the_embedded_one_does_not():
    code = (
        "import gc, sys, django\n"
        "django.setup()\n"
        "from dramatiq.brokers.redis import RedisBroker\n"
        "from dramatiq.brokers.stub import StubBroker\n"
        "from rapidfolio.broker import LoadToolsAtBoot\n"
        "before = gc.get_freeze_count()\n"
        "LoadToolsAtBoot().before_worker_boot(StubBroker(), None)\n"
        "embedded = gc.get_freeze_count()\n"
        # Not connected: a broker object is enough to say which kind of worker boots.
        "LoadToolsAtBoot().before_worker_boot(RedisBroker(url='redis://127.0.0.1:9'), None)\n"
        "print(before, embedded, gc.get_freeze_count(), 'stripe' in sys.modules)"
    )
    before, embedded, worker, stripe_loaded = _run(code).split()
    assert int(embedded) == int(before)
    assert int(worker) > int(before) + 50_000
    assert stripe_loaded == "True"
