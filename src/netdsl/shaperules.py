"""Shape rules: the output of a standard layer or op computed from its arguments, not run.

The shape pass runs a model on the meta device, where torch still runs Python for most ops:
decompositions and meta kernels that import sympy and ``torch._dynamo`` on their first call
(about a second in every process) and then cost 50-2000 us a call. For the layers and ops that
standard models are made of, the output's shape and dtype follow from the formulas torch's meta
kernels compute; here they are computed, and the pass makes an empty meta tensor of that shape.

A rule answers only for an input it is sure of. Anything else (another dtype, a size that would
not fit, an argument it does not know, an empty dimension) gets ``None``, and the real layer or
op runs on meta, so torch's own checks and messages are unchanged: a rule never turns an error
into a shape. Rules go by exact type (a subclass may have its own forward). tests/test_shaperules
compares every rule with the real layer or op on meta over generated arguments.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Shape = tuple[int, ...]
Sized = tuple[Shape, torch.dtype]
# A layer with several outputs (an LSTM's output, (h_n, c_n)) answers with a tuple of them.
Outputs = Sized | tuple["Outputs", ...]
LayerRule = Callable[[Any, torch.Tensor], "Outputs | None"]

_FLOAT = torch.float32


def layer_output(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> torch.Tensor | None:
    """What ``module(*args, **kwargs)`` returns on meta, if a rule knows; else ``None``."""
    rule = _rule(type(module))
    if rule is None or kwargs or len(args) != 1 or not _plain(args[0]):
        return None
    x = args[0]
    if _returns_input(module, rule):
        return x if _inplace_ok(x) and rule(module, x) == (x.shape, x.dtype) else None
    return _made(rule(module, x))


def _made(outputs: Outputs | None) -> Any:
    """Empty meta tensors of the shapes a rule gave, nested as the layer returns them."""
    if outputs is None:
        return None
    if isinstance(outputs[1], torch.dtype):
        return _empty(outputs)  # type: ignore[arg-type]
    return tuple(_made(o) for o in outputs)  # type: ignore[arg-type]


def _returns_input(module: Any, rule: LayerRule) -> bool:
    """ReLU(inplace=True) returns its input; so do Identity, and Dropout and StochasticDepth
    outside training or with p = 0."""
    if isinstance(module, nn.Identity):
        return True
    if rule is _stochastic_depth or isinstance(module, nn.Dropout):
        return not module.training or module.p == 0.0 or getattr(module, "inplace", False)
    return getattr(module, "inplace", False) is True


def op_output(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
              ) -> torch.Tensor | None:
    """What the op returns on meta, if a rule knows; else ``None``."""
    rule = _OPS.get(func)
    if rule is None:
        return None
    return rule(args, kwargs)


def broadcast(*shapes: Sequence[int]) -> Shape | None:
    """The broadcast of ``shapes`` (as torch.broadcast_shapes), or ``None`` if they do not."""
    result: list[int] = []
    for sizes in zip(*(reversed(tuple(s)) for s in _padded(shapes)), strict=True):
        wide = {d for d in sizes if d != 1}
        if len(wide) > 1:
            return None
        result.append(wide.pop() if wide else 1)
    return tuple(reversed(result))


def _padded(shapes: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    rank = max((len(s) for s in shapes), default=0)
    return [(1,) * (rank - len(s)) + tuple(s) for s in shapes]


def _plain(x: Any) -> bool:
    """A meta tensor with no empty dimension: the only input rules take."""
    return isinstance(x, torch.Tensor) and x.device.type == "meta" and 0 not in x.shape


def _inplace_ok(x: torch.Tensor) -> bool:
    """An in-place op autograd allows: not on a leaf that requires grad, nor on a view of one
    (views of anything that requires grad are left to torch)."""
    return not x.requires_grad or (not x.is_leaf and not x._is_view())


def _empty(sized: Sized | None) -> torch.Tensor | None:
    if sized is None:
        return None
    shape, dtype = sized
    return torch.empty(shape, dtype=dtype, device="meta")


def _ints(value: Any, n: int) -> tuple[int, ...] | None:
    """An int or an n-tuple of ints (as layers store kernel sizes), as an n-tuple."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * n
    if isinstance(value, (tuple, list)) and len(value) == n and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    return None


def _weighted(module: nn.Module, x: torch.Tensor) -> bool:
    """A floating input, of the dtype of every floating parameter and buffer the layer holds (a
    BatchNorm's step count is an integer)."""
    return x.dtype.is_floating_point and all(
        t.dtype == x.dtype for t in (*module.parameters(), *module.buffers())
        if t.is_floating_point())


# ---------------------------------------------------------------- layers


def _same(module: nn.Module, x: torch.Tensor) -> Sized | None:
    """Elementwise layers without parameters: any floating input, the same shape out."""
    return (tuple(x.shape), x.dtype) if x.dtype.is_floating_point else None


def _gelu(module: nn.GELU, x: torch.Tensor) -> Sized | None:
    return _same(module, x) if module.approximate in ("none", "tanh") else None


def _softmax(module: nn.Softmax | nn.LogSoftmax, x: torch.Tensor) -> Sized | None:
    dim = module.dim
    if dim is None or not -max(x.dim(), 1) <= dim < max(x.dim(), 1):
        return None
    return _same(module, x)


def _prelu(module: nn.PReLU, x: torch.Tensor) -> Sized | None:
    if not _weighted(module, x) or x.dim() == 0:
        return None
    if module.num_parameters != 1 and (x.dim() < 2 or x.shape[1] != module.num_parameters):
        return None
    return tuple(x.shape), x.dtype


def _spatial(x: torch.Tensor, n: int) -> bool:
    """``x`` is an input for an n-d layer: batched (N, C, *n) or not (C, *n)."""
    return x.dim() in (n + 1, n + 2)


def _conv(module: nn.Conv1d | nn.Conv2d | nn.Conv3d, x: torch.Tensor) -> Sized | None:
    n = len(module.kernel_size)
    if (module.padding_mode != "zeros" or not _spatial(x, n) or not _weighted(module, x)
            or x.shape[-n - 1] != module.in_channels):
        return None
    padding = module.padding
    if isinstance(padding, str):
        if padding == "same":  # stride is 1 (the constructor says so): the size is kept
            return (*x.shape[:-n - 1], module.out_channels, *x.shape[-n:]), x.dtype
        padding = (0,) * n
    sizes = [(size + 2 * p - d * (k - 1) - 1) // s + 1 for size, k, s, p, d in zip(
        x.shape[-n:], module.kernel_size, module.stride, padding, module.dilation, strict=True)]
    if min(sizes) < 1:
        return None
    return (*x.shape[:-n - 1], module.out_channels, *sizes), x.dtype


def _conv_transpose(module: nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d,
                    x: torch.Tensor) -> Sized | None:
    n = len(module.kernel_size)
    padding = _ints(module.padding, n)  # "same" is refused, by the constructor or by forward
    if (module.padding_mode != "zeros" or not _spatial(x, n) or not _weighted(module, x)
            or x.shape[-n - 1] != module.in_channels or padding is None):
        return None
    sizes = [(size - 1) * s - 2 * p + d * (k - 1) + op + 1 for size, k, s, p, d, op in zip(
        x.shape[-n:], module.kernel_size, module.stride, padding, module.dilation,
        module.output_padding, strict=True)]
    if min(sizes) < 1:
        return None
    return (*x.shape[:-n - 1], module.out_channels, *sizes), x.dtype


def _linear(module: nn.Linear, x: torch.Tensor) -> Sized | None:
    if x.dim() < 1 or x.shape[-1] != module.in_features or not _weighted(module, x):
        return None
    return (*x.shape[:-1], module.out_features), x.dtype


_NORM_RANKS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}


def _batch_norm(module: nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d,
                x: torch.Tensor) -> Sized | None:
    if (x.dim() not in _NORM_RANKS[type(module)] or x.shape[1] != module.num_features
            or not _weighted(module, x)):
        return None
    batch_stats = module.training or module.running_mean is None
    if batch_stats and math.prod(x.shape) // x.shape[1] == 1:
        return None  # torch: "Expected more than 1 value per channel when training"
    return tuple(x.shape), x.dtype


def _layer_norm(module: nn.LayerNorm, x: torch.Tensor) -> Sized | None:
    shape = tuple(module.normalized_shape)
    if not shape or x.dim() < len(shape) or tuple(x.shape[x.dim() - len(shape):]) != shape:
        return None
    return (tuple(x.shape), x.dtype) if _weighted(module, x) else None


def _group_norm(module: nn.GroupNorm, x: torch.Tensor) -> Sized | None:
    if x.dim() < 2 or x.shape[1] != module.num_channels or not _weighted(module, x):
        return None
    if math.prod(x.shape) // module.num_groups == 1:  # one value per group: torch refuses it
        return None
    return tuple(x.shape), x.dtype


def _pooled(size: int, k: int, pad: int, stride: int, dilation: int, ceil: bool) -> int:
    """torch's pooling_output_shape."""
    out = (size + 2 * pad - dilation * (k - 1) - 1 + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pool(module: Any, x: torch.Tensor, n: int, dilated: bool) -> Sized | None:
    kernel = _ints(module.kernel_size, n)
    stride = _ints(module.stride if module.stride is not None else module.kernel_size, n)
    padding = _ints(module.padding, n)
    dilation = _ints(module.dilation, n) if dilated else (1,) * n
    if (kernel is None or stride is None or padding is None or dilation is None
            or not _spatial(x, n) or not x.dtype.is_floating_point):
        return None
    for k, s, p, d in zip(kernel, stride, padding, dilation, strict=True):
        if k < 1 or s < 1 or d < 1 or p < 0 or p > k // 2:  # torch's own bound on padding
            return None
    if n == 3 and not dilated and min(s - k for s, k in zip(x.shape[-3:], kernel, strict=True)) < 0:
        return None  # avg_pool3d wants the input, unpadded, at least the kernel
    sizes = [_pooled(size, k, p, s, d, module.ceil_mode) for size, k, s, p, d in zip(
        x.shape[-n:], kernel, stride, padding, dilation, strict=True)]
    if min(sizes) < 1:
        return None
    return (*x.shape[:-n], *sizes), x.dtype


def _max_pool(n: int) -> LayerRule:
    def rule(module: Any, x: torch.Tensor) -> Sized | None:
        return None if module.return_indices else _pool(module, x, n, dilated=True)
    return rule


def _avg_pool(n: int) -> LayerRule:
    def rule(module: Any, x: torch.Tensor) -> Sized | None:
        divisor = getattr(module, "divisor_override", None)
        if divisor is not None and (not isinstance(divisor, int) or divisor < 1):
            return None
        return _pool(module, x, n, dilated=False)
    return rule


def _adaptive(x: torch.Tensor, output_size: Any, n: int) -> Sized | None:
    if isinstance(output_size, int) and not isinstance(output_size, bool):
        output_size = (output_size,) * n
    if (not isinstance(output_size, (tuple, list)) or len(output_size) != n
            or not _spatial(x, n) or not x.dtype.is_floating_point):
        return None
    if n == 1 and None in output_size:  # only the 2-d and 3-d pools keep a size with None
        return None
    sizes = [size if o is None else o for o, size in zip(output_size, x.shape[-n:], strict=True)]
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
        return None
    return (*x.shape[:-n], *sizes), x.dtype


def _adaptive_pool(n: int) -> LayerRule:
    def rule(module: Any, x: torch.Tensor) -> Sized | None:
        if getattr(module, "return_indices", False):
            return None
        return _adaptive(x, module.output_size, n)
    return rule


def _flatten(module: nn.Flatten, x: torch.Tensor) -> Sized | None:
    rank = x.dim()
    start, end = module.start_dim, module.end_dim
    if rank == 0 or not (-rank <= start < rank and -rank <= end < rank):
        return None
    start, end = start % rank, end % rank
    if start > end:
        return None
    shape = tuple(x.shape)
    return (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:]), x.dtype


def _embedding(module: nn.Embedding, x: torch.Tensor) -> Sized | None:
    if x.dtype not in (torch.int64, torch.int32) or module.max_norm is not None:
        return None
    return (*x.shape, module.embedding_dim), module.weight.dtype


def _chain(layers: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor | None:
    """The layers one after the other, where each answers with one tensor. Not for an input
    that requires grad: which op makes a view and which returns its input decides what an
    in-place layer later may do to it, and only torch follows that."""
    if x.requires_grad:
        return None
    value: Any = x
    for layer in layers:
        value = layer_output(layer, (value,), {})
        if not isinstance(value, torch.Tensor):
            return None
    return value


def _sized(value: torch.Tensor | None) -> Sized | None:
    return None if value is None else (tuple(value.shape), value.dtype)


def _recurrent(module: nn.RNN | nn.GRU | nn.LSTM, x: torch.Tensor) -> Outputs | None:
    """(output, h_n), or an LSTM's (output, (h_n, c_n)), for an input without a hidden state."""
    if x.dim() not in (2, 3) or x.shape[-1] != module.input_size or not _weighted(module, x):
        return None
    directions = 2 if module.bidirectional else 1
    width = module.proj_size or module.hidden_size
    out = (*x.shape[:-1], directions * width)
    batch = () if x.dim() == 2 else (x.shape[0 if module.batch_first else 1],)
    layers = directions * module.num_layers
    h_n = ((layers, *batch, width), x.dtype)
    if isinstance(module, nn.LSTM):
        return (out, x.dtype), (h_n, ((layers, *batch, module.hidden_size), x.dtype))
    return (out, x.dtype), h_n


def _sequence(module: nn.Sequential, x: torch.Tensor) -> Sized | None:
    """A torchvision block that is a Sequential (Conv2dNormActivation, MLP): its layers."""
    return _sized(_chain(list(module), x))


def _squeeze_excitation(module: Any, x: torch.Tensor) -> Sized | None:
    """torchvision's SqueezeExcitation: ``input * scale(input)``."""
    scale = _chain([module.avgpool, module.fc1, module.activation, module.fc2,
                    module.scale_activation], x)
    return _sized(_binary((scale, x), {}) if scale is not None else None)


def _permute(module: Any, x: torch.Tensor) -> Sized | None:
    dims = list(module.dims)
    rank = x.dim()
    if len(dims) != rank or not all(isinstance(d, int) and -rank <= d < rank for d in dims):
        return None
    order = [d % rank for d in dims]
    if sorted(order) != list(range(rank)):
        return None
    return tuple(x.shape[d] for d in order), x.dtype


def _stochastic_depth(module: Any, x: torch.Tensor) -> Sized | None:
    if not 0.0 <= module.p <= 1.0 or module.mode not in ("row", "batch") or x.dim() == 0:
        return None
    return _same(module, x)


_LAYERS: dict[type, LayerRule] = {
    **dict.fromkeys([nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
                     nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Mish, nn.Softplus,
                     nn.Identity, nn.Dropout], _same),
    nn.GELU: _gelu,
    nn.Softmax: _softmax, nn.LogSoftmax: _softmax, nn.PReLU: _prelu,
    nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv,
    nn.ConvTranspose1d: _conv_transpose, nn.ConvTranspose2d: _conv_transpose,
    nn.ConvTranspose3d: _conv_transpose,
    nn.Linear: _linear,
    nn.BatchNorm1d: _batch_norm, nn.BatchNorm2d: _batch_norm, nn.BatchNorm3d: _batch_norm,
    nn.LayerNorm: _layer_norm, nn.GroupNorm: _group_norm,
    nn.MaxPool1d: _max_pool(1), nn.MaxPool2d: _max_pool(2), nn.MaxPool3d: _max_pool(3),
    nn.AvgPool1d: _avg_pool(1), nn.AvgPool2d: _avg_pool(2), nn.AvgPool3d: _avg_pool(3),
    nn.AdaptiveAvgPool1d: _adaptive_pool(1), nn.AdaptiveAvgPool2d: _adaptive_pool(2),
    nn.AdaptiveAvgPool3d: _adaptive_pool(3), nn.AdaptiveMaxPool1d: _adaptive_pool(1),
    nn.AdaptiveMaxPool2d: _adaptive_pool(2), nn.AdaptiveMaxPool3d: _adaptive_pool(3),
    nn.Flatten: _flatten, nn.Embedding: _embedding, nn.Sequential: _sequence,
    nn.RNN: _recurrent, nn.GRU: _recurrent, nn.LSTM: _recurrent,
}


# torchvision's blocks, by where they are defined: importing torchvision costs ~1 s (it imports
# torch._dynamo), so it is not imported for them.
_TORCHVISION: dict[tuple[str, str], LayerRule] = {
    ("torchvision.ops.misc", "Conv2dNormActivation"): _sequence,
    ("torchvision.ops.misc", "MLP"): _sequence,
    ("torchvision.ops.misc", "Permute"): _permute,
    ("torchvision.ops.misc", "SqueezeExcitation"): _squeeze_excitation,
    ("torchvision.ops.stochastic_depth", "StochasticDepth"): _stochastic_depth,
}


def _rule(cls: type) -> LayerRule | None:
    return _LAYERS.get(cls) or _TORCHVISION.get((cls.__module__, cls.__qualname__))


# ---------------------------------------------------------------- ops


_INT64 = 1 << 63


def _tensors_alike(values: Sequence[Any]) -> torch.dtype | None:
    """The one floating dtype of the tensors among ``values``, the rest being Python numbers
    (ints that fit in 64 bits)."""
    dtypes = set()
    for value in values:
        if isinstance(value, torch.Tensor):
            if not _plain(value):
                return None
            dtypes.add(value.dtype)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        elif isinstance(value, int) and not -_INT64 <= value < _INT64:
            return None
    if len(dtypes) != 1:
        return None
    (dtype,) = dtypes
    return dtype if dtype.is_floating_point else None


def _binary(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    if kwargs or len(args) != 2:
        return None
    dtype = _tensors_alike(args)
    shape = broadcast(*(a.shape for a in args if isinstance(a, torch.Tensor)))
    return None if dtype is None or shape is None else _empty((shape, dtype))


def _inplace_binary(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    """``a += b``: ``a`` itself, when ``b`` broadcasts to it."""
    out = _binary(args, kwargs)
    a = args[0] if args else None
    if out is None or not isinstance(a, torch.Tensor) or out.shape != a.shape:
        return None
    return a if _inplace_ok(a) else None


def _unary(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    """tanh, sigmoid, gelu (no arguments but the tensor)."""
    return _unary_inplace(args, kwargs) if not kwargs else None


def _unary_inplace(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    """F.relu, F.silu: ``inplace=True`` returns the input."""
    if len(args) != 1 or set(kwargs) - {"inplace"} or not _plain(args[0]):
        return None
    x = args[0]
    if not x.dtype.is_floating_point:
        return None
    if kwargs.get("inplace", False):
        return x if _inplace_ok(x) else None
    return _empty((tuple(x.shape), x.dtype))


def _cat(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    if not args or len(args) > 2 or set(kwargs) - {"dim"} or (len(args) == 2 and kwargs):
        return None
    tensors, dim = args[0], args[1] if len(args) == 2 else kwargs.get("dim", 0)
    if (not isinstance(tensors, (tuple, list)) or not tensors
            or not isinstance(dim, int) or isinstance(dim, bool)):
        return None
    if not all(_plain(t) for t in tensors) or len({(t.dim(), t.dtype) for t in tensors}) != 1:
        return None
    rank = tensors[0].dim()
    if rank == 0 or not -rank <= dim < rank:
        return None
    dim %= rank
    others = {tuple(t.shape[:dim]) + tuple(t.shape[dim + 1:]) for t in tensors}
    if len(others) != 1:
        return None
    shape = list(tensors[0].shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return _empty((tuple(shape), tensors[0].dtype))


def _adaptive_avg_pool2d(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    if len(args) != 2 or kwargs or not _plain(args[0]):
        return None
    return _empty(_adaptive(args[0], args[1], 2))


_OPS: dict[Callable[..., Any], Callable[[tuple[Any, ...], dict[str, Any]],
                                          torch.Tensor | None]] = {
    **dict.fromkeys([operator.add, operator.sub, operator.mul, operator.truediv, torch.add,
                     torch.mul, torch.sub], _binary),
    **dict.fromkeys([operator.iadd, operator.isub, operator.imul, operator.itruediv],
                    _inplace_binary),
    **dict.fromkeys([torch.relu, torch.tanh, torch.sigmoid, F.gelu, F.sigmoid, F.tanh], _unary),
    F.relu: _unary_inplace, F.silu: _unary_inplace,
    torch.cat: _cat, torch.concat: _cat, F.adaptive_avg_pool2d: _adaptive_avg_pool2d,
}
