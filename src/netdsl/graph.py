"""Graph: a checked model -> the data flow of its forward (nodes, edges, clusters), on meta.

The forward runs as the shape pass runs it (netdsl.shapes: a Probe per layer, the instrumented
forward), once more, with a recorder watching (netdsl.graph_record): each layer call, op and
block call becomes a node or a cluster, each tensor an edge labelled with its shape. Two passes
over the result make the picture readable: the blocks ``depth`` levels down fold into one node
each, and the iterations of a loop that are alike fold into one, with the repeat count, as do
three or more alike consecutive children of a sequential (ViT's encoder layers) and two or more
alike consecutive groups of them (VGG's convolution and ReLU pairs). The model drawn is in
netdsl.graph_model; writers for Mermaid and DOT, and the rendering through graphviz, in
netdsl.graph_render.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from . import codes
from .api import check_shapes, choose_model, given_inputs, open_spec, plan_model, raise_first
from .check import Checker
from .errors import UsageValueError, fail
from .fromtorch_write import MIN_REPEAT
from .graph_model import Edge, Graph, Group, Node
from .graph_record import record
from .limits import DEFAULT_LIMITS, Limits
from .registry import Registry
from .shapes import trace_shapes


def graph(path: Any, *, model: str | None = None,
          inputs: Sequence[Sequence[int | str]] | None = None, depth: int | None = None,
          modules: Mapping[str, type[nn.Module]] | None = None,
          limits: Limits = DEFAULT_LIMITS, params: Mapping[str, Any] | None = None,
          source: str | None = None) -> Graph:
    """The data flow of a spec's model; ``inputs`` replace its input declarations (as in
    :func:`netdsl.summary`), ``depth`` draws the blocks that many levels down as one node
    each, ``source`` is the file's text when it is not on disk (as for
    :func:`netdsl.diagnose`).

    ``params`` are the model's parameter values, a dict: a model may well have a parameter
    called ``depth``.
    """
    if inputs is not None:
        check_shapes(inputs, "inputs")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise UsageValueError(f"depth takes an int of at least 1 (or None), got {depth!r}")
    with open_spec(path, limits, source) as (_, unit):
        decl = choose_model(unit, model)
        plan = plan_model(unit, decl, Checker(Registry.with_modules(modules), limits),
                          params or {})
        declared = plan.inputs if inputs is None else given_inputs(plan, inputs, decl)
        if not any(i.shape is not None for i in declared):
            fail(f"{plan.name} declares no input shape, and a graph follows the tensors: "
                 f"declare one (input x: [N, ...]) or give --input", plan.span, codes.SHAPE)
        trace = trace_shapes(plan, declared)
        raise_first(trace.errors)
        recorded = record(plan, declared, trace)
    if depth is not None:
        fold_depth(recorded, depth)
    fold_loops(recorded)
    return recorded


# ---------------------------------------------------------------- folding blocks


def fold_depth(drawn: Graph, depth: int) -> None:
    """Each block or sequential call ``depth`` levels down becomes one node (1: the model's
    own children, as torchinfo's ``depth``)."""
    merged: dict[str, str] = {}
    _fold_deep(drawn.root, depth, merged)
    drawn.edges = _redirect(drawn.edges, merged, set())


def _fold_deep(group: Group, depth: int, merged: dict[str, str]) -> None:
    for index, item in enumerate(group.items):
        if not isinstance(item, Group):
            continue
        if item.kind in ("block", "sequential") and item.depth >= depth:
            node = Node(f"{item.id}_folded", "block", item.name, item.detail, [item.path],
                        scope=item.scope, site=item.site, folded=item)
            merged.update((inner.id, node.id) for inner in item.nodes())
            group.items[index] = node
        else:
            _fold_deep(item, depth, merged)


def _redirect(edges: list[Edge], merged: Mapping[str, str], dropped: set[tuple[str, str]]
              ) -> list[Edge]:
    """Edges between the nodes folded into others: inside one fold they disappear, the rest
    are redirected, each kept once."""
    seen: set[tuple[str, str, str]] = set()
    kept = []
    for edge in edges:
        if (edge.source, edge.target) in dropped:
            continue
        source, target = merged.get(edge.source, edge.source), merged.get(edge.target, edge.target)
        if source == target and (edge.source != source or edge.target != target):
            continue
        if (source, target, edge.shape) not in seen:
            seen.add((source, target, edge.shape))
            kept.append(Edge(source, target, edge.shape, edge.dims))
    return kept


# ---------------------------------------------------------------- folding loops

Run = tuple[int, int, int]  # alike iterations in a group's items: (start, period, count)


def fold_loops(drawn: Graph) -> None:
    """The iterations of a loop, when alike (same calls, same shapes), become one, repeated;
    so do MIN_REPEAT or more alike consecutive children of a sequential, and two or more
    alike consecutive groups of its children.

    Within one call of a forward, a call site runs twice only in a loop (a forward has no
    recursion and no while), so a repeating run of call sites is a loop's iterations.
    """
    signatures = _Signatures(drawn)
    while True:
        found = _find_loop(drawn.root, signatures)
        if found is None:
            return
        group, runs = found
        _fold(drawn, group, runs, signatures)
        signatures.forget()


@dataclass
class _Signatures:
    """What makes two iterations alike: the same calls, ops and shapes, item by item."""

    drawn: Graph
    _inputs: dict[str, list[str]] | None = None

    def forget(self) -> None:
        self._inputs = None

    def of(self, item: Node | Group) -> tuple[Any, ...]:
        if self._inputs is None:
            self._inputs = {}
            for edge in self.drawn.edges:
                self._inputs.setdefault(edge.target, []).append(edge.shape)
        if isinstance(item, Node):
            inside = self.of(item.folded) if item.folded is not None else None
            return (item.kind, item.detail, item.name if item.kind == "op" else "",
                    item.repeat, tuple(self._inputs.get(item.id, [])), inside)
        return (item.kind, item.detail, item.repeat, tuple(self.of(i) for i in item.items))


def _find_loop(group: Group, signatures: _Signatures) -> tuple[Group, list[Run]] | None:
    """The innermost, first run of alike iterations (a sequential's: all its runs), with the
    group they are in."""
    for item in group.items:
        if isinstance(item, Group):
            inner = _find_loop(item, signatures)
            if inner is not None:
                return inner
    sites = [item.site for item in group.items]
    following: dict[object, int] = {}
    again: list[int | None] = [None] * len(sites)  # where each item's site runs next
    for index in range(len(sites) - 1, -1, -1):
        if sites[index] is not None:
            again[index] = following.get(sites[index])
            following[sites[index]] = index
    for start, next_run in enumerate(again):
        if next_run is None:
            continue
        period = next_run - start
        count = _repeats(group.items, sites, start, period, signatures)
        if count > 1:
            return group, [(start, period, count)]
    runs = _alike_children(group, signatures) if _children_of_a_sequential(group) else []
    return (group, runs) if runs else None


def _children_of_a_sequential(group: Group) -> bool:
    """A sequential, or a folded run of its children, whose iteration may repeat inside
    (``(A, A, A, B) x 3``): their items have no call site."""
    return group.kind == "sequential" or (group.kind == "loop" and group.site is None)


MAX_PERIOD = 16  # the most children in a folded group: longer repeats are blocks in practice


def _alike_children(group: Group, signatures: _Signatures) -> list[Run]:
    """The runs of alike consecutive children of a sequential, folded as a loop's iterations
    are: MIN_REPEAT or more alike children (``Linear(64, 64)`` 45,000 times, ViT's encoder
    layers), or two or more alike groups of up to MAX_PERIOD children (VGG's ``Conv2d``,
    ``ReLU`` pairs).

    A sequential's children have no call site of their own (None for each), so that the runs
    are found by the signatures alone; all of them at once, as a sequential may hold
    thousands: the folding that covers the most children, the shortest period, then the
    latest run, on ties, from one pass over the children per period.
    """
    keys = _keys(group.items, signatures)
    matching = {period: _matching(keys, period)
                for period in range(1, min(MAX_PERIOD, len(keys) // 2) + 1)}
    # Only the periods that have a run somewhere: most sequentials have none at all.
    periods = [period for period, matches in matching.items()
               if max(matches) >= period * (_least(period) - 1)]
    best = [0] * (len(keys) + 1)  # best[i]: the most children the runs in keys[i:] cover
    ends = {period: [(0, 0)] * len(keys) for period in periods}
    chosen: list[Run | None] = [None] * len(keys)
    for start in range(len(keys) - 1, -1, -1):
        # No run first: on a tie, the later one. A differing first layer then takes its
        # activation along (VGG-16's Conv2d(128, 256), ReLU, then (Conv2d(256, 256), ReLU) x 2).
        best[start] = best[start + 1]
        for period in periods:
            end = _best_end(start, period, matching[period], best, ends[period])
            if end is not None and end - start + best[end] > best[start]:
                best[start] = end - start + best[end]
                chosen[start] = (start, period, (end - start) // period)
    return _runs_from(chosen)


def _keys(items: list[Node | Group], signatures: _Signatures) -> list[int]:
    """Each item's signature as a small int: equal ints, alike items."""
    numbers: dict[tuple[Any, ...], int] = {}
    return [numbers.setdefault(signatures.of(item), len(numbers)) for item in items]


def _matching(keys: list[int], period: int) -> list[int]:
    """For each child, how many children from it on equal the one ``period`` later."""
    matching = [0] * (len(keys) + 1)
    for index in range(len(keys) - period - 1, -1, -1):
        if keys[index] == keys[index + period]:
            matching[index] = matching[index + 1] + 1
    return matching


def _best_end(start: int, period: int, matching: list[int], best: list[int],
              ends: list[tuple[int, int]]) -> int | None:
    """Where a run of ``period`` from ``start`` best ends, so that it and the runs after it
    cover the most children (the most iterations on ties); None if it has too few iterations.

    The run one iteration later ends where this one may, but for this one's shortest end:
    ``ends`` keeps each start's best (covered + end, end), so that each takes one step.
    """
    least = _least(period)
    most = 1 + matching[start] // period
    if most < least:
        return None
    shortest = start + period * least
    found = (best[shortest] + shortest, shortest)
    if most > least:
        found = max(found, ends[start + period])
    ends[start] = found
    return found[1]


def _least(period: int) -> int:
    """The fewest iterations folded: MIN_REPEAT of one child, two of a group."""
    return MIN_REPEAT if period == 1 else 2


def _runs_from(chosen: list[Run | None]) -> list[Run]:
    """The runs of the best folding, from the first child on."""
    runs = []
    start = 0
    while start < len(chosen):
        run = chosen[start]
        runs += [run] if run is not None else []
        start += 1 if run is None else run[1] * run[2]
    return runs


def _repeats(items: list[Node | Group], sites: list[object], start: int, period: int,
             signatures: _Signatures) -> int:
    first = items[start:start + period]
    shape = [signatures.of(i) for i in first]
    count = 1
    while True:
        begin = start + count * period
        chunk = items[begin:begin + period]
        if len(chunk) < period or sites[begin:begin + period] != sites[start:start + period] \
                or [signatures.of(i) for i in chunk] != shape:
            return count
        count += 1


def _fold(drawn: Graph, group: Group, runs: list[Run], signatures: _Signatures) -> None:
    if _children_of_a_sequential(group):
        runs = [_fold_within(drawn, group, run, signatures) for run in reversed(runs)][::-1]
    merged: dict[str, str] = {}
    which: dict[str, tuple[int, int]] = {}  # node id -> (its run's start, its iteration)
    for run in reversed(runs):  # the last first, so that the earlier runs' indices hold
        _merge(group, run, merged, which)
    # An iteration's output feeding the next is the loop itself, drawn as the repeat count.
    dropped = {(e.source, e.target) for e in drawn.edges
               if e.source in which and e.target in which
               and which[e.source][0] == which[e.target][0]
               and which[e.source][1] != which[e.target][1]}
    drawn.edges = _redirect(drawn.edges, merged, dropped)


def _fold_within(drawn: Graph, group: Group, run: Run, signatures: _Signatures) -> Run:
    """The run with the alike children inside each of its groups folded first, as a loop's
    inner loops are (``(A, A, A, B) x 3``), so that the paths of each node stay in forward
    order; the alike groups fold alike, into fewer items each."""
    start, period, count = run
    if period == 1:
        return run
    iterations = [Group(f"{group.id}_{k}", "loop", "", depth=group.depth, items=group.items[
        start + k * period:start + (k + 1) * period]) for k in range(count)]
    for iteration in iterations:
        signatures.forget()
        inner = _alike_children(iteration, signatures)
        if inner:
            _fold(drawn, iteration, inner, signatures)
    signatures.forget()
    group.items[start:start + period * count] = [i for it in iterations for i in it.items]
    return start, len(iterations[0].items), count


def _merge(group: Group, run: Run, merged: dict[str, str],
           which: dict[str, tuple[int, int]]) -> None:
    """A run's first iteration stands for all: the others' nodes merge into its nodes."""
    start, period, count = run
    iterations = [group.items[start + k * period:start + (k + 1) * period]
                  for k in range(count)]
    first = iterations[0]
    children = [path for item in group.items[start:start + period * count]
                for path in item.paths]
    for k, iteration in enumerate(iterations):
        for kept, other in zip(_flat(first), _flat(iteration), strict=True):
            which[other.id] = (start, k)
            if k:
                merged[other.id] = kept.id
                kept.paths += other.paths
        for kept_item, other_item in zip(first, iteration, strict=True):
            if k and isinstance(kept_item, Group) and isinstance(other_item, Group):
                kept_item.paths += other_item.paths
    group.items[start:start + period * count] = [_repeated(first, count, group, children)]


def _flat(items: list[Node | Group]) -> list[Node]:
    return [node for item in items
            for node in ([item] if isinstance(item, Node) else item.nodes())]


def _repeated(first: list[Node | Group], count: int, parent: Group,
              children: list[str]) -> Node | Group:
    """One iteration standing for all: the item itself when it is one, else a loop cluster,
    named by the children it covers when they are a sequential's (``16 … 19``)."""
    if len(first) == 1:
        first[0].repeat *= count
        return first[0]
    return Group(f"{first[0].id}_loop", "loop", "loop", depth=parent.depth, items=first,
                 paths=children if first[0].site is None else [], repeat=count,
                 scope=first[0].scope, site=first[0].site)


__all__ = ["Edge", "Graph", "Group", "Node", "fold_depth", "fold_loops", "graph"]
