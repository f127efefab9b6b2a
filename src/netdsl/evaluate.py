"""Evaluate: constant expressions (layer arguments, defaults, init arguments) -> Python values.

A small interpreter over :mod:`netdsl.nodes`, closed over an explicit table of pure math
functions. Names resolve only in the environment given (model parameters, ``let`` constants,
comprehension variables, ``fan_in``/``fan_out`` in init rules); nothing reaches Python's own
namespaces.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from . import nodes as n
from .errors import NetDSLError, Span, did_you_mean, fail
from .signatures import Arg, Signature, describe

Value = Any

# Results bigger than this many bits are refused: ``10**10**10`` would otherwise hang the checker.
MAX_INT_BITS = 4096


def _gain(nonlinearity: str, param: float | None = None) -> float:
    return nn.init.calculate_gain(nonlinearity, param)  # type: ignore[arg-type]


FUNCTIONS: Mapping[str, Callable[..., Value]] = {
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "abs": abs,
    "min": min,
    "max": max,
    "int": int,
    "float": float,
    "round": round,
    "gain": _gain,
}

def _number(x: float, /) -> None:
    """The signature of the one-number functions (an int is accepted where a float is)."""


def _round(x: float, ndigits: int | None = None, /) -> None:
    """The signature of round()."""


def _numbers(*values: float) -> None:
    """The signature of min() and max()."""


_SIGNATURES = {
    **{name: Signature.of(f"{name}()", _number)
       for name in ("sqrt", "exp", "log", "abs", "int", "float")},
    "round": Signature.of("round()", _round),
    "min": Signature.of("min()", _numbers),
    "max": Signature.of("max()", _numbers),
    "gain": Signature.of("gain()", _gain),
}

_BINARY: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow,
}


def evaluate(expr: n.Expr, env: Mapping[str, Value]) -> Value:
    """The value of a constant expression, or a located NetDSLError."""
    handler = _HANDLERS.get(type(expr))
    if handler is None:
        fail(_not_constant(expr), expr.span)
    return handler(expr, env)


def evaluate_args(args: list[n.Expr], kwargs: list[n.Keyword],
                  env: Mapping[str, Value]) -> tuple[list[Arg], list[Arg]]:
    positional = [Arg(evaluate(a, env), a.span) for a in args]
    keywords = [Arg(evaluate(k.value, env), k.value.span, k.name.name, k.name.span)
                for k in kwargs]
    return positional, keywords


def _not_constant(expr: n.Expr) -> str:
    if isinstance(expr, n.Pipeline):
        return "'->' pipelines belong in forward, not in an argument"
    if isinstance(expr, n.Attr):
        return "attribute access is not allowed in an argument"
    if isinstance(expr, n.Index):
        return "indexing is not allowed in an argument"
    return "this expression is not a constant"


def _name(expr: n.Name, env: Mapping[str, Value]) -> Value:
    if expr.id in env:
        return env[expr.id]
    hint = "" if expr.id not in FUNCTIONS else f"; '{expr.id}' is a function: call it"
    fail(f"undefined name '{expr.id}'{hint or did_you_mean(expr.id, env)}", expr.span)


def _constant(expr: n.Constant, env: Mapping[str, Value]) -> Value:
    if isinstance(expr.value, float) and not math.isfinite(expr.value):
        fail("number is too large", expr.span)
    return expr.value


def _tuple(expr: n.TupleExpr, env: Mapping[str, Value]) -> Value:
    return tuple(evaluate(i, env) for i in expr.items)


def _list(expr: n.ListExpr, env: Mapping[str, Value]) -> Value:
    return [evaluate(i, env) for i in expr.items]


def _unary(expr: n.UnaryOp, env: Mapping[str, Value]) -> Value:
    value = evaluate(expr.operand, env)
    if not _is_number(value):
        fail(f"bad operand for unary {expr.op}: {describe(value)}", expr.span)
    return -value if expr.op == "-" else +value


def _binop(expr: n.BinOp, env: Mapping[str, Value]) -> Value:
    left, right = evaluate(expr.left, env), evaluate(expr.right, env)
    if expr.op == "@" or not (_is_number(left) and _is_number(right)):
        fail(f"unsupported operands for {expr.op}: {describe(left)} and {describe(right)}",
             expr.span)
    _check_size(expr, left, right)
    try:
        result = _BINARY[expr.op](left, right)
    except ZeroDivisionError:
        fail("division by zero", expr.span)
    except (OverflowError, ValueError) as err:
        fail(f"arithmetic error: {err}", expr.span)
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        fail("arithmetic error: result is too large", expr.span)
    if isinstance(result, complex):
        fail("arithmetic error: result is a complex number", expr.span)
    if isinstance(result, float) and not math.isfinite(result):
        fail("arithmetic error: result is not a finite number", expr.span)
    return result


def _check_size(expr: n.BinOp, left: Value, right: Value) -> None:
    if expr.op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        if abs(left) > 1 and right * max(abs(left).bit_length(), 1) > MAX_INT_BITS:
            fail("arithmetic error: result is too large", expr.span)
    if expr.op == "*" and isinstance(left, int) and isinstance(right, int):
        if abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS:
            fail("arithmetic error: result is too large", expr.span)


def _is_number(value: Value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _call(expr: n.Call, env: Mapping[str, Value]) -> Value:
    if not isinstance(expr.func, n.Name):
        fail("only the built-in math functions can be called in an argument", expr.func.span)
    name = expr.func.id
    func = FUNCTIONS.get(name)
    if func is None:
        fail(f"unknown function '{name}'{did_you_mean(name, FUNCTIONS)}", expr.func.span)
    args, kwargs = evaluate_args(expr.args, expr.kwargs, env)
    _SIGNATURES[name].bind(args, kwargs, expr.span)
    try:
        result = func(*(a.value for a in args), **{k.name: k.value for k in kwargs if k.name})
    except (TypeError, ValueError, OverflowError) as err:
        fail(f"{name}(): {err}", expr.span)
    if isinstance(result, float) and not math.isfinite(result):
        fail(f"{name}() does not give a finite number here", expr.span)
    return result


_HANDLERS: Mapping[type, Callable[[Any, Mapping[str, Value]], Value]] = {
    n.Name: _name,
    n.Constant: _constant,
    n.TupleExpr: _tuple,
    n.ListExpr: _list,
    n.UnaryOp: _unary,
    n.BinOp: _binop,
    n.Call: _call,
}

__all__ = ["FUNCTIONS", "NetDSLError", "Span", "evaluate", "evaluate_args"]
