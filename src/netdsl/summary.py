"""Summary: a checked, traced model -> a table of its blocks and layers, with totals.

Like torchinfo's summary, computed on the meta device: nothing is allocated. A row per
container, block and layer down to ``depth`` (deeper ones are folded into their ancestor's row,
whose counts include them): path, call, output shape, parameters, MACs and FLOPs. The totals are
those of the model the spec builds: trainable, non-trainable and buffer elements, a tied
parameter once; FLOPs as torch's ``FlopCounterMode`` counts them (MACs are half of them: every
op it has a formula for is a sum of products) with the ops it cannot count named; and
torchinfo's memory estimates. See docs/summary.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .costs import Costs, count_costs, module_outputs
from .errors import first_line, inert
from .plan import (
    InputPlan,
    LayerPlan,
    ModelPlan,
    Plan,
    TensorPlan,
    child_kind,
    children_of,
)
from .shapes import Trace, argument_runs

INFERRED_MARK = "*"
TIED_MARK = "(tied)"
UNCOUNTED_MARK = "+"  # after MACs and FLOPs: and ops no FLOP formula counts
DEFAULT_DEPTH = 3  # torchinfo's


@dataclass
class Row:
    path: str
    layer: str  # the call as built, inferred arguments marked with INFERRED_MARK
    depth: int  # 1 for the model's children
    output: str | None
    # Parameters first reached at this row or below it (module order): a tied parameter counts
    # at its first name only, so the rows of one depth add up to the total.
    params: int
    trainable: int
    macs: int | None  # None: no number (symbolic sizes, a param or buffer row)
    flops: int | None
    folded: bool = False  # rows below it are hidden by the depth; its counts include them
    tied: list[str] = field(default_factory=list)  # "lm_head.weight = transformer.wte.weight"
    uncounted: list[str] = field(default_factory=list)  # ops it ran that no FLOP formula
    # counts (netdsl.flop_formulas, FlopCounterMode's): its MACs and FLOPs leave them out


@dataclass
class Memory:
    """torchinfo's estimates, in bytes (it prints them in MB, 1 MB = 10**6 bytes)."""

    input_bytes: int
    forward_backward_bytes: int
    params_bytes: int
    total_bytes: int


@dataclass
class Summary:
    model: str
    inputs: list[str]
    depth: int | None = DEFAULT_DEPTH
    rows: list[Row] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    non_trainable_params: int = 0
    size_mb: float = 0.0  # the parameters' bytes / 10**6
    buffers: int = 0  # elements of every buffer (BatchNorm's running stats, masks)
    # Tied parameters, each once: "lm_head.weight = transformer.wte.weight (38,633,472)".
    shared: list[str] = field(default_factory=list)
    shared_params: int = 0  # elements of the tied parameters, counted once in the total
    macs: int | None = None
    flops: int | None = None  # 2 * macs, and the elementwise ops' (netdsl.flop_formulas)
    # Of those, what the model's own forward runs outside its children (GPT's embedding add,
    # DenseNet's last ReLU and pool): in no row, so that the rows of depth 1 and these add up.
    own_macs: int = 0
    own_flops: int = 0
    per: str = ""  # "per sample" (a symbolic batch, run as 1) or "for this input"
    uncounted: dict[str, int] = field(default_factory=dict)  # aten op -> calls
    memory: Memory | None = None
    why_not_counted: str = ""  # when macs is None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(plan: ModelPlan, trace: Trace, model: nn.Module, inputs: list[InputPlan],
              depth: int | None = DEFAULT_DEPTH) -> Summary:
    shown = [f"{i.name}: " + (_dims(i.shape, i.bounds) + _dtype(i) if i.shape is not None
                              else i.type_name) for i in inputs]
    summary = Summary(plan.name, shown, depth)
    # Eval mode, torchinfo's default: dropout off, BatchNorm on its running statistics.
    model.train(False)
    batch, at_bounds, summary.why_not_counted = _counted_sizes(plan, inputs)
    costs = None
    if not summary.why_not_counted:
        args = _tensors(inputs, {batch: 1, **at_bounds} if batch else at_bounds)
        costs, summary.why_not_counted = _count(model, args, batch)
        summary.per = ("per sample" if batch else "for this input") + "".join(
            f", {name} = {size}" for name, size in at_bounds.items())
    summary.rows = _rows(plan, trace, model, inputs, costs, depth)
    _totals(summary, model)
    if costs is not None:
        summary.flops, summary.macs = costs.total_flops, costs.total_macs
        summary.own_macs = costs.total_macs - _in_children(costs.macs, plan)
        summary.own_flops = costs.total_flops - _in_children(costs.flops, plan)
        summary.uncounted = costs.uncounted
        summary.memory = _memory(args, costs, model)
    return summary


def _counted_sizes(plan: ModelPlan, inputs: list[InputPlan]
                   ) -> tuple[str | None, dict[str, int], str]:
    """The symbol standing for the batch (counted per sample); the sizes other symbols are
    counted at, their bounds (GPT's ``T <= block_size`` at block_size: the longest input the
    model takes, the count papers give); and why nothing can be counted, if so: counts need
    every other size as a number and one forward to run."""
    if not inputs or all(i.shape is None for i in inputs):
        return None, {}, "no input shape"
    if len(argument_runs(plan, inputs)) > 1:
        keys = ", ".join(i.name for i in inputs if i.name in plan.key_args)
        return None, {}, f"the forward picks dict entries by key ({keys}): costs depend on " \
            "the keys"
    tensors = [i.shape for i in inputs if i.shape is not None]
    first = next((s[0] for s in tensors if s and isinstance(s[0], str)), None)
    batch = first if isinstance(first, str) else None
    named = {d for s in tensors for d in s if isinstance(d, str) and d != batch}
    at_bounds = {d: size for i in inputs for d, size in i.bounds.items() if d in named}
    symbolic = sorted(named - set(at_bounds))
    if symbolic:
        return None, {}, f"{', '.join(symbolic)} symbolic: give --input (inputs=) with numbers"
    return batch, at_bounds, ""


def _count(model: nn.Module, args: list[Any], batch: str | None) -> tuple[Costs | None, str]:
    """The forward's costs, or why they have no number."""
    try:
        return count_costs(model, args), ""
    except Exception as err:  # torch's: the shape pass ran the batch as another size, and a
        # forward may fail on 1 (squeeze() takes the batch dimension away)
        size = "with a batch of 1" if batch else "on this input"
        return None, f"the forward fails {size}: {type(err).__name__}: {first_line(err)}"


def _tensors(inputs: list[InputPlan], sizes: dict[str, int]) -> list[Any]:
    """Meta tensors of the declared shapes, symbols replaced by ``sizes``; the neutral value
    for a non-tensor argument, as the shape pass passes it."""
    neutral = {"str": "", "int": 1, "float": 1.0, "bool": True}
    return [torch.empty([sizes.get(d, d) if isinstance(d, str) else d for d in i.shape],
                        dtype=i.dtype, device="meta")
            if i.shape is not None else neutral[i.type_name] for i in inputs]


def _rows(plan: ModelPlan, trace: Trace, model: nn.Module, inputs: list[InputPlan],
          costs: Costs | None, depth: int | None) -> list[Row]:
    owned, aliases = _ownership(model)
    outputs = _container_outputs(plan, trace, model, inputs)
    calls = {call.path: call for call in trace.calls.values()}
    rows = []
    for path, item, level, folded in _tree(plan, "", 0, depth):
        params, trainable = owned.get(path, (0, 0))
        if isinstance(item, LayerPlan):
            call = calls.get(path)
            output = trace.dims_text(call.output, call.second) \
                if call is not None and call.output is not None else None
        else:
            output = outputs.get(path)
        counted = costs is not None and not isinstance(item, TensorPlan)
        flops = _summed(costs.flops, path, item) if counted else None
        macs = _summed(costs.macs, path, item) if counted else None
        # A tie shows on the row that shows its parameter: the layer's, or the folded block's.
        shows = isinstance(item, TensorPlan) or folded or not children_of(item)
        tied = [f"{name} = {first}" for name, first in aliases
                if shows and (name == path or name.startswith(path + "."))]
        uncounted = _uncounted(costs, path, item) if costs is not None else []
        rows.append(Row(path, _layer_text(item), level, output, params, trainable,
                        macs, flops, folded, tied, uncounted))
    return rows


def _in_children(counts: dict[str, int], plan: ModelPlan) -> int:
    """What the model's children's rows count: the rest of a total is its own forward's."""
    return sum(_summed(counts, key, child) for key, child in children_of(plan))


def _summed(counts: dict[str, int], path: str, item: Plan) -> int:
    """What FlopCounterMode counted in the module's calls; for a list or dict, which is never
    called, or a block the forward only uses the children of, the sum of its children's."""
    if path in counts or not children_of(item):
        return counts.get(path, 0)
    return sum(_summed(counts, f"{path}.{key}", child) for key, child in children_of(item))


def _uncounted(costs: Costs, path: str, item: Plan | TensorPlan) -> list[str]:
    if isinstance(item, TensorPlan):
        return []
    if path in costs.uncounted_in or not children_of(item):
        return costs.uncounted_in.get(path, [])
    return sorted({op for key, child in children_of(item)
                   for op in _uncounted(costs, f"{path}.{key}", child)})


def _tree(plan: Plan, prefix: str, level: int, depth: int | None
          ) -> Iterator[tuple[str, Plan | TensorPlan, int, bool]]:
    """(path, plan, depth, folded) of every row down to ``depth``, in module order."""
    if depth is not None and level >= depth:
        return
    for key, child in _children_and_tensors(plan):
        path = f"{prefix}.{key}" if prefix else key
        deeper = not isinstance(child, TensorPlan) and bool(children_of(child))
        folded = deeper and depth is not None and level + 1 == depth
        yield path, child, level + 1, folded
        if not isinstance(child, TensorPlan):
            yield from _tree(child, path, level + 1, depth)


def _children_and_tensors(plan: Plan) -> list[tuple[str, Plan | TensorPlan]]:
    """A plan's children with a model's own params and buffers among them, where declared."""
    items: list[tuple[str, Plan | TensorPlan]] = list(children_of(plan))
    if isinstance(plan, ModelPlan):
        for tensor in sorted(plan.tensors, key=lambda t: t.position, reverse=True):
            items.insert(min(tensor.position, len(items)), (tensor.name, tensor))
    return items


def _layer_text(item: Plan | TensorPlan) -> str:
    if isinstance(item, LayerPlan):
        return item.call_text(INFERRED_MARK)
    if isinstance(item, TensorPlan):
        return f"{item.what} {list(item.shape)}"
    if isinstance(item, ModelPlan):
        return item.name
    return child_kind(item)  # sequential, list, dict


def _ownership(model: nn.Module) -> tuple[dict[str, tuple[int, int]], list[tuple[str, str]]]:
    """(params, trainable) first reached under each path, every ancestor included; and each
    later name of a tied parameter with its first one."""
    owned: dict[str, tuple[int, int]] = {}
    first: dict[int, str] = {}
    aliases = []
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases.append((name, first[id(param)]))
            continue
        first[id(param)] = name
        count = param.numel()
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            params, trainable = owned.get(prefix, (0, 0))
            owned[prefix] = (params + count, trainable + count * param.requires_grad)
    return owned, aliases


def _container_outputs(plan: ModelPlan, trace: Trace, model: nn.Module,
                       inputs: list[InputPlan]) -> dict[str, str]:
    """Blocks' and containers' output shapes, as the trace shows a layer's: a forward at each
    pass's sizes for the symbols, so that sizes which follow a symbol show as formulas."""
    if not trace.calls or len(argument_runs(plan, inputs)) > 1 or \
            all(i.shape is None for i in inputs):
        return {}
    first = module_outputs(model, _tensors(inputs, _sizes(trace.first_symbols)))
    second = module_outputs(model, _tensors(inputs, _sizes(trace.second_symbols))) \
        if trace.second_symbols else first
    return {path: trace.dims_text(shape, second.get(path)) for path, shape in first.items()}


def _sizes(symbols: dict[int, str]) -> dict[str, int]:
    return {name: size for size, name in symbols.items()}


def _totals(summary: Summary, model: nn.Module) -> None:
    parameters = list(model.parameters())  # a tied parameter once
    summary.total_params = sum(p.numel() for p in parameters)
    summary.trainable_params = sum(p.numel() for p in parameters if p.requires_grad)
    summary.non_trainable_params = summary.total_params - summary.trainable_params
    summary.size_mb = _param_bytes(model) / 1e6
    summary.buffers = sum(b.numel() for b in model.buffers())
    summary.shared, summary.shared_params = _shared(model)


def _param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _shared(model: nn.Module) -> tuple[list[str], int]:
    names: dict[int, list[str]] = {}
    sizes: dict[int, int] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
        sizes[id(param)] = param.numel()
    tied = [key for key, found in names.items() if len(found) > 1]
    return ([f"{' = '.join(reversed(names[key]))} ({sizes[key]:,})" for key in tied],
            sum(sizes[key] for key in tied))


def _memory(args: list[Any], costs: Costs, model: nn.Module) -> Memory:
    given = sum(t.numel() * t.element_size() for t in args if isinstance(t, torch.Tensor))
    params = _param_bytes(model)
    return Memory(given, costs.activation_bytes, params,
                  given + costs.activation_bytes + params)


def _dtype(item: InputPlan) -> str:
    return "" if item.dtype == torch.float32 else f" {str(item.dtype).removeprefix('torch.')}"


def _dims(shape: list[int | str], bounds: dict[str, int]) -> str:
    return "[" + ", ".join(f"{d} <= {bounds[d]}" if d in bounds else str(d)
                           for d in shape) + "]"


def render(summary: Summary) -> str:
    """The summary as a text table: rows indented by depth, numbers right-aligned."""
    headers = ("path", "layer", "output", "params", "MACs", "FLOPs")
    rows = [("  " * (r.depth - 1) + inert(r.path), inert(r.layer), r.output or "-",
             _cell(r.params) + (f" {TIED_MARK}" if r.tied else ""),
             _cell(r.macs, r.uncounted), _cell(r.flops, r.uncounted))
            for r in summary.rows]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = [f"{summary.model}" + (f"    input {inert(', '.join(summary.inputs))}"
                                   if summary.inputs else "    (no input shape: no shapes)")]
    lines.append(_line(headers, widths))
    lines.append("-" * len(lines[-1]))
    lines += [_line(row, widths) for row in rows]
    lines.append("-" * len(lines[1]))
    lines += _total_lines(summary)
    if any(INFERRED_MARK in r.layer for r in summary.rows):
        lines.append(f"{INFERRED_MARK} inferred from the input shape")
    return "\n".join(lines)


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    """Text columns left-aligned, the three counts right-aligned."""
    return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()


def _cell(value: int | None, uncounted: list[str] | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:,}" + (UNCOUNTED_MARK if uncounted else "")


def _total_lines(summary: Summary) -> list[str]:
    lines = [f"total params: {summary.total_params:,}    trainable: "
             f"{summary.trainable_params:,}    non-trainable: "
             f"{summary.non_trainable_params:,}    size: {summary.size_mb:,.2f} MB"]
    if summary.buffers:
        lines.append(f"buffers: {summary.buffers:,} elements")
    for shared in summary.shared:
        lines.append(f"{TIED_MARK} tied, counted once (at its first name): {inert(shared)}")
    if summary.macs is None:
        lines.append(f"MACs, FLOPs, memory: not counted ({summary.why_not_counted})")
        return lines
    lines.append(f"MACs ({summary.per}): {summary.macs:,}    FLOPs: {summary.flops:,} "
                 f"(2 per MAC; elementwise ops as DeepSpeed counts them)")
    if summary.own_flops:
        lines.append(f"  of which {inert(summary.model)}'s own forward, outside its layers (no "
                     f"row): {summary.own_macs:,} MACs, {summary.own_flops:,} FLOPs")
    if summary.uncounted:
        ops = ", ".join(f"{op} x{calls}" for op, calls in sorted(summary.uncounted.items()))
        lines.append(f"{UNCOUNTED_MARK} not counted (no FLOP formula): {ops}")
    if summary.memory is not None:
        lines += _memory_lines(summary.memory, summary.per)
    return lines


def _memory_lines(memory: Memory, per: str) -> list[str]:
    """torchinfo's four lines, in its MB (10**6 bytes) with two decimals."""
    return [f"input size (MB, {per}): {memory.input_bytes / 1e6:.2f}",
            f"forward/backward pass size (MB): {memory.forward_backward_bytes / 1e6:.2f}",
            f"params size (MB): {memory.params_bytes / 1e6:.2f}",
            f"estimated total size (MB): {memory.total_bytes / 1e6:.2f}"]
