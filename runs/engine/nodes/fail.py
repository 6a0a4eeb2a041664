"""`fail`: finish the run, failed, with the node's reason: permanently, or, when the node declares
a business outcome (`outcome: declined`), as that outcome (failure kind `business`)."""

from procedures.node_types import NodeType


class FailNode:
    node_type = NodeType.FAIL

    def successor(self, node: dict, step) -> None:
        return None

    def execute(self, ctx) -> bool:
        reason = ctx.node.get("reason") or f"The procedure ended at fail node '{ctx.node_id}'."
        outcome = ctx.node.get("outcome")
        if outcome:
            ctx.end_with_outcome(self.node_type, outcome=outcome, reason=reason)
        else:
            ctx.fail_at_node(self.node_type, input=None, reason=reason)
        return False
