"""Models: a model's or block's body -> a ModelPlan (children, forward, methods, rules, inputs).

The body's build-time logic runs first (:mod:`netdsl.body`); :class:`ModelSink` takes what is
left: children (named as written or by an f-string), input and output declarations, the
forward, methods and init blocks. Children declared only in branches not taken are *absent*:
the forward sees them as ``none``, as torchvision's ``self.downsample = None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from . import codes
from . import nodes as n
from .body import key_of
from .containers import attributes
from .errors import NetDSLError, did_you_mean, fail
from .evaluate import evaluate
from .forward import ForwardCompiler
from .limits import MAX_ELEMENTS
from .params import check_name
from .plan import InputPlan, ModelPlan, Plan, TensorPlan, TiePlan
from .rules import plan_rules
from .signatures import describe
from .spectypes import DTYPES
from .tensors import plan_tensor, plan_tie
from .values import Env

if TYPE_CHECKING:
    from .check import Checker
    from .imports import Unit

EXPECTATIONS = ("output", "params")
VALUE_TYPES = ("str", "int", "float", "bool")  # inputs that are not tensors: `input key: str`
MAX_DIMENSION = 2**31 - 1
# Leaves room for the symbolic dimensions' sizes: [2**31 - 1] * 3 overflows torch's storage size.


@dataclass
class ModelSink:
    """The items of one model or block body, once its logic has run."""

    checker: Checker
    decl: n.ModelDecl
    unit: Unit
    children: dict[str, Plan] = field(default_factory=dict)
    declared: set[str] = field(default_factory=set)  # children, whether or not they checked
    absent_names: set[str] = field(default_factory=set)
    broken_names: set[str] = field(default_factory=set)
    inputs: list[tuple[n.InputDecl, Env]] = field(default_factory=list)
    expects: list[tuple[n.Expect, Env]] = field(default_factory=list)
    forwards: list[n.Forward] = field(default_factory=list)
    methods: list[n.DefDecl] = field(default_factory=list)
    inits: list[tuple[n.Init, Env]] = field(default_factory=list)
    tensors: dict[str, TensorPlan] = field(default_factory=dict)
    ties: list[TiePlan] = field(default_factory=list)
    errors_before: int = 0

    def __post_init__(self) -> None:
        self.errors_before = len(self.checker.errors)

    def item(self, item: Any, env: Env) -> None:
        if isinstance(item, n.Child):
            self._child(item, env)
        elif isinstance(item, n.TensorDecl):
            self._tensor(item, env)
        elif isinstance(item, n.TieDecl):
            self.ties.append(plan_tie(item, self.children, self.tensors, len(self.children)))
        elif isinstance(item, n.InputDecl):
            if self.decl.kind == "block":
                fail("input declarations belong to models: a block's input comes from where "
                     "it is used", item.span, codes.SYNTAX)
            if any(other.name.name == item.name.name for other, _ in self.inputs):
                fail(f"input '{item.name.name}' is declared twice", item.name.span, codes.DUPLICATE)
            self.inputs.append((item, env.copy()))
            env.notes.setdefault(item.name.name, "a forward input")
        elif isinstance(item, n.Expect):
            _check_expectation(item)
            self.expects.append((item, env.copy()))
        elif isinstance(item, n.Forward):
            self.forwards.append(item)
        elif isinstance(item, n.DefDecl):
            self.methods.append(item)
        elif isinstance(item, n.Init):
            self.inits.append((item, env.copy()))
        else:
            fail(_misplaced(item), item.span, codes.SYNTAX)

    def absent(self, names: list[str]) -> None:
        self.absent_names.update(names)

    def broken(self, names: list[str]) -> None:
        self.broken_names.update(names)

    def defined(self, name: str) -> str | None:
        if name in self.tensors:
            return self.tensors[name].what
        return "child" if name in self.declared else None

    def _declare(self, name: str, key: n.Ident | n.FString, what: str, env: Env) -> None:
        """A child's, param's or buffer's name: an attribute of the module, declared once."""
        _check_child_name(name, key)
        if name in self.declared:
            fail(f"'{name}' is already defined", key.span, codes.DUPLICATE)
        if name in env and name not in env.params:
            fail(f"'{name}' is already a constant; a {what} needs another name (a parameter "
                 f"may share its name with a {what})", key.span, codes.DUPLICATE)
        self.declared.add(name)

    def _tensor(self, item: n.TensorDecl, env: Env) -> None:
        name = item.name.name
        self._declare(name, item.name, item.what, env)
        env.notes[name] = f"a {item.what}"
        try:
            self.tensors[name] = plan_tensor(item, self.decl.name.name, env, len(self.children))
        except NetDSLError:
            self.broken_names.add(name)
            raise

    def _child(self, item: n.Child, env: Env) -> None:
        name = key_of(item.name, env)
        self._declare(name, item.name, "child", env)
        env.notes[name] = "a child"
        plan = self.checker.module(item.module, self.unit, env)
        if plan is None:  # its own errors are reported: later uses of it say nothing more
            self.broken_names.add(name)
        else:
            self.children[name] = plan


def _check_child_name(name: str, key: n.Ident | n.FString) -> None:
    if not (name.isidentifier() and name.isascii() and not name.startswith("_")):
        fail(f"child name {name!r} is not a name (letters, digits and _, starting with a "
             f"letter)", key.span, codes.VALUE)
    check_name(n.new(n.Ident, name=name, span=key.span), "child")
    if name in attributes(nn.Module):
        fail(f"child name '{name}' clashes with the nn.Module attribute of that name",
             key.span, codes.DUPLICATE)


def _check_expectation(expect: n.Expect) -> None:
    if expect.what.name not in EXPECTATIONS:
        fail(f"unknown expectation '{expect.what.name}'; use one of {', '.join(EXPECTATIONS)}"
             f"{did_you_mean(expect.what.name, EXPECTATIONS)}",
             expect.what.span, codes.UNKNOWN_NAME)


_MISPLACED = {
    n.Named: "a model's children are assigned with '=' (name = Layer(...)), not ':'",
    n.Repeat: "a repeat makes several modules: put it in a container, "
              "name = list [ Layer(...) for i in range(n) ]",
    n.InitRule: "an init rule belongs in init { ... }",
}


def _misplaced(item: Any) -> str:
    for kind, message in _MISPLACED.items():
        if isinstance(item, kind):
            return message
    return "a model's children need names: name = Layer(...)"  # a bare module


# ---------------------------------------------------------------- the plan


def finish_model(checker: Checker, sink: ModelSink, env: Env) -> ModelPlan | None:
    decl = sink.decl
    compiled = _compile(checker, sink, env)
    taken = set(sink.children) | set(env)
    rules = plan_rules(sink.inits, taken, checker.collect)
    inputs: list[InputPlan] = []
    with checker.collect():
        inputs = _inputs(sink)
    if len(checker.errors) > sink.errors_before or compiled is None:
        return None
    (forward, methods), (checked, checked_methods), key_args = compiled
    arg_names = [a.name for a in sink.forwards[0].args] if sink.forwards else ["x"]
    return ModelPlan(decl.name.name, list(sink.children.items()), forward, rules, decl.span,
                     inputs, sink.expects, env, checked, key_args, arg_names, methods,
                     checked_methods, decl, sorted(sink.absent_names - sink.declared),
                     list(sink.tensors.values()), sink.ties)


def _compile(checker: Checker, sink: ModelSink, env: Env) -> Any:
    """The forward and methods, compiled twice: as they run, and located op by op (for the
    shape pass)."""
    for extra in sink.forwards[1:]:
        checker.errors.append(NetDSLError("forward is defined twice",
                                          extra.span, code=codes.DUPLICATE))
    forward = sink.forwards[0] if sink.forwards else None
    absent = sink.absent_names - sink.declared
    broken = sink.broken_names - set(sink.children) - set(env)
    compilers = [ForwardCompiler(sink.decl.name.name, sink.children, env, sink.unit.text,
                                 broken=broken, cache=checker.forwards, instrument=instrument,
                                 absent=absent, method_decls=sink.methods,
                                 tensors=set(sink.tensors),
                                 body_failed=len(checker.errors) > sink.errors_before)
                 for instrument in (False, True)]
    plain = compilers[0].compile(forward, sink.decl.name.span)
    checker.errors += compilers[0].errors
    if plain is None:
        return None
    checked = compilers[1].compile(forward, sink.decl.name.span)
    assert checked is not None
    return plain, checked, compilers[0].key_args


def _inputs(sink: ModelSink) -> list[InputPlan]:
    """Input declarations, one per forward argument, in the forward's order."""
    if not sink.inputs:
        return []
    declared = {item.name.name: (item, env) for item, env in sink.inputs}
    args = [a.name for a in sink.forwards[0].args] if sink.forwards else ["x"]
    for item, _ in sink.inputs:
        if item.name.name not in args:
            fail(f"'{item.name.name}' is not an argument of forward "
                 f"({', '.join(args)}){did_you_mean(item.name.name, args)}",
                 item.name.span, codes.UNKNOWN_NAME)
    missing = [a for a in args if a not in declared]
    if missing:
        fail(f"forward argument '{missing[0]}' has no input declaration "
             f"(input {missing[0]}: [...] or input {missing[0]}: str)",
             sink.inputs[0][0].span, codes.ARGUMENTS)
    return [_input(*declared[a]) for a in args]


def _input(item: n.InputDecl, env: Env) -> InputPlan:
    node = item.type
    if isinstance(node, n.Name) and node.id in VALUE_TYPES and not env.has_constant(node.id):
        if item.dtype is not None:
            fail(f"a dtype belongs to a tensor input; '{item.name.name}' is a {node.id}",
                 item.dtype.span, codes.TYPE)
        return InputPlan(item.name.name, None, node.id, item.span)
    if not isinstance(node, n.ListExpr):
        fail("an input is a shape such as [N, 3, 32, 32] or a type (str, int, float, bool)",
             node.span, codes.TYPE)
    dtype = "float32" if item.dtype is None else item.dtype.name
    bounds: dict[str, int] = {}
    shape = [dimension(d, env, bounds) for d in node.items]
    if math.prod(d for d in shape if isinstance(d, int)) > MAX_ELEMENTS:
        fail(f"an input has at most {MAX_ELEMENTS:,} elements (torch's sizes are 64-bit)",
             node.span, codes.VALUE)
    return InputPlan(item.name.name, shape, "tensor", item.span, DTYPES[dtype], bounds)


def dimension(node: n.Expr, env: Env, bounds: dict[str, int] | None = None) -> int | str:
    """A shape dimension: a name that is not a constant is symbolic (``T <= block_size`` a
    symbolic one with a bound); anything else an int."""
    if isinstance(node, n.Name) and not env.has_constant(node.id):
        return node.id
    if isinstance(node, n.Compare) and node.ops == ["<="] and bounds is not None and \
            isinstance(node.operands[0], n.Name) and not env.has_constant(node.operands[0].id):
        bound = dimension(node.operands[1], env)
        if not isinstance(bound, int) or bound < 1:
            fail("a symbolic dimension's bound is a positive int (T <= block_size)",
                 node.operands[1].span, codes.VALUE)
        bounds[node.operands[0].id] = bound
        return node.operands[0].id
    value = evaluate(node, env)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        negative = isinstance(value, int) and not isinstance(value, bool)
        fail(f"a dimension is a non-negative int or a symbolic name, got {describe(value)}",
             node.span, codes.VALUE if negative else codes.TYPE)
    if value > MAX_DIMENSION:
        fail(f"a dimension is at most {MAX_DIMENSION:,}, got {value:,}", node.span, codes.VALUE)
    return value


__all__ = ["ModelSink", "dimension", "finish_model"]
