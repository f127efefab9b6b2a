"""The graph model: what netdsl.graph draws, and both writers (netdsl.graph_render) walk.

Nodes are the steps of a forward, groups the clusters they are drawn in (block calls, method
calls, folded loops and runs of alike groups of a sequential's children), edges the tensors
between them, each with its shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

NodeKind = Literal["input", "layer", "op", "block", "choice", "tensor", "output"]
GroupKind = Literal["model", "block", "sequential", "call", "loop"]


@dataclass
class Node:
    """A step of the forward: an input, a layer call, an op, a folded block, the output."""

    id: str
    kind: NodeKind
    name: str  # the module path (layers, blocks), the op or the input's name
    detail: str = ""  # the layer's call, the block's call, the input's shape
    # Module paths, one per folded loop iteration (one for an unfolded layer or block).
    paths: list[str] = field(default_factory=list)
    repeat: int = 1
    scope: str = ""  # the path of the block or sequential it is drawn in: paths are shown from it
    # The call site in the forward that made it (None: a sequential's child); within one call
    # of a forward, a site that runs again is a loop's next iteration.
    site: object = field(default=None, repr=False, compare=False)
    # The cluster a --depth fold draws as this node: two such nodes are alike only when what
    # they stand for is (two sequentials' calls read the same, `sequential`).
    folded: Group | None = field(default=None, repr=False, compare=False)


@dataclass
class Edge:
    source: str
    target: str
    shape: str  # "[N, 64, 56, 56]"; several ("... or ...") where a dict choice changes it
    dims: tuple[str, ...] = ()  # the first run's shape, a text per dimension


@dataclass
class Group:
    """A cluster: a block or sequential call, a method call, a folded loop's body or a folded
    run of alike groups of a sequential's children."""

    id: str
    kind: GroupKind
    name: str
    detail: str = ""
    path: str = ""  # the module's path (blocks, sequentials)
    depth: int = 0  # how many module calls it is nested in (the model is 0)
    items: list[Node | Group] = field(default_factory=list)
    # One per folded loop iteration; a folded run of a sequential's groups of children:
    # the children it covers.
    paths: list[str] = field(default_factory=list)
    repeat: int = 1
    scope: str = ""  # as Node.scope
    site: object = field(default=None, repr=False, compare=False)  # as Node.site

    def nodes(self) -> Iterator[Node]:
        """Every node inside, in forward order."""
        for item in self.items:
            if isinstance(item, Node):
                yield item
            else:
                yield from item.nodes()


@dataclass
class Graph:
    model: str
    root: Group
    edges: list[Edge]

    def nodes(self) -> list[Node]:
        return list(self.root.nodes())


__all__ = ["Edge", "Graph", "Group", "GroupKind", "Node", "NodeKind"]
