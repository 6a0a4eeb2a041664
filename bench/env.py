"""Where the benchmark runs, checked before Django is set up.

The benchmark never falls back to the embedded SQLite and in-process broker: its figures are
about production, so DATABASE_URL (PostgreSQL) and REDIS_URL must both be given. DATABASE_URL
names the bench database itself; it is created when missing and refused when it already holds
runs the benchmark did not seed (see bench.database).
"""

import os
from urllib.parse import urlsplit

EXAMPLE = (
    "DATABASE_URL=postgres://postgres@127.0.0.1:5432/rapidfolio_bench "
    "REDIS_URL=redis://127.0.0.1:6379/0 make bench"
)
DEFAULT_NAMESPACE = "rapidfolio-bench"


class SetupError(Exception):
    """The benchmark cannot run here; the message says what to do."""


def configure() -> dict:
    """Check the environment and prepare it for Django; returns the settings in use."""
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    missing = [
        name
        for name, value in (("DATABASE_URL", database_url), ("REDIS_URL", redis_url))
        if not value
    ]
    if missing:
        raise SetupError(
            f"make bench needs PostgreSQL and Redis; set {' and '.join(missing)}, e.g.\n"
            f"  {EXAMPLE}\n"
            "The database named in DATABASE_URL is created if missing and filled with "
            "benchmark data (1,000,000 runs unless BENCH_RUNS says otherwise)."
        )
    if urlsplit(database_url).scheme not in ("postgres", "postgresql", "pgsql"):
        raise SetupError(f"DATABASE_URL must be a PostgreSQL URL, e.g.\n  {EXAMPLE}")
    if urlsplit(redis_url).scheme not in ("redis", "rediss"):
        raise SetupError(f"REDIS_URL must be a Redis URL, e.g.\n  {EXAMPLE}")
    os.environ["DJANGO_SETTINGS_MODULE"] = "rapidfolio.settings"
    # DEBUG keeps every query in memory and serves slower pages: never measure with it.
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # Our own queues, so a developer's worker on the default namespace takes none of our work.
    os.environ.setdefault("DRAMATIQ_NAMESPACE", DEFAULT_NAMESPACE)
    return {
        "database_url": database_url,
        "redis_url": redis_url,
        "namespace": os.environ["DRAMATIQ_NAMESPACE"],
        "runs": env_int("BENCH_RUNS", 1_000_000),
        "reseed": os.environ.get("BENCH_RESEED", "") not in ("", "0"),
        "throughput_runs": env_int("BENCH_THROUGHPUT_RUNS", 2_000),
        "api_requests": env_int("BENCH_API_REQUESTS", 2_000),
        "api_clients": env_int("BENCH_API_CLIENTS", 50),
        "worker_threads": env_int("BENCH_WORKER_THREADS", 4),
        "samples": env_int("BENCH_SAMPLES", 40),
    }


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").replace("_", "").replace(",", "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SetupError(f"{name} must be a whole number, not {os.environ[name]!r}") from None
    if value < 1:
        raise SetupError(f"{name} must be at least 1")
    return value
