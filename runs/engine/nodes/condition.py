"""`condition`: evaluate an expression; go to `then` when it is true, else to `else`."""

from procedures.expressions import ExpressionError, evaluate
from procedures.node_types import NodeType


class ConditionNode:
    node_type = NodeType.CONDITION

    def successor(self, node: dict, step) -> str:
        return node["then"] if step.output else node["else"]

    def execute(self, ctx) -> bool:
        expression = ctx.node["expression"]
        try:
            result = bool(evaluate(expression, ctx.expression_context))
        except ExpressionError as exc:
            ctx.fail_expression(self.node_type, exc)
            return False
        ctx.record_step(self.node_type, input={"expression": expression}, output=result)
        return True
