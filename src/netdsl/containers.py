"""Containers: ``sequential { }``, ``list [ ]`` and ``dict { }`` bodies -> container plans.

Each body runs its build-time logic (:mod:`netdsl.body`) in its model's scope; what remains are
modules, named modules and repeats, checked here against what the container may hold, with
the keys torch would accept.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from . import codes
from . import nodes as n
from .body import key_of, run
from .errors import fail
from .evaluate import evaluate, iterate
from .plan import DictPlan, ListPlan, Plan, SequentialPlan
from .values import Env, bind_target, budget_of

if TYPE_CHECKING:
    from .check import Checker
    from .imports import Unit


@functools.cache
def attributes(container: type[nn.Module]) -> frozenset[str]:
    """Names a child or key cannot take: torch would clash with the module's own attributes."""
    return frozenset(dir(container()))


_KIND = {n.Sequential: "sequential", n.ListBlock: "list", n.DictBlock: "dict"}
_CLASS = {"sequential": nn.Sequential, "list": nn.ModuleList, "dict": nn.ModuleDict}


def plan_container(checker: Checker, node: n.Module, unit: Unit, env: Env) -> Plan:
    kind = _KIND[type(node)]
    sink = ContainerSink(checker, unit, kind)
    run(node.items, env, sink, checker.collect)  # type: ignore[union-attr]
    if kind == "list":
        return ListPlan([plan for _, plan in sink.items], node.span)
    if kind == "dict":
        return DictPlan([(key or "", plan) for key, plan in sink.items], node.span)
    return SequentialPlan(sink.items, node.span)


@dataclass
class ContainerSink:
    checker: Checker
    unit: Unit
    kind: str  # "sequential", "list" or "dict"
    items: list[tuple[str | None, Plan]] = field(default_factory=list)
    named: Any = None  # the first named item of a sequential, and the first unnamed one
    unnamed: Any = None

    def item(self, item: Any, env: Env) -> None:
        if isinstance(item, n.Named):
            self._named(item, env)
        elif isinstance(item, n.Repeat):
            self._repeat(item, env)
        elif isinstance(item, (n.Layer, n.Sequential, n.ListBlock, n.DictBlock)):
            self._unnamed(item, env)
        else:
            fail(_misplaced(item, self.kind), item.span, codes.CONTAINER)

    def absent(self, names: list[str]) -> None:
        pass

    def broken(self, names: list[str]) -> None:
        pass

    def defined(self, name: str) -> str | None:
        return None

    def _named(self, item: n.Named, env: Env) -> None:
        if self.kind == "list":
            fail("list items have no names; use a dict or a sequential for named modules",
                 item.name.span, codes.CONTAINER)
        self._mix(item, named=True)
        key = key_of(item.name, env)
        check_key(key, item.name.span, [k for k, _ in self.items], _CLASS[self.kind],
                  self.kind)
        self._add(key, self.checker.module(item.module, self.unit, env))

    def _unnamed(self, item: n.Module, env: Env) -> None:
        if self.kind == "dict":
            fail("a dict's items need keys: key: Layer(...)", item.span, codes.CONTAINER)
        self._mix(item, named=False)
        self._add(None, self.checker.module(item, self.unit, env))

    def _repeat(self, item: n.Repeat, env: Env) -> None:
        if self.kind == "dict":
            fail("a dict's items need keys, so a repeat cannot be one; write a for loop "
                 "with f-string keys: for i in range(3) { f\"k{i}\": Layer(...) }",
                 item.span, codes.CONTAINER)
        self._mix(item, named=False)
        values = iterate(evaluate(item.iter, env), item.iter.span, budget_of(env))
        self.checker.count(len(values), item.span, reserve=False)
        for value in values:  # a comprehension: its variables are its own
            scope = env.child()
            bind_target(item.target, value, scope, item.span)
            with self.checker.collect():
                self._add(None, self.checker.module(item.module, self.unit, scope))

    def _mix(self, item: Any, *, named: bool) -> None:
        """A sequential's children are all named (an OrderedDict) or all unnamed."""
        if self.kind != "sequential":
            return
        if named:
            self.named = self.named or item
        else:
            self.unnamed = self.unnamed or item
        if self.named is not None and self.unnamed is not None:
            fail("name every child of this sequential or none of them", item.span, codes.CONTAINER)

    def _add(self, key: str | None, plan: Plan | None) -> None:
        if plan is not None:
            self.items.append((key, plan))


def check_key(key: str, span: Any, taken: list[str | None], container: type, what: str
              ) -> None:
    if not key or "." in key:
        fail(f"{what} key {key!r} must be non-empty and contain no '.'", span, codes.CONTAINER)
    if key in taken:
        fail(f"duplicate {what} key '{key}'", span, codes.DUPLICATE)
    if key in attributes(container):
        fail(f"{what} key '{key}' clashes with the nn.{container.__name__} attribute of that "
             f"name", span, codes.DUPLICATE)


_ITEM_NAMES = {n.InputDecl: "input declarations", n.Expect: "expectations",
               n.Forward: "a forward", n.DefDecl: "methods (def)", n.Init: "init blocks",
               n.InitRule: "init rules", n.TensorDecl: "params and buffers",
               n.TieDecl: "ties"}


def _misplaced(item: Any, kind: str) -> str:
    if isinstance(item, n.Child):
        if kind == "list":
            return "list items have no names; write the module alone: Layer(...)"
        return (f"children of a {kind} are named with ':' (name: Layer(...)), not '='"
                if kind == "sequential" else "a dict's items are written key: Layer(...)")
    what = next((text for cls, text in _ITEM_NAMES.items() if isinstance(item, cls)), "this")
    if isinstance(item, n.InitRule):
        return "an init rule belongs in init { ... } of a model or block"
    return f"{what} belong in a model's or block's body, not in a {kind}"


__all__ = ["ContainerSink", "attributes", "check_key", "plan_container"]
