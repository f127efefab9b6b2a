"""Helpers shared by the tests that compare netdsl with hand-written modules."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def seeded(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """``build()`` right after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    module = build()
    assert isinstance(module, nn.Module)
    return module


def same_state(a: nn.Module, b: nn.Module) -> None:
    """Same state_dict keys in the same order, same dtypes, bitwise-equal tensors."""
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


class Scale(nn.Module):
    """A custom module: multiplies by a factor (docs/language.md §6)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor
