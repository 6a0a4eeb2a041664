"""Seal lag: how long a fact waits for a signed checkpoint (bench/ledger_cost.py's ON phases).

For every event of a phase's runs: from the event's created_at (stamped just before its
transaction commits) to the created_at of the first checkpoint whose tree covers its leaf
(tree_size > the leaf's index). The target: 95 % of facts within 5 s.
"""

from django.db import connection

from bench.schema import CHECKPOINT, EVENT, LEAF, RUN

LAG_TARGET_SECONDS = 5.0
LAG_TARGET_SHARE = 0.95


def lags(version_id: int, first_id: int) -> list[float | None]:
    """Seconds from each event of the phase's runs to the first checkpoint covering its leaf;
    None for an event not sealed (yet)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT extract(epoch FROM (
                SELECT c.{CHECKPOINT.created_at} FROM {CHECKPOINT.table} c
                WHERE c.{CHECKPOINT.tree_size} > l.{LEAF.index}
                ORDER BY c.{CHECKPOINT.tree_size} LIMIT 1
            ) - e.{EVENT.created_at})
            FROM {EVENT.table} e
            LEFT JOIN {LEAF.table} l ON l.{LEAF.event} = e.{EVENT.id}
            WHERE e.{EVENT.run} IN (
                SELECT {RUN.id} FROM {RUN.table} WHERE {RUN.id} > %s AND {RUN.version} = %s
            )
            """,
            [first_id, version_id],
        )
        return [None if lag is None else float(lag) for (lag,) in cursor.fetchall()]


def summary(lags: list[float | None]) -> dict:
    """p50/p95/max in seconds (an unsealed event ranks last), and the share within 5 s."""
    targets = {"target_seconds": LAG_TARGET_SECONDS, "target_share": LAG_TARGET_SHARE}
    if not lags:
        return {
            "events": 0,
            "unsealed": 0,
            "p50_s": None,
            "p95_s": None,
            "max_s": None,
            "within_share": 0.0,
            **targets,
        }
    ordered = sorted(lags, key=lambda lag: float("inf") if lag is None else lag)

    def rank(percent: int):
        value = ordered[max(0, -(-percent * len(ordered) // 100) - 1)]
        return None if value is None else round(value, 3)

    within = sum(1 for lag in lags if lag is not None and lag <= LAG_TARGET_SECONDS)
    return {
        "events": len(lags),
        "unsealed": sum(1 for lag in lags if lag is None),
        "p50_s": rank(50),
        "p95_s": rank(95),
        "max_s": rank(100),
        "within_share": round(within / len(lags), 4),
        **targets,
    }
