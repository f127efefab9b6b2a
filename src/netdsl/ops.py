"""Ops: the closed set of functions and tensor methods a forward may call.

Each op names the exact torch call the generated code makes and the parameters it accepts (used
to check a call's arity and keywords before any code is generated). Generated code reaches torch
only through the names bound in :data:`NAMESPACE`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

from .signatures import Signature

# The globals of every generated forward. Spec names cannot start with "_", so none can shadow
# these.
NAMESPACE = {"_torch": torch, "_F": F, "_checkpoint": torch.utils.checkpoint.checkpoint,
             "_slice": slice}


@dataclass(frozen=True)
class Op:
    code: str  # the callable in generated code; a leading "." marks a tensor method
    signature: Signature

    @property
    def is_method(self) -> bool:
        return self.code.startswith(".")


def _op(name: str, code: str, *params: str | tuple[str, object]) -> tuple[str, Op]:
    """An op entry; params are ``"name"`` (required), ``"*name"``, ``"=name"`` (required,
    keyword only) or ``(name, default)``."""
    kinds = inspect.Parameter
    built = []
    for param in params:
        if isinstance(param, tuple):
            kind = kinds.KEYWORD_ONLY if any(p.kind == kinds.VAR_POSITIONAL for p in built) \
                else kinds.POSITIONAL_OR_KEYWORD
            built.append(kinds(param[0], kind, default=param[1]))
        elif param.startswith("*"):
            built.append(kinds(param[1:], kinds.VAR_POSITIONAL))
        elif param.startswith("="):
            built.append(kinds(param[1:], kinds.KEYWORD_ONLY))
        else:
            built.append(kinds(param, kinds.POSITIONAL_OR_KEYWORD))
    return name, Op(code, Signature(f"{name}()", tuple(built)))


OPS: dict[str, Op] = dict([
    # activations
    _op("relu", "_F.relu", "input", ("inplace", False)),
    _op("relu6", "_F.relu6", "input", ("inplace", False)),
    _op("tanh", "_torch.tanh", "input"),
    _op("sigmoid", "_torch.sigmoid", "input"),
    _op("gelu", "_F.gelu", "input", ("approximate", 'none')),
    _op("silu", "_F.silu", "input", ("inplace", False)),
    _op("elu", "_F.elu", "input", ("alpha", 1.0), ("inplace", False)),
    _op("leaky_relu", "_F.leaky_relu", "input", ("negative_slope", 0.01), ("inplace", False)),
    _op("softmax", "_F.softmax", "input", "dim"),
    _op("log_softmax", "_F.log_softmax", "input", "dim"),
    _op("dropout", "_F.dropout", "input", ("p", 0.5), ("training", True), ("inplace", False)),
    # shapes
    _op("flatten", "_torch.flatten", "input", ("start_dim", 0), ("end_dim", -1)),
    _op("view", ".view", "input", "*shape"),
    _op("reshape", ".reshape", "input", "*shape"),
    _op("permute", ".permute", "input", "*dims"),
    _op("transpose", "_torch.transpose", "input", "dim0", "dim1"),
    _op("squeeze", "_torch.squeeze", "input", "dim"),
    _op("unsqueeze", "_torch.unsqueeze", "input", "dim"),
    _op("contiguous", ".contiguous", "input"),
    _op("size", ".size", "input", "dim"),
    # combining
    _op("cat", "_torch.cat", "tensors", ("dim", 0)),
    _op("stack", "_torch.stack", "tensors", ("dim", 0)),
    _op("add", "_torch.add", "input", "other", ("alpha", 1)),
    _op("sub", "_torch.sub", "input", "other", ("alpha", 1)),
    _op("mul", "_torch.mul", "input", "other"),
    _op("div", "_torch.div", "input", "other"),
    _op("matmul", "_torch.matmul", "input", "other"),
    # reductions and pooling
    _op("mean", "_torch.mean", "input", "dim", ("keepdim", False)),
    _op("sum", "_torch.sum", "input", "dim", ("keepdim", False)),
    _op("adaptive_avg_pool2d", "_F.adaptive_avg_pool2d", "input", "output_size"),
    _op("avg_pool2d", "_F.avg_pool2d", "input", "kernel_size", ("stride", None), ("padding", 0)),
    _op("max_pool2d", "_F.max_pool2d", "input", "kernel_size", ("stride", None), ("padding", 0)),
    _op("pad", "_F.pad", "input", "pad", ("mode", "constant"), ("value", None)),
    _op("interpolate", "_F.interpolate", "input", ("size", None), ("scale_factor", None),
        ("mode", "nearest"), ("align_corners", None)),
    # torch.utils.checkpoint: recompute `function` in the backward pass instead of storing its
    # activations. torch wants use_reentrant said explicitly.
    _op("checkpoint", "_checkpoint", "function", "*args", "=use_reentrant",
        ("preserve_rng_state", True)),
])

# Parameters of ops that take a function (a method or a child) rather than a value.
FUNCTION_PARAMS = frozenset({"function"})

# Tensor methods callable as ``x.name(...)``; arguments are passed through to torch.
METHODS = frozenset({
    "view", "reshape", "size", "flatten", "permute", "transpose", "contiguous", "squeeze",
    "unsqueeze", "mean", "sum", "relu", "tanh", "sigmoid", "softmax", "log_softmax", "chunk",
    "split", "expand", "repeat", "float", "clone", "detach", "t", "exp", "abs", "pow", "sqrt",
    "dim", "max", "min", "argmax", "masked_fill", "type_as", "to",
})

# Methods of lists built in a forward (DenseNet's features.append(...)).
LIST_METHODS = frozenset({"append", "extend"})

# Tensor attributes readable as ``x.name``.
ATTRIBUTES = frozenset({"shape", "ndim", "T", "requires_grad", "dtype"})
