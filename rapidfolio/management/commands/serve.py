import contextlib
import sys

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.core.servers.basehttp import WSGIServer, run

from rapidfolio import broker, public_url, scheduler
from rapidfolio.handlers import get_application
from rapidfolio.management import demo
from rapidfolio.startup import freeze_loaded_objects
from runs import outbox


class Command(BaseCommand):
    help = (
        "Serve the dashboard. On the embedded default (no REDIS_URL) this process also runs "
        "the Dramatiq worker and the scheduler, so nothing else needs to be started."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host, port, **options):
        application = get_application()  # the dashboard's and the API's stacks
        freeze_loaded_objects()
        WSGIServer.request_queue_size = 64
        with contextlib.suppress(KeyboardInterrupt):
            run(
                host,
                port,
                application,
                ipv6=":" in host,
                threading=True,
                # Once the socket listens (requests wait in its queue): the worker's first
                # requests, webhook deliveries to the demo receiver, find it open.
                on_bind=lambda bound_port: self._start(host, bound_port),
                server_cls=WSGIServer,
            )

    def _start(self, host: str, port: int) -> None:
        served_at = public_url.local_base_url(host, port)
        public_url.serving_at(served_at)
        resent = []
        if broker.is_embedded():
            broker.start_worker()
            # The in-memory broker starts empty: what `seed_demo` or the last `serve` sent died
            # with that process. The pending and running runs go again now, not in a lease.
            resent = outbox.resend_active_runs()
            scheduler.start_in_thread()
            mode = "embedded: SQLite or DATABASE_URL, in-process worker and scheduler"
        else:
            mode = "Redis broker: start `manage.py rundramatiq` and `manage.py run_scheduler`"
        self.stdout.write(self.style.SUCCESS(f"\nRapidfolio Runs is serving on {served_at}/"))
        self.stdout.write(f"  mode: {mode}")
        if resent:
            self.stdout.write(f"  picked up at once: {len(resent)} pending or running run(s)")
        users = User.objects.filter(username__in=demo.DEMO_LOGINS)
        for line in demo.login_lines(users.values_list("username", flat=True)):
            self.stdout.write(f"  {line}")
        self.stdout.write(f"  API docs: {served_at}/v1/docs")
        self.stdout.write("  Ctrl+C to stop.\n")
        sys.stdout.flush()
