"""Evaluate: constant expressions (arguments, lets, conditions, defaults) -> Python values.

A small interpreter over :mod:`netdsl.nodes`, closed over the built-in table of
:mod:`netdsl.library` and the spec's own ``def`` functions. Names resolve only in the
environment given (parameters, lets, loop variables, file-level declarations, layers); nothing
reaches Python's own namespaces. Every node evaluated spends one step of the check's budget.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from . import codes
from . import nodes as n
from .errors import NetDSLError, Span, did_you_mean, fail
from .library import BUILTINS, MAX_INT_BITS, Builtin, call_builtin
from .signatures import Arg, describe
from .values import Budget, Env, FunctionRef, LayerRef, bind_target, budget_of

Value = Any

_BINARY: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow,
}

_COMPARE: Mapping[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
    "in": lambda a, b: a in b, "not in": lambda a, b: a not in b,
}


def evaluate(expr: n.Expr, env: Mapping[str, Value]) -> Value:
    """The value of a constant expression, or a located NetDSLError."""
    return _eval(expr, env, budget_of(env))


def evaluate_args(args: list[n.Expr], kwargs: list[n.Keyword],
                  env: Mapping[str, Value]) -> tuple[list[Arg], list[Arg]]:
    return _args(args, kwargs, env, budget_of(env))


def lookup(env: Mapping[str, Value], name: str) -> Value:
    """A name's value in an environment (its own names, then its file's); KeyError if none."""
    if isinstance(env, Env):
        return env.lookup(name)
    if name in env:
        return env[name]
    if name in BUILTINS:
        return BUILTINS[name]
    raise KeyError(name)


def _eval(expr: n.Expr, env: Mapping[str, Value], budget: Budget | None) -> Value:
    if budget is not None:
        budget.spend(1, expr.span)
    handler = _HANDLERS.get(type(expr))
    if handler is None:
        fail(_not_constant(expr), expr.span, codes.SYNTAX)
    return handler(expr, env, budget)


def _args(args: list[n.Expr], kwargs: list[n.Keyword], env: Mapping[str, Value],
          budget: Budget | None) -> tuple[list[Arg], list[Arg]]:
    positional: list[Arg] = []
    for a in args:
        if isinstance(a, n.Starred):
            value = _eval(a.value, env, budget)
            if not isinstance(value, (tuple, list)):
                fail(f"only a tuple or list can be unpacked with *, got {describe(value)}",
                     a.value.span, codes.TYPE)
            positional += [Arg(v, a.span) for v in value]
        else:
            positional.append(Arg(_eval(a, env, budget), a.span))
    keywords = [Arg(_eval(k.value, env, budget), k.value.span, k.name.name, k.name.span)
                for k in kwargs]
    return positional, keywords


# Expressions that only make sense inside something else, anywhere (constants and forwards).
OUT_OF_PLACE: Mapping[type, str] = {
    n.Slice: "a slice (a:b) is only allowed inside [ ]",
    n.Starred: "'*' unpacks a tuple or list into the arguments of a call only",
}
_NOT_CONSTANT: Mapping[type, str] = {
    **OUT_OF_PLACE,
    n.Pipeline: "'->' pipelines belong in forward, not in a constant expression",
    n.Attr: "attribute access is not allowed in a constant expression",
    n.EllipsisExpr: "'...' indexes tensors in a forward; it is not a constant",
}


def _not_constant(expr: n.Expr) -> str:
    return _NOT_CONSTANT.get(type(expr), "this expression is not a constant")


# ---------------------------------------------------------------- names and literals


def _name(expr: n.Name, env: Mapping[str, Value], budget: Budget | None) -> Value:
    try:
        value = lookup(env, expr.id)
    except KeyError:
        _undefined(expr.id, env, expr.span)
    if isinstance(value, Builtin):
        fail(f"undefined name '{expr.id}'; '{expr.id}' is a function: call it",
             expr.span, codes.TYPE)
    return value


# Names that exist in a forward only.
_FORWARD_ONLY = {"training": "the module's training mode, known in the forward only "
                             "(if training { ... } there)"}


def _undefined(name: str, env: Mapping[str, Value], span: Span) -> NoReturn:
    note = env.notes.get(name) if isinstance(env, Env) else None
    note = note or _FORWARD_ONLY.get(name)
    if note is not None:  # the name exists, but holds no constant
        fail(f"'{name}' is {note}, not a constant: arguments, lets and conditions in a "
             f"body are computed from parameters and lets before anything runs", span, codes.TYPE)
    known = [*(env.known() if isinstance(env, Env) else env), *BUILTINS]
    if name[:1].isupper() and isinstance(env, Env) and env.globals is not None:
        known += env.globals.world.layer_names()  # a layer used as a value, misspelt
    fail(f"undefined name '{name}'{did_you_mean(name, known)}", span, codes.UNKNOWN_NAME)


def _constant(expr: n.Constant, env: Mapping[str, Value], budget: Budget | None) -> Value:
    check_literal(expr)
    return expr.value


def check_literal(expr: n.Constant) -> None:
    """A number a float cannot hold: too large (inf), or so small that it would be 0.0."""
    if isinstance(expr.value, float) and not math.isfinite(expr.value):
        fail("number is too large", expr.span, codes.VALUE)
    if expr.underflow:
        fail("number is too small: it would be 0.0 (write 0.0 if that is meant)",
             expr.span, codes.VALUE)


def _fstring(expr: n.FString, env: Mapping[str, Value], budget: Budget | None) -> Value:
    parts = []
    for part in expr.parts:
        if isinstance(part, str):
            parts.append(part)
            continue
        value = _eval(part, env, budget)
        if not isinstance(value, (int, float, str, bool)) and value is not None:
            fail(f"an f-string shows numbers, strings, booleans and none, not "
                 f"{describe(value)}", part.span, codes.TYPE)
        parts.append(_text(value, part.span))
        if budget is not None:
            budget.spend(len(parts[-1]), part.span)
    return "".join(parts)


def _text(value: Value, span: Span) -> str:
    try:
        return str(value)
    except ValueError as err:  # an int too long to print
        fail(f"f-string: {err}", span, codes.VALUE)


def _tuple(expr: n.TupleExpr, env: Mapping[str, Value], budget: Budget | None) -> Value:
    return tuple(_eval(i, env, budget) for i in expr.items)


def _list(expr: n.ListExpr, env: Mapping[str, Value], budget: Budget | None) -> Value:
    return [_eval(i, env, budget) for i in expr.items]


def _listcomp(expr: n.ListComp, env: Mapping[str, Value], budget: Budget | None) -> Value:
    values = iterate(_eval(expr.iter, env, budget), expr.iter.span, budget)
    scope = env.child() if isinstance(env, Env) else Env(env)
    result = []
    for value in values:
        bind_target(expr.target, value, scope, expr.span)
        if expr.cond is None or truthy(_eval(expr.cond, scope, budget)):
            result.append(_eval(expr.element, scope, budget))
    return result


def iterate(value: Value, span: Span, budget: Budget | None) -> list[Value] | range | str:
    """A value a loop can go over; a loop longer than the steps left is refused at once."""
    if not isinstance(value, (tuple, list, range, str)):
        fail(f"can only loop over a tuple, list, range or string, not {describe(value)}",
             span, codes.TYPE)
    if budget is not None and len(value) > budget.left():
        budget.spend(len(value), span)  # raises: refused before the first iteration
    return value if isinstance(value, (list, range, str)) else list(value)


def truthy(value: Value) -> bool:
    return bool(value)


# ---------------------------------------------------------------- operators


def _unary(expr: n.UnaryOp, env: Mapping[str, Value], budget: Budget | None) -> Value:
    value = _eval(expr.operand, env, budget)
    if expr.op == "not":
        return not truthy(value)
    if not _is_number(value):
        fail(f"bad operand for unary {expr.op}: {describe(value)}", expr.span, codes.TYPE)
    return -value if expr.op == "-" else +value


def _boolop(expr: n.BoolOp, env: Mapping[str, Value], budget: Budget | None) -> Value:
    left = _eval(expr.left, env, budget)
    if truthy(left) == (expr.op == "or"):
        return left
    return _eval(expr.right, env, budget)


def _ifexp(expr: n.IfExp, env: Mapping[str, Value], budget: Budget | None) -> Value:
    chosen = expr.body if truthy(_eval(expr.test, env, budget)) else expr.orelse
    return _eval(chosen, env, budget)


def _compare(expr: n.Compare, env: Mapping[str, Value], budget: Budget | None) -> Value:
    left = _eval(expr.operands[0], env, budget)
    for op, node in zip(expr.ops, expr.operands[1:], strict=True):
        right = _eval(node, env, budget)
        if not _compared(op, left, right, node.span, budget):
            return False
        left = right
    return True


def compared(op: str, left: Value, right: Value, span: Span, budget: Budget | None) -> bool:
    """``left op right`` for one comparison of a chain, with located mistakes."""
    return _compared(op, left, right, span, budget)


def _compared(op: str, left: Value, right: Value, span: Span, budget: Budget | None) -> bool:
    if op in ("in", "not in") and not isinstance(right, (tuple, list, str, range)):
        fail(f"'{op}' needs a tuple, list, string or range on its right, got "
             f"{describe(right)}", span, codes.TYPE)
    if op in ("in", "not in") and isinstance(right, str) and not isinstance(left, str):
        fail(f"'{op}' a string needs a string on its left, got {describe(left)}", span, codes.TYPE)
    if budget is not None:
        budget.spend(_size(left) + _size(right), span)
    try:
        return bool(_COMPARE[op](left, right))
    except TypeError:
        fail(f"cannot compare {describe(left)} and {describe(right)} with {op}", span, codes.TYPE)


def _size(value: Value) -> int:
    return len(value) if isinstance(value, (tuple, list, str)) else 0


def _binop(expr: n.BinOp, env: Mapping[str, Value], budget: Budget | None) -> Value:
    left, right = _eval(expr.left, env, budget), _eval(expr.right, env, budget)
    if _is_sequence_op(expr.op, left, right):
        return _sequence_op(expr, left, right, budget)
    if expr.op == "@" or not (_is_number(left) and _is_number(right)):
        fail(f"unsupported operands for {expr.op}: {describe(left)} and {describe(right)}",
             expr.span, codes.TYPE)
    return arithmetic(expr.op, left, right, expr.span, budget)


# Big integers cost in proportion to their size: one step per this many bits of a result.
BITS_PER_STEP = 64


def arithmetic(op: str, left: Value, right: Value, span: Span,
               budget: Budget | None = None) -> Value:
    """``left op right`` on numbers, with the bounds every constant obeys."""
    _check_size(op, left, right, span)
    try:
        result = _BINARY[op](left, right)
    except ZeroDivisionError:
        fail("division by zero", span, codes.VALUE)
    except (OverflowError, ValueError) as err:
        fail(f"arithmetic error: {err}", span, codes.VALUE)
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        fail("arithmetic error: result is too large", span, codes.VALUE)
    if budget is not None and isinstance(result, int):
        budget.spend(result.bit_length() // BITS_PER_STEP, span)
    if isinstance(result, complex):
        fail("arithmetic error: result is a complex number", span, codes.VALUE)
    if isinstance(result, float) and not math.isfinite(result):
        fail("arithmetic error: result is not a finite number", span, codes.VALUE)
    return result


def _check_size(op: str, left: Value, right: Value, span: Span) -> None:
    if op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        if abs(left) > 1 and right * max(abs(left).bit_length(), 1) > MAX_INT_BITS:
            fail("arithmetic error: result is too large", span, codes.VALUE)
    if op == "*" and isinstance(left, int) and isinstance(right, int):
        if abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS:
            fail("arithmetic error: result is too large", span, codes.VALUE)


def _is_number(value: Value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_sequence_op(op: str, left: Value, right: Value) -> bool:
    sequences = (tuple, list, str)
    if op == "+":
        return isinstance(left, sequences) and type(left) is type(right)
    if op == "*":
        return (isinstance(left, sequences) and _is_int(right)) or (
            isinstance(right, sequences) and _is_int(left))
    return False


def _is_int(value: Value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sequence_op(expr: n.BinOp, left: Value, right: Value, budget: Budget | None) -> Value:
    """``(1, 2) + (3,)``, ``[False] * 3``, ``"ab" * 2``: sized before they are built."""
    if expr.op == "+":
        size = len(left) + len(right)
    else:
        seq, times = (left, right) if not _is_int(left) else (right, left)
        size = len(seq) * max(times, 0)
    if budget is not None:
        if size > budget.left():
            budget.spend(size, expr.span)  # raises
        budget.spend(size, expr.span)
    elif size > 1 << 24:
        fail("result is too large", expr.span, codes.VALUE)
    return left + right if expr.op == "+" else left * right


# ---------------------------------------------------------------- indexing


def _index(expr: n.Index, env: Mapping[str, Value], budget: Budget | None) -> Value:
    value = _eval(expr.value, env, budget)
    if not isinstance(value, (tuple, list, str, range)):
        fail(f"{describe(value)} cannot be indexed", expr.value.span, codes.TYPE)
    if isinstance(expr.index, n.Slice):
        part = value[_slice(expr.index, env, budget)]
        if budget is not None:
            budget.spend(len(part), expr.span)
        return part
    index = _eval(expr.index, env, budget)
    if not _is_int(index):
        fail(f"an index is an integer or a slice (a:b), got {describe(index)}",
             expr.index.span, codes.TYPE)
    if not -len(value) <= index < len(value):
        fail(f"index {index} is out of range ({len(value)} items)", expr.index.span, codes.VALUE)
    return value[index]


def _slice(node: n.Slice, env: Mapping[str, Value], budget: Budget | None) -> slice:
    parts = []
    for part in (node.lower, node.upper, node.step):
        value = None if part is None else _eval(part, env, budget)
        if value is not None and not _is_int(value):
            fail(f"a slice takes integers or none, got {describe(value)}", node.span, codes.TYPE)
        parts.append(value)
    if parts[2] == 0:
        fail("slice step must not be zero", node.span, codes.VALUE)
    return slice(*parts)


# ---------------------------------------------------------------- calls


def _call(expr: n.Call, env: Mapping[str, Value], budget: Budget | None) -> Value:
    if not isinstance(expr.func, n.Name):
        fail("only functions can be called in a constant expression (sqrt(x), len(t), "
             "f(...) of a def)", expr.func.span, codes.TYPE)
    name = expr.func.id
    try:
        func = lookup(env, name)
    except KeyError:
        defs = env.globals.functions() if isinstance(env, Env) and env.globals else []
        fail(f"unknown function '{name}'{did_you_mean(name, [*BUILTINS, *defs])}",
             expr.func.span, codes.UNKNOWN_NAME)
    args, kwargs = _args(expr.args, expr.kwargs, env, budget)
    if isinstance(func, Builtin):
        return call_builtin(func, args, kwargs, budget, expr.span)
    if isinstance(func, FunctionRef):
        from .functions import call_function  # functions run statements with this evaluator

        return call_function(func, args, kwargs, expr.span, env)
    if isinstance(func, LayerRef):
        fail(f"'{name}' is a layer: layers are built as children and items, not called in a "
             f"constant expression", expr.func.span, codes.TYPE)
    fail(f"'{name}' is {describe(func)}, not a function", expr.func.span, codes.TYPE)


_HANDLERS: Mapping[type, Callable[[Any, Mapping[str, Value], Budget | None], Value]] = {
    n.Name: _name,
    n.Constant: _constant,
    n.FString: _fstring,
    n.TupleExpr: _tuple,
    n.ListExpr: _list,
    n.ListComp: _listcomp,
    n.UnaryOp: _unary,
    n.BoolOp: _boolop,
    n.IfExp: _ifexp,
    n.Compare: _compare,
    n.BinOp: _binop,
    n.Index: _index,
    n.Call: _call,
}

__all__ = [
    "OUT_OF_PLACE",
    "NetDSLError",
    "Span",
    "arithmetic",
    "check_literal",
    "compared",
    "evaluate",
    "evaluate_args",
    "iterate",
    "lookup",
    "truthy",
]
