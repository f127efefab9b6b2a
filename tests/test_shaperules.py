"""Shape rules against the truth: every rule compared with the real layer or op on meta.

netdsl.shaperules computes what a standard layer or op returns on the meta device instead of
running it (running it imports sympy and torch._dynamo, about a second). Its contract: an answer
is ``None`` ("run the real thing") or a meta tensor of exactly the shape and dtype the real call
returns, the input itself for in-place variants; and where the real call raises, the answer is
``None`` (a rule never turns an error into a shape).

Every layer in ``_LAYERS`` and ``_TORCHVISION`` and every op in ``_OPS`` is checked over generated
constructor arguments, inputs (ranks 0-5, sizes that do and do not fit, several dtypes, tensors
that require grad, views of such leaves, expanded tensors), train and eval mode, against the real
call on meta. A tally per rule checks that the rules do answer for a good share of the inputs
torch takes, explicit tests pin the common cases that must get an answer, and a subprocess checks
that checking LeNet and AlexNet imports neither sympy nor torch._dynamo.
"""

from __future__ import annotations

import json
import operator
import subprocess
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.ops.misc import Permute

from netdsl import shaperules

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = 80  # per rule; the whole file runs in well under a minute
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
SHARE = 0.3  # of the inputs torch takes, at least this many get an answer

SIZE = st.integers(1, 12)
DTYPES = st.sampled_from([torch.float32, torch.float32, torch.float64, torch.int64])
FLOATS = st.sampled_from([torch.float32, torch.float64, torch.float16])
# How an input tensor was made: what an in-place rule must care about.
KINDS = st.sampled_from(["plain", "plain", "plain", "leaf_grad", "nonleaf_grad", "leaf_view",
                         "expanded"])


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Spec:
    """An input tensor on meta, made afresh for each call (the rule's and the real one)."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    kind: str = "plain"

    def make(self, device: str = "meta") -> torch.Tensor:
        grad = self.dtype.is_floating_point and self.kind in ("leaf_grad", "nonleaf_grad",
                                                               "leaf_view")
        if self.kind == "expanded" and self.shape:
            base = torch.empty((1, *self.shape[1:]), dtype=self.dtype, device=device)
            return base.expand(self.shape)
        x = torch.empty(self.shape, dtype=self.dtype, device=device, requires_grad=grad)
        if grad and self.kind == "nonleaf_grad":
            return x * 1
        if grad and self.kind == "leaf_view":
            return x.view(self.shape)
        return x


def made(value: Any) -> Any:
    """``value`` with each Spec in it (also inside lists and tuples) made into a tensor."""
    if isinstance(value, Spec):
        return value.make()
    if isinstance(value, (list, tuple)):
        return type(value)(made(v) for v in value)
    return value


@st.composite
def specs(draw: st.DrawFn, ranks: Sequence[int] = (), fixed: Mapping[int, int] | None = None,
          dtypes: st.SearchStrategy[torch.dtype] = DTYPES, size: st.SearchStrategy[int] = SIZE,
          kinds: st.SearchStrategy[str] = KINDS) -> Spec:
    """An input, usually of one of ``ranks`` with the sizes ``fixed`` asks for (dim -> size);
    sometimes of any rank and sizes, sometimes with all other sizes 1 or an empty dimension."""
    fit = bool(ranks) and not rarely(draw)
    rank = draw(st.sampled_from(list(ranks))) if fit else draw(st.integers(0, 5))
    ones = rarely(draw, 10)
    sizes = [1] * rank if ones else draw(st.lists(size, min_size=rank, max_size=rank))
    if fit or draw(st.booleans()):
        for dim, wanted in (fixed or {}).items():
            if -rank <= dim < rank:
                sizes[dim] = wanted
    if rank and rarely(draw, 20):
        sizes[draw(st.integers(0, rank - 1))] = 0
    return Spec(tuple(sizes), draw(dtypes), draw(kinds))


def rarely(draw: st.DrawFn, n: int = 8) -> bool:
    """True one time in ``n``; False is hypothesis' simplest choice (the one it tries first)."""
    return draw(st.integers(0, n - 1)) == n - 1


def mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> Any:
    """A value of ``usual``, one time in eight of ``rare`` (values torch mostly refuses)."""
    return draw(rare) if rarely(draw) else draw(usual)


def n_ints(n: int, low: int, high: int) -> st.SearchStrategy[Any]:
    """An int or an n-tuple of ints, as layers take kernel sizes."""
    return st.integers(low, high) | st.tuples(*[st.integers(low, high)] * n)


# ---------------------------------------------------------------- layers


@dataclass(frozen=True)
class Child:
    """A layer to build: class and constructor arguments (children of a Sequential too)."""

    cls: Callable[..., nn.Module]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        args = [a.build() if isinstance(a, Child) else a for a in self.args]
        return self.cls(*args, **self.kwargs)


@dataclass(frozen=True)
class LayerCase:
    layer: Child
    x: Spec
    training: bool
    dtype: torch.dtype | None  # the layer moved to this dtype


@st.composite
def case(draw: st.DrawFn, cls: Callable[..., nn.Module], args: tuple[Any, ...],
         kwargs: Mapping[str, Any], x: st.SearchStrategy[Spec]) -> LayerCase:
    """The layer, its input, the mode, and the layer's dtype: usually the input's."""
    spec = draw(x)
    dtype = spec.dtype if spec.dtype.is_floating_point and not rarely(draw, 4) else draw(
        st.sampled_from([torch.float32, torch.float64]))
    return LayerCase(Child(cls, args, kwargs), spec, draw(st.booleans()),
                     None if dtype == torch.float32 else dtype)


INPLACE_ACTIVATIONS = [nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Mish]


@st.composite
def activations(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    kwargs: dict[str, Any] = {}
    if cls in (*INPLACE_ACTIVATIONS, nn.LeakyReLU, nn.ELU, nn.Hardtanh, nn.Dropout,
               nn.AlphaDropout):
        kwargs["inplace"] = draw(st.booleans())
    if cls is nn.LeakyReLU:
        kwargs["negative_slope"] = draw(st.sampled_from([0.01, 0.0, -0.5]))
    if cls is nn.ELU:
        kwargs["alpha"] = draw(st.sampled_from([1.0, 0.0, -1.0]))
    if cls is nn.Hardtanh:
        kwargs["min_val"], kwargs["max_val"] = draw(st.sampled_from([(-1.0, 1.0), (0.0, 6.0)]))
    if cls is nn.GELU:
        kwargs["approximate"] = draw(st.sampled_from(["none", "tanh", "neither"]))
    if cls is nn.Softplus:
        kwargs["beta"], kwargs["threshold"] = draw(st.sampled_from([(1.0, 20.0), (2.0, 5.0)]))
    if cls in (nn.Dropout, nn.AlphaDropout):
        kwargs["p"] = draw(st.sampled_from([0.0, 0.5, 1.0, 1.5, -0.1]))
    return draw(case(cls, (), kwargs, specs(dtypes=DTYPES | FLOATS)))


@st.composite
def softmaxes(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    dims = st.none() | st.integers(-6, 5) if rarely(draw, 5) else st.integers(-2, 1)
    dim = draw(dims)
    return draw(case(cls, (), {"dim": dim}, specs(dtypes=FLOATS | DTYPES)))


@st.composite
def prelus(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    num = draw(st.sampled_from([1, 1, 2, 3, 5]))
    return draw(case(cls, (), {"num_parameters": num}, specs((1, 2, 3, 4), {1: num})))


PADDING_MODES = st.sampled_from(["zeros"] * 5 + ["reflect", "replicate", "circular"])


@st.composite
def convs(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    n = int(cls.__name__[-2])
    transposed = "Transpose" in cls.__name__
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin = draw(st.integers(1, 6)) if rarely(draw, 10) else groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    padding = draw(n_ints(n, 0, 3) | st.sampled_from(["same", "valid"]))
    kwargs: dict[str, Any] = {
        "kernel_size": draw(n_ints(n, 1, 5)), "stride": draw(n_ints(n, 1, 3)),
        "padding": padding, "dilation": draw(n_ints(n, 1, 3)), "groups": groups,
        "bias": draw(st.booleans()), "padding_mode": draw(PADDING_MODES)}
    if transposed:
        kwargs["output_padding"] = draw(n_ints(n, 0, 2))
    return draw(case(cls, (cin, cout), kwargs, specs((n + 1, n + 2), {-n - 1: cin})))


@st.composite
def linears(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    cin, cout = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    return draw(case(cls, (cin, cout), {"bias": draw(st.booleans())}, specs((1, 2, 3), {-1: cin})))


NORM_RANKS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}


@st.composite
def batch_norms(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    channels = draw(st.integers(1, 6))
    kwargs = {"affine": draw(st.booleans()), "track_running_stats": draw(st.booleans()),
              "momentum": draw(st.sampled_from([0.1, None]))}
    x = specs(NORM_RANKS[cls], {1: channels}, DTYPES | FLOATS)
    return draw(case(cls, (channels,), kwargs, x))


@st.composite
def layer_norms(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    shape = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))
    normalized: Any = shape[0] if len(shape) == 1 and draw(st.booleans()) else tuple(shape)
    kwargs = {"elementwise_affine": draw(st.booleans()), "bias": draw(st.booleans())}
    fixed = {i - len(shape): s for i, s in enumerate(shape)}
    x = specs(tuple(range(len(shape), 6)), fixed, DTYPES | FLOATS)
    return draw(case(cls, (normalized,), kwargs, x))


@st.composite
def group_norms(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    groups = draw(st.integers(1, 3))
    channels = 4 if rarely(draw, 10) else groups * draw(st.integers(1, 3))
    x = specs((2, 3, 4, 5), {1: channels}, DTYPES | FLOATS)
    return draw(case(cls, (groups, channels), {"affine": draw(st.booleans())}, x))


@st.composite
def pools(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    n = int(cls.__name__[-2])
    kwargs: dict[str, Any] = {
        "kernel_size": draw(n_ints(n, 1, 4)),
        "stride": mostly(draw, st.none() | n_ints(n, 1, 3), n_ints(n, 0, 3)),
        "padding": mostly(draw, n_ints(n, 0, 1), n_ints(n, 0, 3)),
        "ceil_mode": draw(st.booleans())}
    if cls.__name__.startswith("Max"):
        kwargs["dilation"] = mostly(draw, st.just(1) | n_ints(n, 1, 2), n_ints(n, 1, 3))
        kwargs["return_indices"] = mostly(draw, st.just(False), st.just(True))
    else:
        kwargs["count_include_pad"] = draw(st.booleans())
        if n > 1:
            kwargs["divisor_override"] = mostly(draw, st.none() | st.integers(1, 3),
                                                st.sampled_from([0, -1]))
    x = specs((n + 1, n + 2), dtypes=DTYPES | FLOATS, size=st.integers(2, 12))
    return draw(case(cls, (), kwargs, x))


@st.composite
def adaptive_pools(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    n = int(cls.__name__[-2])
    kwargs: dict[str, Any] = {"output_size": draw(output_sizes(n))}
    if "Max" in cls.__name__:
        kwargs["return_indices"] = mostly(draw, st.just(False), st.just(True))
    return draw(case(cls, (), kwargs, specs((n + 1, n + 2), dtypes=DTYPES | FLOATS)))


def output_sizes(n: int) -> st.SearchStrategy[Any]:
    """An adaptive pool's output size: an int, or a tuple (or list) with None entries, of n or
    some other number of entries."""
    entry = st.none() | st.integers(0, 8)
    return (st.integers(0, 8) | st.tuples(*[entry] * n) | st.lists(entry, min_size=n, max_size=n)
            | st.lists(entry, min_size=0, max_size=4).map(tuple))


@st.composite
def flattens(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    dims = st.integers(-6, 5) if rarely(draw, 4) else st.integers(-2, 1)
    kwargs = {"start_dim": draw(dims), "end_dim": draw(dims)}
    return draw(case(cls, (), kwargs, specs(dtypes=DTYPES | st.just(torch.bool))))


@st.composite
def embeddings(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    num, dim = draw(st.integers(1, 10)), draw(st.integers(1, 8))
    kwargs = {"padding_idx": draw(st.none() | st.integers(-num, num - 1)),
              "max_norm": draw(st.sampled_from([None, None, 1.0]))}
    x = specs(dtypes=st.sampled_from([torch.int64, torch.int64, torch.int32, torch.float32]))
    return draw(case(cls, (num, dim), kwargs, x))


# A Sequential's children: channel counts drawn from a few, so that they fit only sometimes; the
# layers that return their input (Identity, Dropout in eval, Flatten's view) before an in-place
# one matter for tensors that require grad.
CHANNELS = st.sampled_from([1, 3, 4])
CHILDREN = st.one_of(
    st.builds(lambda i: Child(nn.ReLU, (), {"inplace": i}), st.booleans()),
    st.just(Child(nn.Identity)),
    st.just(Child(nn.Flatten)),
    st.builds(lambda a, b: Child(nn.Conv2d, (a, b, 3), {"padding": 1}), CHANNELS, CHANNELS),
    st.builds(lambda c: Child(nn.BatchNorm2d, (c,)), CHANNELS),
    st.builds(lambda i: Child(nn.Dropout, (0.5, i)), st.booleans()),
    st.just(Child(nn.MaxPool2d, (2,))),
    st.builds(lambda a, b: Child(nn.Linear, (a, b)), CHANNELS, CHANNELS),
    st.builds(lambda a, b: Child(nn.LSTM, (a, b)), CHANNELS, CHANNELS),  # returns a tuple
    st.just(Child(nn.Upsample, (), {"scale_factor": 2})),  # no rule: the chain gives up
)


@st.composite
def sequentials(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    children = () if rarely(draw) else tuple(draw(st.lists(CHILDREN, min_size=1, max_size=3)))
    x = specs((2, 3, 4), size=CHANNELS, kinds=st.sampled_from(["leaf_grad", "plain"]) | KINDS)
    return draw(case(cls, children, {}, x))


@st.composite
def recurrents(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    features, hidden = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    kwargs: dict[str, Any] = {
        "num_layers": draw(st.integers(1, 3)), "bias": draw(st.booleans()),
        "batch_first": draw(st.booleans()), "dropout": draw(st.sampled_from([0.0, 0.5])),
        "bidirectional": draw(st.booleans())}
    if cls is nn.RNN:
        kwargs["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    if cls is nn.LSTM:
        kwargs["proj_size"] = draw(st.sampled_from([0, 0, 1, 2]))
    x = specs((2, 3), {-1: features}, DTYPES | FLOATS, st.integers(1, 4))  # short sequences
    return draw(case(cls, (features, hidden), kwargs, x))


# ---------------------------------------------------------------- torchvision blocks


@st.composite
def conv_norm_activations(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    cin, cout = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kwargs = {
        "kernel_size": draw(st.integers(1, 3)), "stride": draw(st.integers(1, 2)),
        "padding": draw(st.none() | st.integers(0, 2) | st.just("same")),
        "norm_layer": draw(st.sampled_from([nn.BatchNorm2d, None])),
        "activation_layer": draw(st.sampled_from([nn.ReLU, nn.SiLU, nn.Hardswish, nn.GELU,
                                                  None])),
        "dilation": draw(st.integers(1, 2)), "inplace": draw(st.sampled_from([True, False, None])),
        "bias": draw(st.sampled_from([None, True, False]))}
    return draw(case(cls, (cin, cout), kwargs, specs((3, 4), {-3: cin})))


@st.composite
def mlps(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    cin = draw(st.integers(1, 6))
    hidden = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    kwargs = {"norm_layer": draw(st.sampled_from([None, nn.BatchNorm1d, nn.LayerNorm])),
              "activation_layer": draw(st.sampled_from([nn.ReLU, nn.GELU, nn.SiLU])),
              "inplace": draw(st.sampled_from([None, True, False])),
              "bias": draw(st.booleans()), "dropout": draw(st.sampled_from([0.0, 0.5]))}
    return draw(case(cls, (cin, hidden), kwargs, specs((1, 2, 3), {-1: cin})))


@st.composite
def permutes(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    rank = draw(st.integers(0, 5))
    dims = draw(st.permutations(range(rank)) | st.lists(st.integers(-6, 5), max_size=5))
    dims = [d - rank if d >= 0 and rarely(draw, 4) else d for d in dims]
    return draw(case(cls, (dims,), {}, specs((rank,), dtypes=DTYPES | FLOATS)))


@st.composite
def squeeze_excitations(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    channels, squeezed = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    kwargs = {"activation": draw(st.sampled_from([nn.ReLU, nn.SiLU])),
              "scale_activation": draw(st.sampled_from([nn.Sigmoid, nn.Hardsigmoid]))}
    return draw(case(cls, (channels, squeezed), kwargs, specs((3, 4), {-3: channels})))


@st.composite
def stochastic_depths(draw: st.DrawFn, cls: type[nn.Module]) -> LayerCase:
    p = draw(st.sampled_from([0.0, 0.2, 0.5, 1.0, 1.5, -0.1]))
    mode = draw(st.sampled_from(["row", "batch", "column"]))
    return draw(case(cls, (p, mode), {}, specs(dtypes=DTYPES | FLOATS)))


LayerStrategy = Callable[[type[nn.Module]], st.SearchStrategy[LayerCase]]

LAYER_CASES: dict[type[nn.Module], LayerStrategy] = {
    **dict.fromkeys([*INPLACE_ACTIVATIONS, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Sigmoid, nn.Tanh,
                     nn.Hardtanh, nn.Softplus, nn.Identity, nn.Dropout],
                    activations),
    nn.Softmax: softmaxes, nn.LogSoftmax: softmaxes, nn.PReLU: prelus,
    **dict.fromkeys([nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                     nn.ConvTranspose3d], convs),
    nn.Linear: linears,
    **dict.fromkeys([nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d], batch_norms),
    nn.LayerNorm: layer_norms, nn.GroupNorm: group_norms,
    **dict.fromkeys([nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
                     nn.AvgPool3d], pools),
    **dict.fromkeys([nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                     nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d],
                    adaptive_pools),
    nn.Flatten: flattens, nn.Embedding: embeddings, nn.Sequential: sequentials,
    **dict.fromkeys([nn.RNN, nn.GRU, nn.LSTM], recurrents),
}

TORCHVISION_CASES: dict[type[nn.Module], LayerStrategy] = {
    torchvision.ops.Conv2dNormActivation: conv_norm_activations,
    torchvision.ops.MLP: mlps,
    Permute: permutes,
    torchvision.ops.SqueezeExcitation: squeeze_excitations,
    torchvision.ops.StochasticDepth: stochastic_depths,
}


# ---------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Raised:
    """The real call raised this."""

    error: BaseException


@dataclass
class Tally:
    """How many generated inputs torch took, and for how many of them a rule answered."""

    valid: int = 0
    answered: int = 0

    def count(self, real: Any, answer: Any) -> None:
        if not isinstance(real, Raised):
            self.valid += 1
            self.answered += answer is not None
            event("answered" if answer is not None else "torch only")
        else:
            event("torch raised")

    def assert_share(self, share: float = SHARE) -> None:
        assert self.valid >= 10, f"only {self.valid} generated inputs were valid"
        assert self.answered >= share * self.valid, (
            f"rules answered {self.answered} of {self.valid} valid inputs")


def truth(call: Callable[[], Any]) -> Any:
    """What the real call returns on meta, or Raised."""
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            return call()
    except Exception as err:
        return Raised(err)


def answer_of(call: Callable[[], Any]) -> Any:
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        return call()


def signature(value: Any) -> Any:
    """Shapes and dtypes, nested as the value (an LSTM's (output, (h_n, c_n))); else the type."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), value.dtype
    if isinstance(value, (tuple, list)):
        return type(value).__name__, tuple(signature(v) for v in value)
    return type(value).__name__


def on_meta(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(on_meta(v) for v in value)
    return isinstance(value, torch.Tensor) and value.device.type == "meta"


def described(value: Any) -> str:
    if isinstance(value, Raised):
        return f"{type(value.error).__name__}: {str(value.error).splitlines()[0][:160]}"
    return str(signature(value))


def assert_agrees(answer: Any, real: Any, rule_inputs: Sequence[Any],
                  real_inputs: Sequence[Any], in_place: bool) -> None:
    """The rule's answer is None, or what torch returned: same shapes, dtypes and aliasing."""
    if isinstance(real, Raised):
        assert answer is None, f"torch raised {described(real)}; the rule said {described(answer)}"
        return
    if answer is None:
        return
    assert on_meta(answer), f"the rule said {described(answer)}"
    assert signature(answer) == signature(real), (
        f"the rule said {described(answer)}, torch returned {described(real)}")
    aliased = [i for i, value in enumerate(rule_inputs) if answer is value]
    if aliased:
        assert real is real_inputs[aliased[0]], "the rule returned its input, torch a new tensor"
    if in_place and real_inputs and real is real_inputs[0]:
        assert answer is rule_inputs[0], "in place: torch returned its input, the rule did not"


def built(layer: Child, training: bool, dtype: torch.dtype | None,
          device: str = "meta") -> nn.Module:
    """The layer on meta; an example whose constructor raises is skipped."""
    try:
        with warnings.catch_warnings(), torch.device(device):
            warnings.simplefilter("ignore")
            module = layer.build()
            if dtype is not None:
                module = module.to(dtype)
    except Exception:
        assume(False)
        raise
    return module.train(training)


def in_place(module: nn.Module) -> bool:
    """The contract's in-place variants: ``inplace=True``; StochasticDepth in eval or p = 0."""
    if isinstance(module, torchvision.ops.StochasticDepth):
        return not module.training or module.p == 0.0
    return getattr(module, "inplace", False) is True


def compare_layer(case: LayerCase, tally: Tally) -> None:
    module = built(case.layer, case.training, case.dtype)
    x, x_real = case.x.make(), case.x.make()
    answer = answer_of(lambda: shaperules.layer_output(module, (x,), {}))
    real = truth(lambda: module(x_real))
    if isinstance(real, Raised) and "cannot be called on meta tensors" in str(real.error):
        real, x_real = truth_on_cpu(case)
    tally.count(real, answer)
    assert_agrees(answer, real, [x], [x_real], in_place(module))


def truth_on_cpu(case: LayerCase) -> tuple[Any, torch.Tensor]:
    """What the layer returns on the CPU, and its input there: for a layer torch cannot run on
    meta because it reads a value (BatchNorm with momentum=None divides by its step count)."""
    module = built(case.layer, case.training, case.dtype, "cpu")
    x = case.x.make("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return module(x), x
        except Exception as err:
            return Raised(err), x


def run_layer_cases(cls: type[nn.Module], strategy: LayerStrategy) -> None:
    tally = Tally()

    @SETTINGS
    @given(strategy(cls))
    def run(case: LayerCase) -> None:
        compare_layer(case, tally)

    run()
    tally.assert_share()


def test_every_rule_is_tested() -> None:
    assert set(LAYER_CASES) == set(shaperules._LAYERS)
    assert {(c.__module__, c.__qualname__) for c in TORCHVISION_CASES} == set(
        shaperules._TORCHVISION)
    assert set(OP_CASES) == set(shaperules._OPS)


@pytest.mark.parametrize("cls", list(LAYER_CASES), ids=lambda c: c.__name__)
def test_layer_rule_agrees_with_torch(cls: type[nn.Module]) -> None:
    run_layer_cases(cls, LAYER_CASES[cls])


@pytest.mark.parametrize("cls", list(TORCHVISION_CASES), ids=lambda c: c.__name__)
def test_torchvision_rule_agrees_with_torch(cls: type[nn.Module]) -> None:
    run_layer_cases(cls, TORCHVISION_CASES[cls])


# ---------------------------------------------------------------- ops


@dataclass(frozen=True)
class OpCase:
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)


SCALARS = st.one_of(st.integers(-3, 3), st.floats(-4, 4), st.booleans(),
                    st.sampled_from([0.5, float("inf"), float("nan"), 1e300, 1j,
                                     2**64 - 1, 2**64, -(2**63), -(2**63) - 1]))


def shapes(max_rank: int = 4, min_rank: int = 0) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(st.integers(1, 5), min_size=min_rank, max_size=max_rank).map(tuple)


@st.composite
def broadcastable(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts with ``shape``: a suffix of it, with some sizes 1, maybe with
    leading 1s."""
    suffix = list(shape[len(shape) - draw(st.integers(0, len(shape))):])
    sizes = [1 if draw(st.booleans()) else s for s in suffix]
    return (1,) * draw(st.integers(0, 1)) + tuple(sizes)


@st.composite
def operands(draw: st.DrawFn, shape: tuple[int, ...], dtype: torch.dtype) -> Any:
    """A Python number, or a tensor that usually broadcasts with ``shape`` and usually has
    ``dtype``."""
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return draw(SCALARS)
    sizes = draw(shapes()) if choice == 1 else shape if choice == 2 else draw(broadcastable(shape))
    if sizes and rarely(draw, 20):
        sizes = (0, *sizes[1:])
    other = draw(DTYPES | FLOATS | st.just(torch.bool)) if rarely(draw, 4) else dtype
    return Spec(tuple(sizes), other, draw(KINDS))


@st.composite
def binaries(draw: st.DrawFn) -> OpCase:
    shape, dtype = draw(shapes()), draw(DTYPES | FLOATS)
    a, b = draw(operands(shape, dtype)), draw(operands(shape, dtype))
    kwargs = {"alpha": 2} if rarely(draw, 10) else {}
    return OpCase((a, b), kwargs)


@st.composite
def unaries(draw: st.DrawFn) -> OpCase:
    x = draw(specs(dtypes=DTYPES | FLOATS))
    kwargs = draw(st.sampled_from([{}, {}, {"inplace": True}, {"inplace": False}]))
    return OpCase((x,), kwargs)


@st.composite
def cats(draw: st.DrawFn) -> OpCase:
    shape, dtype = list(mostly(draw, shapes(5, 1), shapes(5))), draw(DTYPES | FLOATS)
    rank = len(shape)
    dim = mostly(draw, st.integers(-rank, rank - 1) if rank else st.just(0), st.integers(-6, 5))
    tensors = []
    for _ in range(mostly(draw, st.integers(1, 3), st.just(0))):
        sizes = list(shape)
        if sizes and -len(sizes) <= dim < len(sizes):
            sizes[dim] = draw(st.integers(1, 4))
        if rarely(draw, 6):
            sizes = list(draw(shapes(5)))
        other = draw(DTYPES | FLOATS) if rarely(draw, 5) else dtype
        tensors.append(Spec(tuple(sizes), other, draw(KINDS)))
    container = draw(st.sampled_from([list, tuple]))(tensors)
    how = mostly(draw, st.sampled_from(["positional", "keyword", "default"]), st.just("bool"))
    if how == "positional":
        return OpCase((container, dim))
    if how == "keyword":
        return OpCase((container,), {"dim": dim})
    if how == "bool":
        return OpCase((container, True))
    return OpCase((container,))


@st.composite
def adaptive_avg_pool2ds(draw: st.DrawFn) -> OpCase:
    x = draw(specs((3, 4), dtypes=DTYPES | FLOATS))
    return OpCase((x, draw(output_sizes(2))))


BINARY_OPS = [operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.mul,
              torch.sub]
INPLACE_OPS = [operator.iadd, operator.isub, operator.imul, operator.itruediv]
UNARY_OPS = [F.relu, torch.relu, torch.tanh, torch.sigmoid, F.gelu, F.silu, F.sigmoid, F.tanh]

OP_CASES: dict[Callable[..., Any], st.SearchStrategy[OpCase]] = {
    **dict.fromkeys(BINARY_OPS + INPLACE_OPS, binaries()),
    **dict.fromkeys(UNARY_OPS, unaries()),
    torch.cat: cats(), torch.concat: cats(), F.adaptive_avg_pool2d: adaptive_avg_pool2ds(),
}


def op_name(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__name__}"


def compare_op(func: Callable[..., Any], case: OpCase, tally: Tally) -> None:
    args, real_args = made(case.args), made(case.args)
    kwargs = dict(case.kwargs)
    answer = answer_of(lambda: shaperules.op_output(func, args, kwargs))
    real = truth(lambda: func(*real_args, **kwargs))
    tally.count(real, answer)
    inplace = func in INPLACE_OPS or bool(kwargs.get("inplace"))
    assert_agrees(answer, real, args, real_args, inplace)


@pytest.mark.parametrize("func", list(OP_CASES), ids=op_name)
def test_op_rule_agrees_with_torch(func: Callable[..., Any]) -> None:
    tally = Tally()

    @SETTINGS
    @given(OP_CASES[func])
    def run(case: OpCase) -> None:
        compare_op(func, case, tally)

    run()
    tally.assert_share()


# ---------------------------------------------------------------- broadcasting


SHAPE_LISTS = st.lists(st.lists(st.sampled_from([0, 1, 1, 2, 3]), max_size=4).map(tuple),
                       max_size=4)


@SETTINGS
@given(SHAPE_LISTS)
def test_broadcast_agrees_with_torch(shapes: list[tuple[int, ...]]) -> None:
    try:
        expected: tuple[int, ...] | None = tuple(torch.broadcast_shapes(*shapes))
    except Exception:
        expected = None
    assert shaperules.broadcast(*shapes) == expected


# ---------------------------------------------------------------- common cases get an answer


def meta(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


# name -> (layer, input, training, the output's shape)
COMMON: dict[str, tuple[Callable[[], nn.Module], torch.Tensor, bool, tuple[int, ...]]] = {
    "conv2d": (lambda: nn.Conv2d(3, 8, 3, padding=1), meta(2, 3, 32, 32), False, (2, 8, 32, 32)),
    "linear": (lambda: nn.Linear(16, 4), meta(2, 16), False, (2, 4)),
    "batch_norm_train": (lambda: nn.BatchNorm2d(8), meta(2, 8, 4, 4), True, (2, 8, 4, 4)),
    "max_pool_ceil": (lambda: nn.MaxPool2d(3, 2, ceil_mode=True), meta(2, 3, 10, 10), False,
                      (2, 3, 5, 5)),
    "adaptive_avg_pool": (lambda: nn.AdaptiveAvgPool2d((6, 6)), meta(2, 256, 13, 13), False,
                          (2, 256, 6, 6)),
    "flatten": (lambda: nn.Flatten(), meta(2, 3, 4, 5), False, (2, 60)),
    "dropout_train": (lambda: nn.Dropout(0.5), meta(2, 10), True, (2, 10)),
    "layer_norm": (lambda: nn.LayerNorm(10), meta(2, 5, 10), True, (2, 5, 10)),
    "embedding": (lambda: nn.Embedding(100, 8), meta(2, 7, dtype=torch.int64), False,
                  (2, 7, 8)),
}


@pytest.mark.parametrize("name", list(COMMON))
def test_common_layers_get_an_answer(name: str) -> None:
    build, x, training, shape = COMMON[name]
    with torch.device("meta"):
        module = build().train(training)
    answer = shaperules.layer_output(module, (x,), {})
    real = module(x)
    assert answer is not None
    assert (tuple(answer.shape), answer.dtype) == (shape, real.dtype)
    assert tuple(real.shape) == shape


def test_inplace_relu_returns_its_input() -> None:
    x = meta(2, 3)
    assert shaperules.layer_output(nn.ReLU(inplace=True), (x,), {}) is x
    assert shaperules.op_output(F.relu, (x,), {"inplace": True}) is x
    assert shaperules.op_output(operator.iadd, (x, meta(3)), {}) is x


def test_extra_arguments_get_no_answer() -> None:
    x = meta(2, 16)
    assert shaperules.layer_output(nn.Linear(16, 4), (x, x), {}) is None
    assert shaperules.layer_output(nn.Linear(16, 4), (x,), {"scale": 2}) is None
    assert shaperules.layer_output(nn.Linear(16, 4), (torch.empty(2, 16),), {}) is None


# ---------------------------------------------------------------- refused inputs, pinned


def leaf_view(*shape: int) -> torch.Tensor:
    """A view of a leaf that requires grad: torch refuses to change it in place."""
    return torch.empty(shape, device="meta", requires_grad=True).view(shape)


def leaf(*shape: int) -> torch.Tensor:
    return torch.empty(shape, device="meta", requires_grad=True)


# Inputs torch refuses (on meta) that the generated tests found rules answering: the smallest
# example of each. Each must get None, not a shape and not an exception from the rule.
REFUSED_LAYERS: dict[str, tuple[Callable[[], nn.Module], Callable[[], torch.Tensor]]] = {
    "relu_inplace_leaf_view": (lambda: nn.ReLU(inplace=True), lambda: leaf_view(2, 3)),
    "sequential_identity_relu_inplace_leaf": (
        lambda: nn.Sequential(nn.Identity(), nn.ReLU(inplace=True)), lambda: leaf(2, 3)),
    "sequential_flatten_relu_inplace_leaf": (
        lambda: nn.Sequential(nn.Flatten(), nn.ReLU(inplace=True)), lambda: leaf(2, 3)),
    "gelu_unknown_approximate": (lambda: nn.GELU(approximate="neither"), lambda: meta(2, 3)),
    "conv_transpose_padding_same": (lambda: nn.ConvTranspose1d(1, 1, 1, padding="same"),
                                    lambda: meta(1, 1, 4)),
    "batch_norm_int_input": (
        lambda: nn.BatchNorm2d(1, affine=False, track_running_stats=False),
        lambda: meta(1, 1, 1, 2, dtype=torch.int64)),
    "layer_norm_int_input": (lambda: nn.LayerNorm(4, elementwise_affine=False),
                             lambda: meta(2, 4, dtype=torch.int64)),
    "group_norm_int_input": (lambda: nn.GroupNorm(1, 3, affine=False),
                             lambda: meta(2, 3, 4, dtype=torch.int64)),
    "layer_norm_empty_shape": (lambda: nn.LayerNorm(()), lambda: meta(2, 3)),
    "group_norm_one_value_per_group": (lambda: nn.GroupNorm(1, 1), lambda: meta(1, 1)),
    "avg_pool3d_input_smaller_than_kernel": (lambda: nn.AvgPool3d(3, padding=1),
                                             lambda: meta(1, 2, 2, 2)),
    "adaptive_avg_pool1d_none": (lambda: nn.AdaptiveAvgPool1d((None,)), lambda: meta(1, 3, 5)),
    "adaptive_max_pool1d_none": (lambda: nn.AdaptiveMaxPool1d((None,)), lambda: meta(1, 3, 5)),
}


@pytest.mark.parametrize("name", list(REFUSED_LAYERS))
def test_refused_layer_inputs_get_no_answer(name: str) -> None:
    build, make_input = REFUSED_LAYERS[name]
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        module = build()
        assert isinstance(truth(lambda: module(make_input())), Raised)
        assert shaperules.layer_output(module, (make_input(),), {}) is None


def test_sequential_ending_in_an_lstm_gets_no_answer_or_its_tuple() -> None:
    with torch.device("meta"):
        module = nn.Sequential(nn.LSTM(1, 1))
    answer = shaperules.layer_output(module, (meta(2, 1),), {})
    assert answer is None or signature(answer) == signature(module(meta(2, 1)))


def test_alpha_dropout_in_place_is_not_in_place_when_training() -> None:
    # torch's alpha_dropout_ makes a new tensor (on the CPU too); the answer may not alias.
    module, x, x_real = nn.AlphaDropout(0.5, inplace=True).train(), meta(2, 3), meta(2, 3)
    assert module(x_real) is not x_real
    assert shaperules.layer_output(module, (x,), {}) is not x


REFUSED_OPS: dict[str, tuple[Callable[..., Any], Callable[[], tuple[Any, ...]],
                             dict[str, Any]]] = {
    "iadd_leaf_view": (operator.iadd, lambda: (leaf_view(3), 1.0), {}),
    "f_relu_inplace_leaf_view": (F.relu, lambda: (leaf_view(3),), {"inplace": True}),
    "add_int_too_big": (operator.add, lambda: (meta(3), 2**64), {}),
    "add_int_too_small": (operator.add, lambda: (meta(3), -(2**63) - 1), {}),
    **{f"{op_name(func)}_inplace_keyword": (func, lambda: (meta(3),), {"inplace": False})
       for func in (torch.relu, torch.tanh, torch.sigmoid, F.gelu, F.sigmoid, F.tanh)},
}


@pytest.mark.parametrize("name", list(REFUSED_OPS))
def test_refused_op_inputs_get_no_answer(name: str) -> None:
    func, make_args, kwargs = REFUSED_OPS[name]
    assert isinstance(truth(lambda: func(*make_args(), **kwargs)), Raised)
    assert shaperules.op_output(func, make_args(), kwargs) is None


# ---------------------------------------------------------------- not importing the heavy parts


def test_checking_standard_cnns_imports_neither_sympy_nor_dynamo() -> None:
    code = ("import json, sys, torch, netdsl\n"
            "errors = netdsl.check('examples/lenet.net') + netdsl.check('examples/alexnet.net')\n"
            "print(json.dumps({'errors': [str(e) for e in errors],\n"
            "                  'dynamo': 'torch._dynamo' in sys.modules,\n"
            "                  'sympy': 'sympy' in sys.modules}))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"errors": [], "dynamo": False, "sympy": False}
