"""Plans: a checked model with every argument evaluated, ready to build.

:mod:`netdsl.check` turns nodes plus parameter values into a plan; :mod:`netdsl.build` turns a
plan into modules. Later passes (shape inference) may fill in layer arguments before the build,
so :class:`LayerPlan` keeps its keyword arguments in a mutable dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from . import nodes as n
from .errors import Span
from .infer import InputDim


@dataclass
class LayerPlan:
    """One layer: ``cls(*args, **kwargs)``, arguments exactly as written (or filled in)."""

    cls: type[nn.Module]
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    span: Span
    # An input dimension the spec leaves out, filled in by the shape pass: (param, position).
    infer: tuple[InputDim, int] | None = None
    inferred: Any = None

    @property
    def complete(self) -> bool:
        return self.infer is None or self.inferred is not None

    def fill(self, value: Any) -> None:
        """Fill in the omitted input dimension, where it stands in the constructor's order."""
        assert self.infer is not None and self.inferred is None
        self.inferred = value
        param, position = self.infer
        if position <= len(self.args):
            self.args.insert(position, value)
        else:
            self.kwargs[param.param] = value

    def call_text(self, mark: str = "") -> str:
        """``Linear(400, 120)``; with ``mark``, the inferred argument is followed by it."""
        parts = self._parts()
        index = self._inferred_index()
        if mark and index is not None:
            parts[index] += mark
        return f"{self.name}({', '.join(parts)})"

    def written_text(self) -> str:
        """The call as the spec writes it: ``Linear(120)`` even once in_features is known."""
        parts = self._parts()
        index = self._inferred_index()
        if index is not None:
            del parts[index]
        return f"{self.name}({', '.join(parts)})"

    def _parts(self) -> list[str]:
        return [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]

    def __repr__(self) -> str:  # as an argument of another layer: its call
        return self.call_text()

    @property
    def module_class(self) -> type[nn.Module]:
        """What it builds (a layer given as another layer's argument is checked by it)."""
        return self.cls

    def _inferred_index(self) -> int | None:
        if self.inferred is None or self.infer is None:
            return None
        param, position = self.infer
        if position < len(self.args):
            return position
        return len(self.args) + list(self.kwargs).index(param.param)


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
    # A type rule's class, or the spec block whose instances it selects.
    target_cls: type[nn.Module] | n.ModelDecl | None
    env: Any  # the constants where the rule is written (an Env)
    lets: list[n.Let]  # the init block's lets this rule needs, in order
    uses_fan: bool
    # Which init block it is written in: each block is a pass over the parameters, run in
    # order, so a later block re-draws what an earlier one set (nanoGPT's c_proj).
    pass_index: int = 0

    def rank(self, index: int) -> tuple[int, int, int]:
        """Precedence: path glob > module type > ``*``; a named parameter > ``*``; later wins."""
        target = {"path": 2, "type": 1, "any": 0}[self.rule.target_kind]
        return (target, 0 if self.rule.param == "*" else 1, index)


@dataclass
class TensorPlan:
    """A ``param`` or ``buffer`` declaration: made by ``make()`` when its module is built."""

    what: Literal["param", "buffer"]
    name: str
    make: Callable[[], Any]  # the compiled expression, run under the build's device
    span: Span
    position: int  # how many children are declared before it: registered between them
    shape: tuple[int, ...] = ()  # from a run on the meta device at check time
    dtype: Any = None
    requires_grad: bool = True  # nn.Parameter(..., requires_grad=...)
    persistent: bool = True  # register_buffer(..., persistent=...)

    @property
    def numel(self) -> int:
        total = 1
        for size in self.shape:
            total *= size
        return total


@dataclass
class TiePlan:
    """``tie a.weight = b.weight``: after the children before it exist, ``self.a.weight =
    self.b.weight``."""

    target: list[str]
    source: list[str]
    span: Span
    position: int


@dataclass
class ModelPlan:
    """A model or a block instance: its children, compiled forward and init rules."""

    name: str
    children: list[tuple[str, Plan]]
    forward: Callable[..., Any]
    rules: list[RulePlan] = field(default_factory=list)
    span: Span | None = None
    inputs: list[InputPlan] = field(default_factory=list)
    # Each expectation with the constants where it is written.
    expects: list[tuple[n.Expect, Any]] = field(default_factory=list)
    env: Any = field(default_factory=dict)  # the constants at the end of the body (an Env)
    # The forward once more, with every op call located (for the shape pass); see forward.py.
    checked_forward: Callable[..., Any] | None = None
    # Forward arguments that index a dict, with the keys they may take (shape pass runs each).
    key_args: dict[str, list[str]] = field(default_factory=dict)
    arg_names: list[str] = field(default_factory=lambda: ["x"])
    # The module's other methods (defs), compiled like the forward, in both forms.
    methods: dict[str, Callable[..., Any]] = field(default_factory=dict)
    checked_methods: dict[str, Callable[..., Any]] = field(default_factory=dict)
    # The declaration it instantiates: init rules select a block's instances by it.
    decl: n.ModelDecl | None = None
    # Children declared only under conditions that did not hold: attributes set to None, as
    # torchvision's `self.downsample = None`.
    absent: list[str] = field(default_factory=list)
    tensors: list[TensorPlan] = field(default_factory=list)
    ties: list[TiePlan] = field(default_factory=list)

    def namespace(self, *, checked: bool = False) -> dict[str, Callable[..., Any]]:
        """The generated class's methods: the forward and the defs."""
        forward = self.checked_forward if checked else self.forward
        methods = self.checked_methods if checked else self.methods
        return {"forward": forward, **methods}


@dataclass
class InputPlan:
    """A declared forward argument: a tensor shape (ints and symbol names) or a type name."""

    name: str
    shape: list[int | str] | None  # None: not a tensor
    type_name: str
    span: Span
    dtype: torch.dtype = torch.float32  # a tensor's: input idx: [B, T] long
    # Symbolic dimensions with an upper bound: input idx: [B, T <= block_size].
    bounds: dict[str, int] = field(default_factory=dict)


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


def children_of(plan: Plan) -> list[tuple[str, Plan]]:
    """A plan's children with the names ``named_modules`` gives them (none for a layer)."""
    if isinstance(plan, LayerPlan):
        return []
    if isinstance(plan, SequentialPlan):
        return [(name if name is not None else str(i), p)
                for i, (name, p) in enumerate(plan.items)]
    if isinstance(plan, ListPlan):
        return [(str(i), p) for i, p in enumerate(plan.items)]
    if isinstance(plan, DictPlan):
        return list(plan.items)
    return list(plan.children)


def walk_plans(plan: Plan) -> Iterator[Plan]:
    """Every plan in the tree, the root first (iterative: deep trees cost no stack)."""
    stack = [plan]
    while stack:
        item = stack.pop()
        yield item
        stack += [child for _, child in reversed(children_of(item))]


def layers_of(plan: Plan) -> Iterator[LayerPlan]:
    return (p for p in walk_plans(plan) if isinstance(p, LayerPlan))


def layers_with_paths(plan: Plan, prefix: str = "") -> Iterator[tuple[str, LayerPlan]]:
    """Every layer with its module path, in module order (as ``named_modules`` names them)."""
    if isinstance(plan, LayerPlan):
        yield prefix, plan
        return
    for key, child in children_of(plan):
        yield from layers_with_paths(child, f"{prefix}.{key}" if prefix else key)


def models_with_paths(plan: Plan, prefix: str = "") -> Iterator[tuple[str, ModelPlan]]:
    """Every model and block instance with its module path, in module order."""
    if isinstance(plan, ModelPlan):
        yield prefix, plan
    for key, child in children_of(plan):
        yield from models_with_paths(child, f"{prefix}.{key}" if prefix else key)
