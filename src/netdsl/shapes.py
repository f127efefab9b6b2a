"""Shapes: a plan + declared inputs -> inferred input dimensions, located shape errors, a trace.

Runs the model once on the meta device before the real build: every layer is a :class:`Probe`
that, on its first call, fills in an omitted input dimension from the shape it receives, builds
the real layer on meta and runs it; forwards run in their instrumented form, so a failing ``cat``
or ``+`` is reported at its own span. Symbolic dimensions (``N``) travel as distinctive sizes and
are named again in messages. Nothing is allocated and torch's random generator is not touched;
the real build afterwards constructs every layer in declaration order, as written or filled in.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .build import build_layer
from .errors import NetDSLError, Span, fail
from .forward import TRACER, Site
from .infer import InputDim, input_dim
from .plan import DictPlan, InputPlan, LayerPlan, ListPlan, ModelPlan, Plan, SequentialPlan
from .registry import layer_signature

# Symbolic dimensions run as these sizes: large enough for any kernel, unlikely to be a real
# width, and distinct so that each can be named again in messages.
SENTINELS = (1009, 1013, 1019, 1021, 1031, 1033, 1039, 1049, 1051, 1061)
MAX_KEY_RUNS = 64  # forwards run once per combination of dict keys, up to this many


@dataclass
class LayerCall:
    """A layer as the trace saw it: its input and output shapes on the first call."""

    path: str
    plan: LayerPlan
    inputs: list[tuple[int, ...]]
    output: tuple[int, ...] | None


@dataclass
class Trace:
    calls: dict[int, LayerCall] = field(default_factory=dict)  # by id(plan)
    outputs: list[Any] = field(default_factory=list)  # one per run
    symbols: dict[int, str] = field(default_factory=dict)
    errors: list[NetDSLError] = field(default_factory=list)
    labels: dict[int, tuple[str, torch.Tensor]] = field(default_factory=dict)

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
        return f"{label}: {shape}" if label else shape

    def label(self, value: Any, text: str) -> None:
        if isinstance(value, torch.Tensor):
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


class Probe(nn.Module):
    """Stands in for one layer during the shape pass."""

    def __init__(self, plan: LayerPlan, trace: Trace):
        super().__init__()
        self.plan = plan
        self.trace = trace
        self.layer: nn.Module | None = None
        self.path = ""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
        self._check_input_dim(args)
        if self.layer is None:
            self.layer = build_layer(self.plan)
        try:
            out = self.layer(*args, **kwargs)
        except NetDSLError:
            raise
        except Exception as err:  # torch's own shape checks
            received = ", ".join(self.trace.described(a) for a in args)
            fail(f"{self.plan.call_text()} cannot take its input ({received}): "
                 f"{self.trace.names(_first_line(err))}", self.plan.span)
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        output = tuple(first.shape) if isinstance(first, torch.Tensor) else None
        self.trace.calls.setdefault(id(self.plan), LayerCall(self.path, self.plan, shapes, output))
        self.trace.label(out, self.path or self.plan.name)
        return out

    def _check_input_dim(self, args: tuple[Any, ...]) -> None:
        found = input_dim(layer_signature(self.plan.cls, self.plan.name))
        if found is None or not args or not isinstance(args[0], torch.Tensor):
            return
        param, position = found
        received = param.read(tuple(args[0].shape))
        if received is None:
            fail(f"{self.plan.call_text()} needs an input with a dimension {param.dim}, but "
                 f"receives {self.trace.described(args[0])}", self.plan.span)
        if self.plan.infer is not None and self.plan.inferred is None:
            self._fill(param, received, args[0])
            return
        given = _given(self.plan, param, position)
        expected = given[0] if isinstance(given, (tuple, list)) and given else given
        if expected != received and param.param != "normalized_shape":
            # Report it, then go on as if the spec were right, so later mistakes show too.
            self.trace.errors.append(NetDSLError(
                self._mismatch(param, expected, received, args[0]), self.plan.span))
            if self.layer is None and self.plan.inferred is None:
                self.layer = build_layer(_corrected(self.plan, param, received))

    def _fill(self, param: InputDim, received: int, value: torch.Tensor) -> None:
        if received in self.trace.symbols:
            fail(f"cannot infer {param.param} of {self.plan.call_text()}: it receives "
                 f"{self.trace.described(value)}, where that dimension is symbolic",
                 self.plan.span)
        self.plan.fill(received)

    def _mismatch(self, param: InputDim, expected: Any, received: int,
                  value: torch.Tensor) -> str:
        call = self.plan.call_text()
        if self.plan.inferred is not None:
            return (f"{call} was inferred with {param.param}={expected} from an earlier call, "
                    f"but now receives {self.trace.described(value)}")
        return (f"{call} expects {expected} {param.what}, but receives {received} "
                f"({self.trace.described(value)}); write "
                f"{_corrected(self.plan, param, received).call_text()}"
                f" or leave {param.param} out to infer it")


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


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


# ---------------------------------------------------------------- the probe tree


def probe_tree(plan: Plan, trace: Trace) -> nn.Module:
    """The plan as modules, with a Probe for every layer and instrumented forwards."""
    if isinstance(plan, LayerPlan):
        return Probe(plan, trace)
    if isinstance(plan, SequentialPlan):
        return nn.Sequential(*(probe_tree(p, trace) for _, p in plan.items))
    if isinstance(plan, ListPlan):
        return nn.ModuleList([probe_tree(p, trace) for p in plan.items])
    if isinstance(plan, DictPlan):
        return nn.ModuleDict({key: probe_tree(p, trace) for key, p in plan.items})
    cls = type(plan.name, (nn.Module,), {"forward": plan.checked_forward})
    module = cls()
    for name, child in plan.children:
        setattr(module, name, probe_tree(child, trace))
    return module


def _named(module: nn.Module, plan: Plan) -> None:
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
    try:
        torch.broadcast_shapes(left.shape, right.shape)
    except RuntimeError:
        fail(f"cannot {_ARITHMETIC[site.label]} ({trace.described(left)}) and "
             f"({trace.described(right)}): the shapes do not broadcast", site.span)



@contextmanager
def _tracing(trace: Trace) -> Iterator[None]:
    def at(site: Site, func: Callable[..., Any], args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> Any:
        _check_broadcast(trace, site, args)
        try:
            out = func(*args, **kwargs)
        except NetDSLError:
            raise
        except Exception as err:
            received = trace.described([a for a in args if isinstance(a, (torch.Tensor, list))])
            fail(f"{site.label} cannot take its inputs ({received}): "
                 f"{trace.names(_first_line(err))}", site.span)
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
            fail(f"too many symbolic dimensions (at most {len(SENTINELS)})", inputs[0].span)
        trace.symbols = dict(zip(SENTINELS, names, strict=False))
        _run(plan, inputs, trace)
    if not trace.errors:  # after a failed run, layers it did not reach say nothing new
        _report_uninferred(plan, trace, bool(inputs))
    return trace


def _run(plan: ModelPlan, inputs: list[InputPlan], trace: Trace) -> None:
    model = probe_tree(plan, trace)
    _named(model, plan)
    sizes = {name: size for size, name in trace.symbols.items()}
    for values in _argument_runs(plan, inputs):
        with _tracing(trace):
            tensors = [torch.empty([sizes.get(d, d) for d in i.shape]) if i.shape is not None
                       else values[i.name] for i in inputs]  # type: ignore[misc]
            for item, tensor in zip(inputs, tensors, strict=True):
                trace.label(tensor, item.name)
            try:
                trace.outputs.append(model(*tensors))
            except NetDSLError as err:
                trace.errors.append(err)
            if trace.errors:
                return


def _argument_runs(plan: ModelPlan, inputs: list[InputPlan]) -> list[dict[str, Any]]:
    """Values for the non-tensor inputs: each dict key in turn, else a neutral value."""
    choices = []
    for item in inputs:
        if item.shape is not None:
            continue
        keys = plan.key_args.get(item.name)
        neutral = {"str": "", "int": 1, "float": 1.0, "bool": True}[item.type_name]
        choices.append([(item.name, k) for k in keys] if keys else [(item.name, neutral)])
    runs = [dict(combo) for combo in itertools.product(*choices)]
    return runs[:MAX_KEY_RUNS]


def _report_uninferred(plan: Plan, trace: Trace, has_inputs: bool) -> None:
    for layer in _layers(plan):
        if layer.complete:
            continue
        param = layer.infer[0].param if layer.infer else "?"
        reason = ("the forward never calls it" if has_inputs else
                  "the model declares no input shape (input x: [N, ...])")
        trace.errors.append(NetDSLError(
            f"cannot infer {param} of {layer.call_text()}: {reason}", layer.span))


def _layers(plan: Plan) -> Iterator[LayerPlan]:
    if isinstance(plan, LayerPlan):
        yield plan
    elif isinstance(plan, SequentialPlan):
        for _, p in plan.items:
            yield from _layers(p)
    elif isinstance(plan, ListPlan):
        for p in plan.items:
            yield from _layers(p)
    elif isinstance(plan, DictPlan):
        for _, p in plan.items:
            yield from _layers(p)
    else:
        for _, p in plan.children:
            yield from _layers(p)


def needs_shapes(plan: ModelPlan) -> bool:
    return bool(plan.inputs) or any(not layer.complete for layer in _layers(plan))


__all__ = ["LayerCall", "Probe", "Span", "Trace", "needs_shapes", "trace_shapes"]
