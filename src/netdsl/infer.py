"""Infer: which constructor arguments are input dimensions, and the rule for omitting them.

A layer's input dimension (``in_channels``, ``in_features``, ``num_features``, ...) is found by
its parameter name in the real constructor signature, not from a table of layers, so any layer
with such a parameter takes part. The rule that makes omission unambiguous: when a call gives
fewer arguments than the constructor requires, the omitted one is the input dimension, and the
positional arguments bind to the parameters after it (``Conv2d(16, 5)`` is
``Conv2d(<inferred>, 16, 5)``; ``Linear(120)`` is ``Linear(<inferred>, 120)``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from .signatures import Arg, Signature


@dataclass(frozen=True)
class InputDim:
    """A parameter read off the layer's input shape (batch dimension first)."""

    param: str
    dim: int  # index into the input shape
    what: str  # how messages name it: "Linear(401, 120) expects 401 input features"

    def read(self, shape: tuple[int, ...]) -> int | None:
        if not -len(shape) <= self.dim < len(shape):
            return None
        return shape[self.dim]


INPUT_DIMS = {d.param: d for d in (
    InputDim("in_channels", 1, "input channels"),
    InputDim("in_features", -1, "input features"),
    InputDim("num_features", 1, "channels"),
    InputDim("num_channels", 1, "channels"),
    InputDim("normalized_shape", -1, "features in the last dimension"),
    InputDim("embed_dim", -1, "features in the last dimension"),
    InputDim("input_size", -1, "input features"),
    InputDim("d_model", -1, "features in the last dimension"),
)}


# Layers whose input-dimension parameter means another dimension than its usual one:
# torchvision.ops.MLP's in_channels are the features of the last dimension (it is Linears).
LAYER_INPUT_DIMS = {
    "MLP()": InputDim("in_channels", -1, "input features in the last dimension"),
}


def input_dim(signature: Signature) -> tuple[InputDim, int] | None:
    """The layer's input-dimension parameter and its positional index, if it has one."""
    for index, param in enumerate(signature.params):
        if param.name in INPUT_DIMS and param.default is inspect.Parameter.empty:
            found = LAYER_INPUT_DIMS.get(signature.title)
            return (found if found and found.param == param.name else INPUT_DIMS[param.name],
                    index)
    return None


def omits_input_dim(signature: Signature, args: list[Arg], kwargs: list[Arg]) -> InputDim | None:
    """The input dimension this call leaves out, by the omission rule, or None."""
    found = input_dim(signature)
    if found is None or any(k.name == found[0].param for k in kwargs):
        return None
    required = {p.name for p in signature.params if p.default is inspect.Parameter.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    given = len(args) + sum(1 for k in kwargs if k.name in required)
    return found[0] if given < len(required) else None


def without(signature: Signature, param: str) -> Signature:
    """The signature with one parameter removed: the call as written binds to the rest."""
    return Signature(signature.title, tuple(p for p in signature.params if p.name != param),
                     signature.reserved)
