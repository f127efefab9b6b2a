"""Probe: a spec + an input shape -> per-layer activation statistics, as the seed's experiments.

With a seed, the order is the one a hand-written script uses: seed the generator, build the model
(construction, then init rules), draw a standard-normal input, run the forward. So the numbers are
the hand-written experiment's, bit for bit. Every leaf module's output is recorded in forward order,
and so is every functional activation the forward applies (the seed's MLPs call ``tanh`` and
``relu`` functionally). The verdict says in plain words whether activations explode, vanish or
stay bounded, with the per-layer growth factor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from . import codes
from .build import build
from .errors import NetDSLError, fail, inert
from .forward import TRACER, Site
from .plan import ModelPlan

# Functional ops recorded as rows of their own: the activations a forward applies by hand.
ACTIVATIONS = frozenset({"relu", "relu6", "tanh", "sigmoid", "gelu", "silu", "elu", "leaky_relu",
                         "softmax", "log_softmax"})
# Growth over the whole depth beyond which activations count as exploding or vanishing.
EXPLODING, VANISHING = 4.0, 0.25


@dataclass
class Row:
    index: int
    module: str  # module path, or the functional op (e.g. "tanh")
    mean: float
    std: float
    min: float
    max: float
    zeros: float  # fraction of exact zeros
    note: str = ""


@dataclass
class GradRow:
    parameter: str
    std: float
    norm: float


@dataclass
class ProbeResult:
    model: str
    input: list[int]
    seed: int | None
    rows: list[Row] = field(default_factory=list)
    verdict: str = ""
    growth: float | None = None  # geometric mean of the per-layer std ratio
    grads: list[GradRow] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def stds(self) -> list[float]:
        """The std after each layer: after its activation when the forward applies one."""
        return [r.std for r in main_rows(self.rows)]


def probe(plan: ModelPlan, input_shape: Sequence[int], *, seed: int | None = None,
          backward: bool = False) -> ProbeResult:
    """Build the plan's model, draw an input, run it, and record what every layer outputs."""
    declared = plan.inputs[0] if plan.inputs else None
    if declared is not None and declared.shape is not None and \
            not declared.dtype.is_floating_point:
        fail(f"probe feeds a standard-normal input, but '{declared.name}' is declared "
             f"{str(declared.dtype).removeprefix('torch.')} (token ids?): probe studies models "
             f"that take float inputs", declared.span, codes.TYPE)
    if seed is not None:
        torch.manual_seed(seed)
    model = build(plan)
    x = torch.randn(*input_shape)
    result = ProbeResult(plan.name, list(input_shape), seed)
    with _recording(model, result.rows):
        output = _forward(plan, model, x)
    analyse(result)
    if backward:
        result.grads = _gradients(plan, model, output)
    return result


def _forward(plan: ModelPlan, model: nn.Module, x: torch.Tensor) -> Any:
    # The instrumented forward reports functional ops to TRACER; it runs on the real model.
    assert plan.checked_forward is not None
    try:
        return plan.checked_forward(model, x)
    except NetDSLError:
        raise
    except Exception as err:  # e.g. an --input shape the model cannot take
        fail(f"{plan.name} cannot run on an input of shape {list(x.shape)}: "
             f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}",
             plan.span, codes.SHAPE)


@contextmanager
def _recording(model: nn.Module, rows: list[Row]) -> Iterator[None]:
    def record(label: str, value: Any) -> None:
        tensor = value[0] if isinstance(value, (tuple, list)) and value else value
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            rows.append(_stats(len(rows), label, tensor.detach()))

    def at(site: Site, func: Callable[..., Any], args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> Any:
        out = func(*args, **kwargs)
        if site.label in ACTIVATIONS:
            record(site.label, out)
        return out

    handles = [module.register_forward_hook(
        lambda _m, _i, out, name=name: record(name, out))
        for name, module in model.named_modules() if name and not list(module.children())]
    token = TRACER.set(at)
    try:
        yield
    finally:
        TRACER.reset(token)
        for handle in handles:
            handle.remove()


def _stats(index: int, label: str, t: torch.Tensor) -> Row:
    return Row(index, label, t.mean().item(), t.std().item(), t.min().item(), t.max().item(),
               (t == 0).float().mean().item())


def main_rows(rows: list[Row]) -> list[Row]:
    """One row per layer: the activation rows when the forward applies activations by hand."""
    activations = [r for r in rows if r.module in ACTIVATIONS]
    return activations or rows


def analyse(result: ProbeResult) -> None:
    """Flag the first NaN/inf and say whether the std explodes, vanishes or stays bounded."""
    rows = main_rows(result.rows)
    finite = [r for r in rows if math.isfinite(r.std) and r.std > 0]
    result.growth = _growth(finite)
    first_bad = next((r for r in result.rows if not (math.isfinite(r.std)
                                                      and math.isfinite(r.max))), None)
    factor = f" (x{result.growth:.4g} per layer)" if result.growth else ""
    if first_bad is not None:
        kind = "NaN" if math.isnan(first_bad.std) else "inf"
        first_bad.note = f"first {kind}: activations exploded{factor}"
        result.verdict = f"activations explode{factor}: {kind} at row {first_bad.index} " \
                         f"({first_bad.module})"
        return
    if len(finite) < 2:
        result.verdict = "too few layers to judge"
        return
    ratio = finite[-1].std / finite[0].std
    spread = f"std from {finite[0].std:.4g} to {finite[-1].std:.4g}"
    if ratio > EXPLODING:
        result.verdict = f"activations explode{factor}: {spread}"
    elif ratio < VANISHING:
        finite[-1].note = f"vanishing: {ratio:.0%} of the first layer's std"
        result.verdict = f"activations vanish{factor}: {spread}"
    else:
        result.verdict = f"bounded: {spread} (x{result.growth:.4g} per layer)"


def _growth(rows: list[Row]) -> float | None:
    if len(rows) < 2:
        return None
    return float((rows[-1].std / rows[0].std) ** (1 / (len(rows) - 1)))


def _gradients(plan: ModelPlan, model: nn.Module, output: Any) -> list[GradRow]:
    tensor = output[0] if isinstance(output, (tuple, list)) else output
    if not (isinstance(tensor, torch.Tensor) and tensor.requires_grad):
        fail(f"probe --backward: {plan.name}'s output does not depend on its parameters, so "
             f"there is no gradient to measure", plan.span, codes.VALUE)
    tensor.sum().backward()
    return [GradRow(name, p.grad.std().item() if p.grad.numel() > 1 else 0.0,
                    p.grad.norm().item())
            for name, p in model.named_parameters() if p.grad is not None]


def render(result: ProbeResult) -> str:
    lines = [f"{result.model}    input {list(result.input)}    seed {result.seed}",
             f"{'row':>4}  {'module':<16} {'mean':>12} {'std':>14} {'min':>12} {'max':>12} "
             f"{'zeros':>6}  note"]
    for r in result.rows:
        lines.append(f"{r.index:>4}  {inert(r.module):<16} {r.mean:>12.6g} {r.std:>14.8g} "
                     f"{r.min:>12.6g} {r.max:>12.6g} {r.zeros:>6.1%}  {r.note}".rstrip())
    lines.append(result.verdict)
    if result.grads is not None:
        lines.append("gradients of output.sum():")
        lines += [f"  {inert(g.parameter):<24} std {g.std:.6g}  norm {g.norm:.6g}"
                  for g in result.grads]
    return "\n".join(lines)
