"""A review's policy: what its human_review node required when the run reached it, taken from
the definition once and pinned in the request (ReviewRequest.policy), so that a later reading
of the node can never change a review already under way.

- approvals: how many distinct reviewers must approve; one rejection ends the review;
- groups: whose members may decide (none: anyone with the reviewer role); after an
  escalation, only escalate_to's;
- the deadline: `timeout` after the request, then `on_timeout` reject (the default) or
  escalate to `escalate_to`, which has `escalation_timeout` (default: the same) to decide;
- confirm_above: approving a payment amount above it (minor units) asks for confirmation;
- payment: which shown fields are the amount and the payee;
- excluded_reviewer_ids: the starters of the run and of every run it retries (four-eyes).
"""

from dataclasses import asdict, dataclass, field, fields

from procedures.definition_checks import duration_seconds, override_spec
from procedures.definition_review import MAX_APPROVALS
from procedures.expressions import evaluate

REJECT, ESCALATE = "reject", "escalate"


class PolicyError(ValueError):
    """The node's policy cannot be applied to this run (an approvals expression gave no
    whole number from 1 to MAX_APPROVALS)."""


@dataclass(frozen=True)
class ReviewPolicy:
    approvals: int = 1
    groups: tuple[str, ...] = ()
    timeout_seconds: int | None = None
    on_timeout: str = REJECT
    escalate_to: str = ""
    escalation_timeout_seconds: int | None = None
    confirm_above: int | None = None
    payment: dict = field(default_factory=dict)
    excluded_reviewer_ids: tuple[int, ...] = ()

    def as_json(self) -> dict:
        data = asdict(self)
        data["groups"] = list(self.groups)
        data["excluded_reviewer_ids"] = list(self.excluded_reviewer_ids)
        return data

    @property
    def escalates(self) -> bool:
        return self.on_timeout == ESCALATE and bool(self.escalate_to)


def policy_of_node(node: dict, expression_context: dict, excluded: set[int]) -> ReviewPolicy:
    """The policy of a human_review node for the run at hand; raises ExpressionError when its
    approvals expression fails, PolicyError when it gives no valid number."""
    groups = node.get("groups") or ([node["reviewer_group"]] if node.get("reviewer_group") else [])
    timeout = duration_seconds(node["timeout"]) if "timeout" in node else None
    escalation = node.get("escalation_timeout")
    return ReviewPolicy(
        approvals=_approvals(node.get("approvals", 1), expression_context),
        groups=tuple(groups),
        timeout_seconds=timeout,
        on_timeout=node.get("on_timeout", REJECT),
        escalate_to=node.get("escalate_to", ""),
        escalation_timeout_seconds=duration_seconds(escalation) if escalation else timeout,
        confirm_above=node.get("confirm_above"),
        payment=dict(node.get("payment") or {}),
        excluded_reviewer_ids=tuple(sorted(excluded)),
    )


def _approvals(value, expression_context: dict) -> int:
    if isinstance(value, str):
        expression = value
        value = evaluate(expression, expression_context)
        if not (isinstance(value, int) and not isinstance(value, bool)):
            raise PolicyError(
                f"approvals `{expression}` gave {value!r}, not a whole number of approvers"
            )
    if not 1 <= value <= MAX_APPROVALS:
        raise PolicyError(f"approvals must be from 1 to {MAX_APPROVALS}, not {value}")
    return value


def policy_of_request(request) -> ReviewPolicy:
    """The pinned policy; a request recorded before policies existed had one approver, its
    node's reviewer_group and no deadline."""
    data = request.policy or {}
    if not data:
        groups = (request.reviewer_group,) if request.reviewer_group else ()
        return ReviewPolicy(groups=groups)
    known = {item.name for item in fields(ReviewPolicy)}
    return ReviewPolicy(
        **{
            **{key: value for key, value in data.items() if key in known},
            "groups": tuple(data.get("groups", ())),
            "excluded_reviewer_ids": tuple(data.get("excluded_reviewer_ids", ())),
        }
    )


def overridable_fields(node: dict) -> list[dict]:
    """The node's overridable fields as a request records them: [{name, schema, direction,
    max_change_percent}]."""
    return [
        {"name": name, **override_spec(spec)}
        for name, spec in (node.get("overridable") or {}).items()
    ]
