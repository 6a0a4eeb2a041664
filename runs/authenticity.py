"""Authentication tags on the facts the engine acts on: the formulas, in this one place.

The hash chain (runs.integrity) shows that a record was edited, but anyone with database access
can recompute it: its hashes need no secret. These tags do. Each is an HMAC (rapidfolio.keys)
under a key kept outside the database, over what a fact's event pins down, so a row written by
anything but this installation's own write path (runs.writer) carries no valid tag:

- the run.created event's data["tag"] = tag("run.created", run public id, sha256 of the header)
- a step.recorded event's data["tag"] = tag("step", run public id, sequence, the step's digest)

The writer makes them, the engine checks them before it resumes a run or calls a tool
(runs.engine.authenticity), and `verify_run` reports the rows whose tag does not verify.
"""

from rapidfolio import keys


def header_tag(run_public_id: str, header_digest: str) -> str:
    return keys.tag("run.created", run_public_id, header_digest)


def step_tag(run_public_id: str, sequence: int, step_digest: str) -> str:
    return keys.tag("step", run_public_id, str(sequence), step_digest)


def header_tag_matches(tag: str | None, run_public_id: str, header_digest: str) -> bool:
    return keys.tag_matches(tag, "run.created", run_public_id, header_digest)


def step_tag_matches(tag: str | None, run_public_id: str, sequence: int, step_digest: str) -> bool:
    return keys.tag_matches(tag, "step", run_public_id, str(sequence), step_digest)
