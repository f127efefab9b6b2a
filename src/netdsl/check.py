"""Check: declarations + parameter values -> a plan, with every mistake found and located.

Evaluates arguments, resolves every layer name (torch.nn, torchvision's layers, custom modules,
the spec's blocks and layers passed as values), binds arguments to the real constructor
signatures, runs each body's build-time logic (:mod:`netdsl.body`), checks container names,
compiles forwards and resolves init rules. Errors are collected, not raised one at a time, so
``netdsl check`` can report them all; nothing here constructs a module or touches torch's RNG.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import codes, work
from . import nodes as n
from .body import run
from .calls import plan_layer
from .containers import attributes, plan_container
from .errors import LimitError, NetDSLError, Span, did_you_mean, fail
from .evaluate import evaluate, evaluate_args
from .imports import Unit
from .library import BUILTINS, TORCH_DTYPES
from .limits import DEFAULT_LIMITS, Limits
from .models import ModelSink, finish_model
from .params import bind, signature_of
from .plan import LayerPlan, Plan
from .registry import Registry, layer_signature
from .signatures import Arg, Signature, describe
from .values import Env, LayerRef, World
from .work import Budget

_CONTAINERS = {"Sequential": "; write sequential { ... }", "ModuleList": "; write list [ ... ]",
               "ModuleDict": "; write dict { key: ... }"}


@dataclass
class Outcome:
    """Whether the step inside :meth:`Checker.collect` failed (its error is recorded)."""

    failed: bool = False


@dataclass
class Checker:
    registry: Registry
    limits: Limits = DEFAULT_LIMITS
    errors: list[NetDSLError] = field(default_factory=list)
    stack: list[str] = field(default_factory=list)
    forwards: dict[tuple[str, str], Any] = field(default_factory=dict)
    seen: set[tuple[str, Span | None]] = field(default_factory=set)
    # Shared by the checks of one file, so that its declarations share one step budget.
    budget: Budget | None = None
    world: World = field(init=False)

    def __post_init__(self) -> None:
        if self.budget is None:
            self.budget = work.current() or Budget.of(self.limits)
        self.world = World(self.registry, self.budget, evaluate, {**TORCH_DTYPES, **BUILTINS})

    def globals_env(self, unit: Unit) -> Env:
        """An environment with a file's global names only."""
        return Env(globals=self.world.globals(unit))

    def count(self, n_modules: int, span: Span, *, reserve: bool = True) -> None:
        """Count modules against the file's budget (see Budget.count_modules).

        Going over the limit ends the check (a LimitError is not collected): each module past it
        would otherwise be one more error.
        """
        assert self.budget is not None
        self.budget.count_modules(n_modules, span, reserve=reserve)

    @contextmanager
    def collect(self) -> Iterator[Outcome]:
        """Record a step's NetDSLError and carry on, so that one check reports every mistake."""
        outcome = Outcome()
        try:
            yield outcome
        except LimitError:
            raise
        except NetDSLError as err:
            outcome.failed = True
            key = (err.message, err.span)
            if key not in self.seen:  # a set: thousands of errors must not cost n^2
                assert self.budget is not None
                self.budget.count_error(err.span)
                self.seen.add(key)
                self.errors.append(err)

    # ------------------------------------------------------------ declarations
    def declaration(self, decl: n.ModelDecl, unit: Unit, args: list[Arg], kwargs: list[Arg],
                    span: Span, name_span: Span | None = None) -> Plan | None:
        """A call of a model or block: its parameters bound, its body or module planned."""
        name = decl.name.name
        if name in self.stack:
            fail(f"'{name}' uses itself", name_span or span, codes.RECURSION)
        if len(self.stack) >= self.limits.max_depth:
            fail(f"blocks nest deeper than {self.limits.max_depth} levels (Limits.max_depth)",
                 decl.name.span, codes.LIMIT)
        self.stack.append(name)
        try:
            if isinstance(decl.value, n.Layer) and decl.params is None:
                return self.call(self.partial_target(decl, unit), args, kwargs, span)
            env = bind(f"{name}()", decl.params or [], args, kwargs, span,
                       self.world.globals(unit))
            if decl.value is not None:
                return self.module(decl.value, unit, env)
            return self._model(decl, unit, env)
        finally:
            self.stack.pop()

    def partial_target(self, decl: n.ModelDecl, unit: Unit) -> LayerRef:
        """``model vgg11 = VGG(A, false)``: the call's layer with its arguments bound ahead."""
        value = decl.value
        assert isinstance(value, n.Layer)
        env = self.globals_env(unit)
        ref = self.resolve(value.name, env)
        args, kwargs = evaluate_args(value.args, value.kwargs, env)
        return ref.bind(args, kwargs)

    def signature(self, decl: n.ModelDecl, unit: Unit) -> Signature:
        """The parameters a declaration takes (for a partial one, those its call leaves)."""
        if not isinstance(decl.value, n.Layer) or decl.params is not None:
            return signature_of(f"{decl.name.name}()", decl.params or [], typed=True)
        ref = self.partial_target(decl, unit)
        if ref.is_class:
            target = layer_signature(ref.target, ref.name)  # type: ignore[arg-type]
        else:
            assert isinstance(ref.target, n.ModelDecl) and ref.unit is not None
            target = self.signature(ref.target, ref.unit)
        return _remaining(target, ref)

    def _model(self, decl: n.ModelDecl, unit: Unit, env: Env) -> Plan | None:
        sink = ModelSink(self, decl, unit)
        run(decl.body, env, sink, self.collect)
        return finish_model(self, sink, env)

    # ------------------------------------------------------------ modules
    def module(self, node: n.Module, unit: Unit, env: Env) -> Plan | None:
        self.count(1, node.span)
        if isinstance(node, n.Layer):
            return self.layer(node, env)
        return plan_container(self, node, unit, env)

    def layer(self, node: n.Layer, env: Env) -> Plan | None:
        ref = self.resolve(node.name, env)
        args, kwargs = self._arguments(node, env)
        return self.call(ref, args, kwargs, node.span, node.name.span)

    def _arguments(self, node: n.Layer, env: Env) -> tuple[list[Arg], list[Arg]]:
        """A layer's arguments; one that calls a torch layer is that layer, built first
        (``TransformerEncoder(TransformerEncoderLayer(512, 8), num_layers=6)``)."""
        layers = {id(a) for a in [*node.args, *(k.value for k in node.kwargs)]
                  if self._is_layer_call(a, env)}
        if not layers:
            return evaluate_args(node.args, node.kwargs, env)
        starred = next((a for a in node.args if isinstance(a, n.Starred)), None)
        if starred is not None:
            fail("a layer given as an argument cannot be mixed with *arguments",
                 starred.span, codes.ARGUMENTS)
        plain = [a for a in node.args if id(a) not in layers]
        plain_kw = [k for k in node.kwargs if id(k.value) not in layers]
        values, named = evaluate_args(plain, plain_kw, env)
        args = [self._module_argument(a, env) if id(a) in layers else values.pop(0)
                for a in node.args]
        kwargs = [self._module_argument(k.value, env, k) if id(k.value) in layers
                  else named.pop(0) for k in node.kwargs]
        return args, kwargs

    def _is_layer_call(self, node: n.Expr, env: Env) -> bool:
        if not (isinstance(node, n.Call) and isinstance(node.func, n.Name)):
            return False
        try:
            return isinstance(env.lookup(node.func.id), LayerRef)
        except KeyError:
            return False

    def _module_argument(self, node: n.Expr, env: Env, keyword: n.Keyword | None = None
                         ) -> Arg:
        assert isinstance(node, n.Call) and isinstance(node.func, n.Name)
        name = n.new(n.Ident, name=node.func.id, span=node.func.span)
        layer = n.new(n.Layer, span=node.span, name=name, args=node.args, kwargs=node.kwargs)
        plan = self.layer(layer, env)
        if plan is not None and not isinstance(plan, LayerPlan):
            fail(f"'{node.func.id}' is a spec block; torch layers take torch layers as "
                 f"arguments", node.func.span, codes.TYPE)
        if plan is not None and not plan.complete:
            fail(f"{plan.written_text()} leaves an input dimension out; a layer given as an "
                 f"argument needs all of its own", node.span, codes.ARGUMENTS)
        if keyword is None:
            return Arg(plan, node.span)
        return Arg(plan, node.span, keyword.name.name, keyword.name.span)

    def call(self, ref: LayerRef, args: list[Arg], kwargs: list[Arg], span: Span,
             name_span: Span | None = None) -> Plan | None:
        ref = ref.bind(args, kwargs)
        if isinstance(ref.target, n.ModelDecl):
            assert ref.unit is not None
            return self.declaration(ref.target, ref.unit, list(ref.args), list(ref.kwargs),
                                    span, name_span)
        return plan_layer(ref.target, ref.name, list(ref.args), list(ref.kwargs), span,
                          self.count, 10 * self.limits.max_depth)

    def resolve(self, name: n.Ident, env: Env) -> LayerRef:
        """What a layer call's name stands for: a layer, a block, or a value that is one."""
        try:
            value = env.lookup(name.name)
        except KeyError:
            suggestion = _CONTAINERS.get(name.name) or did_you_mean(
                name.name, [*self.registry.names(), *env.known()])
            fail(f"unknown layer '{name.name}'{suggestion}", name.span, codes.UNKNOWN_NAME)
        if not isinstance(value, LayerRef):
            fail(f"'{name.name}' is {describe(value)}, not a layer", name.span, codes.TYPE)
        return value


def _remaining(signature: Signature, ref: LayerRef) -> Signature:
    """A signature without the parameters a partial binds by position; its keywords become
    defaults (a call may still give them)."""
    positional = len(ref.args)
    bound = {k.name for k in ref.kwargs}
    params = []
    for i, param in enumerate(signature.params):
        if i < positional and param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            continue
        if param.name in bound and param.default is param.empty:
            param = param.replace(default=None)
        params.append(param)
    return Signature(signature.title, tuple(params), signature.reserved)


__all__ = ["Checker", "attributes"]
