"""`output`: finish the run, completed, with the mapped value (and the node's business outcome,
when it declares one)."""

from procedures.expressions import ExpressionError, resolve
from procedures.node_types import NodeType
from runs.models import RunStatus


class OutputNode:
    node_type = NodeType.OUTPUT

    def successor(self, node: dict, step) -> None:
        return None

    def execute(self, ctx) -> bool:
        mapping = ctx.node.get("value")
        try:
            value = resolve(mapping, ctx.expression_context)
        except ExpressionError as exc:
            ctx.fail_expression(self.node_type, exc)
            return False
        ctx.record_step(self.node_type, input=mapping, output=value)
        ctx.transition(RunStatus.COMPLETED, output=value, outcome=ctx.node.get("outcome") or "")
        return False
