"""Two transactions appending to one run's chain at the same time (PostgreSQL).

Under READ COMMITTED a statement that waits for a row lock reads every other row as of when it
started: a chain head read by the locking statement itself would be the one from before the
first transaction's events, and the second append would reuse their sequence numbers.
Webhook deliveries to several endpoints, retries and cancels append this way.
"""

import threading
import time

from django.db import connection, transaction

from runs import writer
from runs.integrity import verify_run
from tests.conftest import needs_postgres

HOLD_SECONDS = 0.5


@needs_postgres
def test_an_append_that_waits_for_the_run_lock_continues_the_chain_after_the_other(
    transactional_db, finished_run
):
    locked, errors = threading.Event(), []

    def first():
        try:
            with transaction.atomic():
                writer.append_event(finished_run, "test.first", actor="system", data={})
                locked.set()
                time.sleep(HOLD_SECONDS)  # the second append waits for this row lock
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            locked.set()
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    locked.wait(5)
    started = time.monotonic()
    writer.append_event(finished_run, "test.second", actor="system", data={})
    waited = time.monotonic() - started
    thread.join()

    assert not errors
    assert waited >= HOLD_SECONDS / 2, "the second append did not wait for the first"
    types = list(finished_run.events.order_by("sequence").values_list("type", flat=True))
    assert types[-2:] == ["test.first", "test.second"]
    assert verify_run(finished_run).intact
