"""Forward expressions: a forward's expressions -> Python expression text, checked.

Each expression compiles to a :class:`Compiled`: the code, and what kind of thing it is (a
run-time value, a constant known now, a module to call, iterate or index, a method). Constant
parts are folded with the bounds of constant arithmetic, so ``if downsample`` on an absent child
and ``x + conv(x) if use_res_connect else conv(x)`` leave no branch in the generated code.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import codes
from . import nodes as n
from .errors import NetDSLError, Span, UnknownKeyError, did_you_mean, fail
from .evaluate import OUT_OF_PLACE, arithmetic, check_literal, compared, evaluate, truthy
from .functions import call_function
from .library import BUILTINS, Builtin, call_builtin
from .ops import (
    ATTRIBUTES,
    DENIED,
    DTYPES,
    FORWARD_CONSTANTS,
    FUNCTION_PARAMS,
    LIST_METHODS,
    METHODS,
    NAMESPACE,
    NUMBER_OR_TENSOR,
    OPS,
    Op,
)
from .plan import DictPlan, ListPlan, Plan, SequentialPlan, child_kind
from .signatures import Arg, describe
from .values import FunctionRef, LayerRef, budget_of

# Kinds of forward values: a run-time value (a tensor, a list, a number), a constant known at
# compile time, or a module that can be called, iterated or indexed.
VALUE, CONST, MODULE = "value", "const", "module"
# A child whose own definition failed (its error is reported already): accepted anywhere, so
# that the rest of the forward is still checked without follow-on errors.
BROKEN = "broken"
METHOD = "method"  # a def of the model: called, or handed to checkpoint()
MODULES = "modules"  # something that yields modules when iterated: children(), d.values()
ITEMS = "items"  # a dict's items(): (key, module) pairs
CALLABLE = {MODULE, "sequential", BROKEN, METHOD}
ITERABLE = {"list", "sequential", BROKEN, MODULES, ITEMS, VALUE}
# A constant exponent in the forward beyond this would make `x.shape[1] ** e` a long-running
# big-integer power at run time.
MAX_EXPONENT = 1024

# What Python code calls torch's functions through (torch.relu, F.relu, nn.functional.relu).
_PYTHON_MODULES = frozenset({"torch", "F", "nn", "math", "np", "numpy"})

_OPERATORS = {"+": "add", "-": "sub", "*": "mul", "/": "truediv", "//": "floordiv", "%": "mod",
              "**": "pow", "@": "matmul"}


@dataclass
class Compiled:
    code: str
    kind: str
    plan: Plan | None = None  # for children: what indexing it yields
    const: Any = None  # for constants: the value


@dataclass(frozen=True)
class Site:
    """A call or operator in an instrumented forward: where it is, and what to call it."""

    span: Span
    label: str


@dataclass
class ExprCompiler:
    """The expression half of a forward compiler; see :class:`netdsl.forward.ForwardCompiler`."""

    model: str
    children: dict[str, Plan]
    consts: Mapping[str, Any]  # the model's constants at the end of its body (an Env)
    source: str = ""  # the text of the spec file, for the source line of run-time errors
    errors: list[NetDSLError] = field(default_factory=list)
    namespace: dict[str, Any] = field(default_factory=lambda: dict(NAMESPACE))
    scope: dict[str, Compiled] = field(default_factory=dict)
    # Children and constants that failed to check (see BROKEN).
    broken: set[str] = field(default_factory=set)
    # Children declared only under a condition that did not hold: `none` in the forward.
    absent: set[str] = field(default_factory=set)
    # Instrumented: every call and operator goes through `_at(site, fn, *args)`, so that the
    # shape pass can locate a failing op in the spec (see netdsl.forward.TRACER).
    instrument: bool = False
    sites: list[Site] = field(default_factory=list)
    # Forward arguments used as dict keys, with the keys they may take.
    key_args: dict[str, list[str]] = field(default_factory=dict)
    method_names: set[str] = field(default_factory=set)
    # The module's own parameters and buffers (param / buffer declarations).
    tensors: set[str] = field(default_factory=set)
    where: str = "in forward"  # for messages: a param's expression is compiled here too
    calls: list[tuple[str, Span]] = field(default_factory=list)  # methods called, for cycles

    # ------------------------------------------------------------ entry
    def expr(self, expr: n.Expr) -> Compiled:
        handler = _HANDLERS.get(type(expr))
        if handler is None:
            fail(_not_a_value(expr), expr.span, codes.SYNTAX)
        return handler(self, expr)

    def value(self, expr: n.Expr) -> str:
        compiled = self.expr(expr)
        self.require_value(compiled, expr.span)
        return compiled.code

    def require_value(self, compiled: Compiled, span: Span) -> None:
        if compiled.kind not in (VALUE, CONST, BROKEN):
            fail(f"{kind_name(compiled)} is not a value; call it with an input", span, codes.TYPE)
        problem = _literal_problem(compiled.const) if compiled.kind == CONST else None
        if problem is not None:
            fail(f"{describe(problem)} is not a value in a forward (a layer is built as a "
                 f"child, and called there)", span, codes.TYPE)

    def condition(self, expr: n.Expr) -> Compiled:
        """An expression tested for truth: a present child is true, an absent one false."""
        if isinstance(expr, n.BoolOp):
            return self._boolop(expr, condition=True)
        if isinstance(expr, n.UnaryOp) and expr.op == "not":
            inner = self.condition(expr.operand)
            if inner.kind == CONST:
                return self.constant(not truthy(inner.const), expr.span)
            return Compiled(f"(not {inner.code})", VALUE)
        compiled = self.expr(expr)
        if compiled.kind in ("sequential", "list", "dict", MODULE, METHOD):
            return self.constant(True, expr.span)
        self.require_value(compiled, expr.span)
        return compiled

    def constant(self, value: Any, span: Span) -> Compiled:
        """A constant; only literals whose repr() is Python source may become code.

        Anything else (a layer inside a config tuple) may still be indexed or compared now, but
        using it as a value is an error (:meth:`require_value`), and its code is not Python.
        """
        if isinstance(value, float) and not math.isfinite(value):
            fail("number is too large", span, codes.VALUE)
        if _literal_problem(value) is not None:
            return Compiled("<not a value>", CONST, const=value)
        return Compiled(repr(value), CONST, const=value)

    def error(self, message: str, span: Span, code: str) -> None:
        self.errors.append(NetDSLError(message, span, code=code))

    # ------------------------------------------------------------ names
    def _name(self, expr: n.Name) -> Compiled:
        name = expr.id
        if name in self.scope:
            return self.scope[name]
        if name in self.children:
            plan = self.children[name]
            return Compiled(f"self.{name}", child_kind(plan), plan)
        if name in self.tensors:
            return Compiled(f"self.{name}", VALUE)
        if name in self.method_names:
            return Compiled(f"self.{name}", METHOD)
        if name in self.absent:
            return self.constant(None, expr.span)
        if name in self.broken:
            return Compiled(name, BROKEN)
        if name in self.consts:
            return self.constant(self.consts[name], expr.span)
        return self._global(expr)

    def _global(self, expr: n.Name) -> Compiled:
        name = expr.id
        if name == "training":
            return Compiled("self.training", VALUE)
        if name in DTYPES:
            return Compiled(f"_torch.{DTYPES[name]}", VALUE)
        if name in FORWARD_CONSTANTS:
            return Compiled(FORWARD_CONSTANTS[name], VALUE)
        if name in OPS or name == "children":
            fail(f"'{name}' is a function: call it, as in {name}(x), or use it in a pipeline "
                 f"(x -> {name})", expr.span, codes.TYPE)
        if self._file_constant(name):
            return self.constant(self._lookup(name), expr.span)
        if name in DENIED:
            fail(f"'{name}' is not available in a spec: it reaches files or Python objects "
                 f"(docs/forward-functions.md)", expr.span, codes.UNKNOWN_NAME)
        if name in _PYTHON_MODULES:
            fail(f"'{name}' is not a name in a spec: torch's functions are called by their own "
                 f"names (relu(x), not {name}.relu(x))", expr.span, codes.UNKNOWN_NAME)
        known = [*self.scope, *self.children, *self.tensors, *self.consts, *OPS,
                 *self.method_names]
        fail(f"undefined name '{name}' {self.where}{did_you_mean(name, known)}",
             expr.span, codes.UNKNOWN_NAME)

    def _file_constant(self, name: str) -> bool:
        has = getattr(self.consts, "has_constant", None)
        return bool(has and has(name)) and not isinstance(
            self._lookup(name), (LayerRef, FunctionRef))

    def _lookup(self, name: str) -> Any:
        return self.consts.lookup(name)  # type: ignore[attr-defined]

    # ------------------------------------------------------------ literals
    def _const(self, expr: n.Constant) -> Compiled:
        check_literal(expr)
        return self.constant(expr.value, expr.span)

    def _ellipsis(self, expr: n.EllipsisExpr) -> Compiled:
        return Compiled("...", VALUE)

    def _sequence(self, expr: n.TupleExpr | n.ListExpr) -> Compiled:
        items = [self.expr(i) for i in expr.items]
        for item, node in zip(items, expr.items, strict=True):
            self.require_value(item, node.span)
        if all(i.kind == CONST for i in items) and isinstance(expr, n.TupleExpr):
            return self.constant(tuple(i.const for i in items), expr.span)
        codes = [i.code for i in items]
        if isinstance(expr, n.ListExpr):
            return Compiled(f"[{', '.join(codes)}]", VALUE)
        return Compiled(f"({', '.join(codes)}{',' if len(codes) == 1 else ''})", VALUE)

    def _fstring(self, expr: n.FString) -> Compiled:
        parts = [p if isinstance(p, str) else self.expr(p) for p in expr.parts]
        if all(isinstance(p, str) or p.kind == CONST for p in parts):
            return self.constant("".join(p if isinstance(p, str) else str(p.const)
                                         for p in parts), expr.span)
        fail("an f-string in a forward takes constants only", expr.span, codes.TYPE)

    def message_text(self, expr: n.FString) -> Compiled:
        """An assert's f-string, which may show run-time values: ``'...{}...'.format(t)``
        (str.format traces under torch.compile, torch.export and torch.fx)."""
        parts = [p if isinstance(p, str) else self.expr(p) for p in expr.parts]
        if all(isinstance(p, str) or p.kind == CONST for p in parts):
            return self._fstring(expr)
        template, values = "", []
        for part, node in zip(parts, expr.parts, strict=True):
            if isinstance(part, str) or part.kind == CONST:
                text = part if isinstance(part, str) else str(part.const)
                template += text.replace("{", "{{").replace("}", "}}")
            else:
                self.require_value(part, node.span)  # type: ignore[union-attr]
                template += "{}"
                values.append(part.code)
        return Compiled(f"{template!r}.format({', '.join(values)})", VALUE)

    # ------------------------------------------------------------ operators
    def _unary(self, expr: n.UnaryOp) -> Compiled:
        if expr.op == "not":
            return self.condition(expr)
        operand = self.expr(expr.operand)
        self.require_value(operand, expr.operand.span)
        if operand.kind == CONST:  # as the constant language does it
            if not _is_number(operand.const):
                fail(f"bad operand for unary {expr.op}: {describe(operand.const)}",
                     expr.span, codes.TYPE)
            return self.constant(-operand.const if expr.op == "-" else operand.const,
                                 expr.span)
        if self.instrument:
            return self.located(f"_operator.{'neg' if expr.op == '-' else 'pos'}",
                                [operand.code], expr.span, f"unary {expr.op}")
        return Compiled(f"({expr.op}{operand.code})", VALUE)

    def _binop(self, expr: n.BinOp) -> Compiled:
        left, right = self.expr(expr.left), self.expr(expr.right)
        self.require_value(left, expr.left.span)
        self.require_value(right, expr.right.span)
        if left.kind == CONST and right.kind == CONST:
            # Folded now, with the bounds of constant arithmetic: 3 ** 10 ** 9 is an error
            # here, not a forward that never returns.
            if expr.op == "@" or not all(_is_number(c.const) for c in (left, right)):
                fail(f"unsupported operands for {expr.op}: {describe(left.const)} and "
                     f"{describe(right.const)}", expr.span, codes.TYPE)
            return self.constant(arithmetic(expr.op, left.const, right.const, expr.span,
                                            budget_of(self.consts)), expr.span)
        if expr.op == "**" and right.kind == CONST and isinstance(right.const, int) \
                and abs(right.const) > MAX_EXPONENT:
            fail(f"exponent {right.const} is too large (at most {MAX_EXPONENT})",
                 expr.right.span, codes.VALUE)
        if self.instrument:
            return self.located(f"_operator.{_OPERATORS[expr.op]}", [left.code, right.code],
                                expr.span, expr.op)
        if expr.op == "**" and left.code.startswith("-"):  # -2 ** x is -(2 ** x) in Python
            return Compiled(f"(({left.code}) ** {right.code})", VALUE)
        return Compiled(f"({left.code} {expr.op} {right.code})", VALUE)

    def _boolop(self, expr: n.BoolOp, condition: bool = False) -> Compiled:
        """``a and b``: folded where a constant decides; in a condition, by truth alone."""
        part = self.condition if condition else self.expr
        left = part(expr.left)
        self.require_value(left, expr.left.span)
        if left.kind == CONST:
            if truthy(left.const) == (expr.op == "or"):
                return left
            return part(expr.right)
        right = part(expr.right)
        self.require_value(right, expr.right.span)
        if condition and right.kind == CONST:
            if truthy(right.const) == (expr.op == "or"):
                return self.constant(expr.op == "or", expr.span)
            return left
        return Compiled(f"({left.code} {expr.op} {right.code})", VALUE)

    def _ifexp(self, expr: n.IfExp) -> Compiled:
        test = self.condition(expr.test)
        if test.kind == CONST:
            return self.expr(expr.body if truthy(test.const) else expr.orelse)
        body, orelse = self.value(expr.body), self.value(expr.orelse)
        return Compiled(f"({body} if {test.code} else {orelse})", VALUE)

    def _compare(self, expr: n.Compare) -> Compiled:
        operands = self._presence([self.expr(o) for o in expr.operands], expr)
        for compiled, node in zip(operands, expr.operands, strict=True):
            self.require_value(compiled, node.span)
        if all(o.kind == CONST for o in operands):
            result = all(compared(op, a.const, b.const, node.span, budget_of(self.consts))
                         for op, a, b, node in zip(expr.ops, operands[:-1], operands[1:],
                                                   expr.operands[1:], strict=True))
            return self.constant(result, expr.span)
        text = operands[0].code
        for op, operand in zip(expr.ops, operands[1:], strict=True):
            text += f" {op} {operand.code}"
        return Compiled(f"({text})", VALUE)

    def _presence(self, operands: list[Compiled], expr: n.Compare) -> list[Compiled]:
        """``downsample != none`` on a present child: a child is not none (it is there)."""
        modules = [o for o in operands if o.kind in ("sequential", "list", "dict", MODULE)]
        if not modules:
            return operands
        if not set(expr.ops) <= {"==", "!="} or any(o.kind != CONST for o in operands
                                                    if o not in modules):
            fail(f"{kind_name(modules[0])} can only be compared with none (is it there?)",
                 expr.span, codes.TYPE)
        return [Compiled("None", CONST, const=_PRESENT) if o in modules else o
                for o in operands]

    def _pipeline(self, expr: n.Pipeline) -> Compiled:
        return self.expr(self.desugar(expr))

    def located(self, func: str, parts: list[str], span: Span, label: str) -> Compiled:
        """``_at(site, func, *parts)``: the call, reported at ``span`` if it fails."""
        self.sites.append(Site(span, label))
        return Compiled(f"_at({len(self.sites) - 1}, {', '.join([func, *parts])})", VALUE)

    # ------------------------------------------------------------ calls
    def _call(self, expr: n.Call) -> Compiled:
        func = expr.func
        if isinstance(func, n.Name) and self.is_builtin(func.id):
            return self._builtin(func.id, expr)
        if isinstance(func, n.Attr) and not self._is_dict_member(func):
            return self._method(func, expr)
        callee = self.expr(func)
        if callee.kind == CONST and callee.const is None:
            fail(f"'{_call_label(func)}' is none here (a child whose condition did not hold); "
                 f"test it first: if {_call_label(func)} {{ ... }}", func.span, codes.FORWARD)
        if callee.kind not in CALLABLE:
            hint = {"list": "; loop over it (for layer in ...) or index it",
                    "dict": "; index it with a key first"}.get(callee.kind, "")
            fail(f"{kind_name(callee)} cannot be called{hint}", func.span,
                 codes.CONTAINER if hint else codes.TYPE)
        if callee.kind == METHOD and isinstance(func, n.Name):
            self.calls.append((func.id, func.span))
        if self.instrument:
            return self.located(callee.code, self.argument_list(expr), expr.span,
                                _call_label(func))
        return Compiled(f"{callee.code}({', '.join(self.argument_list(expr))})", VALUE)

    def _is_dict_member(self, func: n.Attr) -> bool:
        """``transformer.wte(...)``: a dict child's key, called."""
        return isinstance(func.value, n.Name) and func.value.id in self.children and \
            isinstance(self.children[func.value.id], DictPlan) and \
            func.attr.name in dict(self.children[func.value.id].items)  # type: ignore[union-attr]

    def is_builtin(self, name: str) -> bool:
        """An op, ``children()`` or a file-level function, unless a child or variable hides it."""
        if name in self.scope or name in self.children or name in self.method_names \
                or name in self.tensors:
            return False
        return name in OPS or name == "children" or self._file_function(name) is not None

    def _file_function(self, name: str) -> Any:
        if name in self.consts or name in self.absent:
            return None
        lookup = getattr(self.consts, "lookup", None)
        if lookup is None:
            return BUILTINS.get(name)
        try:
            found = lookup(name)
        except KeyError:
            return None
        return found if isinstance(found, (FunctionRef, Builtin)) else None

    def _builtin(self, name: str, expr: n.Call) -> Compiled:
        if name == "children":
            if expr.args or expr.kwargs:
                fail("children() takes no arguments", expr.span, codes.ARGUMENTS)
            return Compiled("self.children()", MODULES)
        function = self._file_function(name)
        if name in OPS and not (name in NUMBER_OR_TENSOR and isinstance(function, Builtin)):
            return self._op(OPS[name], expr)
        return self._fold_call(name, function, expr)

    def _fold_call(self, name: str, func: Any, expr: n.Call) -> Compiled:
        """A function on constants, called in a forward with constants: its value, now."""
        args = [(self.expr(a), a) for a in expr.args]
        kwargs = [(self.expr(k.value), k) for k in expr.kwargs]
        runtime = [node for compiled, node in (*args, *kwargs) if compiled.kind != CONST]
        if runtime and isinstance(func, Builtin) and name in NUMBER_OR_TENSOR:
            return self._number_or_tensor(name, expr)
        if runtime or any(isinstance(a, n.Starred) for a in expr.args):
            where = runtime[0].span if runtime else expr.span
            fail(f"{name}() is a function on constants; in a forward its arguments must be "
                 f"constants (use the ops, such as x.sqrt(), for tensors)", where, codes.TYPE)
        given = [Arg(c.const, a.span) for c, a in args]
        named = [Arg(c.const, k.value.span, k.name.name, k.name.span) for c, k in kwargs]
        if isinstance(func, Builtin):
            value = call_builtin(func, given, named, budget_of(self.consts), expr.span)
        else:
            value = call_function(func, given, named, expr.span, self.consts)
        return self.constant(value, expr.span)

    def _number_or_tensor(self, name: str, expr: n.Call) -> Compiled:
        """``sqrt(k.size(-1))``, ``sqrt(x)``: math's on a size, torch's on a tensor (see
        :data:`netdsl.ops.NUMBER_OR_TENSOR`)."""
        return Compiled(f"{NUMBER_OR_TENSOR[name]}({', '.join(self.argument_list(expr))})",
                        VALUE)

    def argument_list(self, expr: n.Call) -> list[str]:
        parts = [self._argument(a) for a in expr.args]
        seen: set[str] = set()
        for k in expr.kwargs:
            if k.name.name in seen:
                fail(f"keyword argument '{k.name.name}' repeated", k.name.span, codes.ARGUMENTS)
            if keyword.iskeyword(k.name.name):
                fail(f"'{k.name.name}' is reserved in Python and cannot name a keyword argument",
                     k.name.span, codes.SYNTAX)
            seen.add(k.name.name)
        return parts + [f"{k.name.name}={self.value(k.value)}" for k in expr.kwargs]

    def _argument(self, node: n.Expr) -> str:
        if isinstance(node, n.Starred):
            return f"*{self.value(node.value)}"
        return self.value(node)

    def _op(self, op: Op, expr: n.Call) -> Compiled:
        if op.is_method and expr.args and not isinstance(expr.args[0], n.Starred):
            receiver = self.expr(expr.args[0])
            if receiver.kind == CONST:  # `c -> view(-1)` on a constant would be `1.view(-1)`
                fail(f"{op.code.lstrip('.')}() is a tensor method; {describe(receiver.const)} "
                     f"is a constant", expr.args[0].span, codes.TYPE)
        params = [p.name for p in op.signature.params] if op.signature is not None else []
        args = [Arg(self._op_argument(a, params[i] if i < len(params) else ""), a.span)
                for i, a in enumerate(expr.args)]
        kwargs = [Arg(self.value(k.value), k.value.span, k.name.name, k.name.span)
                  for k in expr.kwargs]
        if op.signature is not None and not any(isinstance(a, n.Starred) for a in expr.args):
            op.signature.bind(args, kwargs, expr.span)
        parts = [a.value for a in args] + [f"{k.name}={k.value}" for k in kwargs]
        name = expr.func.id if isinstance(expr.func, n.Name) else "op"
        if op.is_method:
            if not args:
                fail(f"{name}() needs its input as the first argument", expr.span, codes.ARGUMENTS)
            if self.instrument:
                return self.located(f"_torch.Tensor{op.code}", parts, expr.span,
                                    op.code.lstrip("."))
            return Compiled(f"{parts[0]}{op.code}({', '.join(parts[1:])})", VALUE)
        if self.instrument:
            return self.located(op.code, parts, expr.span, name)
        return Compiled(f"{op.code}({', '.join(parts)})", VALUE)

    def _op_argument(self, node: n.Expr, param: str) -> str:
        if isinstance(node, n.Starred):
            return f"*{self.value(node.value)}"
        if param in FUNCTION_PARAMS:  # checkpoint(bn_function, ...): a method or a child
            compiled = self.expr(node)
            if compiled.kind not in CALLABLE:
                fail(f"{kind_name(compiled)} is not a function; pass a method (def) or a "
                     f"child", node.span, codes.TYPE)
            if compiled.kind == METHOD and isinstance(node, n.Name):
                self.calls.append((node.id, node.span))
            return compiled.code
        return self.value(node)

    def _method(self, func: n.Attr, expr: n.Call) -> Compiled:
        target = self.expr(func.value)
        name = func.attr.name
        if target.kind == "dict" and name in ("items", "keys", "values"):
            if expr.args or expr.kwargs:
                fail(f"{name}() takes no arguments", expr.span, codes.ARGUMENTS)
            kind = {"items": ITEMS, "keys": VALUE, "values": MODULES}[name]
            return Compiled(f"{target.code}.{name}()", kind, target.plan)
        if target.kind == "dict":
            assert isinstance(target.plan, DictPlan)
            fail(f"unknown key '{name}' for {kind_name(target)}; valid keys: "
                 f"{', '.join(repr(k) for k, _ in target.plan.items)}",
                 func.attr.span, codes.UNKNOWN_NAME)
        if target.kind not in (VALUE, BROKEN):
            fail(f"{kind_name(target)} has no method '{name}' in a forward",
                 func.attr.span, codes.UNKNOWN_NAME)
        if name in DENIED:
            fail(f"tensor method '{name}' is not available in a spec: it reaches Python "
                 f"objects, storage or autograd hooks (docs/forward-functions.md)",
                 func.attr.span, codes.UNKNOWN_NAME)
        if name not in METHODS and name not in LIST_METHODS:
            fail(f"unknown tensor method '{name}'{did_you_mean(name, METHODS)}",
                 func.attr.span, codes.UNKNOWN_NAME)
        arguments = self.argument_list(expr)
        if self.instrument and name not in LIST_METHODS:
            return self.located(f"_torch.Tensor.{name}", [target.code, *arguments], expr.span,
                                name)
        return Compiled(f"{target.code}.{name}({', '.join(arguments)})", VALUE)

    def _attr(self, expr: n.Attr) -> Compiled:
        target = self.expr(expr.value)
        name = expr.attr.name
        if target.kind == "dict":  # transformer.wte, as nn.ModuleDict allows
            assert isinstance(target.plan, DictPlan)
            items = dict(target.plan.items)
            if name not in items:
                fail(f"unknown key '{name}' for {kind_name(target)}; valid keys: "
                     f"{', '.join(repr(k) for k in items)}", expr.attr.span, codes.UNKNOWN_NAME)
            return Compiled(f"{target.code}.{name}", child_kind(items[name]), items[name])
        if target.kind not in (VALUE, BROKEN) or name not in ATTRIBUTES:
            fail(f"unknown attribute '{name}'{did_you_mean(name, ATTRIBUTES)}",
                 expr.attr.span, codes.UNKNOWN_NAME)
        if self.instrument:  # a size's .T or a string's .ndim: located in the shape pass
            return self.located(f"_operator.attrgetter({name!r})", [target.code], expr.span,
                                f".{name}")
        return Compiled(f"{target.code}.{name}", VALUE)

    # ------------------------------------------------------------ indexing
    def _index(self, expr: n.Index) -> Compiled:
        target = self.expr(expr.value)
        if target.kind == BROKEN:
            return target
        if target.kind == "dict":
            assert isinstance(target.plan, DictPlan)
            return self._dict_index(target, target.plan, expr)
        if target.kind in ("list", "sequential"):
            assert isinstance(target.plan, (ListPlan, SequentialPlan))
            return self._list_index(target, target.plan, expr)
        if target.kind == CONST and target.const is None:
            fail("none cannot be indexed (a child whose condition did not hold?)",
                 expr.value.span, codes.FORWARD)
        if target.kind == CONST:
            return self._const_index(target, expr)
        if target.kind == VALUE:
            index = self._subscript(expr.index)
            if self.instrument:
                return self.located("_operator.getitem", [target.code, index.object], expr.span,
                                    "[]")
            return Compiled(f"{target.code}[{index.text}]", VALUE)
        fail(f"{kind_name(target)} cannot be indexed", expr.value.span, codes.TYPE)

    def _const_index(self, target: Compiled, expr: n.Index) -> Compiled:
        """A constant indexed by constants is a constant: ``settings[1]``, ``cfg[1:]``."""
        scope = self.consts.child({"_c": target.const}) if hasattr(self.consts, "child") \
            else {**self.consts, "_c": target.const}
        # The index is evaluated with the constants; its names must all be constants.
        if not all(self._is_constant_name(name) for name in n.names_in(expr.index)):
            fail(f"a constant ({target.code}) is indexed by constants", expr.index.span, codes.TYPE)
        node = n.new(n.Index, span=expr.span, value=n.new(n.Name, span=expr.value.span, id="_c"),
                     index=expr.index)
        return self.constant(evaluate(node, scope), expr.span)

    def _is_constant_name(self, name: str) -> bool:
        return name in self.consts and name not in self.scope and name not in self.children

    def _subscript(self, node: n.Expr) -> _Subscript:
        """An index as written (``:, 0``) and as an object (``(_slice(None, None, None), 0)``)."""
        if isinstance(node, n.TupleExpr):
            parts = [self._subscript(i) for i in node.items]
            return _Subscript(", ".join(p.text for p in parts),
                              "(" + "".join(f"{p.object}, " for p in parts) + ")")
        if isinstance(node, n.Slice):
            bounds = [self.value(p) if p is not None else "None"
                      for p in (node.lower, node.upper, node.step)]
            text = ":".join(b if b != "None" else "" for b in bounds[:2])
            if node.step is not None:
                text += f":{bounds[2]}"
            return _Subscript(text, f"_slice({', '.join(bounds)})")
        code = self.value(node)
        return _Subscript(code, code)

    def _list_index(self, target: Compiled, plan: ListPlan | SequentialPlan,
                    expr: n.Index) -> Compiled:
        items = [p for _, p in plan.items] if isinstance(plan, SequentialPlan) else plan.items
        if isinstance(expr.index, n.Slice):
            return self._list_slice(target, plan, expr.index)
        index = self.expr(expr.index)
        position = index.const
        if index.kind != CONST or not isinstance(position, int) or isinstance(position, bool):
            fail(f"{kind_name(target)} is indexed by an integer constant",
                 expr.index.span, codes.CONTAINER)
        if not -len(items) <= position < len(items):
            fail(f"index {position} is out of range for {kind_name(target)} "
                 f"({len(items)} items)", expr.index.span, codes.VALUE)
        item = items[position]
        return Compiled(f"{target.code}[{position}]", child_kind(item), item)

    def _list_slice(self, target: Compiled, plan: ListPlan | SequentialPlan,
                    node: n.Slice) -> Compiled:
        bounds = []
        for part in (node.lower, node.upper, node.step):
            value = None if part is None else self.expr(part)
            if value is not None and (value.kind != CONST or not isinstance(value.const, int)):
                fail(f"{kind_name(target)} is sliced by integer constants",
                     part.span, codes.CONTAINER)
            bounds.append(None if value is None else value.const)
        if bounds[2] == 0:
            fail("slice step must not be zero", node.span, codes.VALUE)
        chosen = slice(*bounds)
        text = ":".join("" if b is None else str(b) for b in bounds[:2]) + (
            f":{bounds[2]}" if bounds[2] is not None else "")
        if isinstance(plan, SequentialPlan):
            sliced: Plan = SequentialPlan(plan.items[chosen], plan.span)
        else:
            sliced = ListPlan(plan.items[chosen], plan.span)
        return Compiled(f"{target.code}[{text}]", child_kind(sliced), sliced)

    def _dict_index(self, target: Compiled, plan: DictPlan, expr: n.Index) -> Compiled:
        keys = [k for k, _ in plan.items]
        key = self.expr(expr.index)
        valid = ", ".join(repr(k) for k in keys)
        if key.kind == CONST:
            value = key.const
            if value not in keys:
                fail(f"unknown key {value!r} for {kind_name(target)}; valid keys: {valid}",
                     expr.index.span, codes.UNKNOWN_NAME)
            item = dict(plan.items)[value]
            return Compiled(f"{target.code}[{key.code}]", child_kind(item), item)
        if key.kind != VALUE or not isinstance(expr.index, n.Name):
            fail(f"{kind_name(target)} is indexed by a forward argument or a string",
                 expr.index.span, codes.CONTAINER)
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
        what = kind_name(target)
        lines = self.source.split("\n")
        line = lines[span.line - 1] if 0 < span.line <= len(lines) else None

        def unknown_key(key: object) -> None:
            raise UnknownKeyError(f"unknown key {key!r} for {what}; valid keys: {valid}", span,
                                  line, code=codes.UNKNOWN_NAME)

        name = f"_no_key{len(self.namespace)}"
        self.namespace[name] = unknown_key
        return name

    # ------------------------------------------------------------ pipelines
    def desugar(self, expr: n.Pipeline) -> n.Call:
        """``x -> stage`` is ``stage(x)``; ``x -> op(a)`` is ``op(x, a)``."""
        stage = expr.stage
        if isinstance(stage, n.Call) and isinstance(stage.func, n.Name) and self.is_builtin(
                stage.func.id) and stage.func.id in OPS:
            return n.new(n.Call, span=expr.span, func=stage.func,
                         args=[expr.source, *stage.args], kwargs=stage.kwargs)
        if isinstance(stage, n.Call) and isinstance(stage.func, n.Name) \
                and stage.func.id in self.children:
            fail(f"'{stage.func.id}' is a child here, so this stage would call it and then call "
                 f"its result; write '-> {stage.func.id}'", stage.span, codes.FORWARD)
        return n.new(n.Call, span=expr.span, func=stage, args=[expr.source])


class _Present:
    """Stands for a present child in ``child == none`` / ``child != none``."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Present)

    def __hash__(self) -> int:
        return 0


_PRESENT = _Present()


@dataclass(frozen=True)
class _Subscript:
    text: str  # as in `x[...]`
    object: str  # the same index as an expression, for `_operator.getitem(x, ...)`


def _literal_problem(value: Any) -> Any:
    """The first part of a constant that is not a literal, or None. Numbers, strings, booleans,
    none, and tuples and lists of them may reach the generated code; a layer's repr() there
    would be a bare name."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (tuple, list)):
            stack += item
        elif isinstance(item, float) and not math.isfinite(item):
            return item
        elif not (item is None or isinstance(item, (bool, int, float, str, _Present))):
            return item
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_NOT_A_VALUE: dict[type, str] = {
    **OUT_OF_PLACE,
    n.ListComp: "list comprehensions are for constants; in a forward, loop and append",
}


def _not_a_value(expr: n.Expr) -> str:
    return _NOT_A_VALUE.get(type(expr), "this expression is not allowed in a forward")


def _call_label(func: n.Expr) -> str:
    """How a called module is named in shape messages: ``features``, ``choices[choice]``."""
    if isinstance(func, n.Name):
        return func.id
    if isinstance(func, n.Index) and isinstance(func.value, n.Name):
        key = func.index.id if isinstance(func.index, n.Name) else \
            repr(getattr(func.index, "value", "..."))
        return f"{func.value.id}[{key}]"
    return "call"


def kind_name(compiled: Compiled) -> str:
    if compiled.kind in ("list", "dict", "sequential", MODULE, METHOD) and \
            compiled.code.startswith("self."):
        what = {MODULE: "module", METHOD: "method"}.get(compiled.kind, compiled.kind)
        return f"{what} '{compiled.code.removeprefix('self.')}'"
    if compiled.kind == CONST and compiled.const is None:
        return "none"
    return {BROKEN: "an invalid child", VALUE: "a tensor", CONST: "a constant",
            MODULE: "a module", "list": "a list", "dict": "a dict", METHOD: "a method",
            "sequential": "a sequential", MODULES: "modules", ITEMS: "a dict's items"
            }[compiled.kind]


_HANDLERS: dict[type, Callable[[ExprCompiler, Any], Compiled]] = {
    n.Name: ExprCompiler._name,
    n.Constant: ExprCompiler._const,
    n.EllipsisExpr: ExprCompiler._ellipsis,
    n.TupleExpr: ExprCompiler._sequence,
    n.ListExpr: ExprCompiler._sequence,
    n.FString: ExprCompiler._fstring,
    n.UnaryOp: ExprCompiler._unary,
    n.BinOp: ExprCompiler._binop,
    n.BoolOp: ExprCompiler._boolop,
    n.IfExp: ExprCompiler._ifexp,
    n.Compare: ExprCompiler._compare,
    n.Pipeline: ExprCompiler._pipeline,
    n.Call: ExprCompiler._call,
    n.Index: ExprCompiler._index,
    n.Attr: ExprCompiler._attr,
}

__all__ = ["BROKEN", "CALLABLE", "CONST", "ITEMS", "ITERABLE", "METHOD", "MODULE", "MODULES",
           "VALUE", "Compiled", "ExprCompiler", "Site", "kind_name"]
