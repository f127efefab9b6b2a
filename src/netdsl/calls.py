"""Calls: a call of a torch (or custom) layer with evaluated arguments -> a LayerPlan.

Binds the arguments to the real constructor signature, applies the input-dimension omission
rule, and refuses arguments torch would accept at construction but cannot run (window sizes
below 1) or that would build without bound inside the layer (``num_layers``). Layers passed as
values (``norm_layer=BatchNorm2d``) reach torch as callables; spec blocks cannot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from . import codes
from .errors import Span, fail
from .infer import input_dim, omits_input_dim, without
from .plan import LayerPlan
from .registry import layer_signature
from .signatures import Arg, Signature
from .values import LayerRef


def plan_layer(cls: type[nn.Module], name: str, args: list[Arg], kwargs: list[Arg],
               span: Span, count: Callable[[int, Span], None], max_layers: int) -> LayerPlan:
    """The plan of ``cls(*args, **kwargs)``; ``count`` reserves the modules it builds inside."""
    if issubclass(cls, LazyModuleMixin):
        fail(f"{name} infers its input size at its first call; netdsl infers it before the "
             f"build: write {name.removeprefix('Lazy')}(...) with the input dimension left out",
             span, codes.VALUE)
    for arg in (*args, *kwargs):
        _check_torch_value(arg, name)
    signature = layer_signature(cls, name)
    omitted = omits_input_dim(signature, args, kwargs)
    written = signature if omitted is None else without(signature, omitted.param)
    bound = written.bind(args, kwargs, span)
    infer = input_dim(signature) if omitted is not None else None
    _check_window(name, bound, [*args, *kwargs], written)
    _count_inner_layers(name, bound, [*args, *kwargs], written, count, max_layers)
    return LayerPlan(cls, name, [a.value for a in args],
                     {k.name: k.value for k in kwargs if k.name}, span, infer)


def _check_torch_value(arg: Arg, layer: str) -> None:
    """A spec block cannot be handed to torch code, which would have to build it."""
    for value in _values(arg.value):
        if isinstance(value, LayerRef) and not value.is_class:
            fail(f"{layer}() cannot build the spec's block '{value.name}'; torch layers take "
                 f"torch layers (a block is used as a child or item of the spec)",
                 arg.span, codes.TYPE)


def _values(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [v for item in value for v in _values(item)]
    return [value]


def _count_inner_layers(name: str, bound: dict[str, Any], given: list[Arg],
                        signature: Signature, count: Callable[[int, Span], None],
                        max_layers: int) -> None:
    """``LSTM(num_layers=...)`` builds that many layers inside: counted, and bounded."""
    for param, value in bound.items():
        if param.endswith("layers") and isinstance(value, int) and value > 1:
            span = arg_span(param, given, signature)
            if value > max_layers:  # torch stacks them in quadratic time
                fail(f"{name}() argument '{param}' is over {max_layers:,} "
                     f"(10 x Limits.max_depth, netdsl check --max-depth)", span, codes.LIMIT)
            count(value, span)


# Window sizes torch accepts at construction but cannot run with (Conv2d(3, 6, 0) builds, and
# its forward then fails deep in the backend): checked here, where the spec can be pointed at.
_POSITIVE = ("kernel_size", "stride", "dilation")


def _check_window(name: str, bound: dict[str, Any], given: list[Arg],
                  signature: Signature) -> None:
    for param in _POSITIVE:
        value = bound.get(param)
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in values):
            span = arg_span(param, given, signature)
            fail(f"{name}() argument '{param}' must be at least 1, got {value!r}",
                 span, codes.VALUE)


def arg_span(param: str, given: list[Arg], signature: Signature) -> Span:
    """Where an argument is written: by keyword, or at its position."""
    for arg in given:
        if arg.name == param:
            return arg.span
    names = [p.name for p in signature.params]
    positional = [a for a in given if a.name is None]
    index = names.index(param) if param in names else -1
    return positional[index].span if 0 <= index < len(positional) else given[0].span


__all__ = ["arg_span", "plan_layer"]
