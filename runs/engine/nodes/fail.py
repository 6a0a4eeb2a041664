"""`fail`: finish the run, failed (permanently), with the node's reason."""

from procedures.node_types import NodeType


class FailNode:
    node_type = NodeType.FAIL

    def successor(self, node: dict, step) -> None:
        return None

    def execute(self, ctx) -> bool:
        reason = ctx.node.get("reason") or f"The procedure ended at fail node '{ctx.node_id}'."
        ctx.fail_at_node(self.node_type, input=None, reason=reason)
        return False
