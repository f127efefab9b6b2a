"""FLOP formulas for the aten ops torch's ``FlopCounterMode`` has none for.

FlopCounterMode counts the multiply-accumulate ops (matmuls, convolutions, attention) at two
FLOPs per MAC, and nothing else: a ResNet's BatchNorm, ReLU, pooling and residual adds would
count 0. netdsl adds formulas for those, with the convention of DeepSpeed's flops profiler
(``deepspeed/profiling/flops_profiler``), the most used one that counts them:

- one FLOP per output element for activations and pointwise arithmetic (``relu``, ``gelu``,
  ``add``, ``mul``, ...), per input element for softmax, pooling and reductions;
- BatchNorm on its running statistics: 1 FLOP per element, 2 with the affine ``weight`` and
  ``bias``; with batch statistics (training, InstanceNorm) 4, or 5 with affine; LayerNorm and
  GroupNorm 4, or 5 with affine;
- ops that only move or select data (``cat``, ``clone``, padding, an embedding's lookup) do no
  arithmetic: 0, by formula, so that they are not reported as uncounted.

None of these is a multiply-accumulate: they add FLOPs and no MACs, so that MACs stay the
count torchinfo and papers report. An op in neither torch's registry nor this table is named
as uncounted, never silently 0. Each formula takes the shapes FlopCounterMode passes (tensors
replaced by their shapes, ``out_shape`` the output's).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

Formula = Callable[..., int]

_aten = torch.ops.aten

# Activations and pointwise arithmetic: one FLOP per output element.
_POINTWISE = (
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "gelu", "gelu_", "silu", "silu_",
    "sigmoid", "sigmoid_", "tanh", "tanh_", "hardswish", "hardswish_", "hardsigmoid",
    "hardsigmoid_", "elu", "elu_", "leaky_relu", "leaky_relu_", "softplus", "mish", "mish_",
    "threshold", "threshold_", "_prelu_kernel", "log_sigmoid_forward", "glu", "exp", "log",
    "sqrt", "rsqrt", "neg", "abs", "reciprocal", "pow", "erf", "sin", "cos", "clamp", "clamp_",
    "clamp_min", "clamp_max", "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div",
    "div_", "maximum", "minimum",
)
# Softmax, pooling and reductions: one FLOP per input element.
_PER_INPUT = (
    "_softmax", "_safe_softmax", "_log_softmax", "max_pool1d", "max_pool2d", "max_pool3d",
    "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "mean", "sum", "amax", "amin",
)
# Resampling: one FLOP per output element (DeepSpeed's interpolate).
_RESAMPLE = ("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
             "upsample_linear1d", "upsample_bilinear2d", "upsample_bicubic2d",
             "upsample_trilinear3d")
# Data movement and selection: no arithmetic.
_MOVES = (
    "cat", "stack", "clone", "copy", "copy_", "_to_copy", "constant_pad_nd", "reflection_pad1d",
    "reflection_pad2d", "replication_pad1d", "replication_pad2d", "embedding", "index_select",
    "gather", "index", "_unsafe_index", "masked_fill", "masked_fill_", "where", "fill_",
    "zero_", "roll", "flip", "repeat", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle",
    "native_channel_shuffle", "tril", "triu", "zeros_like", "ones_like", "empty_like",
    "full_like", "lift_fresh_copy",
)


@functools.cache
def formulas() -> dict[Any, Formula]:
    """The ops netdsl counts, with their formulas: FlopCounterMode's ``custom_mapping``
    (built once: a table of ~100 ops and their overloads)."""
    table: dict[Any, Formula] = {}
    table.update(_each(_POINTWISE, _per_output))
    table.update(_each(_RESAMPLE, _per_output))
    table.update(_each(_PER_INPUT, _per_input))
    table.update(_each(_MOVES, _nothing))
    table.update(_each(["_native_batch_norm_legit_no_training"], _batch_norm_on_running_stats))
    table.update(_each(["_native_batch_norm_legit", "native_batch_norm"], _batch_norm))
    table.update(_each(["native_layer_norm"], _layer_norm))
    table.update(_each(["native_group_norm"], _group_norm))
    return table


def _each(names: Iterable[str], formula: Formula) -> dict[Any, Formula]:
    """Each op's packet (the key FlopCounterMode counts by) and its overloads (the key it
    checks before decomposing an op): an op with a formula is counted as itself, so the count
    is the same on meta, where some ops (``upsample_nearest1d.vec``) would decompose into index
    arithmetic, and on CPU, where they run as one kernel. An op a newer or older torch does not
    have is simply not in the table."""
    table: dict[Any, Formula] = {}
    for name in names:
        packet = getattr(_aten, name, None)
        if packet is not None:
            table[packet] = formula
            table.update((getattr(packet, overload), formula) for overload in packet.overloads())
    return table


def _numel(shape: Any) -> int:
    """Elements of a shape; of the first of several (an op's outputs: a pool's indices)."""
    if isinstance(shape, torch.Size):
        return math.prod(shape)
    if isinstance(shape, (tuple, list)) and shape:
        return _numel(shape[0])
    return 0  # not a tensor (a Python number): nothing computed elementwise


def _per_output(*_args: Any, out_shape: Any = None, **_kwargs: Any) -> int:
    return _numel(out_shape)


def _per_input(x_shape: Any, *_args: Any, out_shape: Any = None, **_kwargs: Any) -> int:
    return _numel(x_shape)


def _nothing(*_args: Any, **_kwargs: Any) -> int:
    return 0


def _batch_norm_on_running_stats(x_shape: Any, weight: Any, *_args: Any,
                                 out_shape: Any = None, **_kwargs: Any) -> int:
    """``(x - mean) / std``, then ``* weight + bias`` when affine (eval-mode BatchNorm)."""
    return _numel(x_shape) * (2 if weight is not None else 1)


def _batch_norm(x_shape: Any, weight: Any, _bias: Any, *args: Any, out_shape: Any = None,
                **kwargs: Any) -> int:
    """``native_batch_norm(x, w, b, mean, var, training, ...)``; ``_native_batch_norm_legit``
    has the same order, and its ``no_stats`` overload no running statistics (always
    training): the first bool is the training flag either way."""
    training = next((a for a in args if isinstance(a, bool)), kwargs.get("training", True))
    if not training:
        return _batch_norm_on_running_stats(x_shape, weight)
    return _normalised(x_shape, weight)


def _layer_norm(x_shape: Any, _normalized_shape: Any, weight: Any, *_args: Any,
                out_shape: Any = None, **_kwargs: Any) -> int:
    return _normalised(x_shape, weight)


def _group_norm(x_shape: Any, weight: Any, *_args: Any, out_shape: Any = None,
                **_kwargs: Any) -> int:
    return _normalised(x_shape, weight)


def _normalised(x_shape: Any, weight: Any) -> int:
    """Statistics from the input itself: mean, variance, normalise (4 per element), and the
    affine scale-and-shift (1 more, DeepSpeed's estimate)."""
    return _numel(x_shape) * (5 if weight is not None else 4)
