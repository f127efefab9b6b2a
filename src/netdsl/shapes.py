"""Shapes: a plan + declared inputs -> inferred input dimensions, located shape errors, a trace.

Runs the model once on the meta device before the real build: every layer is a :class:`Probe`
that, on its first call, fills in an omitted input dimension from the shape it receives, builds
the real layer on meta and works out its output (by a shape rule where one answers, see
netdsl.shaperules, else by running it); forwards run in their instrumented form, so a failing
``cat`` or ``+`` is reported at its own span. Symbolic dimensions (``N``) travel as distinctive
sizes and are named again in messages. Nothing is allocated and torch's random generator is not
touched; the real build afterwards constructs every layer in declaration order, as written or
filled in.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import codes, shaperules, work
from .build import add_tensor, build_layer
from .errors import NetDSLError, fail, first_line
from .evaluate import arithmetic
from .forward import TRACER, Site
from .infer import InputDim, input_dim
from .library import MAX_INT_BITS
from .plan import (
    DictPlan,
    InputPlan,
    LayerPlan,
    ListPlan,
    ModelPlan,
    Plan,
    SequentialPlan,
    layers_of,
)
from .registry import layer_signature

# Symbolic dimensions run as these sizes: large enough for any kernel and distinct, so that each
# can be named again in messages. The forward runs once more with the second set: a size that
# changes between the two depends on a symbolic dimension (``flatten`` of ``[N, C, 4]``), so it
# cannot be inferred, and a real width that happens to equal a sentinel is not mistaken for one.
SENTINELS = (1009, 1013, 1019, 1021, 1031, 1033, 1039, 1049, 1051, 1061)
SECOND_SENTINELS = (2003, 2011, 2017, 2027, 2029, 2039, 2053, 2063, 2069, 2081)
# A layer's call on meta costs what a few dozen ops on sizes cost; counted so, a forward that
# loops over a list inside loops over it runs out of steps in a few seconds, while the 1 MiB
# spec of 45,583 layers (two passes: 455,830 steps) stays well inside the default budget.
LAYER_CALL_STEPS = 5
MAX_KEY_RUNS = 64  # forwards run once per combination of dict keys, up to this many


@dataclass
class LayerCall:
    """A layer as the trace saw it: its input and output shapes on the first call."""

    path: str
    plan: LayerPlan
    inputs: list[tuple[int, ...]]
    output: tuple[int, ...] | None
    # The same output with the second set of sentinel sizes (see SECOND_SENTINELS).
    second: tuple[int, ...] | None = None


@dataclass
class Trace:
    calls: dict[int, LayerCall] = field(default_factory=dict)  # by id(plan)
    outputs: list[Any] = field(default_factory=list)  # one per run
    symbols: dict[int, str] = field(default_factory=dict)  # size -> name, this pass
    first_symbols: dict[int, str] = field(default_factory=dict)
    second_symbols: dict[int, str] = field(default_factory=dict)
    second_pass: bool = False
    errors: list[NetDSLError] = field(default_factory=list)
    labels: dict[int, tuple[str, torch.Tensor]] = field(default_factory=dict)
    activation_bytes: int = 0  # of every tensor the forward made, on meta
    # Output shapes of layers already run, by layer call and input: repeated layers (a
    # 10,000-layer stack) are run on meta once, not once each.
    memo: dict[tuple[Any, ...], tuple[tuple[int, ...], torch.dtype]] = field(
        default_factory=dict)

    def dims_text(self, first: Sequence[int], second: Sequence[int] | None) -> str:
        """A shape from both passes: symbols by name, sizes that follow a symbol as formulas."""
        if second is None or len(second) != len(first):
            return self.shape_text(first)
        return "[" + ", ".join(self._dim(a, b) for a, b in zip(first, second, strict=True)) + "]"

    def _dim(self, a: int, b: int) -> str:
        if a == b:
            return str(a)
        if a in self.first_symbols and self.second_symbols.get(b) == self.first_symbols[a]:
            return self.first_symbols[a]
        if len(self.first_symbols) == 1:  # one symbol s: try a * s + c
            (sa, name), (sb, _) = next(iter(self.first_symbols.items())), \
                next(iter(self.second_symbols.items()))
            k, rem = divmod(b - a, sb - sa)
            if rem == 0:
                c = a - k * sa
                scaled = name if k == 1 else f"{k}*{name}"
                return scaled if c == 0 else f"{scaled}{c:+d}"
        return "?"

    def shape_text(self, shape: Sequence[int]) -> str:
        return "[" + ", ".join(self.symbols.get(d, str(d)) for d in shape) + "]"

    def described(self, value: Any) -> str:
        """``features -> flatten: [N, 400]``: where a tensor came from, and its shape."""
        if isinstance(value, (list, tuple)):
            return ", ".join(self.described(v) for v in value)
        if not isinstance(value, torch.Tensor):
            return repr(value)
        label = self.labels.get(id(value), ("", value))[0]
        shape = self.shape_text(value.shape)
        if value.dtype != torch.float32:  # said only where it is news
            shape += f" {str(value.dtype).removeprefix('torch.')}"
        return f"{label}: {shape}" if label else shape

    def label(self, value: Any, text: str) -> None:
        if isinstance(value, torch.Tensor):
            if id(value) not in self.labels:  # what a real run would hold, for probe's budget
                # (from the shape: each tensor method is a call through torch's device mode)
                self.activation_bytes += math.prod(value.shape) * value.dtype.itemsize
            # Keep the last two steps: "features -> flatten" says enough. The tensor is kept
            # alive with its label, so that its id is not reused.
            self.labels[id(value)] = (" -> ".join(text.split(" -> ")[-2:]), value)

    def source(self, args: Sequence[Any]) -> str:
        """The label of the first tensor among ``args`` (looking into lists)."""
        for arg in args:
            if isinstance(arg, (list, tuple)):
                found = self.source(arg)
                if found:
                    return found
            elif isinstance(arg, torch.Tensor):
                return self.labels.get(id(arg), ("", arg))[0]
        return ""

    def names(self, message: str) -> str:
        """torch's message with the sentinel sizes shown as their symbols."""
        for size, name in self.symbols.items():
            message = re.sub(rf"\b{size}\b", name, message)
        return message


def _recurrent(layer: nn.RNNBase, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """An RNN on one time step, its output widened back to the sequence's length (where its
    shape rule does not answer: a hidden state given, another dtype).

    On meta an RNN still loops over time in Python, once per layer and direction: a symbolic
    sequence length of ~1000 (an unbatched ``[N, 4]`` input) would cost seconds per layer. No
    output size but the time dimension's depends on the length, so one step tells the rest.
    """
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
        return layer(*args, **kwargs)
    time_dim = 1 if layer.batch_first and x.dim() == 3 else 0
    steps = x.shape[time_dim]
    if steps <= 1:
        return layer(*args, **kwargs)
    out, hidden = layer(x.narrow(time_dim, 0, 1), *args[1:], **kwargs)
    shape = list(out.shape)
    shape[time_dim] = steps
    return torch.empty(shape, dtype=out.dtype, device=out.device), hidden


class Probe(nn.Module):
    """Stands in for one layer during the shape pass."""

    layer: nn.Module | None  # built on the first call that no shape rule answers

    def __init__(self, plan: LayerPlan, trace: Trace):
        super().__init__()
        # Plain attributes, set past nn.Module.__setattr__ (which looks each name up in five
        # dicts first): a 45,000-layer spec makes 45,000 probes.
        self.__dict__.update(plan=plan, trace=trace, layer=None, path="", _call=None,
                             _input_dim=_input_dim_of(plan.cls, plan.name))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        work.spend(LAYER_CALL_STEPS, self.plan.span)
        shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
        self._check_input_dim(args)
        key = self._memo_key(args, kwargs, shapes)
        if key is not None and key in self.trace.memo:
            shape, dtype = self.trace.memo[key]
            out: Any = torch.empty(shape, dtype=dtype)
        else:
            out = self._run(args, kwargs)
            if key is not None and isinstance(out, torch.Tensor):
                self.trace.memo[key] = (tuple(out.shape), out.dtype)
        self._record(shapes, out)
        return out

    def _memo_key(self, args: tuple[Any, ...], kwargs: dict[str, Any],
                  shapes: list[tuple[int, ...]]) -> tuple[Any, ...] | None:
        if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
            return None
        if self._call is None:  # after the first call's _check_input_dim filled in the plan
            self.__dict__["_call"] = (self.plan.cls, self.plan.call_text())
        return (*self._call, shapes[0], args[0].dtype, self.training)

    def _run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.layer is None:
            self.layer = build_layer(self.plan)
        try:
            computed = shaperules.layer_output(self.layer, args, kwargs)
            if computed is not None:
                return computed
            if isinstance(self.layer, nn.RNNBase):
                return _recurrent(self.layer, args, kwargs)
            return self.layer(*args, **kwargs)
        except NetDSLError:
            raise
        except Exception as err:  # torch's own shape checks
            received = ", ".join(self.trace.described(a) for a in args)
            fail(f"{self.plan.call_text()} cannot take its input ({received}): "
                 f"{self.trace.names(first_line(err))}{_dtype_hint(err, args)}",
                 self.plan.span, codes.SHAPE)

    def _record(self, shapes: list[tuple[int, ...]], out: Any) -> None:
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        output = tuple(first.shape) if isinstance(first, torch.Tensor) else None
        call = self.trace.calls.get(id(self.plan))
        if call is None:
            call = self.trace.calls[id(self.plan)] = LayerCall(self.path, self.plan, shapes,
                                                               output)
        if self.trace.second_pass and call.second is None:
            call.second = output
        self.trace.label(out, self.path or self.plan.name)

    def _check_input_dim(self, args: tuple[Any, ...]) -> None:
        found = self._input_dim
        if found is None or not args or not isinstance(args[0], torch.Tensor):
            return
        param, position = found
        received = param.read(tuple(args[0].shape))
        if received is None:
            fail(f"{self.plan.call_text()} needs an input with a dimension {param.dim}, but "
                 f"receives {self.trace.described(args[0])}", self.plan.span, codes.SHAPE)
        if self.plan.infer is not None and self.plan.inferred is None:
            self._fill(param, received, args[0])
            return
        given = _given(self.plan, param, position)
        expected = given[0] if isinstance(given, (tuple, list)) and given else given
        if expected == received or param.param == "normalized_shape":
            return
        if self.trace.second_pass:  # it matched with the first sizes: it follows a symbol
            fail(self._symbolic(param, received, args[0]), self.plan.span, codes.SHAPE)
        if self.plan.inferred is not None:
            fail(f"{self.plan.call_text()} was inferred with {param.param}={expected} from an "
                 f"earlier call, but now receives {self.trace.described(args[0])}",
                 self.plan.span, codes.SHAPE)
        # Report it, then go on as if the spec were right, so later mistakes show too.
        self.trace.errors.append(NetDSLError(
            self._mismatch(param, expected, received, args[0]), self.plan.span, code=codes.SHAPE))
        if self.layer is None:
            self.layer = build_layer(_corrected(self.plan, param, received))

    def _fill(self, param: InputDim, received: int, value: torch.Tensor) -> None:
        # A size that differs in the second pass follows a symbol; caught there, see above.
        self.plan.fill(received)

    def _symbolic(self, param: InputDim, received: int, value: torch.Tensor) -> str:
        shape = [self.trace.symbols.get(d, str(d)) for d in value.shape]
        if received not in self.trace.symbols:
            shape[param.dim] = "?"  # a size computed from symbols: no single number to show
        label = self.trace.labels.get(id(value), ("", value))[0]
        received_text = f"{label}: [{', '.join(shape)}]" if label else f"[{', '.join(shape)}]"
        verb = "infer" if self.plan.infer is not None else "check"
        why = "is symbolic" if received in self.trace.symbols else \
            "depends on a symbolic dimension"
        return (f"cannot {verb} {param.param} of {self.plan.written_text()}: it receives "
                f"{received_text}, where that dimension {why}")

    def _mismatch(self, param: InputDim, expected: Any, received: int,
                  value: torch.Tensor) -> str:
        call = self.plan.call_text()
        if param.dim == 1 and _channels_last(tuple(value.shape), expected):
            return (f"{call} expects {expected} {param.what}, but receives {received} "
                    f"({self.trace.described(value)}): the input looks channels-last "
                    f"(N, H, W, C); torch's layers take channels first, [N, C, H, W]: declare "
                    f"the input so and permute the data (x.permute(0, 3, 1, 2))")
        return (f"{call} expects {expected} {param.what}, but receives {received} "
                f"({self.trace.described(value)}); write "
                f"{_corrected(self.plan, param, received).call_text()}"
                f" or leave {param.param} out to infer it")


@functools.cache
def _input_dim_of(cls: type, name: str) -> tuple[InputDim, int] | None:
    return input_dim(layer_signature(cls, name))


def _channels_last(shape: tuple[int, ...], expected: Any) -> bool:
    """A 4-d input whose last size is the channel count the layer expects."""
    return len(shape) == 4 and shape[-1] == expected and shape[1] != expected


def _dtype_hint(err: Exception, args: tuple[Any, ...]) -> str:
    """An index tensor declared as float (the default): say how to declare its dtype."""
    floats = [a for a in args if isinstance(a, torch.Tensor) and a.dtype == torch.float32]
    if "scalar type" not in str(err) or not floats:
        return ""
    return (" (it is float32, the dtype of an input that declares none: declare the dtype, "
            "as in input idx: [B, T] long)")


def _given(plan: LayerPlan, param: InputDim, position: int) -> Any:
    if param.param in plan.kwargs:
        return plan.kwargs[param.param]
    return plan.args[position] if position < len(plan.args) else None


def _corrected(plan: LayerPlan, param: InputDim, received: int) -> LayerPlan:
    fixed = LayerPlan(plan.cls, plan.name, list(plan.args), dict(plan.kwargs), plan.span)
    if param.param in fixed.kwargs:
        fixed.kwargs[param.param] = received
    else:
        position = next(i for i, p in enumerate(layer_signature(plan.cls, plan.name).params)
                        if p.name == param.param)
        fixed.args[position] = received
    return fixed



# ---------------------------------------------------------------- the probe tree


def probe_tree(plan: Plan, trace: Trace) -> nn.Module:
    """The plan as modules, with a Probe for every layer and instrumented forwards."""
    if isinstance(plan, LayerPlan):
        return Probe(plan, trace)
    if isinstance(plan, SequentialPlan):  # named as built, so that paths match the model's
        items = [(name, probe_tree(p, trace)) for name, p in plan.items]
        if items and items[0][0] is not None:
            return nn.Sequential(OrderedDict(items))  # type: ignore[arg-type]
        return nn.Sequential(*(module for _, module in items))
    if isinstance(plan, ListPlan):
        return nn.ModuleList([probe_tree(p, trace) for p in plan.items])
    if isinstance(plan, DictPlan):
        return nn.ModuleDict({key: probe_tree(p, trace) for key, p in plan.items})
    cls = type(plan.name, (nn.Module,), {**plan.namespace(checked=True),
                                         "_netdsl_span": plan.span})
    module = cls()
    for name, child in plan.children:
        setattr(module, name, probe_tree(child, trace))
    with torch.device("meta"):
        for tensor in plan.tensors:
            add_tensor(module, tensor)
    return module


def _named(module: nn.Module) -> None:
    """Give each probe its path; a sequential's named children keep their names."""
    for path, sub in module.named_modules():
        if isinstance(sub, Probe):
            sub.path = path


# ---------------------------------------------------------------- running

_ARITHMETIC = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide", "//": "divide",
               "%": "divide"}


def _check_broadcast(trace: Trace, site: Site, args: tuple[Any, ...]) -> None:
    """Residual adds and friends: say which shapes fail to broadcast, in the spec's terms."""
    if site.label not in _ARITHMETIC or len(args) != 2:
        return
    left, right = args
    if not (isinstance(left, torch.Tensor) and isinstance(right, torch.Tensor)):
        return
    if shaperules.broadcast(left.shape, right.shape) is None:
        fail(f"cannot {_ARITHMETIC[site.label]} ({trace.described(left)}) and "
             f"({trace.described(right)}): the shapes do not broadcast"
             f"{_bound_hint(trace, left, right)}", site.span, codes.SHAPE)



def _bound_hint(trace: Trace, *values: torch.Tensor) -> str:
    """A symbol meets a fixed size (a mask sliced by T): the symbol may need a bound."""
    symbolic = [v for v in values if any(d in trace.symbols for d in v.shape)]
    if not symbolic or len(symbolic) == len(values):
        return ""
    return ("; a symbolic dimension is checked at sizes near 1000 (and 2000): if it is at "
            "most a size, declare it so, as in input idx: [B, T <= block_size]")


_NUMBER_OPS = {"+", "-", "*", "/", "//", "%", "**"}


def _is_size(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _site_call(trace: Trace, site: Site, func: Callable[..., Any], args: tuple[Any, ...],
          kwargs: dict[str, Any]) -> Any:
    computed = shaperules.op_output(func, args, kwargs)
    if computed is not None:
        return computed
    try:
        return func(*args, **kwargs)
    except NetDSLError:
        raise
    except Exception as err:
        if site.label == "assert":  # the spec's own message
            fail(trace.names(first_line(err)), site.span, codes.SHAPE)
        shown = [a for a in args if isinstance(a, (torch.Tensor, list))] or list(args)
        received = trace.names(trace.described(shown))
        fail(f"{site.label} cannot take its inputs ({received}): "
             f"{trace.names(first_line(err))}", site.span, codes.SHAPE)


@contextmanager
def _tracing(trace: Trace) -> Iterator[None]:
    def at(site: Site, func: Callable[..., Any], args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> Any:
        work.spend(1, site.span)  # a forward's loops run their bodies' ops: each op is a step
        _check_broadcast(trace, site, args)
        if site.label in _NUMBER_OPS and len(args) == 2 and all(map(_is_size, args)):
            # Sizes are Python numbers: bounded as constants are, before Python computes
            # x.shape[1] ** 10 ** 12.
            out = arithmetic(site.label, args[0], args[1], site.span, work.current())
        else:
            out = _site_call(trace, site, func, args, kwargs)
        if isinstance(out, int) and out.bit_length() > MAX_INT_BITS:
            fail("arithmetic error: result is too large", site.span, codes.VALUE)
        source = trace.source(args)
        trace.label(out, f"{source} -> {site.label}" if source else site.label)
        return out

    token = TRACER.set(at)
    try:
        with torch.device("meta"):
            yield
    finally:
        TRACER.reset(token)


def trace_shapes(plan: ModelPlan, inputs: list[InputPlan] | None = None) -> Trace:
    """Run the shape pass; fills in omitted input dimensions of ``plan`` in place."""
    inputs = plan.inputs if inputs is None else inputs
    trace = Trace()
    if inputs:
        names = sorted({d for i in inputs for d in (i.shape or []) if isinstance(d, str)})
        if len(names) > len(SENTINELS):
            fail(f"too many symbolic dimensions (at most {len(SENTINELS)})",
                 inputs[0].span, codes.LIMIT)
        first, second = _sentinels(names, _bounds(inputs))
        trace.first_symbols = trace.symbols = first
        trace.second_symbols = second
        _run(plan, inputs, trace)
    if not trace.errors:  # after a failed run, layers it did not reach say nothing new
        _report_uninferred(plan, trace, bool(inputs))
    return trace


def _bounds(inputs: list[InputPlan]) -> dict[str, int]:
    bounds: dict[str, int] = {}
    for item in inputs:
        for name, bound in item.bounds.items():
            bounds[name] = min(bound, bounds.get(name, bound))
    return bounds


def _sentinels(names: list[str], bounds: dict[str, int]
               ) -> tuple[dict[int, str], dict[int, str]]:
    """The sizes each symbol runs as, in the first and the second pass. A symbol with a bound
    (``T <= block_size``) runs as the two largest primes within it, so that a buffer sliced to
    it (``bias[:, :, :T, :T]``) is not cut short; the others as the fixed sentinels."""
    first: dict[int, str] = {}
    second: dict[int, str] = {}
    free = iter(zip(SENTINELS, SECOND_SENTINELS, strict=True))
    for name in names:
        if name in bounds:
            a, b = _primes_within(bounds[name], set(first) | set(second))
        else:
            a, b = next(free)
        first[a], second[b] = name, name
    return first, second


def _primes_within(bound: int, taken: set[int]) -> tuple[int, int]:
    found = []
    for size in range(bound, 2, -1):
        if size not in taken and all(size % d for d in range(2, math.isqrt(size) + 1)):
            found.append(size)
            if len(found) == 2:
                return found[0], found[1]
    return bound, max(bound - 1, 1)  # too small for two primes: sizes that still differ


def _run(plan: ModelPlan, inputs: list[InputPlan], trace: Trace) -> None:
    model = probe_tree(plan, trace)
    _named(model)
    runs = argument_runs(plan, inputs)
    for values in runs:
        trace.outputs.append(_call(model, inputs, values, trace))
        if trace.errors:
            return
    if trace.symbols:  # once more with other sizes for the symbols, to see what follows them
        trace.second_pass, trace.symbols = True, trace.second_symbols
        try:
            _call(model, inputs, runs[0], trace)
        finally:
            trace.symbols = trace.first_symbols


def _call(model: nn.Module, inputs: list[InputPlan], values: dict[str, Any],
          trace: Trace) -> Any:
    sizes = {name: size for size, name in trace.symbols.items()}
    with _tracing(trace):
        tensors = [torch.empty([sizes.get(d, d) for d in i.shape], dtype=i.dtype)
                   if i.shape is not None
                   else values[i.name] for i in inputs]  # type: ignore[misc]
        for item, tensor in zip(inputs, tensors, strict=True):
            trace.label(tensor, item.name)
        try:
            return model(*tensors)
        except NetDSLError as err:
            trace.errors.append(err)
        except Exception as err:  # Python's own, outside any op (a variable never assigned)
            trace.errors.append(NetDSLError(
                f"{type(model).__name__}'s forward fails on the declared input: "
                f"{type(err).__name__}: {trace.names(first_line(err))}",
                model_span(model), code=codes.FORWARD))
        return None


def model_span(model: nn.Module) -> Any:
    """Where the model is declared (its plan's span, kept on the probe tree's root)."""
    return getattr(model, "_netdsl_span", None)


def argument_runs(plan: ModelPlan, inputs: list[InputPlan]) -> list[dict[str, Any]]:
    """Values for the non-tensor inputs: each dict key in turn, else a neutral value."""
    choices = []
    for item in inputs:
        if item.shape is not None:
            continue
        keys = plan.key_args.get(item.name)
        neutral = {"str": "", "int": 1, "float": 1.0, "bool": True}[item.type_name]
        choices.append([(item.name, k) for k in keys] if keys else [(item.name, neutral)])
    # islice: the combinations grow as a product (30 two-key inputs: 2**30), only the first few
    # are ever run.
    return [dict(combo) for combo in itertools.islice(itertools.product(*choices), MAX_KEY_RUNS)]


def _report_uninferred(plan: Plan, trace: Trace, has_inputs: bool) -> None:
    for layer in layers_of(plan):
        if layer.complete:
            continue
        param = layer.infer[0].param if layer.infer else "?"
        reason = ("the forward never calls it" if has_inputs else
                  "the model declares no input shape (input x: [N, ...])")
        trace.errors.append(NetDSLError(
            f"cannot infer {param} of {layer.call_text()}: {reason}", layer.span, code=codes.SHAPE))


def needs_shapes(plan: ModelPlan) -> bool:
    return bool(plan.inputs) or any(not layer.complete for layer in layers_of(plan))


__all__ = ["LayerCall", "Probe", "Trace", "needs_shapes", "trace_shapes"]
