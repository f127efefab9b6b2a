"""Check: declarations + parameter values -> a plan, with every mistake found and located.

Evaluates arguments, resolves every layer name (torch.nn, custom modules, the spec's blocks),
binds arguments to the real constructor signatures, checks container names, compiles forwards
and resolves init rules. Errors are collected, not raised one at a time, so ``netdsl check``
can report them all; nothing here constructs a module or touches torch's RNG.
"""

from __future__ import annotations

import functools
import inspect
import keyword
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from . import nodes as n
from .errors import LimitError, NetDSLError, Span, did_you_mean, fail
from .evaluate import FUNCTIONS, evaluate, evaluate_args
from .forward import ForwardCompiler
from .imports import Unit
from .infer import input_dim, omits_input_dim, without
from .limits import DEFAULT_LIMITS, Limits
from .plan import (
    DictPlan,
    InputPlan,
    LayerPlan,
    ListPlan,
    ModelPlan,
    Plan,
    RulePlan,
    SequentialPlan,
)
from .registry import Registry, layer_signature
from .signatures import Arg, Signature, describe


@functools.cache
def _attributes(container: type[nn.Module]) -> frozenset[str]:
    """Names a child or key cannot take: torch would clash with the module's own attributes."""
    return frozenset(dir(container()))


# The language's keywords: a name spelled like one could not be referred to everywhere.
KEYWORDS = frozenset({
    "model", "block", "from", "import", "let", "input", "expect", "sequential", "list", "dict",
    "for", "in", "range", "forward", "return", "init", "true", "false", "none", "True", "False",
    "None"})
PARAM_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
FAN_NAMES = frozenset({"fan_in", "fan_out"})
EXPECTATIONS = ("output", "params")
MAX_DIMENSION = 2**31 - 1  # torch's sizes are 64-bit; a shape this wide is a mistake anyway
_CONTAINERS = {"Sequential": "; write sequential { ... }", "ModuleList": "; write list [ ... ]",
               "ModuleDict": "; write dict { key: ... }"}


def init_functions() -> dict[str, Callable[..., Any]]:
    """``torch.nn.init``'s in-place initialisers, by name without the trailing underscore."""
    return {name[:-1]: getattr(nn.init, name) for name in dir(nn.init)
            if name.endswith("_") and not name.startswith("_")
            and callable(getattr(nn.init, name))}


def param_signature(decl: n.ModelDecl) -> Signature:
    """A block's or model's parameters as a Python signature, typed for checking."""
    params = []
    for p in decl.params:
        annotation = PARAM_TYPES.get(p.type.name, inspect.Parameter.empty)
        params.append(inspect.Parameter(p.name.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        default=None if p.default else inspect.Parameter.empty,
                                        annotation=annotation))
    return Signature(f"{decl.name.name}()", tuple(params))


@dataclass
class Checker:
    registry: Registry
    limits: Limits = DEFAULT_LIMITS
    errors: list[NetDSLError] = field(default_factory=list)
    stack: list[str] = field(default_factory=list)
    forwards: dict[tuple[str, str], Callable[..., Any]] = field(default_factory=dict)
    modules: int = 0  # modules planned so far, against Limits.max_modules
    seen: set[tuple[str, Span | None]] = field(default_factory=set)

    def count(self, n_modules: int, span: Span, *, reserve: bool = True) -> None:
        """Count modules as they are planned; a repeat asks first, so a huge one fails at once.

        Going over the limit ends the check (a LimitError is not collected): each module past it
        would otherwise be one more error.
        """
        if reserve:
            self.modules += n_modules
        if self.modules + (0 if reserve else n_modules) > self.limits.max_modules:
            raise LimitError(f"this builds more than {self.limits.max_modules:,} modules "
                             f"(Limits.max_modules, netdsl check --max-modules)", span)

    @contextmanager
    def collect(self) -> Iterator[None]:
        """Record a step's NetDSLError and carry on, so that one check reports every mistake."""
        try:
            yield
        except LimitError:
            raise
        except NetDSLError as err:
            key = (err.message, err.span)
            if key not in self.seen:  # a set: thousands of errors must not cost n^2
                self.seen.add(key)
                self.errors.append(err)

    # ------------------------------------------------------------ models and blocks
    def bind_params(self, decl: n.ModelDecl, args: list[Arg], kwargs: list[Arg],
                    call_span: Span) -> dict[str, Any]:
        """Parameter values for a model or block: given values, then defaults, type-checked."""
        seen: set[str] = set()
        for p in decl.params:
            if p.name.name in seen:
                fail(f"'{p.name.name}' cannot name a parameter twice", p.name.span)
            if keyword.iskeyword(p.name.name) or p.name.name in KEYWORDS or p.name.name == "self":
                fail(f"'{p.name.name}' is reserved and cannot name a parameter", p.name.span)
            seen.add(p.name.name)
            if p.type.name not in PARAM_TYPES:
                fail(f"unknown parameter type '{p.type.name}'; use one of "
                     f"{', '.join(PARAM_TYPES)}{did_you_mean(p.type.name, PARAM_TYPES)}",
                     p.type.span)
        signature = param_signature(decl)
        bound = signature.bind(args, kwargs, call_span)
        env: dict[str, Any] = {}
        for p, param in zip(decl.params, signature.params, strict=True):
            if p.name.name in bound:
                env[p.name.name] = bound[p.name.name]
            else:
                assert p.default is not None
                value = evaluate(p.default, env)
                signature.check_type(param, Arg(value, p.default.span, p.name.name))
                env[p.name.name] = value
        return env

    def model(self, decl: n.ModelDecl, unit: Unit, env: dict[str, Any]) -> ModelPlan | None:
        if len(self.stack) >= self.limits.max_depth:
            fail(f"blocks nest deeper than {self.limits.max_depth} levels (Limits.max_depth)",
                 decl.name.span)
        self.stack.append(decl.name.name)
        try:
            return self._model_body(decl, unit, dict(env))
        finally:
            self.stack.pop()

    def _model_body(self, decl: n.ModelDecl, unit: Unit, env: dict[str, Any]) -> ModelPlan | None:
        before = len(self.errors)
        children: dict[str, Plan] = {}
        for member in decl.body:
            with self.collect():
                self._member(member, unit, env, children)
        compiled = self._forward(decl, unit, env, children)
        rules = self._rules(decl, unit, env, children)
        inputs: list[InputPlan] = []
        with self.collect():
            inputs = self._inputs(decl, env)
        if len(self.errors) > before or compiled is None:
            return None
        forward, checked, key_args = compiled
        arg_names = [a.name for a in decl.forwards[0].args] if decl.forwards else ["x"]
        return ModelPlan(decl.name.name, list(children.items()), forward, rules, decl.span,
                         inputs, decl.expects, env, checked, key_args, arg_names)

    def _forward(self, decl: n.ModelDecl, unit: Unit, env: dict[str, Any],
                 children: dict[str, Plan]) -> tuple[Any, Any, dict[str, list[str]]] | None:
        """The forward, compiled twice: as it runs, and located op by op for the shape pass."""
        broken = {m.name.name for m in decl.body
                  if isinstance(m, (n.Child, n.Let)) and m.name.name not in children
                  and m.name.name not in env}
        forwards = decl.forwards
        for extra in forwards[1:]:
            self.errors.append(NetDSLError("forward is defined twice", extra.span))
        forward_node = forwards[0] if forwards else None
        compilers = [ForwardCompiler(decl.name.name, children, env, unit.text, broken=broken,
                                     cache=self.forwards, instrument=instrument)
                     for instrument in (False, True)]
        forward = compilers[0].compile(forward_node, decl.name.span)
        self.errors += compilers[0].errors
        if forward is None:
            return None
        checked = compilers[1].compile(forward_node, decl.name.span)
        return forward, checked, compilers[0].key_args

    def _rules(self, decl: n.ModelDecl, unit: Unit, env: dict[str, Any],
               children: dict[str, Plan]) -> list[RulePlan]:
        rules = []
        for init in decl.inits:
            lets: list[n.Let] = []
            for item in init.items:
                with self.collect():
                    if isinstance(item, n.Let):
                        self._init_let(item, lets, env, children)
                    else:
                        rules.append(self._rule(item, unit, env, lets))
        return rules

    def _inputs(self, decl: n.ModelDecl, env: dict[str, Any]) -> list[InputPlan]:
        """Input declarations, one per forward argument, in the forward's order."""
        if decl.kind == "block" and decl.inputs:
            fail("input declarations belong to models: a block's input comes from where it is "
                 "used", decl.inputs[0].span)
        for expect in decl.expects:
            if expect.what.name not in EXPECTATIONS:
                fail(f"unknown expectation '{expect.what.name}'; use one of "
                     f"{', '.join(EXPECTATIONS)}{did_you_mean(expect.what.name, EXPECTATIONS)}",
                     expect.what.span)
        if not decl.inputs:
            return []
        declared = {i.name.name: i for i in decl.inputs}
        args = [a.name for a in decl.forwards[0].args] if decl.forwards else ["x"]
        for item in decl.inputs:
            if item.name.name not in args:
                fail(f"'{item.name.name}' is not an argument of forward "
                     f"({', '.join(args)}){did_you_mean(item.name.name, args)}", item.name.span)
        missing = [a for a in args if a not in declared]
        if missing:
            fail(f"forward argument '{missing[0]}' has no input declaration "
                 f"(input {missing[0]}: [...] or input {missing[0]}: str)", decl.inputs[0].span)
        return [self._input(declared[a], env) for a in args]

    def _input(self, item: n.InputDecl, env: dict[str, Any]) -> InputPlan:
        node = item.type
        if isinstance(node, n.Name) and node.id in PARAM_TYPES and node.id not in env:
            return InputPlan(item.name.name, None, node.id, item.span)
        if not isinstance(node, n.ListExpr):
            fail("an input is a shape such as [N, 3, 32, 32] or a type (str, int, float, bool)",
                 node.span)
        return InputPlan(item.name.name, [dimension(d, env) for d in node.items], "tensor",
                         item.span)

    def _member(self, member: n.Member, unit: Unit, env: dict[str, Any],
                children: dict[str, Plan]) -> None:
        if isinstance(member, n.Let):
            self._new_name(member.name, env, children, "constant")
            env[member.name.name] = evaluate(member.value, env)
        elif isinstance(member, n.Child):
            self._new_name(member.name, env, children, "child")
            if member.name.name in _attributes(nn.Module):
                fail(f"child name '{member.name.name}' clashes with the nn.Module attribute "
                     f"of that name", member.name.span)
            plan = self.module(member.module, unit, env)
            if plan is not None:
                children[member.name.name] = plan

    def _new_name(self, ident: n.Ident, env: dict[str, Any], children: dict[str, Plan],
                  what: str) -> None:
        if keyword.iskeyword(ident.name) or ident.name == "self":
            fail(f"'{ident.name}' is reserved in Python and cannot name a {what}", ident.span)
        if ident.name in KEYWORDS:
            fail(f"'{ident.name}' is a netdsl keyword and cannot name a {what}", ident.span)
        if ident.name in children or ident.name in env:
            fail(f"'{ident.name}' is already defined", ident.span)

    # ------------------------------------------------------------ modules
    def module(self, node: n.Module, unit: Unit, env: dict[str, Any]) -> Plan | None:
        self.count(1, node.span)
        if isinstance(node, n.Layer):
            return self.layer(node, unit, env)
        if isinstance(node, n.Sequential):
            return self._sequential(node, unit, env)
        if isinstance(node, n.ListBlock):
            return ListPlan(self._items(node.items, unit, env), node.span)
        return self._dict(node, unit, env)

    def layer(self, node: n.Layer, unit: Unit, env: dict[str, Any]) -> Plan | None:
        name = node.name.name
        if name in unit.scope:
            decl, decl_unit = unit.scope[name]
            if name in self.stack:
                fail(f"'{name}' uses itself", node.name.span)
            args, kwargs = evaluate_args(node.args, node.kwargs, env)
            block_env = self.bind_params(decl, args, kwargs, node.span)
            return self.model(decl, decl_unit, block_env)
        cls = self.registry.lookup(name)
        if cls is None:
            suggestion = _CONTAINERS.get(name) or did_you_mean(
                name, [*self.registry.names(), *unit.scope])
            fail(f"unknown layer '{name}'{suggestion}", node.name.span)
        args, kwargs = evaluate_args(node.args, node.kwargs, env)
        signature = layer_signature(cls, name)
        omitted = omits_input_dim(signature, args, kwargs)
        infer = None
        written = signature if omitted is None else without(signature, omitted.param)
        bound = written.bind(args, kwargs, node.span)
        if omitted is not None:
            infer = input_dim(signature)
        _check_window(name, bound, [*args, *kwargs], written)
        for param, value in bound.items():  # LSTM(num_layers=...) builds that many layers inside
            if param.endswith("layers") and isinstance(value, int) and value > 1:
                span = _arg_span(param, [*args, *kwargs], written)
                if value > 10 * self.limits.max_depth:  # torch stacks them in quadratic time
                    fail(f"{name}() argument '{param}' is over {10 * self.limits.max_depth:,} "
                         f"(10 x Limits.max_depth, netdsl check --max-depth)", span)
                self.count(value, span)
        return LayerPlan(cls, name, [a.value for a in args],
                         {k.name: k.value for k in kwargs if k.name}, node.span, infer)

    def _items(self, items: list[Any], unit: Unit, env: dict[str, Any]) -> list[Plan]:
        plans: list[Plan] = []
        for item in items:
            with self.collect():
                plans += self._item(item, unit, env)
        return plans

    def _item(self, item: Any, unit: Unit, env: dict[str, Any]) -> list[Plan]:
        if isinstance(item, n.Repeat):
            return [p for value in self._range(item, env)
                    if (p := self.module(item.module, unit, {**env, item.var.name: value}))]
        plan = self.module(item, unit, env)
        return [plan] if plan is not None else []

    def _range(self, item: n.Repeat, env: dict[str, Any]) -> range:
        if item.var.name in env:
            fail(f"loop variable '{item.var.name}' hides a parameter or constant", item.var.span)
        if item.range_kwargs:
            fail("range() takes no keyword arguments", item.range_kwargs[0].span)
        args, _ = evaluate_args(item.range_args, [], env)
        signature = Signature.of("range()", _range_signature)
        signature.bind(args, [], item.span)
        if len(args) == 3 and args[2].value == 0:
            fail("range() step must not be zero", args[2].span)
        values = range(*(a.value for a in args))
        try:
            size = len(values)
        except OverflowError:  # more items than a machine word counts
            size = self.limits.max_modules + 1
        self.count(size, item.span, reserve=False)
        return values

    def _sequential(self, node: n.Sequential, unit: Unit, env: dict[str, Any]) -> Plan:
        named = [i for i in node.items if isinstance(i, n.Named)]
        if not named:
            return SequentialPlan([(None, p) for p in self._items(node.items, unit, env)],
                                  node.span)
        if len(named) != len(node.items):
            unnamed = next(i for i in node.items if not isinstance(i, n.Named))
            fail("name every child of this sequential or none of them", unnamed.span)
        items: list[tuple[str | None, Plan]] = []
        for item in named:
            with self.collect():
                _check_key(item.name, [k for k, _ in items], nn.Sequential, "sequential")
                plan = self.module(item.module, unit, env)
                if plan is not None:
                    items.append((item.name.name, plan))
        return SequentialPlan(items, node.span)

    def _dict(self, node: n.DictBlock, unit: Unit, env: dict[str, Any]) -> Plan:
        items: list[tuple[str, Plan]] = []
        for item in node.items:
            with self.collect():
                _check_key(item.key, [k for k, _ in items], nn.ModuleDict, "dict")
                plan = self.module(item.module, unit, env)
                if plan is not None:
                    items.append((item.key.name, plan))
        return DictPlan(items, node.span)

    # ------------------------------------------------------------ init rules
    def _init_let(self, let: n.Let, lets: list[n.Let], env: dict[str, Any],
                  children: dict[str, Plan]) -> None:
        self._new_name(let.name, env, children, "constant")
        if let.name.name in FAN_NAMES or any(other.name.name == let.name.name for other in lets):
            fail(f"'{let.name.name}' is already defined", let.name.span)
        lets.append(let)

    def _rule(self, rule: n.InitRule, unit: Unit, env: dict[str, Any],
              lets: list[n.Let]) -> RulePlan:
        functions = init_functions()
        name = rule.func.name.removesuffix("_")
        func = functions.get(name)
        if func is None:
            fail(f"unknown init function '{rule.func.name}'{did_you_mean(name, functions)}",
                 rule.func.span)
        target_cls = None
        if rule.target_kind == "type":
            target_cls = self.registry.lookup(rule.target)
            if target_cls is None:
                hint = ("; select a block's parameters by path, e.g. \"name.*\""
                        if rule.target in unit.scope else
                        did_you_mean(rule.target, self.registry.names()))
                fail(f"unknown layer type '{rule.target}'{hint}", rule.target_span)
        needed = n.names_in(rule)
        used_lets = []
        for let in reversed(lets):  # only the lets this rule needs, directly or through others
            if let.name.name in needed:
                used_lets.insert(0, let)
                needed |= n.names_in(let.value)
        plan = RulePlan(rule, func, target_cls, env, used_lets, bool(needed & FAN_NAMES))
        if not plan.uses_fan:  # otherwise arguments depend on each parameter: checked when applied
            rule_arguments(plan, {})
        return plan


def rule_arguments(plan: RulePlan, fans: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Evaluate an init rule's arguments and bind them to the init function's signature."""
    rule = plan.rule
    env = {**plan.env, **fans}
    for let in plan.lets:
        env[let.name.name] = evaluate(let.value, env)
    args, kwargs = evaluate_args(rule.args, rule.kwargs, env)
    signature = Signature.of(f"{rule.func.name}()", plan.func, skip=1)
    signature.bind(args, kwargs, rule.span)
    return [a.value for a in args], {k.name: k.value for k in kwargs if k.name}


def dimension(node: n.Expr, env: dict[str, Any]) -> int | str:
    """A shape dimension: a name that is not a parameter is symbolic; anything else an int."""
    if isinstance(node, n.Name) and node.id not in env:
        return node.id
    value = evaluate(node, env)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        fail(f"a dimension is a non-negative int or a symbolic name, got {describe(value)}",
             node.span)
    if value > MAX_DIMENSION:
        fail(f"a dimension is at most {MAX_DIMENSION:,}, got {value:,}", node.span)
    return value


# Window sizes torch accepts at construction but cannot run with (Conv2d(3, 6, 0) builds, and
# its forward then fails deep in the backend): checked here, where the spec can be pointed at.
_POSITIVE = ("kernel_size", "stride", "dilation")


def _check_window(name: str, bound: dict[str, Any], given: list[Arg],
                  signature: Signature) -> None:
    for param in _POSITIVE:
        value = bound.get(param)
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in values):
            span = _arg_span(param, given, signature)
            fail(f"{name}() argument '{param}' must be at least 1, got {value!r}", span)


def _arg_span(param: str, given: list[Arg], signature: Signature) -> Span:
    """Where an argument is written: by keyword, or at its position."""
    for arg in given:
        if arg.name == param:
            return arg.span
    names = [p.name for p in signature.params]
    positional = [a for a in given if a.name is None]
    index = names.index(param) if param in names else -1
    return positional[index].span if 0 <= index < len(positional) else given[0].span


def _range_signature(start: int, stop: int | None = None, step: int = 1) -> None:
    """The signature range() accepts in a repeat (for binding and type checks)."""


def _check_key(ident: n.Ident, taken: list[str], container: type, what: str) -> None:
    key = ident.name
    if not key or "." in key:
        fail(f"{what} key {key!r} must be non-empty and contain no '.'", ident.span)
    if key in taken:
        fail(f"duplicate {what} key '{key}'", ident.span)
    if key in _attributes(container):
        fail(f"{what} key '{key}' clashes with the nn.{container.__name__} attribute of that "
             f"name", ident.span)


__all__ = ["FUNCTIONS", "Checker", "init_functions", "rule_arguments"]
