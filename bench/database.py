"""The bench database: created and migrated on demand, seeded once per size.

A marker table records what was seeded (run count, seconds, when), so a second `make bench`
reuses a database of the same size instead of seeding again. The database is dropped and
created afresh (the run record is append-only: its rows cannot be deleted) when the size
differs or BENCH_RESEED=1, but only if it is a bench database: one holding runs without the
marker is somebody's data and is refused.
"""

import json

import psycopg
from psycopg import sql

from bench.env import SetupError

MARKER_TABLE = "bench_marker"


def connect(database_url: str, *, dbname: str | None = None, autocommit: bool = True):
    """A psycopg connection to the bench database (or another one on the same server)."""
    params = psycopg.conninfo.conninfo_to_dict(_libpq_url(database_url))
    if dbname:
        params["dbname"] = dbname
    return psycopg.connect(**params, autocommit=autocommit)


def _libpq_url(url: str) -> str:
    # dj-database-url accepts postgres://, postgresql:// and pgsql://; libpq only the first two.
    return "postgresql://" + url.split("://", 1)[1] if url.startswith("pgsql://") else url


def conninfo(database_url: str) -> dict:
    return psycopg.conninfo.conninfo_to_dict(_libpq_url(database_url))


def database_name(database_url: str) -> str:
    return conninfo(database_url)["dbname"]


def ensure_database(database_url: str) -> bool:
    """Create the bench database when it does not exist; True when it was created."""
    name = database_name(database_url)
    with connect(database_url, dbname="postgres") as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return True


def recreate_database(database_url: str) -> None:
    name = database_name(database_url)
    with connect(database_url, dbname="postgres") as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def read_marker(database_url: str, *, runs_table: str) -> dict | None:
    """What the benchmark seeded here, or None. Refuses a database with foreign runs (rows in
    `runs_table`, the run model's table)."""
    with connect(database_url) as conn:
        has_marker = conn.execute("SELECT to_regclass(%s)", [MARKER_TABLE]).fetchone()[0]
        if has_marker:
            row = conn.execute(f"SELECT value FROM {MARKER_TABLE} WHERE key = 'seed'").fetchone()
            if row:
                return row[0]
        has_runs = conn.execute(f"SELECT to_regclass('{runs_table}')").fetchone()[0]
        if has_runs and conn.execute(f"SELECT EXISTS (SELECT 1 FROM {runs_table})").fetchone()[0]:
            raise SetupError(
                f"database {database_name(database_url)!r} holds runs that the benchmark did not "
                "seed; point DATABASE_URL at a dedicated bench database, e.g. rapidfolio_bench."
            )
    return None


def write_marker(database_url: str, value: dict) -> None:
    with connect(database_url) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (key text PRIMARY KEY, value jsonb)"
        )
        conn.execute(
            f"INSERT INTO {MARKER_TABLE} (key, value) VALUES ('seed', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            [json.dumps(value)],
        )
