"""Gain: ``nn.init.calculate_gain`` next to the gain measured on standard-normal samples.

The seed's last experiment: ``x = torch.randn(10000)``, ``gain = x.std() / f(x).std()``. The two
agree closely for tanh (5/3 against about 1.59); for ReLU they differ by design (calculate_gain is
defined on second moments, sqrt(2), not on the std ratio), which the table makes visible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NONLINEARITIES: dict[str, Callable[[torch.Tensor, float | None], torch.Tensor]] = {
    "tanh": lambda x, _: torch.tanh(x),
    "relu": lambda x, _: torch.relu(x),
    "leaky_relu": lambda x, p: F.leaky_relu(x, 0.01 if p is None else p),
    "sigmoid": lambda x, _: torch.sigmoid(x),
    "selu": lambda x, _: F.selu(x),
}


@dataclass
class Gain:
    nonlinearity: str
    param: float | None
    calculate_gain: float
    empirical: float
    samples: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(nonlinearity: str, param: float | None = None, *, samples: int = 10_000,
            seed: int | None = None) -> Gain:
    """``calculate_gain`` and ``std(x) / std(f(x))`` on ``samples`` standard-normal draws."""
    if seed is not None:
        torch.manual_seed(seed)
    x = torch.randn(samples)
    empirical = (x.std() / NONLINEARITIES[nonlinearity](x, param).std()).item()
    exact = nn.init.calculate_gain(nonlinearity, param)  # type: ignore[arg-type]
    return Gain(nonlinearity, param, exact, empirical, samples)
