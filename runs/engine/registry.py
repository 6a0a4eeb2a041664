"""The node types the engine can execute: one handler per `NodeType`.

runs registers its own (condition, output, fail, tool) and other apps plug theirs in from their
AppConfig.ready (the reviews app registers human_review), so the engine knows no app above it.
"""

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from runs.engine.context import NodeContext
    from runs.models import Step


class NodeHandler(Protocol):
    node_type: str

    def successor(self, node: dict, step: "Step") -> str | None:
        """The node after `node`, whose (succeeded) step is `step`; None for an end node."""

    def execute(self, ctx: "NodeContext") -> bool:
        """Execute the node inside the current transaction, recording through `ctx`. True to
        go on to the next node; False when the run stopped here (finished, failed, waiting)."""


_HANDLERS: dict[str, NodeHandler] = {}


def register(handler: NodeHandler) -> None:
    _HANDLERS[handler.node_type] = handler


def handler_for(node_type: str) -> NodeHandler | None:
    return _HANDLERS.get(node_type)
