"""Counts the SQL statements each process the benchmark starts sends to PostgreSQL.

PostgreSQL 15 counts transactions per database but not statements (that needs
pg_stat_statements, which must be preloaded at server start). So the benchmark starts gunicorn,
the Dramatiq workers and the sealer with this directory first on PYTHONPATH: Python imports
`sitecustomize` at start-up, before any product code, and this one wraps psycopg's cursor
methods, which every statement goes through (Django's cursors, raw psycopg, pipelines, COPY).
It does nothing unless BENCH_STATEMENT_DIR is set. No product code is changed.

Each process keeps its counts in a small file of its own, BENCH_STATEMENT_DIR/<pid>, mapped
into memory: three unsigned 64-bit integers, (execute calls, executemany parameter sets, COPY
commands), updated in place as statements are sent, so the benchmark reads a live process's
counts at any moment (bench/statements.py). About a microsecond per statement.
"""

import os

_DIRECTORY = os.environ.get("BENCH_STATEMENT_DIR")


def _install(directory: str) -> None:
    import mmap
    import struct
    import threading

    import psycopg

    layout = struct.Struct("<3Q")
    lock = threading.Lock()
    state = {"map": None, "counts": [0, 0, 0]}

    def _open() -> None:
        # Lazily, in the process that sends statements: gunicorn and Dramatiq fork their
        # workers, and a child must not write into its parent's file.
        path = os.path.join(directory, str(os.getpid()))
        with open(path, "w+b") as file:
            file.write(bytes(layout.size))
            file.flush()
            state["map"] = mmap.mmap(file.fileno(), layout.size)
        state["counts"] = [0, 0, 0]

    def _reset_in_child() -> None:
        state["map"] = None
        state["counts"] = [0, 0, 0]

    os.register_at_fork(after_in_child=_reset_in_child)

    def _count(slot: int, amount: int) -> None:
        with lock:
            if state["map"] is None:
                _open()
            state["counts"][slot] += amount
            layout.pack_into(state["map"], 0, *state["counts"])

    def _wrap(method, slot: int, sized: bool = False):
        def counted(self, query, *args, **kwargs):
            if sized:
                params = args[0] if args else kwargs.get("params_seq", ())
                if not hasattr(params, "__len__"):
                    params = list(params)
                    args = (params, *args[1:]) if args else args
                    if "params_seq" in kwargs:
                        kwargs["params_seq"] = params
                _count(slot, len(params))
            else:
                _count(slot, 1)
            return method(self, query, *args, **kwargs)

        counted.__wrapped__ = method
        return counted

    os.makedirs(directory, exist_ok=True)
    cursor = psycopg.Cursor
    cursor.execute = _wrap(cursor.execute, 0)
    cursor.executemany = _wrap(cursor.executemany, 1, sized=True)
    cursor.copy = _wrap(cursor.copy, 2)
    # Named (server-side) cursors define their own execute.
    server = psycopg.ServerCursor
    server.execute = _wrap(server.execute, 0)


if _DIRECTORY:
    _install(_DIRECTORY)
