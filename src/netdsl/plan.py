"""Plans: a checked model with every argument evaluated, ready to build.

:mod:`netdsl.check` turns nodes plus parameter values into a plan; :mod:`netdsl.build` turns a
plan into modules. Later passes (shape inference) may fill in layer arguments before the build,
so :class:`LayerPlan` keeps its keyword arguments in a mutable dict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from . import nodes as n
from .errors import Span


@dataclass
class LayerPlan:
    """One layer: ``cls(*args, **kwargs)``, arguments exactly as written (or filled in)."""

    cls: type[nn.Module]
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    span: Span

    def call_text(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"


@dataclass
class SequentialPlan:
    """Children in order; all named (an ``OrderedDict``) or all unnamed (``None``)."""

    items: list[tuple[str | None, Plan]]
    span: Span


@dataclass
class ListPlan:
    items: list[Plan]
    span: Span


@dataclass
class DictPlan:
    items: list[tuple[str, Plan]]
    span: Span


@dataclass
class RulePlan:
    """An init rule with its function resolved; arguments are evaluated per parameter."""

    rule: n.InitRule
    func: Callable[..., Any]
    target_cls: type[nn.Module] | None
    env: dict[str, Any]
    lets: list[n.Let]  # the init block's lets this rule needs, in order
    uses_fan: bool

    def rank(self, index: int) -> tuple[int, int, int]:
        """Precedence: path glob > module type > ``*``; a named parameter > ``*``; later wins."""
        target = {"path": 2, "type": 1, "any": 0}[self.rule.target_kind]
        return (target, 0 if self.rule.param == "*" else 1, index)


@dataclass
class ModelPlan:
    """A model or a block instance: its children, compiled forward and init rules."""

    name: str
    children: list[tuple[str, Plan]]
    forward: Callable[..., Any]
    rules: list[RulePlan] = field(default_factory=list)
    span: Span | None = None


Plan = LayerPlan | SequentialPlan | ListPlan | DictPlan | ModelPlan

ChildKind = Literal["module", "sequential", "list", "dict"]


def child_kind(plan: Plan) -> ChildKind:
    """How a forward may use a child: call it, iterate it, index it."""
    if isinstance(plan, SequentialPlan):
        return "sequential"
    if isinstance(plan, ListPlan):
        return "list"
    if isinstance(plan, DictPlan):
        return "dict"
    return "module"
