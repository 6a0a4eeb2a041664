"""The engine: interprets a procedure version's definition for one run.

`drive(run_id)` moves a run as far as it can go: it executes nodes one at a time, committing
every step, and stops at a human review, at the end, on failure, when the run is cancelled, or
while it waits to retry a transient tool error.

Crash safety rests on three rules:
- a tool call happens outside any transaction, and its step is committed right after it, so a
  worker killed mid-call has recorded nothing for that attempt;
- the next node is always derived from the committed steps, so a redelivered or reaped message
  resumes after the last finished step and never repeats one;
- the tool's idempotency key is derived from run, node, step position and attempt, so the
  unrecorded call of a killed worker is repeated with the same key and the integration
  (Stripe, the bank) answers it without acting twice.

The package's parts:
- `driver`: the transactions, the row lock, leases, and the loop around tool calls;
- `interpreter`: pure: the committed steps of a run and its definition -> the next node;
- `nodes`: one handler per node type (`NodeType`), in a registry other apps plug into (the
  reviews app registers the human_review node from its AppConfig.ready);
- `tools`: calling an integration's tool, and the retry policy of transient errors.

Everything it records goes through the run's write path (runs.writer).
"""

from runs.engine.driver import drive
from runs.engine.interpreter import ENGINE_ACTOR, MAX_STEPS_PER_RUN, next_node_id
from runs.engine.tools import backoff_seconds, idempotency_key, retry_policy

__all__ = [
    "ENGINE_ACTOR",
    "MAX_STEPS_PER_RUN",
    "backoff_seconds",
    "drive",
    "idempotency_key",
    "next_node_id",
    "retry_policy",
]
