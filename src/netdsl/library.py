"""Library: the built-in functions of constant expressions, a closed table.

Each entry is a Python callable and the signature a call is checked against (arity, keywords,
types) before it runs. Functions that build collections spend the work budget first, so that
``list(range(10**9))`` is refused instead of filling memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import codes
from .errors import Span, fail
from .ops import DTYPES
from .signatures import Arg, Signature, describe
from .values import Budget, LayerRef

Value = Any


@dataclass(frozen=True)
class Builtin:
    name: str
    func: Callable[..., Value]
    signature: Signature
    # Functions that need the budget and the call's arguments with their spans.
    raw: bool = False

    def __repr__(self) -> str:
        return f"{self.name}()"


def _gain(nonlinearity: str, param: float | None = None) -> float:
    return nn.init.calculate_gain(nonlinearity, param)  # type: ignore[arg-type]


# ---------------------------------------------------------------- signatures (stubs)


def _number(x: float, /) -> None:
    """The one-number functions (an int is accepted where a float is)."""


def _round(x: float, ndigits: int | None = None, /) -> None:
    """round()"""


def _numbers(*values: Any) -> None:
    """min(), max()"""


def _one(x: Any, /) -> None:
    """len(), list(), tuple(), str(), bool(), any(), all(), sorted(), reversed()"""


def _range(start: int, stop: int | None = None, step: int = 1, /) -> None:
    """range()"""


def _enumerate(iterable: Any, /, start: int = 0) -> None:
    """enumerate()"""


def _sum(iterable: Any, /, start: float = 0) -> None:
    """sum()"""


def _partial(layer: LayerRef, /, *args: Any, **kwargs: Any) -> None:
    """partial()"""


# ---------------------------------------------------------------- collection functions


def _length(value: Value, span: Span) -> int:
    if not isinstance(value, (tuple, list, str, range)):
        fail(f"expected a tuple, list, string or range, got {describe(value)}", span, codes.TYPE)
    return len(value)


def _sized(budget: Budget | None, size: int, span: Span) -> None:
    """Refuse a collection larger than the steps left (before it is built); one step per
    item."""
    if budget is not None:
        budget.spend(size, span)


def range_of(args: Sequence[Arg], budget: Budget | None, span: Span) -> range:
    if len(args) == 3 and args[2].value == 0:
        fail("range() step must not be zero", args[2].span, codes.VALUE)
    return range(*(a.value for a in args))


def _iterable(args: Sequence[Arg], budget: Budget | None, span: Span) -> Sequence[Value]:
    value = args[0].value
    size = _length(value, args[0].span)
    _sized(budget, size, span)
    return value  # type: ignore[no-any-return]


def _list(args: Sequence[Arg], budget: Budget | None, span: Span) -> Value:
    return list(_iterable(args, budget, span))


def _tuple(args: Sequence[Arg], budget: Budget | None, span: Span) -> Value:
    return tuple(_iterable(args, budget, span))


def _sorted(args: Sequence[Arg], budget: Budget | None, span: Span) -> Value:
    try:
        return sorted(_iterable(args, budget, span))
    except TypeError as err:
        fail(f"sorted(): {err}", span, codes.TYPE)


def _reversed(args: Sequence[Arg], budget: Budget | None, span: Span) -> Value:
    return list(reversed(_iterable(args, budget, span)))


def _enumerate_of(args: Sequence[Arg], budget: Budget | None, span: Span,
                  start: int = 0) -> Value:
    return list(enumerate(_iterable(args, budget, span), start))


def _zip(args: Sequence[Arg], budget: Budget | None, span: Span) -> Value:
    sizes = [_length(a.value, a.span) for a in args]
    _sized(budget, min(sizes, default=0), span)
    return list(zip(*(a.value for a in args), strict=False))


def _len(args: Sequence[Arg], budget: Budget | None, span: Span) -> Value:
    return _length(args[0].value, args[0].span)


def _sum_of(args: Sequence[Arg], budget: Budget | None, span: Span, start: float = 0) -> Value:
    items = _iterable(args, budget, span)
    if not all(isinstance(i, (int, float)) and not isinstance(i, bool) for i in items):
        fail("sum() adds numbers only", args[0].span, codes.TYPE)
    return sum(items, start)


def _any(args: Sequence[Arg], budget: Budget | None, span: Span) -> Value:
    return any(_iterable(args, budget, span))


def _all(args: Sequence[Arg], budget: Budget | None, span: Span) -> Value:
    return all(_iterable(args, budget, span))


def _str(args: Sequence[Arg], budget: Budget | None, span: Span) -> Value:
    value = args[0].value
    if isinstance(value, (tuple, list)):
        _sized(budget, len(value), span)
    try:
        text = str(value)
    except ValueError as err:  # an int too long to print
        fail(f"str(): {err}", span, codes.VALUE)
    _sized(budget, len(text), span)
    return text


def _bool(args: Sequence[Arg], budget: Budget | None, span: Span) -> Value:
    return bool(args[0].value)


def _partial_of(args: Sequence[Arg], budget: Budget | None, span: Span,
                kwargs: Sequence[Arg] = ()) -> Value:
    layer = args[0]
    if not isinstance(layer.value, LayerRef):
        fail(f"partial() takes a layer first, got {describe(layer.value)}", layer.span, codes.TYPE)
    return layer.value.bind(list(args[1:]), list(kwargs))


def _table() -> dict[str, Builtin]:
    plain = {
        "sqrt": (math.sqrt, _number), "exp": (math.exp, _number), "log": (math.log, _number),
        "abs": (abs, _number), "int": (int, _number), "float": (float, _number),
        "ceil": (math.ceil, _number), "floor": (math.floor, _number),
        "min": (min, _numbers), "max": (max, _numbers), "round": (round, _round),
        "gain": (_gain, _gain),
    }
    raw = {
        "range": (range_of, _range), "len": (_len, _one), "list": (_list, _one),
        "tuple": (_tuple, _one), "sorted": (_sorted, _one), "reversed": (_reversed, _one),
        "enumerate": (_enumerate_of, _enumerate), "zip": (_zip, _numbers),
        "sum": (_sum_of, _sum), "any": (_any, _one), "all": (_all, _one), "str": (_str, _one),
        "bool": (_bool, _one), "partial": (_partial_of, _partial),
    }
    table = {name: Builtin(name, func, Signature.of(f"{name}()", stub))
             for name, (func, stub) in plain.items()}
    table.update({name: Builtin(name, func, Signature.of(f"{name}()", stub), raw=True)
                  for name, (func, stub) in raw.items()})
    return table


BUILTINS: Mapping[str, Builtin] = _table()


def _torch_dtypes() -> dict[str, Any]:
    return {name: getattr(torch, attr) for name, attr in DTYPES.items()}


# dtypes as build-time values, for layers' dtype= (Linear(4, 2, dtype=float64)); the same names
# as in a forward (netdsl.ops.DTYPES).
TORCH_DTYPES: Mapping[str, Any] = _torch_dtypes()

# Numbers may not grow past this many bits: ``10**10**10`` would otherwise hang the checker.
MAX_INT_BITS = 4096
# round(x, -10**9) computes 10**10**9 inside CPython.
MAX_NDIGITS = 400


def call_builtin(builtin: Builtin, args: list[Arg], kwargs: list[Arg], budget: Budget | None,
                 span: Span) -> Value:
    builtin.signature.bind(args, kwargs, span)
    if builtin.raw:
        return _call_raw(builtin, args, kwargs, budget, span)
    if builtin.name == "round" and len(args) == 2 and isinstance(args[1].value, int) \
            and abs(args[1].value) > MAX_NDIGITS:
        fail(f"round(): ndigits is at most {MAX_NDIGITS} either way", args[1].span, codes.VALUE)
    try:
        result = builtin.func(*(a.value for a in args),
                              **{k.name: k.value for k in kwargs if k.name})
    except (TypeError, ValueError, OverflowError) as err:
        fail(f"{builtin.name}(): {err}", span, codes.VALUE)
    if isinstance(result, float) and not math.isfinite(result):
        fail(f"{builtin.name}() does not give a finite number here", span, codes.VALUE)
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        fail(f"{builtin.name}(): result is too large", span, codes.VALUE)
    if isinstance(result, int):
        _sized(budget, result.bit_length() // 64, span)  # big integers cost their size
    return result


def _call_raw(builtin: Builtin, args: list[Arg], kwargs: list[Arg], budget: Budget | None,
              span: Span) -> Value:
    if builtin.name == "partial":
        return _partial_of(args, budget, span, kwargs)
    extra = {k.name: k.value for k in kwargs if k.name}
    try:
        return builtin.func(args, budget, span, **extra)
    except (TypeError, ValueError, OverflowError) as err:
        fail(f"{builtin.name}(): {err}", span, codes.VALUE)


__all__ = ["BUILTINS", "MAX_INT_BITS", "TORCH_DTYPES", "Builtin", "call_builtin", "range_of"]
