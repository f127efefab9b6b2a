"""Forward: a model's ``forward`` and methods -> real Python functions, compiled once.

Checks every name and call against the model's children, constants, methods and the closed op
table (:mod:`netdsl.ops`), then emits plain Python that reads like the hand-written forward
(``x = self.features(x)``), so the compiled model runs at hand-written speed and traces under
``torch.fx``, ``torch.export`` and ``torch.compile``. Conditions on constants are decided here:
the generated code holds only the branch taken. Only validated identifiers and ``repr()``
literals of checked constants reach the generated text. Expressions: :mod:`netdsl.forward_expr`.
"""

from __future__ import annotations

import keyword
import linecache
import operator
import zlib
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from . import codes
from . import nodes as n
from .containers import attributes
from .errors import NetDSLError, Span, fail
from .evaluate import truthy
from .forward_expr import (
    BROKEN,
    CONST,
    ITEMS,
    ITERABLE,
    METHOD,
    MODULE,
    MODULES,
    VALUE,
    Compiled,
    ExprCompiler,
    Site,
    kind_name,
)
from .ops import LIST_METHODS
from .plan import child_kind

INDENT = "    "
_IN_PLACE = {"+": "add", "-": "sub", "*": "mul", "/": "truediv"}
Functions = dict[str, Callable[..., Any]]


@dataclass
class _Block:
    lines: list[str]
    returns: bool  # every path through it ends in a return
    # ... because of an `if` on constants: what follows is dead for these constants only, so
    # it is dropped rather than reported as unreachable.
    folded: bool = False


@dataclass
class ForwardCompiler(ExprCompiler):
    """Compiles one model's forward and methods; collects errors instead of stopping."""

    # Compiled functions by file name and source: instances of one block that generate the
    # same code share one set of functions (and so one class).
    cache: dict[tuple[str, str], Functions] = field(default_factory=dict)
    method_decls: list[n.DefDecl] = field(default_factory=list)
    method_calls: dict[str, list[tuple[str, Span]]] = field(default_factory=dict)
    # The body had errors: an empty model is then no news ("has no children" would repeat it).
    body_failed: bool = False

    # ------------------------------------------------------------ entry points
    def compile(self, forward: n.Forward | None, model_span: Span
                ) -> tuple[Callable[..., Any], Functions] | None:
        """The forward and the methods, or None when they have errors (see ``errors``)."""
        self.method_names = self._method_names()
        params = [] if forward is None else [n.new(n.Param, span=a.span, name=a)
                                             for a in forward.args]
        sources = [self._function("forward", params, forward, model_span)]
        sources += [self._def_method(decl) for decl in self.method_decls]
        self._check_cycles()
        if self.errors:
            return None
        functions = self._exec("".join(sources), model_span)
        forward_fn = functions.pop("forward")
        return forward_fn, functions

    def _function(self, name: str, params: list[n.Param], node: n.Forward | n.DefDecl | None,
                  span: Span) -> str:
        self.scope = {}
        self.calls = []
        if node is None:  # `x` is generated: it may share its name with a child
            args = ["x"]
            lines = self._default_body(span)
        else:
            args = self._declare_args(params)
            block = self._block(node.body)
            if not block.returns:
                what = "forward" if name == "forward" else f"method '{name}'"
                self.error(f"{what} never returns a value: end it with 'return ...'", node.span,
                           codes.FORWARD)
            lines = block.lines
        self.method_calls[name] = self.calls
        return f"def {name}(self{''.join(', ' + a for a in args)}):\n" + "".join(
            f"{INDENT}{line}\n" for line in lines) + "\n"

    def _exec(self, source: str, span: Span) -> Functions:
        filename = f"<netdsl {span.path}:{self.model}{' (checked)' if self.instrument else ''}>"
        # Instances of one block whose constants differ generate different code: each gets its
        # own name, so inspect.getsource and tracebacks show the code that runs.
        held = linecache.cache.get(filename)
        if held is not None and "".join(held[2]) != source:
            filename = f"{filename[:-1]} #{zlib.crc32(source.encode()):08x}>"
        if self.instrument:
            self.namespace["_at"] = _located(self.sites)
            self.namespace["_operator"] = operator
        if (filename, source) in self.cache:
            return dict(self.cache[filename, source])
        # Register the text so tracebacks, inspect and torch.compile can show the generated code.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        code = compile(source, filename, "exec")
        exec(code, self.namespace)  # noqa: S102  # netdsl: generated-code
        names = ["forward", *(d.name.name for d in self.method_decls)]
        functions = {name: self.namespace.pop(name) for name in names}
        for name, function in functions.items():
            function.__qualname__ = f"{self.model}.{name}"
        self.cache[filename, source] = functions
        return dict(functions)

    def _default_body(self, span: Span) -> list[str]:
        """No forward given: the children run in declaration order, as nn.Sequential would."""
        lines = []
        for name, plan in self.children.items():
            kind = child_kind(plan)
            if kind == "list":
                lines += [f"for _layer in self.{name}:", f"{INDENT}x = _layer(x)"]
            elif kind == "dict":
                self.error(f"'{name}' is a dict, so {self.model} needs a forward that says which "
                           f"key to use", plan.span, codes.FORWARD)
            elif self.instrument:
                call = self.located(f"self.{name}", ["x"], plan.span, name)
                lines.append(f"x = {call.code}")
            else:
                lines.append(f"x = self.{name}(x)")
        if not self.children and not self.broken and not self.body_failed:
            self.error(f"{self.model} has no children and no forward", span, codes.FORWARD)
        return [*lines, "return x"]

    def _declare_args(self, params: list[n.Param]) -> list[str]:
        names: list[str] = []
        for param in params:
            arg = param.name
            if self._check_new_name(arg, "forward argument") and arg.name in names:
                self.error(f"duplicate forward argument '{arg.name}'", arg.span, codes.DUPLICATE)
            text = arg.name
            if param.varargs:
                text = f"*{text}"
            elif param.default is not None:
                default = self.expr(param.default)
                if default.kind != CONST:
                    self.error("a method's default is a constant", param.default.span, codes.TYPE)
                text = f"{text}={default.code}"
            names.append(text)
            self.scope[arg.name] = Compiled(arg.name, VALUE)
        return names

    # ------------------------------------------------------------ methods
    def _method_names(self) -> set[str]:
        names: set[str] = set()
        for decl in self.method_decls:
            name = decl.name.name
            if name == "forward":
                self.error("the forward is written forward(x) { ... }, not def forward",
                           decl.name.span, codes.FORWARD)
            elif name in names:
                self.error(f"method '{name}' is defined twice", decl.name.span, codes.DUPLICATE)
            elif name in self.children or name in self.consts:
                self.error(f"method '{name}' has the same name as a child or constant",
                           decl.name.span, codes.DUPLICATE)
            elif name in attributes(nn.Module) or keyword.iskeyword(name):
                self.error(f"method name '{name}' clashes with the nn.Module attribute of that "
                           f"name", decl.name.span, codes.DUPLICATE)
            names.add(name)
        return names

    def _def_method(self, decl: n.DefDecl) -> str:
        for param in decl.params:
            if param.type is not None:
                self.error("a method's parameters take no types: they are forward values",
                           param.type.span, codes.FORWARD)
        if decl.returns is not None:
            self.error("a method takes no return type", decl.returns.span, codes.FORWARD)
        return self._function(decl.name.name, decl.params, decl, decl.span)

    def _check_cycles(self) -> None:
        """Methods may call each other, but not in a circle (a forward that never returns)."""
        for decl in self.method_decls:
            start = decl.name.name
            paths: dict[str, list[str]] = {start: [start]}
            stack = [start]
            while stack:
                caller = stack.pop()
                for callee, span in self._calls_of(caller):
                    if callee == start:
                        chain = " -> ".join([*paths[caller], start])
                        self.error(f"method '{start}' calls itself ({chain}); recursion is not "
                                   f"allowed", span, codes.RECURSION)
                        return
                    if callee not in paths:
                        paths[callee] = [*paths[caller], callee]
                        stack.append(callee)

    def _calls_of(self, method: str) -> list[tuple[str, Span]]:
        return self.method_calls.get(method, [])

    # ------------------------------------------------------------ statements
    def _block(self, body: list[n.Stmt], in_loop: bool = False) -> _Block:
        lines: list[str] = []
        returns = folded = False
        for stmt in body:
            if returns:
                if not folded:
                    self.error("code after 'return' never runs", stmt.span, codes.FORWARD)
                break
            try:
                block = self._stmt(stmt, in_loop)
            except NetDSLError as err:
                self.errors.append(err)
                returns = isinstance(stmt, n.Return)  # reported: no "never returns" as well
                continue
            lines += block.lines
            returns, folded = block.returns, block.folded
        return _Block(lines or ["pass"], returns, folded)

    def _stmt(self, stmt: n.Stmt, in_loop: bool) -> _Block:
        if isinstance(stmt, n.Assign):
            return _Block(self._assign(stmt), False)
        if isinstance(stmt, n.AugAssign):
            return _Block(self._aug_assign(stmt), False)
        if isinstance(stmt, n.For):
            return _Block(self._for(stmt), False)
        if isinstance(stmt, n.IfStmt):
            return self._if(stmt, in_loop)
        if isinstance(stmt, n.CallStmt):
            return _Block(self._call_stmt(stmt), False)
        if isinstance(stmt, n.Assert):
            return _Block(self._assert(stmt), False)
        if in_loop:
            fail("'return' inside a for loop is not supported; return after the loop",
                 stmt.span, codes.FORWARD)
        return _Block(self._return(stmt), True)

    def _aug_assign(self, stmt: n.AugAssign) -> list[str]:
        """``result += identity``: Python's in-place operator, on a variable of the forward."""
        name = stmt.target.name
        held = self.scope.get(name)
        if held is None or held.kind not in (VALUE, BROKEN):
            fail(f"'{name}' is not a variable of the forward; {stmt.op}= updates one",
                 stmt.target.span, codes.FORWARD)
        value = self.value(stmt.value)
        if self.instrument:
            call = self.located(f"_operator.i{_IN_PLACE[stmt.op]}", [name, value], stmt.span,
                                stmt.op)
            return [f"{name} = {call.code}"]
        return [f"{name} {stmt.op}= {value}"]

    def _assert(self, stmt: n.Assert) -> list[str]:
        """``assert t <= block_size, "..."``: torch._assert, as torchvision writes it (it
        traces under torch.fx and torch.export); decided now when the test is a constant."""
        test = self.condition(stmt.test)
        message = self._message(stmt)
        if test.kind == CONST:
            if truthy(test.const):
                return []
            fail(message.const if message.kind == CONST else "assertion failed",
                 stmt.span, codes.VALUE)
        if self.instrument:  # the shape pass reports a failing assert at its span
            call = self.located("_torch._assert", [test.code, message.code], stmt.span,
                                "assert")
            return [call.code]
        return [f"_torch._assert({test.code}, {message.code})"]

    def _message(self, stmt: n.Assert) -> Compiled:
        if stmt.msg is None:
            return Compiled("'assertion failed'", CONST, const="assertion failed")
        if isinstance(stmt.msg, n.FString):
            return self.message_text(stmt.msg)
        message = self.expr(stmt.msg)
        if message.kind != CONST or not isinstance(message.const, str):
            fail("an assert's message is a string", stmt.msg.span, codes.TYPE)
        return message

    def _assign(self, stmt: n.Assign) -> list[str]:
        names = n.target_names(stmt.target)
        single = names[0].name if isinstance(stmt.target, n.Ident) else None
        if single and isinstance(stmt.value, n.Pipeline) and not _stages_use(stmt.value, single):
            lines, value = self._pipeline_lines(stmt.value, single)
        else:
            value = self.expr(stmt.value)
            if single is None or value.kind in (VALUE, CONST, BROKEN):
                self.require_value(value, stmt.value.span)
            lines = [f"{_target_text(stmt.target)} = {value.code}"]
        for ident in names:
            if self._check_new_name(ident, "variable"):
                # A variable holds what it is given at run time: never a constant to fold.
                kind = value.kind if single and value.kind not in (CONST,) else VALUE
                self.scope[ident.name] = Compiled(ident.name, kind, value.plan if single else None)
        return lines

    def _pipeline_lines(self, pipeline: n.Pipeline, target: str) -> tuple[list[str], Compiled]:
        """A pipeline as one assignment per stage, as hand-written code reads."""
        stages: list[n.Pipeline] = []
        node: n.Expr = pipeline
        while isinstance(node, n.Pipeline):
            stages.insert(0, node)
            node = node.source
        value = self.expr(self.desugar(stages[0]))
        lines = [f"{target} = {value.code}"]
        saved = self.scope.get(target)
        self.scope[target] = Compiled(target, VALUE)
        try:
            for stage in stages[1:]:
                source = n.new(n.Name, span=stage.source.span, id=target)
                value = self.expr(self.desugar(n.new(n.Pipeline, span=stage.span, source=source,
                                                     stage=stage.stage)))
                lines.append(f"{target} = {value.code}")
        finally:
            if saved is None:
                del self.scope[target]
            else:
                self.scope[target] = saved
        return lines, value

    def _return(self, stmt: n.Return) -> list[str]:
        if isinstance(stmt.value, n.Pipeline):
            source = stmt.value
            while isinstance(source, n.Pipeline):
                source = source.source
            # `return x -> a -> b` becomes `x = self.a(x)`, `x = self.b(x)`, `return x`,
            # reusing the source's name when it is a forward value, as one would by hand.
            target = source.id if isinstance(source, n.Name) and \
                self.scope.get(source.id, Compiled("", "")).kind == VALUE and \
                not _stages_use(stmt.value, source.id) else "_out"
            lines, _ = self._pipeline_lines(stmt.value, target)
            return [*lines, f"return {target}"]
        value = self.expr(stmt.value)
        self.require_value(value, stmt.value.span)
        return [f"return {value.code}"]

    def _for(self, stmt: n.For) -> list[str]:
        iterable = self.expr(stmt.iter)
        if iterable.kind == CONST and not isinstance(iterable.const, (tuple, list, str)):
            what = _absent_text(stmt.iter) if iterable.const is None else \
                f"a constant ({iterable.code})"
            fail(f"can only loop over a list, a sequential, a dict's items() or a value, not "
                 f"{what}", stmt.iter.span, codes.TYPE)
        if iterable.kind not in ITERABLE and iterable.kind != CONST:
            fail(f"can only loop over a list, a sequential, a dict's items() or a value, not "
                 f"{kind_name(iterable)}", stmt.iter.span, codes.TYPE)
        self._bind_loop_target(stmt.target, iterable)
        body = self._block(stmt.body, in_loop=True)
        return [f"for {_target_text(stmt.target)} in {iterable.code}:",
                *(INDENT + line for line in body.lines)]

    def _bind_loop_target(self, target: n.Ident | n.TupleTarget, iterable: Compiled) -> None:
        names = n.target_names(target)
        kinds = [VALUE] * len(names)
        if iterable.kind in ("list", "sequential", MODULES, BROKEN):
            if len(names) != 1:
                fail(f"{kind_name(iterable)} gives one module per step; loop with one name",
                     target.span, codes.CONTAINER)
            kinds = [MODULE]
        elif iterable.kind == ITEMS:
            if len(names) != 2 or not isinstance(target, n.TupleTarget):
                fail("a dict's items() gives (key, module) pairs: for key, layer in d.items()",
                     target.span, codes.CONTAINER)
            kinds = [VALUE, MODULE]
        for ident, kind in zip(names, kinds, strict=True):
            if self._check_new_name(ident, "loop variable"):
                self.scope[ident.name] = Compiled(ident.name, kind)

    def _if(self, stmt: n.IfStmt, in_loop: bool) -> _Block:
        """Branches on constants are decided now; the rest become Python's if/elif/else."""
        lines: list[str] = []
        returns: list[bool] = []
        taken: _Block | None = None
        for branch in stmt.branches:
            test = self.condition(branch.test)
            if test.kind == CONST and not truthy(test.const):
                continue
            block = self._block(branch.body, in_loop)
            if test.kind == CONST:
                taken = block
                break
            lines += [f"{'elif' if lines else 'if'} {test.code}:",
                      *(INDENT + line for line in block.lines)]
            returns.append(block.returns)
        if taken is None and stmt.orelse is not None:
            taken = self._block(stmt.orelse, in_loop)
        if not lines:  # every condition was a constant: straight-line code
            if taken is None:
                return _Block([], False)
            return _Block(taken.lines, taken.returns, folded=taken.returns or taken.folded)
        if taken is not None:
            lines += ["else:", *(INDENT + line for line in taken.lines)]
        return _Block(lines, taken is not None and taken.returns and all(returns))

    def _call_stmt(self, stmt: n.CallStmt) -> list[str]:
        func = stmt.call.func
        assert isinstance(func, n.Attr)
        target = self.expr(func.value)
        if target.kind not in (VALUE, BROKEN) or func.attr.name not in LIST_METHODS:
            fail(f"only a list's {' and '.join(sorted(LIST_METHODS))} can stand alone as a "
                 f"statement; assign other results to a name", stmt.span, codes.FORWARD)
        return [self.expr(stmt.call).code]

    def _check_new_name(self, ident: n.Ident, what: str) -> bool:
        name = ident.name
        if keyword.iskeyword(name) or name == "self":
            self.error(f"'{name}' is reserved in Python and cannot name a {what}", ident.span,
                       codes.SYNTAX)
            return False
        clash = ("child" if name in self.children else
                 "method" if name in self.method_names else
                 "model parameter or constant" if name in self.consts else None)
        if clash:
            self.error(f"{what} '{name}' has the same name as a {clash}", ident.span,
                       codes.DUPLICATE)
            return False
        return True


def _absent_text(node: n.Expr) -> str:
    name = node.id if isinstance(node, n.Name) else "it"
    return f"none: '{name}' is a child whose condition did not hold"


def _target_text(target: n.Ident | n.TupleTarget, top: bool = True) -> str:
    if isinstance(target, n.Ident):
        return target.name
    inner = ", ".join(_target_text(t, top=False) for t in target.items)
    return inner if top else f"({inner})"


def _stages_use(pipeline: n.Pipeline, name: str) -> bool:
    """Whether a stage (not the source) mentions ``name``: then it cannot be reassigned."""
    stages: list[n.Expr] = []
    node: n.Expr = pipeline
    while isinstance(node, n.Pipeline):
        stages.append(node.stage)
        node = node.source
    return name in n.names_in(stages)


# The shape pass sets this while it traces a model; instrumented forwards call through it.
TRACER: ContextVar[Callable[[Site, Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]
                   | None] = ContextVar("netdsl_tracer", default=None)


def _located(sites: list[Site]) -> Callable[..., Any]:
    def at(site: int, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        tracer = TRACER.get()
        if tracer is None:
            return func(*args, **kwargs)
        return tracer(sites[site], func, args, kwargs)

    return at


__all__ = ["BROKEN", "METHOD", "MODULE", "TRACER", "ForwardCompiler", "Site"]
