"""Resolve: the names of one declaration, checked without values for its parameters.

``netdsl check`` runs a model or block with its parameters' values; one with a required
parameter (``model M(n: int)``) has none, so its body's logic cannot run and the check skips it
unless another declaration uses it. This pass reads such a declaration instead and reports the
mistakes that are mistakes for *every* value of its parameters:

* a layer or block name that is nothing in scope (``unknown layer 'Lnear'``), a function that
  does not exist (``unknown function 'make_divisble'``), a name in a constant expression that
  nothing defines (``undefined name 'widht'``), a def or built-in function called as a layer;
* a keyword argument that a torch layer's constructor (or a custom module's) or a block's
  parameter list does not take;
* a name in the forward, a method or a ``param`` / ``buffer`` expression that is no argument,
  variable, child, parameter, constant, method, op or dtype (``undefined name 'featurs' in
  forward``), and a ``+=`` on a name that is no variable of the forward;
* an unknown init function or init layer type, and the names of init rules that do not use
  ``fan_in`` / ``fan_out``.

Scopes are the checker's: one per body, in the order written (lets in container bodies
included); a ``for`` item's variables for its body only, a repeat's and a comprehension's for
their item; the forward sees the parameters and every let, its own variables in the order it
assigns them. Values decide nothing here, so every branch of every ``if`` and the body of every
loop are read, once: a name defined in any branch is defined after the ``if``, and a let
anywhere in a loop's body is defined in the whole body (a later iteration sees it). As in the
checker, an item (a child, a let, a statement, an init rule) reports its first mistake only, and
what a failed item defines still counts as defined (no errors that follow from another).

The messages are the checker's own: once this pass finds that nothing defines a name, it asks
the evaluator, the layer resolver, the forward compiler or the signature to resolve it, and
reports the error they raise, with their wording, suggestion and code; if they resolve it after
all, nothing is reported.

Not checked, because values decide them: types, counts and ranges of values, shapes, which
branch is taken, what a parameter or let of type ``layer`` holds (nor the keywords of calls
through one), dict keys, attributes and methods of values, the names of generated children
(an f-string child accepts every name its text can make), the index of what may be a constant
in a forward, ``expect`` lines and the symbolic names of input shapes, and the values of init
lets and of rules that use ``fan_in`` / ``fan_out`` (they are checked per parameter). An unknown
keyword is not reported after more positional arguments than the callee takes (that error comes
first). Keywords given to a declaration written as a call (``model r = ResNet(...)``, which
takes the parameters its call leaves open) are not checked, nor are the bodies of file-level
``def`` functions (checked where they run, with values).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from torch.nn.modules.lazy import LazyModuleMixin

from . import codes
from . import nodes as n
from .check import Checker
from .errors import NetDSLError, did_you_mean, fail
from .evaluate import evaluate
from .forward_expr import VALUE, Compiled, ExprCompiler
from .imports import Unit
from .infer import omits_input_dim, without
from .library import BUILTINS
from .ops import OPS
from .params import signature_of
from .plan import Plan
from .registry import Registry, layer_signature
from .rules import FAN_NAMES, init_functions, let_name
from .signatures import Arg, Signature
from .tensors import OPTIONS
from .values import Env

Names = dict[str, None]  # the names in scope, in the order they were made (an ordered set)
_NOT_CONSTANT = (n.Attr, n.Pipeline, n.EllipsisExpr, n.Starred, n.Slice)
_CONTAINERS = (n.Sequential, n.ListBlock, n.DictBlock)
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_POSITIONAL_KINDS = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def resolve(unit: Unit, decl: n.ModelDecl, registry: Registry) -> list[NetDSLError]:
    """The mistakes in ``decl`` (a model or block of ``unit``) that no parameter value mends."""
    errors = _Resolver(unit, decl, registry).run()
    unique = {(e.message, e.span): e for e in errors}
    return list(unique.values())


# ---------------------------------------------------------------- what a body declares


@dataclass(frozen=True)
class _Members:
    """The names a declaration's body gives its module, wherever they stand (ifs, fors)."""

    children: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]  # children named by f-strings
    tensors: frozenset[str]
    inputs: frozenset[str]
    methods: frozenset[str]
    # Containers and tensors declared unconditionally: indexed in a forward, never constants.
    indexable: frozenset[str]

    @classmethod
    def of(cls, decl: n.ModelDecl) -> _Members:
        items = n.walk_items(decl.body)
        keys = [i.name for i in items if isinstance(i, n.Child)]
        top = [i.name.name for i in decl.body if isinstance(i, n.TensorDecl) or (
            isinstance(i, n.Child) and isinstance(i.name, n.Ident)
            and isinstance(i.module, _CONTAINERS))]
        return cls(
            children=frozenset(k.name for k in keys if isinstance(k, n.Ident)),
            patterns=tuple(_pattern(k) for k in keys if isinstance(k, n.FString)),
            tensors=frozenset(i.name.name for i in items if isinstance(i, n.TensorDecl)),
            inputs=frozenset(i.name.name for i in items if isinstance(i, n.InputDecl)),
            methods=frozenset(i.name.name for i in items if isinstance(i, n.DefDecl)),
            indexable=frozenset(top),
        )

    def child(self, name: str) -> bool:
        return name in self.children or any(p.fullmatch(name) for p in self.patterns)

    def noted(self, name: str) -> bool:
        """A child, tensor or input: in a constant expression, an error other than unknown."""
        return self.child(name) or name in self.tensors or name in self.inputs


def _pattern(key: n.FString) -> re.Pattern[str]:
    """The names an f-string can make: its text, anything where it computes a part."""
    text = "".join(re.escape(p) if isinstance(p, str) else ".*" for p in key.parts)
    return re.compile(text, re.DOTALL)


def _parts(expr: n.Node) -> list[Any]:
    """An expression's sub-expressions, in the order the evaluators visit them."""
    found: list[Any] = []
    for field in type(expr).model_fields:
        value = getattr(expr, field)
        for part in value if isinstance(value, list) else [value]:
            if isinstance(part, n.Node) and not isinstance(part, n.Ident):
                found.append(part)
    return found


def _lets(items: Sequence[Any]) -> Iterator[str]:
    """The names the lets of a body make: in its ifs, loops and containers too (one scope),
    not in repeats (their own scope) or init blocks (theirs)."""
    stack = list(items)
    while stack:
        item = stack.pop()
        if isinstance(item, n.Let):
            yield from (i.name for i in n.target_names(item.target))
        elif isinstance(item, n.IfItem):
            stack += [x for b in item.branches for x in b.body] + (item.orelse or [])
        elif isinstance(item, n.ForItem):
            stack += item.body
        elif isinstance(item, (n.Child, n.Named)):
            stack.append(item.module)
        elif isinstance(item, _CONTAINERS):
            stack += item.items


def _assigned(body: Sequence[n.Stmt]) -> Iterator[str]:
    """The variables the statements of a forward assign (loop variables too), nested ones too."""
    stack: list[Any] = list(body)
    while stack:
        stmt = stack.pop()
        if isinstance(stmt, (n.Assign, n.For)):
            yield from (i.name for i in n.target_names(stmt.target))
        if isinstance(stmt, n.For):
            stack += stmt.body
        elif isinstance(stmt, n.IfStmt):
            stack += [s for b in stmt.branches for s in b.body] + (stmt.orelse or [])


def _targets(target: n.Ident | n.TupleTarget) -> Names:
    return dict.fromkeys(i.name for i in n.target_names(target))


# ---------------------------------------------------------------- the body


class _Resolver:
    """One declaration: its parameters, body, init blocks, forward and methods."""

    def __init__(self, unit: Unit, decl: n.ModelDecl, registry: Registry):
        self.unit = unit
        self.decl = decl
        self.registry = registry
        self.checker = Checker(registry)
        self.members = _Members.of(decl)
        self.errors: list[NetDSLError] = []
        self.broken: set[str] = set()  # children whose own item failed: not suggested

    def run(self) -> list[NetDSLError]:
        decl = self.decl
        if decl.params is None and isinstance(decl.value, n.Layer):  # model r = ResNet(...)
            with self.collect():
                self.layer(decl.value, {}, modules=False)
            return self.errors
        names = self.params(decl.params or [])
        if decl.value is not None:
            with self.collect():
                self.module(decl.value, names)
        self.items(decl.body, names, container=False)
        self.forwards(names)
        return self.errors

    @contextmanager
    def collect(self) -> Iterator[None]:
        """Record an item's mistake and go on with the next item, as the checker does."""
        try:
            yield
        except NetDSLError as err:
            if err.code is None:
                err.code = codes.UNKNOWN_NAME
            self.errors.append(err)

    def env(self, names: Names) -> Env:
        """The checker's environment for a body whose names are ``names`` (values unknown)."""
        return Env(dict.fromkeys(names), globals=self.checker.world.globals(self.unit))

    def unknown(self, name: str, names: Names) -> bool:
        """Whether nothing in scope has the name: no parameter, let, loop variable, declaration,
        import, file-level let, function, dtype or layer."""
        if name in names or name in self.unit.scope:
            return False
        try:
            self.env(names).lookup(name)  # past the file's own names: builtins and layers
        except KeyError:
            return True
        return False

    def params(self, params: Sequence[n.Param]) -> Names:
        """Parameter names; each default sees the parameters before it."""
        names: Names = {}
        with self.collect():  # the first failing default ends the binding, as in the checker
            for param in params:
                if param.default is not None:
                    self.const(param.default, names)
                names[param.name.name] = None
        names.update(dict.fromkeys(p.name.name for p in params))
        return names

    # ------------------------------------------------------------ items
    def items(self, items: Sequence[Any], names: Names, *, container: bool) -> None:
        for item in items:
            with self.collect():
                self.item(item, names, container)

    def item(self, item: Any, names: Names, container: bool) -> None:
        if isinstance(item, n.Let):
            self.let(item, names)
        elif isinstance(item, n.Assert):
            self.const(item.test, names)
            if item.msg is not None:
                self.const(item.msg, names)
        elif isinstance(item, n.IfItem):
            self.if_item(item, names, container)
        elif isinstance(item, n.ForItem):
            self.for_item(item, names, container)
        elif container:
            self.container_item(item, names)
        else:
            self.model_item(item, names)

    def model_item(self, item: Any, names: Names) -> None:
        if isinstance(item, n.Child):
            self.child(item, names)
        elif isinstance(item, n.TensorDecl):
            self.tensor(item, names)
        elif isinstance(item, n.InputDecl) and self.decl.kind == "model":
            self.input(item, names)
        elif isinstance(item, n.Init):
            self.init(item.items, dict(names), [])
        # expect, tie, forward and methods: read at the end (forward) or not at all

    def container_item(self, item: Any, names: Names) -> None:
        if isinstance(item, n.Named):
            self.key(item.name, names)
            self.module(item.module, names)
        elif isinstance(item, n.Repeat):
            self.const(item.iter, names)
            self.module(item.module, {**names, **_targets(item.target)})
        elif isinstance(item, (n.Layer, *_CONTAINERS)):
            self.module(item, names)

    def child(self, item: n.Child, names: Names) -> None:
        try:
            self.key(item.name, names)
            self.module(item.module, names)
        except NetDSLError:
            if isinstance(item.name, n.Ident):
                self.broken.add(item.name.name)
            raise

    def key(self, key: n.Ident | n.FString, names: Names) -> None:
        if isinstance(key, n.FString):
            self.const(key, names)

    def let(self, item: n.Let, names: Names) -> None:
        try:
            self.const(item.value, names)
        finally:  # a let that failed is still made: its uses say nothing more
            names.update(_targets(item.target))

    def if_item(self, item: n.IfItem, names: Names, container: bool) -> None:
        bodies = [b.body for b in item.branches] + [item.orelse or []]
        try:
            for branch in item.branches:
                self.const(branch.test, names)
        except NetDSLError:  # the checker reads no branch then
            names.update(dict.fromkeys(_lets([x for body in bodies for x in body])))
            raise
        for body in bodies:
            self.items(body, names, container=container)

    def for_item(self, item: n.ForItem, names: Names, container: bool) -> None:
        lets = dict.fromkeys(_lets(item.body))
        try:
            self.const(item.iter, names)
        except NetDSLError:
            names.update(lets)
            raise
        before = set(names)
        targets = _targets(item.target)
        names.update({**targets, **lets})  # a later iteration sees what an earlier one made
        self.items(item.body, names, container=container)
        for name in targets:  # the loop's own variables are its body's only
            if name not in before:
                names.pop(name, None)

    def tensor(self, item: n.TensorDecl, names: Names) -> None:
        try:
            where = f"in {item.what} '{item.name.name}'"
            _Forward(self, dict(names), where, own=False).expr(item.value)
            for option in item.options:
                if option.name.name != OPTIONS[item.what]:
                    return  # an unknown option: another error
                self.const(option.value, names)
        except NetDSLError:
            self.broken.add(item.name.name)
            raise

    def input(self, item: n.InputDecl, names: Names) -> None:
        if isinstance(item.type, n.ListExpr):
            for dim in item.type.items:
                self.dimension(dim, names)

    def dimension(self, node: n.Expr, names: Names) -> None:
        """A name alone is a symbolic dimension when it is no constant: never unknown."""
        if isinstance(node, n.Name):
            return
        if isinstance(node, n.Compare) and node.ops == ["<="] and \
                isinstance(node.operands[0], n.Name):
            self.dimension(node.operands[1], names)
            return
        self.const(node, names)

    # ------------------------------------------------------------ modules and layers
    def module(self, node: n.Module, names: Names) -> None:
        if isinstance(node, n.Layer):
            self.layer(node, names)
        else:
            self.items(node.items, names, container=True)

    def layer(self, node: n.Layer, names: Names, *, modules: bool = True) -> None:
        target = self.layer_target(node.name, names)
        self.arguments(node, names, modules)
        if isinstance(target, type):
            self.torch_keywords(node, target)
        elif isinstance(target, n.ModelDecl) and target.params is not None \
                and target is not self.decl:
            self.block_keywords(node, target)

    def layer_target(self, ident: n.Ident, names: Names) -> type | n.ModelDecl | None:
        """What a layer call names, when the spec decides it (None: a value decides it)."""
        found = self.unit.scope.get(ident.name)
        if ident.name in names or (found is not None and isinstance(found[0], n.Let)):
            return None
        ref = self.checker.resolve(ident, self.env(names))  # raises the checker's error
        return ref.target

    def arguments(self, node: n.Layer, names: Names, modules: bool) -> None:
        """Constants first, then the layers written as arguments, as the checker builds them."""
        values = [*node.args, *(k.value for k in node.kwargs)]
        layers = [a for a in values if modules and self.is_layer_call(a, names)]
        for value in values:
            if not any(value is layer for layer in layers):
                self.const(value.value if isinstance(value, n.Starred) else value, names)
        for call in layers:
            assert isinstance(call, n.Call) and isinstance(call.func, n.Name)
            name = n.new(n.Ident, name=call.func.id, span=call.func.span)
            self.layer(n.new(n.Layer, span=call.span, name=name, args=call.args,
                             kwargs=call.kwargs), names)

    def is_layer_call(self, node: n.Expr, names: Names) -> bool:
        if not (isinstance(node, n.Call) and isinstance(node.func, n.Name)):
            return False
        name = node.func.id
        found = self.unit.scope.get(name)
        if name in names or found is not None:
            return found is not None and isinstance(found[0], n.ModelDecl) and name not in names
        return name not in self.checker.world.builtins and self.registry.lookup(name) is not None

    def torch_keywords(self, node: n.Layer, cls: type) -> None:
        if issubclass(cls, LazyModuleMixin):
            return  # refused for being lazy
        try:
            signature = layer_signature(cls, node.name.name)
        except (TypeError, ValueError):  # a constructor Python cannot introspect
            return
        if not any(isinstance(a, n.Starred) for a in node.args):
            args = [Arg(None, a.span) for a in node.args]
            kwargs = [Arg(None, k.span, k.name.name) for k in node.kwargs]
            omitted = omits_input_dim(signature, args, kwargs)
            if omitted is not None:
                signature = without(signature, omitted.param)
        self.keywords(node, signature)

    def block_keywords(self, node: n.Layer, decl: n.ModelDecl) -> None:
        try:
            signature = signature_of(f"{decl.name.name}()", decl.params or [], typed=True)
        except NetDSLError:
            return  # its parameter list is wrong: reported with the block
        self.keywords(node, signature)

    def keywords(self, node: n.Layer, signature: Signature) -> None:
        """The first keyword the signature cannot take, as the signature reports it."""
        params = signature.params
        if any(p.kind == p.VAR_KEYWORD for p in params):
            return
        positional = [p.name for p in params if p.kind in _POSITIONAL_KINDS]
        starred = any(isinstance(a, n.Starred) for a in node.args)
        if not starred and len(node.args) > len(positional) and \
                not any(p.kind == p.VAR_POSITIONAL for p in params):
            return  # too many positional arguments: reported first
        bound = set() if starred else set(positional[:len(node.args)])
        accepted = {p.name for p in params if p.kind in _KEYWORD_KINDS}
        for keyword in node.kwargs:
            name = keyword.name.name
            if name in bound or name in signature.reserved:
                return  # another error comes first
            if name not in accepted:
                signature.bind([], [Arg(None, keyword.value.span, name, keyword.name.span)],
                               node.span)
            bound.add(name)

    # ------------------------------------------------------------ constant expressions
    def const(self, expr: Any, names: Names) -> None:
        """The names of a constant expression, in the order the evaluator reads them."""
        if isinstance(expr, n.Name):
            if self.unknown(expr.id, names) and not self.members.noted(expr.id):
                evaluate(expr, self.env(names))  # raises the evaluator's error
        elif isinstance(expr, n.Call):
            self.const_call(expr, names)
        elif isinstance(expr, n.ListComp):
            self.const(expr.iter, names)
            inner = {**names, **_targets(expr.target)}
            if expr.cond is not None:
                self.const(expr.cond, inner)
            self.const(expr.element, inner)
        elif isinstance(expr, n.Index) and isinstance(expr.index, n.Slice):
            self.const(expr.value, names)
            for part in (expr.index.lower, expr.index.upper, expr.index.step):
                if part is not None:
                    self.const(part, names)
        elif not isinstance(expr, _NOT_CONSTANT):  # those are errors of another kind
            for part in _parts(expr):
                self.const(part, names)

    def const_call(self, expr: n.Call, names: Names) -> None:
        if not isinstance(expr.func, n.Name):
            return  # only functions are called in constants: another error
        if self.unknown(expr.func.id, names):
            evaluate(n.new(n.Call, span=expr.span, func=expr.func), self.env(names))  # raises
        for arg in expr.args:
            self.const(arg.value if isinstance(arg, n.Starred) else arg, names)
        for keyword in expr.kwargs:
            self.const(keyword.value, names)

    # ------------------------------------------------------------ init blocks
    def init(self, items: Sequence[Any], names: Names, lets: list[n.Let]) -> None:
        for item in items:
            with self.collect():
                if isinstance(item, n.IfItem):
                    self.init_if(item, names, lets)
                elif isinstance(item, n.Assert):
                    self.const(item.test, names)
                elif isinstance(item, n.Let):
                    lets.append(item)  # evaluated per parameter, when a rule needs it
                elif isinstance(item, n.InitRule):
                    self.rule(item, names, lets)

    def init_if(self, item: n.IfItem, names: Names, lets: list[n.Let]) -> None:
        bodies = [b.body for b in item.branches] + [item.orelse or []]
        made = [x for body in bodies for x in n.walk_items(body) if isinstance(x, n.Let)]
        per_parameter = {let_name(x) for x in lets} | FAN_NAMES
        if any(n.names_in(b.test) & per_parameter for b in item.branches):
            lets += made
            return  # a test on a per-parameter name: another error
        try:
            for branch in item.branches:
                self.const(branch.test, names)
        except NetDSLError:  # the checker reads no branch then
            lets += made
            raise
        for body in bodies:
            self.init(body, names, lets)

    def rule(self, rule: n.InitRule, names: Names, lets: list[n.Let]) -> None:
        functions = init_functions()
        name = rule.func.name.removesuffix("_")
        if name not in functions:
            fail(f"unknown init function '{rule.func.name}'{did_you_mean(name, functions)}",
                 rule.func.span, codes.UNKNOWN_NAME)
        self.rule_target(rule, names)
        needed = n.names_in(rule)
        used: list[n.Let] = []
        for let in reversed(lets):  # the lets it needs, directly or through others
            if let_name(let) in needed:
                used.insert(0, let)
                needed |= n.names_in(let.value)
        if needed & FAN_NAMES:
            return  # checked per parameter, where the rule matches one
        scope = dict(names)
        for let in used:
            self.const(let.value, scope)
            scope[let_name(let)] = None
        for value in [*rule.args, *(k.value for k in rule.kwargs)]:
            self.const(value.value if isinstance(value, n.Starred) else value, scope)

    def rule_target(self, rule: n.InitRule, names: Names) -> None:
        """A type rule's target is a layer: a torch or custom class, or a block."""
        target = rule.target
        if rule.target_kind != "type" or target in names:
            return
        found = self.unit.scope.get(target)
        if found is not None and not isinstance(found[0], n.DefDecl):
            return  # a block, or a let whose value decides
        if found is None and target not in self.checker.world.builtins \
                and self.registry.lookup(target) is not None:
            return
        layers = self.checker.world.layer_names()
        fail(f"unknown layer type '{target}'{did_you_mean(target, layers)}", rule.target_span,
             codes.UNKNOWN_NAME)

    # ------------------------------------------------------------ forward and methods
    def forwards(self, names: Names) -> None:
        """The forward sees the parameters and the lets as the body leaves them."""
        for forward in self.decl.forwards:
            params = [n.new(n.Param, span=a.span, name=a) for a in forward.args]
            _Forward(self, names).function(params, forward.body)
        for method in n.walk_items(self.decl.body):
            if isinstance(method, n.DefDecl):
                _Forward(self, names).function(method.params, method.body)


# ---------------------------------------------------------------- the forward


def _returns(stmt: n.Stmt) -> bool:
    """Whether every path through a statement returns: what follows it never runs."""
    if isinstance(stmt, n.Return):
        return True
    if not isinstance(stmt, n.IfStmt) or stmt.orelse is None:
        return False
    bodies = [b.body for b in stmt.branches] + [stmt.orelse]
    return all(any(_returns(s) for s in body) for body in bodies)


def _stages(pipeline: n.Pipeline) -> tuple[n.Expr, list[n.Expr]]:
    """``a -> f -> g``: the source ``a`` and the stages ``[f, g]``."""
    stages: list[n.Expr] = []
    node: n.Expr = pipeline
    while isinstance(node, n.Pipeline):
        stages.insert(0, node.stage)
        node = node.source
    return node, stages


class _Forward:
    """The names of a forward, a method, or a param's or buffer's expression."""

    def __init__(self, owner: _Resolver, consts: Names, where: str = "in forward", *,
                 own: bool = True):
        self.owner = owner
        self.consts = consts  # parameters and lets: constants here
        self.where = where
        # A param's expression is compiled without the module's children, tensors and methods.
        self.members = owner.members if own else None
        self.scope: Names = {}  # arguments and variables so far

    def member(self, name: str) -> bool:
        m = self.members
        return m is not None and (m.child(name) or name in m.tensors or name in m.methods)

    def function(self, params: Sequence[n.Param], body: list[n.Stmt]) -> None:
        for param in params:
            if param.default is not None:
                with self.owner.collect():
                    self.expr(param.default)
            self.scope[param.name.name] = None
        self.block(body)

    # ------------------------------------------------------------ statements
    def block(self, body: Sequence[n.Stmt]) -> None:
        for stmt in body:
            with self.owner.collect():
                self.stmt(stmt)
            if _returns(stmt):
                break  # the rest never runs (and is reported as such)

    def stmt(self, stmt: n.Stmt) -> None:
        if isinstance(stmt, n.Assign):
            try:
                self.value(stmt.value, stmt.target)
            finally:  # assigned even when its value failed: its uses say nothing more
                self.scope.update(_targets(stmt.target))
        elif isinstance(stmt, n.AugAssign):
            if stmt.target.name not in self.scope:
                fail(f"'{stmt.target.name}' is not a variable of the forward; {stmt.op}= "
                     f"updates one", stmt.target.span, codes.FORWARD)
            self.expr(stmt.value)
        elif isinstance(stmt, n.CallStmt):
            self.call(stmt.call)
        elif isinstance(stmt, n.For):
            self.loop(stmt)
        elif isinstance(stmt, n.IfStmt):
            self.branches(stmt)
        elif isinstance(stmt, n.Return):
            self.value(stmt.value, None)
        else:
            self.expr(stmt.test)
            if stmt.msg is not None:
                self.expr(stmt.msg)

    def value(self, expr: n.Expr, target: n.Ident | n.TupleTarget | None) -> None:
        """An assigned or returned value: a pipeline there is compiled stage by stage."""
        if not isinstance(expr, n.Pipeline) or isinstance(target, n.TupleTarget) or (
                target is not None and target.name in n.names_in(_stages(expr)[1])):
            self.expr(expr)
            return
        source, stages = _stages(expr)
        for stage in stages:
            self.expr(n.new(n.Pipeline, span=stage.span, source=source, stage=stage))
            source = n.new(n.Constant, span=stage.span, value=None)  # the stage before: a value

    def loop(self, stmt: n.For) -> None:
        targets = _targets(stmt.target)
        try:
            self.expr(stmt.iter)
        except NetDSLError:  # the checker reads no body then
            self.scope.update({**targets, **dict.fromkeys(_assigned(stmt.body))})
            raise
        self.scope.update(targets)
        self.block(stmt.body)

    def branches(self, stmt: n.IfStmt) -> None:
        bodies = [b.body for b in stmt.branches] + [stmt.orelse or []]
        for index, branch in enumerate(stmt.branches):
            try:
                self.expr(branch.test)
            except NetDSLError:  # the checker reads no further branch then
                rest = [s for body in bodies[index:] for s in body]
                self.scope.update(dict.fromkeys(_assigned(rest)))
                raise
            self.block(branch.body)
        self.block(stmt.orelse or [])

    # ------------------------------------------------------------ expressions
    def expr(self, expr: Any) -> None:
        if isinstance(expr, n.Name):
            self.name(expr)
        elif isinstance(expr, n.Call):
            self.call(expr)
        elif isinstance(expr, n.Pipeline):
            call = self.desugar(expr)
            if call is not None:
                self.call(call)
        elif isinstance(expr, n.Attr):
            self.expr(expr.value)
        elif isinstance(expr, n.Index):
            self.expr(expr.value)
            if self.runtime(expr.value):
                self.subscript(expr.index)
        elif not isinstance(expr, (n.ListComp, n.Starred, n.Slice)):  # others: other errors
            for part in _parts(expr):
                self.expr(part)

    def name(self, expr: n.Name) -> None:
        name = expr.id
        if name in self.scope or self.member(name) or name in self.consts:
            return
        found = self.owner.unit.scope.get(name)
        if found is not None and isinstance(found[0], n.Let):
            return  # a file-level constant (or whatever its value is)
        self.compiler().expr(expr)  # raises the forward compiler's error for the name

    def call(self, expr: n.Call) -> None:
        func = expr.func
        if not (isinstance(func, n.Name) and self.builtin(func.id)):
            self.expr(func)
        for arg in expr.args:
            self.expr(arg.value if isinstance(arg, n.Starred) else arg)
        for keyword in expr.kwargs:
            self.expr(keyword.value)

    def builtin(self, name: str) -> bool:
        """An op, children() or a function on constants, unless the forward's names hide it."""
        if name in self.scope or self.member(name):
            return False
        if name in OPS or name == "children":
            return True
        if name in self.consts:
            return False
        found = self.owner.unit.scope.get(name)
        if found is not None:
            return isinstance(found[0], (n.DefDecl, n.Let))  # a let may hold a function
        return name in BUILTINS

    def desugar(self, expr: n.Pipeline) -> n.Call | None:
        """``x -> stage`` as the compiler reads it: ``stage(x)``, ``op(x, ...)`` (None: a
        stage that calls a child, an error of its own)."""
        stage = expr.stage
        if isinstance(stage, n.Call) and isinstance(stage.func, n.Name):
            name = stage.func.id
            if name in OPS and self.builtin(name):
                return n.new(n.Call, span=expr.span, func=stage.func,
                             args=[expr.source, *stage.args], kwargs=stage.kwargs)
            if self.members is not None and self.members.child(name):
                return None
        return n.new(n.Call, span=expr.span, func=stage, args=[expr.source])

    def runtime(self, expr: n.Expr) -> bool:
        """Whether an indexed value is surely no constant, so that its index is code (the index
        of a constant is evaluated with the constants, and fails otherwise)."""
        if isinstance(expr, n.Name):
            m = self.members
            return expr.id in self.scope or (
                m is not None and expr.id in m.indexable and expr.id not in self.owner.broken)
        if isinstance(expr, (n.Attr, n.Index)):
            return self.runtime(expr.value)
        return isinstance(expr, n.Call) and isinstance(expr.func, n.Attr) and \
            self.runtime(expr.func.value)

    def subscript(self, node: n.Expr) -> None:
        if isinstance(node, n.TupleExpr):
            for item in node.items:
                self.subscript(item)
        elif isinstance(node, n.Slice):
            for part in (node.lower, node.upper, node.step):
                if part is not None:
                    self.expr(part)
        else:
            self.expr(node)

    def compiler(self) -> ExprCompiler:
        """The checker's compiler for these names (their values unknown, and not needed)."""
        m, broken = self.members, self.owner.broken
        children = dict.fromkeys(m.children - broken) if m is not None else {}
        return ExprCompiler(
            self.owner.decl.name.name, cast(dict[str, Plan], children),
            self.owner.env(self.consts), scope={v: Compiled(v, VALUE) for v in self.scope},
            tensors=set(m.tensors - broken) if m is not None else set(),
            method_names=set(m.methods) if m is not None else set(), where=self.where)
