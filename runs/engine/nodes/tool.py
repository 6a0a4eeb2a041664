"""`tool`: call an integration's tool, then go to `next`.

The call itself is made by the driver outside any transaction (runs.engine.tools), so this
handler is only asked for the node after it.
"""

from procedures.node_types import NodeType


class ToolNode:
    node_type = NodeType.TOOL

    def successor(self, node: dict, step) -> str:
        return node["next"]

    def execute(self, ctx) -> bool:
        raise AssertionError("tool nodes are called by the driver, outside any transaction")
