"""The node types runs itself executes, one module each; registered by RunsConfig.ready."""

from runs.engine.nodes.condition import ConditionNode
from runs.engine.nodes.fail import FailNode
from runs.engine.nodes.output import OutputNode
from runs.engine.nodes.tool import ToolNode

BUILT_IN_NODES = (ConditionNode(), OutputNode(), FailNode(), ToolNode())
