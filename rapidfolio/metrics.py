"""Prometheus metrics on /metrics (README "Health and metrics"); every name starts
`rapidfolio_`.

Two kinds of numbers:

- Counters and histograms, moved where the event happens: runs.metrics for the engine and the
  run lifecycle, RequestMetricsMiddleware (below) for HTTP. With PROMETHEUS_MULTIPROC_DIR set,
  prometheus-client keeps each process's values in files in that directory and a scrape adds
  up the files of every process that shares it: gunicorn's workers, `rundramatiq`'s processes
  and the scheduler on one machine. Without it, the process's own registry (the embedded
  default, whose worker and scheduler are threads of the web process).
- Gauges computed when scraped (`collect_at_scrape`): the broker's queues (here) and counts
  read from the database by an index (runs.metrics). Whichever process answers the scrape
  reads them, so they are the installation's, not the process's: a dashboard takes their
  `max` across instances, never their sum.

Who may read them: a client on the loopback interface (Prometheus or an agent on the same
machine), or anyone presenting `Authorization: Bearer <METRICS_TOKEN>`. A request that came
through a proxy (it carries a forwarding header) is not a local scrape, even if the proxy
connects from 127.0.0.1.
"""

import ipaddress
import logging
import os
import time

import dramatiq
from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from rapidfolio.api_errors import error_response
from rapidfolio.health import bearer_token, probe_client, token_matches

logger = logging.getLogger(__name__)

# Seconds: from a millisecond page to a 30-second integration call.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")

_scrape_time: list = []


def collect_at_scrape(collector):
    """Have `collector` (an object with `collect()`, yielding metric families) read when
    /metrics is scraped, in the scraping process; returns it."""
    _scrape_time.append(collector)
    return collector


def process_registry():
    """The counters and histograms: every process's (multiprocess mode) or this one's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


class ScrapeTime:
    """The gauges computed now. A collector that fails (the database or Redis down) leaves
    its gauges out and says so in rapidfolio_metrics_collector_up, not in a failed scrape."""

    def collect(self):
        up = GaugeMetricFamily(
            "rapidfolio_metrics_collector_up",
            "1 when the collector's source (database, broker) answered this scrape.",
            labels=["collector"],
        )
        for collector in _scrape_time:
            name = getattr(collector, "name", type(collector).__name__)
            try:
                families = list(collector.collect())
            except Exception:  # noqa: BLE001 — the other numbers are still worth serving
                logger.warning("metrics: collector %s failed", name, exc_info=True)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up


def exposition() -> bytes:
    return generate_latest(process_registry()) + generate_latest(ScrapeTime())


# --- the broker's queues ----------------------------------------------------------------------
class QueueCollector:
    """Messages per queue and state, and the age of the oldest ready one (by its creation
    time: a redelivered or retried message keeps it). Redis: a few commands in two round trips;
    the embedded StubBroker: its in-memory queues."""

    name = "queues"

    def collect(self):
        messages = GaugeMetricFamily(
            "rapidfolio_queue_messages",
            "Messages in the broker's queue: ready (waiting for a worker), in_progress (taken "
            "by a worker, not acknowledged), delayed (retries and backoffs), dead (given up).",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            "rapidfolio_queue_oldest_message_age_seconds",
            "Age of the oldest message ready in the queue (0 when none waits).",
            labels=["queue"],
        )
        broker = dramatiq.get_broker()
        if isinstance(broker, RedisBroker):
            queues = _redis_queues(broker)
        elif isinstance(broker, StubBroker):
            queues = _stub_queues(broker)
        else:
            queues = {}
        now_ms = time.time() * 1000
        for queue, (states, created_ms) in sorted(queues.items()):
            for state, count in states.items():
                messages.add_metric([queue, state], count)
            oldest.add_metric([queue], max(0.0, (now_ms - created_ms) / 1000) if created_ms else 0)
        yield messages
        yield oldest


def _redis_queues(broker: RedisBroker) -> dict:
    names = sorted(broker.get_declared_queues())
    ns = broker.namespace
    client = probe_client(broker)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in names:
            pipe.llen(f"{ns}:{queue}")
            pipe.hlen(f"{ns}:{queue}.msgs")
            pipe.hlen(f"{ns}:{queue}.DQ.msgs")
            pipe.zcard(f"{ns}:{queue}.XQ")
            pipe.lindex(f"{ns}:{queue}", 0)
        counts = pipe.execute()
        heads = [counts[5 * i + 4] for i in range(len(names))]
        pipe = client.pipeline(transaction=False)
        for queue, head in zip(names, heads, strict=True):
            pipe.hget(f"{ns}:{queue}.msgs", head or "")
        bodies = pipe.execute()
    finally:
        client.close()
    found = {}
    for i, queue in enumerate(names):
        ready, stored, delayed, dead, _ = counts[5 * i : 5 * i + 5]
        states = {
            "ready": ready,
            "in_progress": max(0, stored - ready),
            "delayed": delayed,
            "dead": dead,
        }
        found[queue] = (states, _created_ms(bodies[i]))
    return found


def _stub_queues(broker: StubBroker) -> dict:
    found = {}
    for queue in sorted(broker.get_declared_queues() - broker.get_declared_delay_queues()):
        ready, delayed = broker.queues[queue], broker.queues.get(f"{queue}.DQ")
        with ready.mutex:
            head = ready.queue[0] if ready.queue else None
            waiting, unfinished = len(ready.queue), ready.unfinished_tasks
        states = {
            "ready": waiting,
            "in_progress": max(0, unfinished - waiting),
            "delayed": delayed.unfinished_tasks if delayed is not None else 0,
            "dead": len(broker.dead_letters_by_queue.get(queue, ())),
        }
        found[queue] = (states, _created_ms(head))
    return found


def _created_ms(body) -> float | None:
    if not body:
        return None
    try:
        return float(Message.decode(body).message_timestamp)
    except Exception:  # noqa: BLE001 — not a Dramatiq message: no age to tell
        return None


collect_at_scrape(QueueCollector())


# --- HTTP -------------------------------------------------------------------------------------
HTTP_REQUEST_DURATION = Histogram(
    "rapidfolio_http_request_duration_seconds",
    "Time to answer an HTTP request, by route (the URL pattern's name, never the path).",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "rapidfolio_http_requests_total",
    "HTTP requests answered, by route, method and status code.",
    ["route", "method", "status"],
)


def route_name(request) -> str:
    """The resolved URL pattern's name (`runs:detail`, `api:start_run`): bounded, unlike the
    path. `unmatched` when nothing resolved (a 404, a refusal before the URL was read)."""
    match = getattr(request, "resolver_match", None)
    return match.view_name if match is not None else "unmatched"


class RequestMetricsMiddleware:
    """Times every request below it (static files, answered by whitenoise above, are not)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        route = route_name(request)
        method = request.method if request.method in KNOWN_METHODS else "other"
        HTTP_REQUEST_DURATION.labels(route, method).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        return response


# --- the view ---------------------------------------------------------------------------------
def is_local_scrape(request) -> bool:
    if any(request.META.get(header) for header in FORWARDING_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


def _refusal(request):
    if is_local_scrape(request):
        return None
    presented = bearer_token(request)
    if token_matches(presented, settings.METRICS_TOKEN):
        return None
    if not settings.METRICS_TOKEN:
        return error_response(
            403,
            "forbidden",
            "Metrics are served to loopback clients only; set METRICS_TOKEN to scrape from "
            "elsewhere.",
        )
    message = "Wrong metrics token." if presented else "Send Authorization: Bearer <token>."
    response = error_response(401, "unauthorized", message)
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@never_cache
@require_safe
def metrics_view(request):
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
