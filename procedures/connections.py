"""Which connections a procedure's live runs use, and which they would miss.

A live tool call goes through the live Connection of the tool's integration; without one the
tool fails the run at its first call ("no live connection configured for stripe"). The Run form
asks here first, so a live run that could not work is refused before it exists.
"""

from dataclasses import dataclass, field

from procedures.models import Connection, Environment
from procedures.node_types import NodeType
from procedures.tools import get_tool


@dataclass
class LiveReadiness:
    connections: list[Connection] = field(default_factory=list)  # the ones live runs will use
    missing: dict[str, list[str]] = field(default_factory=dict)  # integration -> its tools

    @property
    def refusal(self) -> str | None:
        """Why a live run cannot start, naming each missing connection, or None."""
        if not self.missing:
            return None
        needs = "; ".join(
            f"“{integration}” (for {', '.join(tools)})"
            for integration, tools in sorted(self.missing.items())
        )
        plural = "s" if len(self.missing) > 1 else ""
        return (
            f"Live is not available: this procedure needs a live connection{plural} for {needs}, "
            "and none is configured. An administrator adds it under Admin → Connections; "
            "until then, run it in sandbox."
        )


def live_readiness(definition: dict) -> LiveReadiness:
    """The live connections the definition's tools need: those configured and those missing."""
    needed: dict[str, list[str]] = {}
    for node in (definition.get("nodes") or {}).values():
        if not isinstance(node, dict) or node.get("type") != NodeType.TOOL:
            continue
        tool = get_tool(node.get("tool")) if isinstance(node.get("tool"), str) else None
        if tool is not None and tool.live_needs_connection:
            tools = needed.setdefault(tool.integration, [])
            if tool.name not in tools:
                tools.append(tool.name)
    if not needed:
        return LiveReadiness()
    configured = list(
        Connection.objects.filter(environment=Environment.LIVE, integration__in=needed).order_by(
            "integration"
        )
    )
    have = {connection.integration for connection in configured}
    missing = {
        integration: tools for integration, tools in needed.items() if integration not in have
    }
    return LiveReadiness(connections=configured, missing=missing)
