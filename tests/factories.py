"""Small helpers that put runs into a given state through the lifecycle, as the engine would."""

from runs import lifecycle
from runs.models import FailureKind, Run

# The shortest legal path from pending to each status.
PATHS = {
    "pending": [],
    "running": ["running"],
    "awaiting_review": ["running", "awaiting_review"],
    "completed": ["running", "completed"],
    "failed": ["running", "failed"],
    "cancelled": ["cancelled"],
}


def force_status(run: Run, status: str, *, failure_kind: str = FailureKind.TRANSIENT) -> Run:
    for target in PATHS[status]:
        kwargs = {}
        if target == "failed":
            kwargs = {"failure_kind": failure_kind, "reason": "Bank timed out"}
        if target == "completed":
            kwargs = {"output": {"ok": True}}
        lifecycle.transition(run, target, actor="system:test", **kwargs)
    run.refresh_from_db()
    return run
