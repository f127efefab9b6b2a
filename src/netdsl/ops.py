"""Ops: the closed set of functions and tensor methods a forward may call.

Each op names the exact torch call the generated code makes and the parameters it accepts (used
to check a call's arity and keywords before any code is generated). Generated code reaches torch
only through the names bound in :data:`NAMESPACE`.
"""

from __future__ import annotations

import inspect
import math
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

from .signatures import Signature

# The globals of every generated forward. Spec names cannot start with "_", so none can shadow
# these.
NAMESPACE = {"_torch": torch, "_F": F, "_checkpoint": torch.utils.checkpoint.checkpoint,
             "_slice": slice, "_math": math}


@dataclass(frozen=True)
class Op:
    code: str  # the callable in generated code; a leading "." marks a tensor method
    # The parameters, where Python can tell them; torch's C functions cannot be introspected
    # (their arguments are checked when the shape pass runs them, at the call's span).
    signature: Signature | None

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
    return name, Op(code, Signature(f"{name}()", tuple(p.replace(annotation=Any) for p in built)))


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

# ---------------------------------------------------------------- the allowlist
# Everything below is found by introspection, but only among names listed here or public in
# torch.nn.functional: nothing that reaches Python objects, files, storage, hooks or the
# autograd engine (see DENIED, which a test keeps disjoint from what is allowed).

# torch's tensor functions: creation, indexing and joining, pointwise math, reductions,
# comparisons, linear algebra on tensors, random sampling.
TORCH_FUNCTIONS = frozenset("""
abs absolute acos acosh add addbmm addcdiv addcmul addmm addmv addr all allclose amax amin
aminmax angle any arange arccos arccosh arcsin arcsinh arctan arctan2 arctanh argmax argmin
argsort argwhere asin asinh atan atan2 atanh atleast_1d atleast_2d atleast_3d baddbmm
bernoulli bincount bitwise_and bitwise_left_shift bitwise_not bitwise_or bitwise_right_shift
bitwise_xor block_diag bmm broadcast_tensors broadcast_to bucketize cartesian_prod cat cdist
ceil chunk clamp clamp_max clamp_min clip clone column_stack combinations complex concat
concatenate conj copysign corrcoef cos cosh count_nonzero cov cross cummax cummin cumprod
cumsum deg2rad diag diag_embed diagflat diagonal diagonal_scatter diff digamma dist div divide
dot dsplit dstack einsum empty empty_like eq equal erf erfc erfinv exp exp2 expm1 eye flatten
flip fliplr flipud float_power floor floor_divide fmax fmin fmod frac full full_like gather
gcd ge greater greater_equal gt heaviside histc hsplit hstack hypot i0 igamma igammac imag
index_add index_copy index_fill index_put index_reduce index_select inner isclose isfinite
isin isinf isnan isneginf isposinf isreal kron kthvalue lcm ldexp le lerp less less_equal
lgamma linspace log log10 log1p log2 logaddexp logaddexp2 logcumsumexp logdet logical_and
logical_not logical_or logical_xor logit logspace logsumexp lt masked_fill masked_scatter
masked_select matmul max maximum mean median min minimum mm mode moveaxis movedim msort mul
multinomial multiply mv mvlgamma nan_to_num nanmean nanmedian nanquantile nansum narrow
narrow_copy ne neg negative nextafter nonzero norm normal not_equal numel ones ones_like outer
permute pinverse polar polygamma positive pow prod quantile rad2deg rand rand_like randint
randint_like randn randn_like randperm real reciprocal remainder renorm repeat_interleave
reshape resolve_conj resolve_neg roll rot90 round rsqrt scatter scatter_add scatter_reduce
searchsorted select select_scatter sgn sign signbit sin sinc sinh slice_scatter sort split
sqrt square squeeze stack std std_mean sub subtract sum swapaxes swapdims t take
take_along_dim tan tensor_split tensordot tile topk trace transpose trapezoid tril tril_indices
triu triu_indices true_divide trunc unbind unflatten unique unique_consecutive unravel_index
unsqueeze vander var var_mean vdot view_as_complex view_as_real vsplit vstack where xlogy
zeros zeros_like
""".split())

# Tensor methods that are not also torch functions.
METHOD_ONLY = frozenset("""
view view_as expand expand_as contiguous size dim ndimension type_as to float double half
bfloat16 long int bool short byte char cpu cuda new_zeros new_ones new_full new_empty
reshape_as repeat is_floating_point is_complex is_contiguous element_size nelement fill_
zero_ normal_ uniform_ bernoulli_ exponential_ geometric_ log_normal_ cauchy_ random_ copy_
detach detach_ requires_grad_ masked_fill_ unfold
""".split())

# Never callable from a spec, whatever a list above says.
DENIED = frozenset("""
numpy tolist item data_ptr storage untyped_storage storage_offset storage_type register_hook
register_post_accumulate_grad_hook backward apply_ map_ map2_ share_memory_ pin_memory set_
resize_ resize_as_ record_stream as_subclass type new_tensor retain_grad save load from_file
from_numpy frombuffer asarray set_default_device set_default_dtype manual_seed seed
""".split())

# torch.nn.functional's plumbing, not ops.
_NOT_OPS = frozenset({"has_torch_function", "has_torch_function_unary",
                      "has_torch_function_variadic", "handle_torch_function", "boolean_dispatch",
                      "assert_int_or_pair", "fractional_max_pool2d_with_indices",
                      "fractional_max_pool3d_with_indices"})


def _introspected(module: types.ModuleType, names: frozenset[str], prefix: str
                  ) -> dict[str, Op]:
    ops = {}
    for name in sorted(names - DENIED):
        func = getattr(module, name, None)
        if func is None or inspect.isclass(func) or not callable(func) \
                or not (getattr(func, "__module__", None) or "").startswith("torch"):
            continue  # typing's Optional, re-exported by torch.nn.functional
        try:
            signature: Signature | None = _untyped(Signature.of(f"{name}()", func))
        except (TypeError, ValueError):  # a C function: checked when it runs
            signature = None
        ops[name] = Op(f"{prefix}.{name}", signature)
    return ops


def _untyped(signature: Signature) -> Signature:
    """Arity and keywords only: a forward's arguments are code, their types torch's concern."""
    # Any, not empty: an unannotated flag is not then read as a bool (see signatures._implied).
    params = tuple(p.replace(annotation=Any) for p in signature.params)
    return Signature(signature.title, params, signature.reserved)


def _functional_names() -> frozenset[str]:
    return frozenset(name for name in dir(F) if not name.startswith("_") and name not in _NOT_OPS
                     and not isinstance(getattr(F, name), types.ModuleType))


# The hand-written entries above win: their signatures are the checked ones.
OPS = {**_introspected(torch, TORCH_FUNCTIONS, "_torch"),
       **_introspected(F, _functional_names(), "_F"), **OPS}

# ---------------------------------------------------------------- numbers or tensors
# sqrt, exp, ... are functions on constants too (sqrt(2 * n_layer)); on a value known when the
# forward runs, they are torch's on a tensor and math's on a size: 1.0 / sqrt(k.size(-1)) is
# nanoGPT's math.sqrt, and stays a symbolic size under torch.export.


def _either(number: Callable[..., Any], tensor: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, torch.Tensor) for a in args):
            return tensor(*args, **kwargs)
        return number(*args, **kwargs)

    return call


NUMBER_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "ceil": math.ceil,
    "floor": math.floor, "abs": abs, "min": min, "max": max, "round": round}
# By name: the helper generated code calls (``_number_sqrt``).
NUMBER_OR_TENSOR = {name: f"_number_{name}" for name in NUMBER_FUNCTIONS}
NAMESPACE.update({code: _either(NUMBER_FUNCTIONS[name], getattr(torch, name))
                  for name, code in NUMBER_OR_TENSOR.items()})
# int() and float() of a size: Python's own.
NUMBER_OR_TENSOR.update({"int": "int", "float": "float"})

# Parameters of ops that take a function (a method or a child) rather than a value.
FUNCTION_PARAMS = frozenset({"function"})



def _methods() -> frozenset[str]:
    """The torch functions that are also tensor methods, their in-place forms, and the
    method-only names; arguments are passed through to torch."""
    tensor = set(dir(torch.Tensor))
    names = {name for name in (*TORCH_FUNCTIONS, *_functional_names(), *METHOD_ONLY)
             if name in tensor}
    names |= {f"{name}_" for name in names if f"{name}_" in tensor}
    return frozenset(names - DENIED)


# Tensor methods callable as ``x.name(...)``.
METHODS = _methods()

# Methods of lists built in a forward (DenseNet's features.append(...)).
LIST_METHODS = frozenset({"append", "extend"})

# Tensor attributes readable as ``x.name``.
ATTRIBUTES = frozenset({"shape", "ndim", "T", "mT", "requires_grad", "dtype", "device",
                        "is_cuda"})

# dtypes by torch's names, usable in a forward and in tensor declarations
# (``arange(t, dtype=long, device=idx.device)``); int, float and bool are the build-time
# conversions of the same names, so those dtypes are spelt int32, float32 and x.bool().
DTYPES = {name: name for name in ("uint8", "int8", "int16", "int32", "int64", "long", "short",
                                  "half", "float16", "bfloat16", "float32", "float64", "double",
                                  "complex64", "complex128", "cfloat", "cdouble")}
# Numbers the constant language keeps out (it folds finite numbers only); a forward needs them
# for masks: masked_fill(mask, -inf).
FORWARD_CONSTANTS = {"inf": "_math.inf", "nan": "_math.nan"}


def reference() -> str:
    """docs/forward-functions.md: what a forward may call, generated from the tables above."""
    def names(items: list[str]) -> str:
        return ", ".join(f"`{name}`" for name in sorted(items))

    functional = [name for name, op in OPS.items() if op.code.startswith("_F.")]
    torch_ops = [name for name, op in OPS.items() if not op.code.startswith("_F.")]
    return "\n".join([
        "# Forward functions",
        "",
        "Generated from `netdsl/ops.py` (the allowlist itself); a test keeps it current:",
        "`python -c \"import netdsl.ops as o; print(o.reference(), end='')\" > "
        "docs/forward-functions.md`.",
        "",
        "## Functions of torch.nn.functional, called by name (`softmax(x, dim=-1)`)",
        "", names(functional), "",
        "## Functions of torch, called by name (`arange(t, device=idx.device)`)",
        "", names(torch_ops), "",
        "`sqrt`, `exp`, `log`, `ceil`, `floor`, `abs`, `min`, `max` and `round` are also "
        "functions on constants: on a tensor they are torch's, on a size math's.",
        "",
        "## Tensor methods (`x.view(b, t, c)`)",
        "", names(list(METHODS)), "",
        "## Tensor attributes (`x.shape`)",
        "", names(list(ATTRIBUTES)), "",
        "## Names",
        "", "dtypes: " + names(list(DTYPES)) + "; numbers: " + names(list(FORWARD_CONSTANTS))
        + "; `training` (the module's mode).",
        "",
        "## Never callable",
        "", names(list(DENIED)), "",
    ]) + "\n"
