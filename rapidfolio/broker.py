"""The embedded default's in-process Dramatiq worker.

With REDIS_URL unset the broker is Dramatiq's in-memory StubBroker, and `manage.py serve`
(what `make run` starts) runs a Worker on it in the web process, so the product needs no
services. With REDIS_URL set, run `manage.py rundramatiq` worker processes instead.
"""

import dramatiq
from django.conf import settings
from dramatiq.brokers.stub import StubBroker

QUEUES = ("runs", "maintenance", "webhooks", "triggers")


class LoadToolsAtBoot(dramatiq.Middleware):
    """Import the integrations' SDKs (Stripe's alone is hundreds of modules) when a worker
    boots, not inside its first run: about a second of CPU per worker process, which held up
    the first runs after every deploy. Only processes that run a worker pay it at start-up
    (gunicorn imports the tools only if a request needs the registry, as before).

    A worker process of its own (rundramatiq) then takes what it loaded out of the garbage
    collector's full passes (rapidfolio.startup); the embedded worker shares the web process,
    which does that itself.
    """

    def before_worker_boot(self, broker, worker):
        from procedures.tools import all_tools

        all_tools()
        if not isinstance(broker, StubBroker):
            from rapidfolio.startup import freeze_loaded_objects

            freeze_loaded_objects()


def is_embedded() -> bool:
    return isinstance(dramatiq.get_broker(), StubBroker)


def start_worker(*, threads: int | None = None) -> dramatiq.Worker:
    broker = dramatiq.get_broker()
    for queue in QUEUES:
        broker.declare_queue(queue)
    worker = dramatiq.Worker(
        broker, worker_threads=threads or settings.EMBEDDED_WORKER_THREADS, worker_timeout=100
    )
    worker.start()
    return worker
