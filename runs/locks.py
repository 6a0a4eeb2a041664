"""At most one worker executes a given run at a time.

Messages are delivered at least once and the reaper may re-enqueue a run, so two workers can
hold messages for the same run. On PostgreSQL a session advisory lock keyed by the run id
decides who drives it; the lock dies with the worker's connection, so a killed worker never
leaves a run locked. The embedded default runs every worker in one process, so a process-local
lock does the same there.
"""

import threading
from contextlib import contextmanager

from django.db import connection

from runs import sql

_local_locks: set[int] = set()
_local_guard = threading.Lock()


@contextmanager
def run_execution_lock(run_id: int):
    """Yield True when this worker may drive the run, False when another worker holds it."""
    if connection.vendor == "postgresql":
        acquired = sql.try_run_lock(run_id)
        try:
            yield acquired
        finally:
            if acquired:
                sql.release_run_lock(run_id)
        return
    with _local_guard:
        acquired = run_id not in _local_locks
        if acquired:
            _local_locks.add(run_id)
    try:
        yield acquired
    finally:
        if acquired:
            with _local_guard:
                _local_locks.discard(run_id)
