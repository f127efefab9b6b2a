"""Summary: a checked, traced model -> a table of its layers (path, call, output shape, params).

Like torchinfo's or Keras's summary, computed on the meta device: nothing is allocated, and the
totals are ``sum(p.numel())`` of the model the spec builds. Multiply-adds are counted only where
they can be counted honestly from the shapes: Linear, Bilinear and convolution layers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import inert
from .plan import InputPlan, ModelPlan, layers_with_paths, models_with_paths
from .shapes import LayerCall, Trace

INFERRED_MARK = "*"


@dataclass
class Row:
    path: str
    layer: str  # the call as built, inferred arguments marked with INFERRED_MARK
    output: str | None
    params: int
    trainable: int
    mult_adds: int | None


@dataclass
class Summary:
    model: str
    inputs: list[str]
    rows: list[Row] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    size_mb: float = 0.0
    mult_adds: int | None = None
    mult_adds_per: str = ""  # "per sample" when the batch dimension is symbolic
    buffers: int = 0  # elements of every buffer (BatchNorm's running stats, masks)
    # Tied parameters, each once: "lm_head.weight = transformer.wte.weight (38,633,472)".
    shared: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(plan: ModelPlan, trace: Trace, model: nn.Module,
              inputs: list[InputPlan]) -> Summary:
    shown = [f"{i.name}: " + (_dims(i.shape, i.bounds) + _dtype(i) if i.shape is not None
                              else i.type_name) for i in inputs]
    summary = Summary(plan.name, shown)
    calls = {call.path: call for call in trace.calls.values()}
    batch = _batch_size(trace, inputs)
    summary.rows += _tensor_rows(plan)
    for path, layer in layers_with_paths(plan):
        module = model.get_submodule(path)
        call = calls.get(path)
        params = sum(p.numel() for p in module.parameters())
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        output = trace.dims_text(call.output, call.second) if call and call.output is not None \
            else None
        macs = _mult_adds(module, call, batch) if _countable(call, batch) else None
        summary.rows.append(Row(path, layer.call_text(INFERRED_MARK), output, params, trainable,
                                macs))
    parameters = list(model.parameters())  # a tied parameter once
    summary.shared = _shared(model)
    summary.buffers = sum(b.numel() for b in model.buffers())
    summary.total_params = sum(p.numel() for p in parameters)
    summary.trainable_params = sum(p.numel() for p in parameters if p.requires_grad)
    summary.size_mb = sum(p.numel() * p.element_size() for p in parameters) / 1e6
    counted = [r.mult_adds for r in summary.rows if r.mult_adds is not None]
    summary.mult_adds = sum(counted) if counted else None
    summary.mult_adds_per = "per sample" if batch != 1 else "for this input"
    return summary


def _tensor_rows(plan: ModelPlan) -> list[Row]:
    """The params and buffers models and blocks declare themselves (``class_token``)."""
    rows = []
    for path, sub in models_with_paths(plan):
        for tensor in sub.tensors:
            count = tensor.numel if tensor.what == "param" else 0
            trainable = count if tensor.requires_grad else 0
            rows.append(Row(f"{path}.{tensor.name}" if path else tensor.name,
                            f"{tensor.what} {list(tensor.shape)}", None, count, trainable,
                            None))
    return rows


def _shared(model: nn.Module) -> list[str]:
    names: dict[int, list[str]] = {}
    sizes: dict[int, int] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
        sizes[id(param)] = param.numel()
    return [f"{' = '.join(reversed(found))} ({sizes[key]:,})"
            for key, found in names.items() if len(found) > 1]


def _batch_size(trace: Trace, inputs: list[InputPlan]) -> int:
    """The size standing for a symbolic batch dimension, to count per sample; 1 otherwise."""
    for item in inputs:
        if item.shape and isinstance(item.shape[0], str):
            return next(size for size, name in trace.symbols.items() if name == item.shape[0])
    return 1


def _dtype(item: InputPlan) -> str:
    return "" if item.dtype == torch.float32 else f" {str(item.dtype).removeprefix('torch.')}"


def _dims(shape: list[int | str], bounds: dict[str, int]) -> str:
    return "[" + ", ".join(f"{d} <= {bounds[d]}" if d in bounds else str(d)
                           for d in shape) + "]"


def _countable(call: LayerCall | None, batch: int) -> bool:
    """Multiply-adds are a number only if no size but the batch follows a symbol."""
    if call is None or call.output is None or call.second is None:
        return True
    varying = [i for i, (a, b) in enumerate(zip(call.output, call.second, strict=False))
               if a != b]
    return varying in ([], [0]) and (not varying or batch != 1)


def _mult_adds(module: nn.Module, call: LayerCall | None, batch: int) -> int | None:
    if call is None or call.output is None:
        return None
    out = math.prod(call.output) // batch
    if isinstance(module, nn.Linear):
        return out * module.in_features
    if isinstance(module, nn.Bilinear):
        return out * module.in1_features * module.in2_features
    if isinstance(module, nn.modules.conv._ConvTransposeNd) and call.inputs:
        per_input = module.out_channels // module.groups * math.prod(module.kernel_size)
        return math.prod(call.inputs[0]) // batch * per_input
    if isinstance(module, nn.modules.conv._ConvNd):
        return out * module.in_channels // module.groups * math.prod(module.kernel_size)
    return None


def render(summary: Summary) -> str:
    """The summary as a text table."""
    headers = ("path", "layer", "output", "params")
    rows = [(inert(r.path), inert(r.layer), r.output or "-", f"{r.params:,}")
            for r in summary.rows]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = [f"{summary.model}" + (f"    input {inert(', '.join(summary.inputs))}"
                                   if summary.inputs else "    (no input shape: no shapes)")]
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    lines.append("-" * len(lines[-1]))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    lines.append("-" * len(lines[1]))
    lines.append(f"total params: {summary.total_params:,}    trainable: "
                 f"{summary.trainable_params:,}    size: {summary.size_mb:,.2f} MB")
    if summary.buffers:
        lines.append(f"buffers: {summary.buffers:,} elements")
    for shared in summary.shared:
        lines.append(f"tied (counted once in the total): {inert(shared)}")
    if summary.mult_adds is not None:
        lines.append(f"mult-adds (Linear/Conv layers, {summary.mult_adds_per}): "
                     f"{summary.mult_adds:,}")
    if any(INFERRED_MARK in r.layer for r in summary.rows):
        lines.append(f"{INFERRED_MARK} inferred from the input shape")
    return "\n".join(lines)
