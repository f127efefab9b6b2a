"""Forward: a model's ``forward`` definition -> a real Python function, compiled once.

Checks every name and call against the model's children, constants and the closed op table
(:mod:`netdsl.ops`), then emits plain Python that reads like the hand-written forward
(``x = self.features(x)``), so the compiled model runs at hand-written speed and traces under
``torch.fx``, ``torch.export`` and ``torch.compile``. Only validated identifiers and ``repr()``
literals of checked constants reach the generated text.
"""

from __future__ import annotations

import keyword
import linecache
import math
import operator
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from . import nodes as n
from .errors import NetDSLError, Span, UnknownKeyError, did_you_mean, fail
from .evaluate import evaluate
from .ops import ATTRIBUTES, METHODS, NAMESPACE, OPS, Op
from .plan import DictPlan, ListPlan, Plan, SequentialPlan, child_kind
from .signatures import Arg

# Kinds of forward values: a tensor (or any runtime value), a constant known at compile time,
# or a module that can be called, iterated or indexed.
VALUE, CONST, MODULE = "value", "const", "module"
# A child whose own definition failed (its error is reported already): accepted anywhere, so
# that the rest of the forward is still checked without follow-on errors.
BROKEN = "broken"
CALLABLE = {MODULE, "sequential", BROKEN}
# A constant exponent in the forward beyond this would make `x.shape[1] ** e` a long-running
# big-integer power at run time.
MAX_EXPONENT = 1024
ITERABLE = {"list", "sequential", BROKEN}
INDENT = "    "


@dataclass
class Compiled:
    code: str
    kind: str
    plan: Plan | None = None  # for children: what indexing it yields
    const: Any = None  # for constants: the value


@dataclass
class ForwardCompiler:
    """Compiles one model's forward; collects errors instead of stopping at the first."""

    model: str
    children: dict[str, Plan]
    consts: dict[str, Any]
    source: str = ""  # the text of the spec file, for the source line of run-time errors
    errors: list[NetDSLError] = field(default_factory=list)
    namespace: dict[str, Any] = field(default_factory=lambda: dict(NAMESPACE))
    scope: dict[str, Compiled] = field(default_factory=dict)
    # Children and constants that failed to check (see BROKEN).
    broken: set[str] = field(default_factory=set)
    # Compiled functions by file name and source: instances of one block that generate the
    # same code share one function (and so one class).
    cache: dict[tuple[str, str], Callable[..., Any]] = field(default_factory=dict)
    # Instrumented: every call and operator goes through `_at(site, fn, *args)`, so that the
    # shape pass can locate a failing op in the spec (see TRACER).
    instrument: bool = False
    sites: list[Site] = field(default_factory=list)
    # Forward arguments used as dict keys, with the keys they may take.
    key_args: dict[str, list[str]] = field(default_factory=dict)

    # ------------------------------------------------------------ entry points
    def compile(self, forward: n.Forward | None, model_span: Span) -> Callable[..., Any] | None:
        if forward is None:
            lines = self._default_body(model_span)
            args = ["x"]
        else:
            args = self._declare_args(forward)
            lines = self._body(forward)
        if self.errors:
            return None
        source = f"def forward(self, {', '.join(args)}):\n" + "".join(
            f"{INDENT}{line}\n" for line in lines)
        return self._exec(source, model_span)

    def _exec(self, source: str, span: Span) -> Callable[..., Any]:
        filename = f"<netdsl {span.path}:{self.model}{' (checked)' if self.instrument else ''}>"
        if self.instrument:
            self.namespace["_at"] = _located(self.sites)
            self.namespace["_operator"] = operator
        if (filename, source) in self.cache:
            return self.cache[filename, source]
        # Register the text so tracebacks, inspect and torch.compile can show the generated code.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        code = compile(source, filename, "exec")
        exec(code, self.namespace)  # noqa: S102  # netdsl: generated-code
        function = self.namespace.pop("forward")
        function.__qualname__ = f"{self.model}.forward"
        self.cache[filename, source] = function
        return function  # type: ignore[no-any-return]

    def _default_body(self, span: Span) -> list[str]:
        """No forward given: the children run in declaration order, as nn.Sequential would."""
        lines = []
        for name, plan in self.children.items():
            kind = child_kind(plan)
            if kind == "list":
                lines += [f"for _layer in self.{name}:", f"{INDENT}x = _layer(x)"]
            elif kind == "dict":
                self.errors.append(NetDSLError(
                    f"'{name}' is a dict, so {self.model} needs a forward that says which key "
                    f"to use", plan.span))
            elif self.instrument:
                call = self._located(f"self.{name}", ["x"], plan.span, name)
                lines.append(f"x = {call.code}")
            else:
                lines.append(f"x = self.{name}(x)")
        if not self.children and not self.broken:
            self.errors.append(NetDSLError(f"{self.model} has no children and no forward", span))
        return [*lines, "return x"]

    def _declare_args(self, forward: n.Forward) -> list[str]:
        names = []
        for arg in forward.args:
            if self._check_new_name(arg, "forward argument") and arg.name in names:
                self._error(f"duplicate forward argument '{arg.name}'", arg.span)
            names.append(arg.name)
            self.scope[arg.name] = Compiled(arg.name, VALUE)
        return names

    # ------------------------------------------------------------ statements
    def _body(self, forward: n.Forward) -> list[str]:
        lines = self._block(forward.body, top=True)
        if not any(isinstance(stmt, n.Return) for stmt in forward.body):
            self._error("forward never returns a value: end it with 'return ...'", forward.span)
        return lines

    def _block(self, body: list[n.Stmt], top: bool) -> list[str]:
        lines: list[str] = []
        for i, stmt in enumerate(body):
            if isinstance(stmt, n.Return) and i != len(body) - 1:
                self._error("code after 'return' never runs", body[i + 1].span)
            try:
                lines += self._stmt(stmt, top)
            except NetDSLError as err:
                self.errors.append(err)
        return lines or ["pass"]

    def _stmt(self, stmt: n.Stmt, top: bool) -> list[str]:
        if isinstance(stmt, n.Assign):
            if isinstance(stmt.value, n.Pipeline) and not _stages_use(stmt.value,
                                                                       stmt.target.name):
                lines, value = self._pipeline(stmt.value, stmt.target.name)
            else:
                value = self._expr(stmt.value)
                lines = [f"{stmt.target.name} = {value.code}"]
            if self._check_new_name(stmt.target, "variable"):
                self.scope[stmt.target.name] = Compiled(stmt.target.name, value.kind, value.plan)
            return lines
        if isinstance(stmt, n.For):
            return self._for(stmt)
        if not top:
            fail("'return' inside a for loop is not supported; return after the loop",
                 stmt.span)
        if isinstance(stmt.value, n.Pipeline):
            source = stmt.value
            while isinstance(source, n.Pipeline):
                source = source.source
            # `return x -> a -> b` becomes `x = self.a(x)`, `x = self.b(x)`, `return x`,
            # reusing the source's name when it is a forward value, as one would by hand.
            target = source.id if isinstance(source, n.Name) and \
                self.scope.get(source.id, Compiled("", "")).kind == VALUE and \
                not _stages_use(stmt.value, source.id) else "_out"
            lines, value = self._pipeline(stmt.value, target)
            return [*lines, f"return {target}"]
        value = self._expr(stmt.value)
        self._require_value(value, stmt.value.span)
        return [f"return {value.code}"]

    def _pipeline(self, pipeline: n.Pipeline, target: str) -> tuple[list[str], Compiled]:
        """A pipeline as one assignment per stage, as hand-written code reads."""
        stages: list[n.Pipeline] = []
        node: n.Expr = pipeline
        while isinstance(node, n.Pipeline):
            stages.insert(0, node)
            node = node.source
        value = self._expr(self._desugar(stages[0]))
        lines = [f"{target} = {value.code}"]
        saved = self.scope.get(target)
        self.scope[target] = Compiled(target, VALUE)
        try:
            for stage in stages[1:]:
                source = n.Name(span=stage.source.span, id=target)
                value = self._expr(self._desugar(n.Pipeline(span=stage.span, source=source,
                                                             stage=stage.stage)))
                lines.append(f"{target} = {value.code}")
        finally:
            if saved is None:
                del self.scope[target]
            else:
                self.scope[target] = saved
        return lines, value

    def _for(self, stmt: n.For) -> list[str]:
        iterable = self._expr(stmt.iter)
        if iterable.kind not in ITERABLE:
            fail(f"can only loop over a list or sequential, not {_kind_name(iterable)}",
                 stmt.iter.span)
        if self._check_new_name(stmt.var, "loop variable"):
            self.scope[stmt.var.name] = Compiled(stmt.var.name, MODULE)
        body = self._block(stmt.body, top=False)
        return [f"for {stmt.var.name} in {iterable.code}:", *(INDENT + line for line in body)]

    def _check_new_name(self, ident: n.Ident, what: str) -> bool:
        name = ident.name
        if keyword.iskeyword(name) or name == "self":
            self._error(f"'{name}' is reserved in Python and cannot name a {what}", ident.span)
            return False
        clash = ("child" if name in self.children else
                 "model parameter or constant" if name in self.consts else None)
        if clash:
            self._error(f"{what} '{name}' has the same name as a {clash}", ident.span)
            return False
        return True

    # ------------------------------------------------------------ expressions
    def _expr(self, expr: n.Expr) -> Compiled:
        if isinstance(expr, n.Name):
            return self._name(expr)
        if isinstance(expr, n.Constant):
            return self._constant(expr.value, expr.span)
        if isinstance(expr, (n.TupleExpr, n.ListExpr)):
            items = [self._value(i) for i in expr.items]
            if isinstance(expr, n.ListExpr):
                return Compiled(f"[{', '.join(items)}]", VALUE)
            return Compiled(f"({', '.join(items)}{',' if len(items) == 1 else ''})", VALUE)
        if isinstance(expr, n.BinOp):
            return self._binop(expr)
        if isinstance(expr, n.UnaryOp):
            operand = self._expr(expr.operand)
            self._require_value(operand, expr.operand.span)
            if operand.kind == CONST and isinstance(operand.const, (int, float)):
                return self._constant(-operand.const if expr.op == "-" else operand.const,
                                      expr.span)
            return Compiled(f"({expr.op}{operand.code})", VALUE)
        if isinstance(expr, n.Pipeline):
            return self._expr(self._desugar(expr))
        if isinstance(expr, n.Call):
            return self._call(expr)
        if isinstance(expr, n.Index):
            return self._index(expr)
        return self._attr(expr)

    def _binop(self, expr: n.BinOp) -> Compiled:
        left, right = self._expr(expr.left), self._expr(expr.right)
        self._require_value(left, expr.left.span)
        self._require_value(right, expr.right.span)
        if left.kind == CONST and right.kind == CONST:
            # Folded now, with the bounds of constant arithmetic: 3 ** 10 ** 9 is an error
            # here, not a forward that never returns.
            return self._constant(evaluate(expr, self.consts), expr.span)
        if expr.op == "**" and right.kind == CONST and isinstance(right.const, int) \
                and abs(right.const) > MAX_EXPONENT:
            fail(f"exponent {right.const} is too large (at most {MAX_EXPONENT})", expr.right.span)
        if self.instrument:
            return self._located(f"_operator.{_OPERATORS[expr.op]}", [left.code, right.code],
                                 expr.span, expr.op)
        return Compiled(f"({left.code} {expr.op} {right.code})", VALUE)

    def _value(self, expr: n.Expr) -> str:
        compiled = self._expr(expr)
        self._require_value(compiled, expr.span)
        return compiled.code

    def _require_value(self, compiled: Compiled, span: Span) -> None:
        if compiled.kind not in (VALUE, CONST, BROKEN):
            fail(f"{_kind_name(compiled)} is not a value; call it with an input", span)

    def _name(self, expr: n.Name) -> Compiled:
        name = expr.id
        if name in self.scope:
            return self.scope[name]
        if name in self.children:
            plan = self.children[name]
            return Compiled(f"self.{name}", child_kind(plan), plan)
        if name in self.consts:
            return self._constant(self.consts[name], expr.span)
        if name in self.broken:
            return Compiled(name, BROKEN)
        if name in OPS:
            fail(f"'{name}' is a function: call it, as in {name}(x), or use it in a pipeline "
                 f"(x -> {name})", expr.span)
        known = [*self.scope, *self.children, *self.consts, *OPS]
        fail(f"undefined name '{name}' in forward{did_you_mean(name, known)}", expr.span)

    def _constant(self, value: Any, span: Span) -> Compiled:
        if isinstance(value, float) and not math.isfinite(value):
            fail("number is too large", span)
        return Compiled(repr(value), CONST, const=value)

    def _call(self, expr: n.Call) -> Compiled:
        func = expr.func
        if self._is_op(func):
            assert isinstance(func, n.Name)
            return self._op(OPS[func.id], expr)
        if isinstance(func, n.Attr):
            return self._method(func, expr)
        callee = self._expr(func)
        if callee.kind not in CALLABLE:
            hint = {"list": "; loop over it (for layer in ...) or index it",
                    "dict": "; index it with a key first"}.get(callee.kind, "")
            fail(f"{_kind_name(callee)} cannot be called{hint}", func.span)
        if self.instrument:
            return self._located(callee.code, self._argument_list(expr), expr.span,
                                 _call_label(func))
        return Compiled(f"{callee.code}({self._arguments(expr)})", VALUE)

    def _arguments(self, expr: n.Call) -> str:
        return ", ".join(self._argument_list(expr))

    def _argument_list(self, expr: n.Call) -> list[str]:
        parts = [self._value(a) for a in expr.args]
        seen: set[str] = set()
        for k in expr.kwargs:
            if k.name.name in seen:
                fail(f"keyword argument '{k.name.name}' repeated", k.name.span)
            if keyword.iskeyword(k.name.name):
                fail(f"'{k.name.name}' is reserved in Python and cannot name a keyword argument",
                     k.name.span)
            seen.add(k.name.name)
        return parts + [f"{k.name.name}={self._value(k.value)}" for k in expr.kwargs]

    def _located(self, func: str, parts: list[str], span: Span, label: str) -> Compiled:
        """``_at(site, func, *parts)``: the call, reported at ``span`` if it fails."""
        self.sites.append(Site(span, label))
        return Compiled(f"_at({len(self.sites) - 1}, {', '.join([func, *parts])})", VALUE)

    def _op(self, op: Op, expr: n.Call) -> Compiled:
        args = [Arg(self._value(a), a.span) for a in expr.args]
        kwargs = [Arg(self._value(k.value), k.value.span, k.name.name, k.name.span)
                  for k in expr.kwargs]
        op.signature.bind(args, kwargs, expr.span)
        parts = [a.value for a in args] + [f"{k.name}={k.value}" for k in kwargs]
        if op.is_method:
            if not args:
                fail(f"{op.signature.title} needs its input as the first argument", expr.span)
            if self.instrument:
                return self._located(f"_torch.Tensor{op.code}", parts, expr.span,
                                     op.code.lstrip("."))
            return Compiled(f"{parts[0]}{op.code}({', '.join(parts[1:])})", VALUE)
        if self.instrument:
            name = expr.func.id if isinstance(expr.func, n.Name) else "op"
            return self._located(op.code, parts, expr.span, name)
        return Compiled(f"{op.code}({', '.join(parts)})", VALUE)

    def _method(self, func: n.Attr, expr: n.Call) -> Compiled:
        target = self._expr(func.value)
        name = func.attr.name
        if target.kind not in (VALUE, BROKEN):
            fail(f"{_kind_name(target)} has no method '{name}' in a forward", func.attr.span)
        if name not in METHODS:
            fail(f"unknown tensor method '{name}'{did_you_mean(name, METHODS)}", func.attr.span)
        if self.instrument:
            return self._located(f"_torch.Tensor.{name}",
                                 [target.code, *self._argument_list(expr)], expr.span, name)
        return Compiled(f"{target.code}.{name}({self._arguments(expr)})", VALUE)

    def _attr(self, expr: n.Attr) -> Compiled:
        target = self._expr(expr.value)
        name = expr.attr.name
        if target.kind not in (VALUE, BROKEN) or name not in ATTRIBUTES:
            fail(f"unknown attribute '{name}'{did_you_mean(name, ATTRIBUTES)}", expr.attr.span)
        return Compiled(f"{target.code}.{name}", VALUE)

    def _index(self, expr: n.Index) -> Compiled:
        target = self._expr(expr.value)
        if target.kind == BROKEN:
            self._expr(expr.index)
            return target
        if target.kind == "dict":
            assert isinstance(target.plan, DictPlan)
            return self._dict_index(target, target.plan, expr)
        if target.kind in ITERABLE:
            assert isinstance(target.plan, (ListPlan, SequentialPlan))
            return self._list_index(target, target.plan, expr)
        if target.kind == VALUE:
            index = self._value(expr.index)
            if self.instrument:
                return self._located("_operator.getitem", [target.code, index], expr.span, "[]")
            return Compiled(f"{target.code}[{index}]", VALUE)
        fail(f"{_kind_name(target)} cannot be indexed", expr.value.span)

    def _list_index(self, target: Compiled, plan: ListPlan | SequentialPlan,
                    expr: n.Index) -> Compiled:
        index = self._expr(expr.index)
        items = [p for _, p in plan.items] if isinstance(plan, SequentialPlan) else plan.items
        position = index.const
        if index.kind != CONST or not isinstance(position, int) or isinstance(position, bool):
            fail(f"{_kind_name(target)} is indexed by an integer constant", expr.index.span)
        if not -len(items) <= position < len(items):
            fail(f"index {position} is out of range for {_kind_name(target)} "
                 f"({len(items)} items)", expr.index.span)
        item = items[position]
        return Compiled(f"{target.code}[{position}]", child_kind(item), item)

    def _dict_index(self, target: Compiled, plan: DictPlan, expr: n.Index) -> Compiled:
        keys = [k for k, _ in plan.items]
        key = self._expr(expr.index)
        valid = ", ".join(repr(k) for k in keys)
        if key.kind == CONST:
            value = key.const
            if value not in keys:
                fail(f"unknown key {value!r} for {_kind_name(target)}; valid keys: {valid}",
                     expr.index.span)
            item = dict(plan.items)[value]
            return Compiled(f"{target.code}[{key.code}]", child_kind(item), item)
        if key.kind != VALUE or not isinstance(expr.index, n.Name):
            fail(f"{_kind_name(target)} is indexed by a forward argument or a string",
                 expr.index.span)
        self.key_args.setdefault(expr.index.id, keys)
        raise_name = self._key_error(target, valid, expr.index.span)
        # Look the dict up once (nn.Module attribute access is not free); the membership test
        # turns a KeyError into a located error naming the valid keys.
        held = raise_name.replace("_no_key", "_dict")
        code = f"({held}[{key.code}] if {key.code} in ({held} := {target.code}) else " \
               f"{raise_name}({key.code}))"
        return Compiled(code, MODULE)

    def _key_error(self, target: Compiled, valid: str, span: Span) -> str:
        """A helper the generated code calls to raise a located error for an unknown key."""
        what = _kind_name(target)

        lines = self.source.split("\n")
        line = lines[span.line - 1] if 0 < span.line <= len(lines) else None

        def unknown_key(key: object) -> None:
            raise UnknownKeyError(f"unknown key {key!r} for {what}; valid keys: {valid}", span,
                                  line)

        name = f"_no_key{len(self.namespace)}"
        self.namespace[name] = unknown_key
        return name

    def _is_op(self, func: n.Expr) -> bool:
        """A call of the op table, unless a child or variable of that name hides it."""
        return isinstance(func, n.Name) and func.id in OPS and func.id not in self.scope \
            and func.id not in self.children

    def _desugar(self, expr: n.Pipeline) -> n.Call:
        """``x -> stage`` is ``stage(x)``; ``x -> op(a)`` is ``op(x, a)``."""
        stage = expr.stage
        if isinstance(stage, n.Call) and self._is_op(stage.func):
            return n.Call(span=expr.span, func=stage.func, args=[expr.source, *stage.args],
                          kwargs=stage.kwargs)
        if isinstance(stage, n.Call) and isinstance(stage.func, n.Name) \
                and stage.func.id in self.children:
            fail(f"'{stage.func.id}' is a child here, so this stage would call it and then call "
                 f"its result; write '-> {stage.func.id}'", stage.span)
        return n.Call(span=expr.span, func=stage, args=[expr.source])

    def _error(self, message: str, span: Span) -> None:
        self.errors.append(NetDSLError(message, span))


@dataclass(frozen=True)
class Site:
    """A call or operator in an instrumented forward: where it is, and what to call it."""

    span: Span
    label: str


# The shape pass sets this while it traces a model; instrumented forwards call through it.
TRACER: ContextVar[Callable[[Site, Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]
                   | None] = ContextVar("netdsl_tracer", default=None)

_OPERATORS = {"+": "add", "-": "sub", "*": "mul", "/": "truediv", "//": "floordiv", "%": "mod",
              "**": "pow", "@": "matmul"}


def _located(sites: list[Site]) -> Callable[..., Any]:
    def at(site: int, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        tracer = TRACER.get()
        if tracer is None:
            return func(*args, **kwargs)
        return tracer(sites[site], func, args, kwargs)

    return at


def _call_label(func: n.Expr) -> str:
    """How a called module is named in shape messages: ``features``, ``choices[choice]``."""
    if isinstance(func, n.Name):
        return func.id
    if isinstance(func, n.Index) and isinstance(func.value, n.Name):
        key = func.index.id if isinstance(func.index, n.Name) else \
            repr(getattr(func.index, "value", "..."))
        return f"{func.value.id}[{key}]"
    return "call"


def _stages_use(pipeline: n.Pipeline, name: str) -> bool:
    """Whether a stage (not the source) mentions ``name``: then it cannot be reassigned."""
    stages: list[n.Expr] = []
    node: n.Expr = pipeline
    while isinstance(node, n.Pipeline):
        stages.append(node.stage)
        node = node.source
    return name in n.names_in(stages)


def _kind_name(compiled: Compiled) -> str:
    if compiled.kind in ("list", "dict", "sequential", MODULE) and compiled.code.startswith(
            "self."):
        return f"{compiled.kind if compiled.kind != MODULE else 'module'} " \
               f"'{compiled.code.removeprefix('self.')}'"
    return {BROKEN: "an invalid child", VALUE: "a tensor", CONST: "a constant",
            MODULE: "a module", "list": "a list", "dict": "a dict",
            "sequential": "a sequential"}[compiled.kind]


__all__ = ["ForwardCompiler"]
