"""Import, the modes: one module's forward traced in training and in eval mode, as one graph.

A forward that reads ``self.training`` (GoogLeNet's and Inception's aux heads run only in
training, where they return a named tuple with the aux logits) is a different fx graph in each
mode. Both are traced; the statements they share are matched in order (difflib's longest
matching runs over the nodes' keys, a key saying what a node computes from what), and one
graph is made of the shared nodes and each mode's own, in an order that keeps both modes' own.
netdsl.fromtorch_forward writes a node of one mode under ``if training { ... }`` (or
``if not training``), and a call both modes make with their own mode
(``F.dropout(x, p, training=self.training)``) once, with ``training=training``. A module whose
two modes trace to the same graph is that graph, as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from difflib import SequenceMatcher

from torch import fx, nn

from .fromtorch_forward import TRAINING, trace

# The value of ``training`` under which a node of one mode only runs.
Modes = dict[fx.Node, bool]


def trace_modes(module: nn.Module, where: str) -> tuple[fx.Graph, Modes]:
    """The graph of the module's forward in both modes, and the mode of each node that runs in
    one only (no node when the two modes trace the same)."""
    train, evaluate = (_traced(module, where, mode) for mode in (True, False))
    plain: dict[Hashable, int] = {}
    if _keys(train, plain) == _keys(evaluate, plain):
        return train, {}
    keys: dict[Hashable, int] = {}
    train_keys, eval_keys = _keys(train, keys, True), _keys(evaluate, keys, False)
    return _merged(train, evaluate, _shared(train, evaluate, train_keys, eval_keys))


def _traced(module: nn.Module, where: str, mode: bool) -> fx.Graph:
    """The graph in one mode; every submodule's mode is restored afterwards (a model may hold
    a frozen BatchNorm in eval mode while it trains)."""
    modes = [(sub, sub.training) for sub in module.modules()]
    module.train(mode)
    try:
        return trace(module, where)
    finally:
        for sub, training in modes:
            sub.training = training


def _keys(graph: fx.Graph, keys: dict[Hashable, int], mode: bool | None = None) -> list[int]:
    """A number per node, the same in both graphs for the same computation: its op, target and
    arguments (their numbers), and how many times the graph computed it before (two calls of
    one dropout on one value are two draws). With the graph's ``mode``, a ``training=`` that
    is the mode is keyed as the mode, the same in both graphs."""
    numbers: dict[fx.Node, int] = {}
    seen: Counter[Hashable] = Counter()
    for node in graph.nodes:
        kwargs = {**node.kwargs, "training": TRAINING} if _passes_mode(node, mode) \
            else node.kwargs
        what = (node.op, node.target,
                repr(fx.node.map_arg((node.args, kwargs), lambda n: numbers[n])))
        seen[what] += 1
        numbers[node] = keys.setdefault((what, seen[what]), len(keys))
    return list(numbers.values())


def _shared(train: fx.Graph, evaluate: fx.Graph, train_keys: Sequence[int],
            eval_keys: Sequence[int]) -> dict[fx.Node, fx.Node]:
    """The eval node of each training node that both modes compute, from the same shared
    arguments (a match whose arguments are not matched to each other is no match)."""
    train_nodes, eval_nodes = list(train.nodes), list(evaluate.nodes)
    matcher = SequenceMatcher(None, train_keys, eval_keys, autojunk=False)
    shared: dict[fx.Node, fx.Node] = {}
    for i, j, size in matcher.get_matching_blocks():
        for t, e in zip(train_nodes[i:i + size], eval_nodes[j:j + size], strict=True):
            if [shared.get(a) for a in t.all_input_nodes] == e.all_input_nodes:
                shared[t] = e
    return shared


def _merged(train: fx.Graph, evaluate: fx.Graph, shared: dict[fx.Node, fx.Node]
            ) -> tuple[fx.Graph, Modes]:
    graph = fx.Graph()
    copies: dict[fx.Node, fx.Node] = {}  # the node of the merged graph for each of either mode
    modes: Modes = {}
    for node, mode in _in_order(list(train.nodes), list(evaluate.nodes), shared):
        copy = graph.node_copy(node, lambda n: copies[n])
        copies[node] = copy
        if mode is None:
            copies[shared[node]] = copy
            if _passes_mode(node, True) and _passes_mode(shared[node], False):
                copy.kwargs = {**copy.kwargs, "training": TRAINING}
        else:
            modes[copy] = mode
    return graph, modes


def _passes_mode(node: fx.Node, mode: bool | None) -> bool:
    """Whether the node passes ``training=mode``, the mode of its graph."""
    return mode is not None and node.kwargs.get("training", None) is mode


def _in_order(train: list[fx.Node], evaluate: list[fx.Node], shared: dict[fx.Node, fx.Node]
              ) -> Iterator[tuple[fx.Node, bool | None]]:
    """Every node once, with its mode (None: both), in an order that keeps each mode's: before
    each shared node, the nodes of training, then of eval, that come before it."""
    position = {node: k for k, node in enumerate(evaluate)}
    j = 0
    for node in train:
        other = shared.get(node)
        if other is None:
            yield node, True
            continue
        yield from ((e, False) for e in evaluate[j:position[other]])
        j = position[other] + 1
        yield node, None
    yield from ((e, False) for e in evaluate[j:])


__all__ = ["Modes", "trace_modes"]
