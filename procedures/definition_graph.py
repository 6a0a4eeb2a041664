"""The definition's nodes as a graph: who follows whom, who reaches whom, and its loops."""

from collections import deque
from typing import Any

from procedures.node_types import NodeType


def successors(node: Any, nodes: dict) -> list[str]:
    """The ids of the existing nodes a node can hand over to."""
    if not isinstance(node, dict):
        return []
    keys = ("then", "else") if node.get("type") == NodeType.CONDITION else ("next",)
    return [node[key] for key in keys if isinstance(node.get(key), str) and node[key] in nodes]


def reachable(sources: list[str], edges: dict[str, list[str]]) -> set[str]:
    seen = set(sources)
    queue = deque(sources)
    while queue:
        for target in edges[queue.popleft()]:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def strongly_connected(edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); each component lists its nodes in definition order."""
    order = {node_id: position for position, node_id in enumerate(edges)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node_id, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(edges[target])))
                    break
                if target in on_stack:
                    low[node_id] = min(low[node_id], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node_id])
                if low[node_id] == index[node_id]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node_id:
                            break
                    components.append(sorted(component, key=order.__getitem__))
    return components
