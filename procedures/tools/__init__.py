"""The registry of integration tools, one module per integration."""

from procedures.tools.base import (
    PermanentToolError,
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
    TransientToolError,
)

_REGISTRY: dict[str, Tool] = {}


def register(tool_class: type[Tool]) -> type[Tool]:
    if tool_class.name in _REGISTRY:
        raise RuntimeError(f"tool {tool_class.name} is registered twice")
    _REGISTRY[tool_class.name] = tool_class()
    return tool_class


def get_tool(name: str) -> Tool | None:
    _load_builtin_tools()
    return _REGISTRY.get(name)


def all_tools() -> dict[str, Tool]:
    _load_builtin_tools()
    return dict(sorted(_REGISTRY.items()))


def _load_builtin_tools() -> None:
    # Importing a module registers its tools; import lazily to keep start-up light.
    from procedures.tools import builtin  # noqa: F401


__all__ = [
    "PermanentToolError",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "TransientToolError",
    "all_tools",
    "get_tool",
    "register",
]
