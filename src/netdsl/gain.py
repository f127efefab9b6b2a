"""Gain: ``nn.init.calculate_gain`` next to the gain measured on standard-normal samples.

The seed's last experiment: ``x = torch.randn(10000)``, ``gain = x.std() / f(x).std()``. The two
agree closely for tanh (5/3 against about 1.59); for ReLU they differ by design (calculate_gain is
defined on second moments, sqrt(2), not on the std ratio), which the table makes visible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# The nonlinearities both calculate_gain and the measurement know (the CLI's choices: a name
# list, so that `netdsl --help` does not import torch).
NONLINEARITIES = ("leaky_relu", "relu", "selu", "sigmoid", "tanh")


def apply(nonlinearity: str, x: torch.Tensor, param: float | None) -> torch.Tensor:
    import torch  # here, not at the top: see NONLINEARITIES
    import torch.nn.functional as F

    if nonlinearity == "leaky_relu":
        return F.leaky_relu(x, 0.01 if param is None else param)
    functions = {"relu": torch.relu, "selu": F.selu, "sigmoid": torch.sigmoid,
                 "tanh": torch.tanh}
    return functions[nonlinearity](x)


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
    import torch
    from torch import nn

    if seed is not None:
        torch.manual_seed(seed)
    x = torch.randn(samples)
    empirical = (x.std() / apply(nonlinearity, x, param).std()).item()
    exact = nn.init.calculate_gain(nonlinearity, param)  # type: ignore[arg-type]
    return Gain(nonlinearity, param, exact, empirical, samples)
