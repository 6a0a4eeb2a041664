"""The picture of a run: its procedure's nodes in reading order, each with what happened there.

The Overview tab draws it (plain HTML and CSS); the Step Log groups a node's attempts with
`attempt_groups`. Nothing here writes.

Reading order is the definition's own, from `start`: a node, then the node its `next` names;
at a condition, both branches (`then` first), each up to the node where they meet again, and
then that node. A node already drawn (a loop back) is a jump to it, so every node appears once.

What happened at a node comes from its steps (a step per execution: a tool's attempts are steps
of their own), read in one query of the few columns it needs, plus one for the conditions'
results (which branch each took). A node a run never executed is "not taken" when it lies on a
branch the run did not take, else "not reached" (the run ended, or has not got there yet).
"""

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from procedures.definition_graph import successors
from procedures.node_types import NodeType
from runs.engine.interpreter import RunState, next_node_id
from runs.models import FailureKind, Run, RunStatus, Step, StepStatus, duration_ms

# A node's outcome; also the suffix of its CSS class (`pnode-<outcome>`).
SUCCEEDED = "succeeded"
FAILED = "failed"
RETRYING = "retrying"  # an attempt failed transiently; the next one is due
IN_PROGRESS = "in_progress"
WAITING = "waiting"  # a human review waiting for its decision
BUSINESS = "business"  # a fail or output node's business outcome (`outcome: declined`)
NOT_TAKEN = "not_taken"
NOT_REACHED = "not_reached"
OFF_PATH = frozenset({NOT_TAKEN, NOT_REACHED})

# A node executed more often than this (a loop) lists only its latest attempts; the Step Log
# has them all.
ATTEMPTS_SHOWN = 10
BRANCH_LABELS = {"then": "If true", "else": "If false", "next": "Then"}
STEP_COLUMNS = (
    "sequence",
    "node_id",
    "node_type",
    "status",
    "attempt",
    "error",
    "error_kind",
    "started_at",
    "finished_at",
)


def outcome_label(slug: str) -> str:
    """A business outcome as people read it: "not_eligible" is "Not eligible"."""
    return slug.replace("_", " ").strip().capitalize()


@dataclass(frozen=True)
class Attempt:
    """One execution of a node (one step)."""

    sequence: int
    number: int  # the step's attempt: 1, then 2, 3 for a tool's retries
    status: str
    error: str
    error_kind: str
    started_at: object
    finished_at: object

    @property
    def duration_ms(self) -> float | None:
        return duration_ms(self.started_at, self.finished_at)

    @property
    def failed(self) -> bool:
        return self.status == StepStatus.FAILED and self.error_kind != FailureKind.BUSINESS


@dataclass
class Branch:
    key: str  # "then" or "else"
    target: str
    items: list = field(default_factory=list)  # of PictureNode and Jump
    taken: bool = False

    @property
    def label(self) -> str:
        return BRANCH_LABELS.get(self.key, self.key)


@dataclass
class Jump:
    """The line goes on at a node drawn elsewhere (a loop back to it)."""

    target: str


@dataclass
class PictureNode:
    id: str
    type: str
    definition: dict
    attempts: list[Attempt] = field(default_factory=list)
    outcome: str = NOT_REACHED
    label: str = "Not reached"
    business_outcome: str = ""
    branches: list[Branch] = field(default_factory=list)
    waiting_since: object = None

    @property
    def on_path(self) -> bool:
        return self.outcome not in OFF_PATH

    @property
    def type_label(self) -> str:
        return NodeType(self.type).label if self.type in NodeType.values else self.type

    @property
    def tool(self) -> str:
        return self.definition.get("tool", "") if self.type == NodeType.TOOL else ""

    @property
    def title(self) -> str:
        return self.definition.get("title", "") if self.type == NodeType.HUMAN_REVIEW else ""

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def shown_attempts(self) -> list[Attempt]:
        return self.attempts[-ATTEMPTS_SHOWN:]

    @property
    def earlier_attempts(self) -> int:
        return max(0, len(self.attempts) - ATTEMPTS_SHOWN)

    @property
    def lists_attempts(self) -> bool:
        """Whether the picture lists the attempts: more than one, or one that failed."""
        return len(self.attempts) > 1 or any(a.failed for a in self.attempts)


@dataclass
class RunPicture:
    items: list  # of PictureNode and Jump, in reading order
    nodes: dict[str, PictureNode]

    @property
    def visited(self) -> int:
        return sum(1 for node in self.nodes.values() if node.attempts)


def run_picture(run: Run, *, waiting_node_id: str = "", waiting_since=None) -> RunPicture:
    """The run's nodes in reading order with their outcomes. `waiting_node_id` is the human
    review node the run waits at (the reviews app's pending request), if any."""
    definition = run.version.definition
    definitions = definition.get("nodes") or {}
    steps = list(Step.objects.filter(run=run).order_by("sequence").values_list(*STEP_COLUMNS))
    # Which branch each condition took: its steps' outputs (a boolean each), read apart so the
    # tools' outputs, which can be large, are not read at all.
    decided = dict(
        Step.objects.filter(run=run, node_type=NodeType.CONDITION).values_list("sequence", "output")
    )
    nodes = {
        node_id: PictureNode(node_id, node.get("type", ""), node)
        for node_id, node in definitions.items()
        if isinstance(node, dict)
    }
    taken: dict[str, str] = {}
    for sequence, node_id, node_type, status, attempt, error, kind, started, finished in steps:
        node = nodes.get(node_id)
        if node is None:
            continue  # a step of a node this version does not have: shown in the Step Log
        node.attempts.append(Attempt(sequence, attempt, status, error, kind, started, finished))
        if node_type == NodeType.CONDITION and status == StepStatus.SUCCEEDED:
            taken[node_id] = "then" if decided.get(sequence) else "else"

    items = _layout(definition.get("start"), nodes, taken)
    current = _current_node(run, definition, steps, decided)
    for node in nodes.values():
        _settle(node, run, taken, waiting_node_id, waiting_since, current)
    _mark_not_taken(items)
    return RunPicture(items=items, nodes=nodes)


def _layout(start, nodes: dict[str, PictureNode], taken: dict[str, str]) -> list:
    edges = {node_id: successors(node.definition, nodes) for node_id, node in nodes.items()}
    placed: set[str] = set()

    def line(node_id, stops: frozenset) -> list:
        items = []
        while node_id is not None and node_id not in stops:
            if node_id in placed or node_id not in nodes:
                items.append(Jump(node_id))
                break
            placed.add(node_id)
            node = nodes[node_id]
            items.append(node)
            targets = edges[node_id]
            if len(targets) < 2:
                node_id = targets[0] if targets else None
                continue
            # Only a condition hands over to two nodes (procedures.definition_graph).
            keys = ("then", "else")
            join = _meeting_point(targets, edges, placed)
            inner = stops | {join} if join is not None else stops
            for key, target in zip(keys, targets, strict=False):
                branch = Branch(key, target, taken=taken.get(node_id) == key)
                branch.items = line(target, inner)
                node.branches.append(branch)
            node_id = join
        return items

    items = line(start, frozenset()) if start in nodes else []
    # A node no path leads to (the validator refuses them; a version from before it may have
    # one) is still shown, after the rest.
    for node_id in nodes:
        if node_id not in placed:
            items.extend(line(node_id, frozenset()))
    return items


def _meeting_point(targets: list[str], edges: dict[str, list[str]], placed: set) -> str | None:
    """Where the branches starting at `targets` meet again: the node every one of them reaches
    that is nearest to all of them (fewest steps in all), or None when they never meet. A
    branch that loops back to a node drawn already meets nothing there."""
    distances = [_distances(target, edges, placed) for target in targets]
    common = set(distances[0]).intersection(*distances[1:])
    if not common:
        return None
    order = {node_id: position for position, node_id in enumerate(edges)}
    return min(common, key=lambda n: (sum(d[n] for d in distances), order.get(n, 0)))


def _distances(source: str, edges: dict[str, list[str]], placed: set) -> dict[str, int]:
    if source in placed:
        return {}
    found = {source: 0}
    queue = deque([source])
    while queue:
        node_id = queue.popleft()
        for target in edges.get(node_id, ()):
            if target not in found and target not in placed:
                found[target] = found[node_id] + 1
                queue.append(target)
    return found


class _LastStep(NamedTuple):
    node_id: str
    status: str
    output: object


def _current_node(run: Run, definition: dict, steps: list, decided: dict) -> str | None:
    """The node an unfinished run is at now (being called, or next), from its committed steps
    the way the engine itself finds it."""
    if run.status not in (RunStatus.PENDING, RunStatus.RUNNING):
        return None
    # The engine reads only these of the last step (a condition's output says its branch).
    state = RunState(steps=[_LastStep(s[1], s[3], decided.get(s[0])) for s in steps[-1:]])
    try:
        return next_node_id(definition, state)
    except (KeyError, TypeError):
        return None


def _settle(
    node: PictureNode,
    run: Run,
    taken: dict[str, str],
    waiting_node_id: str,
    waiting_since,
    current: str | None,
) -> None:
    """The node's outcome and its label, from its latest attempt."""
    node.business_outcome = node.definition.get("outcome", "") or ""
    if node.id == waiting_node_id and run.status == RunStatus.AWAITING_REVIEW:
        node.outcome, node.label, node.waiting_since = WAITING, "Waiting for review", waiting_since
        return
    last = node.last
    if last is None:
        if node.id == current:
            node.outcome = IN_PROGRESS
            node.label = "Starting" if run.status == RunStatus.PENDING else "In progress"
        return
    attempts = last.number
    if last.status == StepStatus.RUNNING:
        node.outcome, node.label = IN_PROGRESS, "In progress"
    elif last.status == StepStatus.SUCCEEDED:
        node.outcome, node.label = SUCCEEDED, _succeeded_label(node, taken, attempts)
        if node.type == NodeType.OUTPUT and node.business_outcome:
            node.outcome, node.label = BUSINESS, outcome_label(node.business_outcome)
    elif last.error_kind == FailureKind.BUSINESS:
        node.outcome, node.label = BUSINESS, outcome_label(node.business_outcome or "outcome")
    elif last.error_kind == FailureKind.REJECTED:
        node.outcome, node.label = FAILED, "Rejected by review"
    elif (
        last.error_kind == FailureKind.TRANSIENT
        and node.id == current
        and run.status == RunStatus.RUNNING
    ):
        node.outcome, node.label = RETRYING, f"Attempt {attempts} failed; retrying"
    else:
        node.outcome = FAILED
        node.label = f"Failed after {attempts} attempts" if attempts > 1 else "Failed"


def _succeeded_label(node: PictureNode, taken: dict[str, str], attempts: int) -> str:
    if node.type == NodeType.CONDITION:
        key = taken.get(node.id)
        target = node.definition.get(key, "") if key else ""
        return f"{'True' if key == 'then' else 'False'}: went to {target}"
    if node.type == NodeType.HUMAN_REVIEW:
        return "Approved"
    if node.type == NodeType.OUTPUT:
        return "Completed the run"
    return f"Succeeded on attempt {attempts}" if attempts > 1 else "Succeeded"


def _mark_not_taken(items: list, off_branch: bool = False) -> None:
    """Unvisited nodes on a branch the run did not take are "not taken", not "not reached"."""
    for item in items:
        if isinstance(item, Jump):
            continue
        if off_branch and item.outcome == NOT_REACHED:
            item.outcome, item.label = NOT_TAKEN, "Not taken"
        visited = bool(item.attempts)
        for branch in item.branches:
            _mark_not_taken(branch.items, off_branch or (visited and not branch.taken))


# --- the Step Log: a node's attempts under it ---------------------------------------------
@dataclass
class AttemptGroup:
    """Consecutive steps of one node, each the next attempt of the one before (a tool's
    retries); most groups hold one step."""

    steps: list

    @property
    def final(self):
        return self.steps[-1]

    @property
    def earlier(self) -> list:
        return self.steps[:-1]

    @property
    def is_retried(self) -> bool:
        return self.final.attempt > 1

    @property
    def begins_on_earlier_page(self) -> bool:
        return self.steps[0].attempt > 1


def attempt_groups(steps: list) -> list[AttemptGroup]:
    """A page of the step log, each node's run of attempts as one group."""
    groups: list[AttemptGroup] = []
    for step in steps:
        if groups:
            previous = groups[-1].final
            if (
                step.node_id == previous.node_id
                and step.attempt == previous.attempt + 1
                and previous.status == StepStatus.FAILED
            ):
                groups[-1].steps.append(step)
                continue
        groups.append(AttemptGroup([step]))
    return groups


def group_label(group: AttemptGroup, run: Run) -> str:
    """What a group of retried attempts came to: "Succeeded on attempt 3"."""
    final = group.final
    if final.status == StepStatus.SUCCEEDED:
        return f"Succeeded on attempt {final.attempt}"
    if final.status == StepStatus.RUNNING:
        return f"Attempt {final.attempt} in progress"
    if run.status == RunStatus.RUNNING and final.error_kind == FailureKind.TRANSIENT:
        # A running run's transient failure is always its latest step: the next attempt is due.
        return f"Attempt {final.attempt} failed; retrying"
    return f"Failed after {final.attempt} attempts"
