import contextlib
import sys

from django.core.management.base import BaseCommand
from django.core.servers.basehttp import WSGIServer, run
from django.core.wsgi import get_wsgi_application

from rapidfolio import broker, scheduler
from rapidfolio.startup import freeze_loaded_objects


class Command(BaseCommand):
    help = (
        "Serve the dashboard. On the embedded default (no REDIS_URL) this process also runs "
        "the Dramatiq worker and the scheduler, so nothing else needs to be started."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host, port, **options):
        application = get_wsgi_application()
        freeze_loaded_objects()
        if broker.is_embedded():
            broker.start_worker()
            scheduler.start_in_thread()
            mode = "embedded: SQLite or DATABASE_URL, in-process worker and scheduler"
        else:
            mode = "Redis broker: start `manage.py rundramatiq` and `manage.py run_scheduler`"
        url = f"http://{host}:{port}/"
        self.stdout.write(self.style.SUCCESS(f"\nRapidfolio Runs is serving on {url}"))
        self.stdout.write(f"  mode: {mode}")
        self.stdout.write("  log in as operator / reviewer / admin, password: rapidfolio-demo")
        self.stdout.write("  (the demo users are created by `manage.py seed_demo`)")
        self.stdout.write("  Ctrl+C to stop.\n")
        sys.stdout.flush()
        WSGIServer.request_queue_size = 64
        with contextlib.suppress(KeyboardInterrupt):
            run(host, port, application, threading=True, server_cls=WSGIServer)
