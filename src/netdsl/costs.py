"""Costs: a built model and its input tensors, on the meta device -> what one forward costs.

FLOPs and MACs per module, counted by torch's own ``FlopCounterMode`` (a module's count includes
its descendants' and the ops its own forward runs): its formulas for the multiply-accumulate ops,
netdsl's (netdsl.flop_formulas) for the elementwise ones; the aten ops neither has a formula for,
by name, so that an uncounted op is never a silent 0; and the activation bytes torchinfo reports
as its "Forward/backward pass size". The output shapes of every module come from a separate,
cheaper run (hooks only). Meta tensors carry shapes and dtypes but no data: nothing is
allocated, whatever the model's size.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.module_tracker import ModuleTracker

GLOBAL = "Global"  # FlopCounterMode's name for the whole forward


@dataclass
class Costs:
    flops: dict[str, int]  # module path ("" the model) -> FLOPs of all its calls
    macs: dict[str, int]  # module path -> multiply-accumulates (FlopCounterMode's own ops)
    total_flops: int  # everything the forward ran, inside a module or not
    total_macs: int
    uncounted: dict[str, int]  # aten op -> calls: ops run that no FLOP formula counts
    uncounted_in: dict[str, list[str]]  # module path -> the uncounted ops it ran (descendants')
    activation_bytes: int  # torchinfo's forward/backward pass size


def count_costs(model: nn.Module, args: Sequence[Any]) -> Costs:
    """One forward of ``model`` (already in the mode to count) under FlopCounterMode."""
    # Imported here: torch.utils.flop_counter takes ~60 ms to import, which `netdsl check` and
    # `netdsl.load` (both import the summary's module) should not pay.
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    from .flop_formulas import formulas

    tracker = ModuleTracker()
    counter = FlopCounterMode(display=False, custom_mapping=formulas())
    ops = _UncountedOps(tracker, frozenset(counter.flop_registry))
    outputs: list[int] = []
    with _hooks(_parameter_leaves(model), lambda _path, out: outputs.append(_bytes(out))), \
            torch.no_grad(), tracker, ops, counter:
        # ops is entered first, so it is the outer mode: it sees the ops FlopCounterMode runs
        # after its own decompositions, the ones its formulas were (or were not) applied to.
        model(*args)
    root = type(model).__name__
    counts = {_path(name, root): by_op for name, by_op in counter.get_flop_counts().items()}
    # FlopCounterMode's own formulas are the multiply-accumulate ops, at 2 FLOPs per MAC.
    macs = {path: sum(n for op, n in by_op.items() if op in flop_registry) // 2
            for path, by_op in counts.items()}
    within = {_path(name, root): sorted(found) for name, found in ops.within.items()
              if name != GLOBAL}
    # torchinfo doubles each output: the activation is kept for the backward, its gradient made.
    return Costs({path: sum(by_op.values()) for path, by_op in counts.items() if path != GLOBAL},
                 {path: n for path, n in macs.items() if path != GLOBAL},
                 counter.get_total_flops(), macs.get(GLOBAL, 0), dict(ops.calls), within,
                 2 * sum(outputs))


def module_outputs(model: nn.Module, args: Sequence[Any]) -> dict[str, tuple[int, ...]]:
    """Every module's output shape (its first tensor, at its first call, as the shape pass
    shows a layer's) in one forward."""
    shapes: dict[str, tuple[int, ...]] = {}

    def seen(path: str, out: Any) -> None:
        tensor = _first_tensor(out)
        if tensor is not None:
            shapes.setdefault(path, tuple(tensor.shape))

    with _hooks(model.named_modules(), seen), torch.no_grad():
        model(*args)
    return shapes


class _UncountedOps(TorchDispatchMode):
    """The ops run that do arithmetic no formula counts (torch's or netdsl's), with their calls.

    Views (``view``, ``t``, ``expand``) only alias memory and ops without a tensor argument
    (``empty``, ``arange``) read nothing: neither computes on the data, so neither is listed."""

    def __init__(self, tracker: ModuleTracker, counted: frozenset[Any]) -> None:
        super().__init__()
        self.tracker = tracker  # which modules are running: ``parents``, as FlopCounterMode's
        self.counted = counted  # the op packets FlopCounterMode has a formula for
        self.calls: Counter[str] = Counter()
        self.within: defaultdict[str, set[str]] = defaultdict(set)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in self.counted and not _aliases(func) and any(
                isinstance(a, torch.Tensor) for a in tree_leaves((args, kwargs))):
            self.calls[str(packet)] += 1
            for name in self.tracker.parents:
                self.within[name].add(str(packet))
        return func(*args, **kwargs)


def _aliases(func: Any) -> bool:
    """A view, or an in-place change of a tensor's shape (``transpose_``). ``_unsafe_view`` and
    ``unsafe_split`` are ``view`` and ``split`` without autograd's aliasing record: views all
    the same (Linear on a [B, T, C] input ends in one, an LSTM step splits its gates)."""
    return bool(func.is_view) or torch.Tag.inplace_view in func.tags or \
        func._overloadpacket in (torch.ops.aten._unsafe_view, torch.ops.aten.unsafe_split)


@contextmanager
def _hooks(modules: Iterator[tuple[str, nn.Module]],
           call: Callable[[str, Any], None]) -> Iterator[None]:
    handles = [module.register_forward_hook(lambda _m, _a, out, path=path: call(path, out))
               for path, module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _parameter_leaves(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The modules whose outputs torchinfo counts: leaves that hold parameters."""
    for path, module in model.named_modules():
        if not any(module.children()) and next(module.parameters(), None) is not None:
            yield path, module


def _first_tensor(value: Any) -> torch.Tensor | None:
    """The tensor torchinfo measures in an output: a tuple's first item, a dict's last value."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict) and value:
        return _first_tensor(list(value.values())[-1])
    if isinstance(value, (list, tuple)) and value:
        return _first_tensor(value[0])
    return None


def _bytes(value: Any) -> int:
    tensor = _first_tensor(value)
    return 0 if tensor is None else tensor.numel() * tensor.element_size()


def _path(name: str, root: str) -> str:
    """FlopCounterMode's module names (``ResNet.layer1.0``) as module paths (``layer1.0``);
    its "Global" (everything, inside a module or not) stays itself."""
    if name == GLOBAL:
        return name
    return "" if name == root else name.removeprefix(root + ".")
