"""The account of a verified run: what an auditor reads once a bundle verifies."""

import json
from dataclasses import dataclass

from rapidfolio_verify.canonical import canonical_json


@dataclass(frozen=True)
class StepAccount:
    sequence: int
    node_id: str
    status: str
    attempt: int
    request_sha256: str  # of the request text exactly as sent
    response_sha256: str  # of the response text exactly as received


@dataclass(frozen=True)
class DecisionAccount:
    review: str
    reviewer: str  # the bundle's label: not pinned by the record (reviewer_id is)
    reviewer_id: object
    decision: str
    comment: str
    overrides: list
    # Recorded since review policies; a decision recorded before has the defaults.
    sequence: int = 1
    decided_by: str = "person"  # or "system": a timeout, no reviewer
    final: bool = True  # it closed the review (a rejection, the quorum's last approval)
    shown_sha256: str = ""  # the digest of what the decider was shown
    confirmed: tuple = ()
    deadline: str | None = None  # an escalation's new deadline


@dataclass(frozen=True)
class Account:
    """What a verified bundle shows; every field is pinned by the record unless noted."""

    run_id: str
    procedure_id: str
    procedure_name: str  # not pinned
    version: int
    environment: str
    run_type: str
    status: str
    started_by: str  # not pinned: the bundle's description of the starter
    created_by: str  # the run.created event's actor
    inputs_sha256: str
    steps: tuple[StepAccount, ...]
    decisions: tuple[DecisionAccount, ...]
    output: object
    failure: dict | None
    events: int
    tree_size: int
    origin: str
    key: str  # name+key id of the checkpoint's verified signer


# A node that sent nothing (a review, a condition) has empty request and response texts.
_EMPTY_TEXT_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _sha(sha256: str) -> str:
    return "(empty)" if sha256 == _EMPTY_TEXT_SHA256 else f"sha256 {sha256}"


def _pretty(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _decision_lines(decision: DecisionAccount) -> list[str]:
    place = f" #{decision.sequence}" if decision.sequence != 1 else ""
    if decision.decided_by == "system":
        who = "by the system (no reviewer: the deadline passed)"
        said = f"reason {decision.comment!r}"
    else:
        who = f"by {decision.reviewer} (*) (reviewer id {decision.reviewer_id})"
        said = f"comment {decision.comment!r}"
    outcome = "" if decision.final or decision.decision == "escalated" else ", review still open"
    lines = [f"  {decision.review}{place}: {decision.decision} {who}{outcome}; {said}"]
    if decision.deadline:
        lines.append(f"      new deadline {decision.deadline}")
    if decision.shown_sha256:
        lines.append(f"      shown    sha256 {decision.shown_sha256}")
    if decision.confirmed:
        lines.append(f"      confirmed {', '.join(decision.confirmed)}")
    for change in decision.overrides or []:
        lines.append(f"      override {canonical_json(change)}")
    return lines


def format_account(account: Account) -> str:
    """A readable account of a verified run; (*) marks labels the record does not pin."""
    lines = [
        f"Run {account.run_id}: {account.status}",
        f"  procedure    {account.procedure_id} {account.procedure_name!r} (*), "
        f"version {account.version}",
        f"  environment  {account.environment}, started via {account.run_type}",
        f"  started by   {account.started_by} (*); recorded actor {account.created_by!r}",
        f"  inputs       sha256 {account.inputs_sha256}",
        f"Steps ({len(account.steps)})",
    ]
    for step in account.steps:
        lines.append(
            f"  #{step.sequence} {step.node_id}: {step.status}, attempt {step.attempt}\n"
            f"      request  {_sha(step.request_sha256)}\n"
            f"      response {_sha(step.response_sha256)}"
        )
    lines.append(f"Decisions ({len(account.decisions)})")
    for decision in account.decisions:
        lines.extend(_decision_lines(decision))
    if account.failure is not None:
        lines.append("Failure")
        lines.append("  " + _pretty(account.failure).replace("\n", "\n  "))
    else:
        lines.append("Output")
        lines.append("  " + _pretty(account.output).replace("\n", "\n  "))
    lines.append(
        f"Ledger: {account.events} events included in the tree of {account.tree_size} leaves "
        f"of {account.origin}, checkpoint signed by {account.key}"
    )
    lines.append("(*) as the bundle labels it: not covered by any digest")
    return "\n".join(lines)
