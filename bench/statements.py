"""Statements sent to PostgreSQL by the processes the benchmark starts, counted client-side.

bench/statement_hook/sitecustomize.py (put first on PYTHONPATH by bench.procs.start) keeps
each process's counts in STATEMENT_DIR/<pid>; this reads them. pg_stat_statements would count
them server-side, but it must be preloaded at server start (shared_preload_libraries), which a
stock PostgreSQL 15 does not do. BEGIN and COMMIT are not statements here: psycopg sends them
for a transaction without a cursor; the transactions are counted from pg_stat_database.
"""

import os
import struct
from pathlib import Path

HOOK_DIR = Path(__file__).resolve().parent / "statement_hook"
_LAYOUT = struct.Struct("<3Q")
KINDS = ("execute", "executemany rows", "copy")


def statement_dir() -> Path:
    return Path(os.environ.get("BENCH_LOG_DIR", "bench-results/logs")) / "statements"


def hook_env() -> dict:
    """The environment that makes a started Python process count its statements."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": str(HOOK_DIR) + (os.pathsep + path if path else ""),
        "BENCH_STATEMENT_DIR": str(statement_dir().resolve()),
    }


def counts(pids) -> dict[int, int]:
    """Statements each of `pids` has sent so far (all three kinds together)."""
    found = {}
    directory = statement_dir()
    for pid in pids:
        try:
            raw = (directory / str(pid)).read_bytes()
        except OSError:
            continue
        if len(raw) >= _LAYOUT.size:
            found[pid] = sum(_LAYOUT.unpack_from(raw))
    return found


class StatementMeter:
    """Statements sent between start() and stop() by named groups of processes."""

    def __init__(self, groups):
        self.groups = groups  # name -> callable returning pids
        self.before: dict[str, dict[int, int]] = {}

    def start(self) -> None:
        self.before = {name: counts(pids()) for name, pids in self.groups.items()}

    def stop(self) -> dict[str, int]:
        sent = {}
        for name, pids in self.groups.items():
            after, before = counts(pids()), self.before.get(name, {})
            sent[name] = sum(after[p] - before.get(p, 0) for p in after)
        return sent
