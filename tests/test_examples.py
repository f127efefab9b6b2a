"""Every example under examples/ loads, runs a forward pass and passes ``netdsl check``.

The examples are found with a recursive glob, so a new example is picked up automatically; it
then needs an entry in INPUTS (the input its forward takes), or its test fails saying so. The
torchvision zoo (examples/zoo/, dozens of builders, some of 100M+ parameters) runs on the meta
device here; tests/test_zoo.py builds and runs them for real against torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import netdsl
from netdsl.api import check

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FILES = sorted(EXAMPLES.rglob("*.net"))


@dataclass(frozen=True)
class Input:
    """What a model's forward takes: a random tensor of ``shape`` (zeros, for token ids of an
    integer ``dtype``), then extra arguments (tensors among them go to the model's device)."""

    shape: tuple[int, ...]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    dtype: torch.dtype = torch.float32


# (example path relative to examples/, model name) -> input for its forward.
INPUTS: dict[tuple[str, str], Input] = {
    ("alexnet.net", "AlexNet"): Input((1, 3, 224, 224)),
    ("init/kaiming_relu.net", "MLP"): Input((16, 256)),
    ("init/normal.net", "MLP"): Input((16, 256)),
    ("init/scaled_normal.net", "MLP"): Input((16, 256)),
    ("init/tanh_no_gain.net", "MLP"): Input((16, 256)),
    ("init/xavier_tanh.net", "MLP"): Input((16, 256)),
    ("lenet.net", "LeNet"): Input((2, 3, 32, 32)),
    ("module_dict.net", "ModuleDict"): Input((4, 10, 32, 32), ("conv",), {"act": "prelu"}),
    ("module_list.net", "ModuleList"): Input((10, 10)),
    ("residual.net", "ResidualNet"): Input((2, 3, 32, 32)),
    ("resnet18.net", "ResNet18"): Input((1, 3, 64, 64)),
    # The zoo's models that do not take images: token ids.
    ("zoo/gpt.net", "GPT"): Input((2, 16), dtype=torch.long),
    ("zoo/transformer.net", "Seq2Seq"): Input((2, 12), (torch.zeros(2, 9, dtype=torch.long),),
                                              dtype=torch.long),
}


def relative(path: Path) -> str:
    return path.relative_to(EXAMPLES).as_posix()


def declared_models(path: Path) -> list[str]:
    """The ``model`` declarations of a file that load without parameter values (blocks, and
    models such as the zoo's generic ResNet, are loaded through the models that use them)."""
    return [m.name.name for m in netdsl.parse_file(path).models if m.kind == "model" and (
        m.params is None or all(p.default is not None for p in m.params))]


def input_features(model: nn.Module) -> int | None:
    """The channels or features the model's first layer expects, if it has one."""
    for module in model.modules():
        for attr in ("in_channels", "in_features"):
            if hasattr(module, attr):
                return int(getattr(module, attr))
    return None


ZOO = "zoo/"
ZOO_INPUT = Input((2, 3, 224, 224))


def input_for(path: Path, name: str) -> Input:
    key = (relative(path), name)
    if key[0].startswith(ZOO) and key not in INPUTS:
        return ZOO_INPUT
    if key not in INPUTS:
        pytest.fail(f"{key[0]}: no input for model {name!r}; add an entry for {key!r} to INPUTS "
                    f"in {Path(__file__).name}")
    return INPUTS[key]


def run_forward(path: Path, name: str) -> None:
    device = "meta" if relative(path).startswith(ZOO) else "cpu"
    model = netdsl.load(path, model=name, device=device).eval()
    spec = input_for(path, name)
    expected = input_features(model) if spec.dtype.is_floating_point else None
    assert expected is None or spec.shape[1] == expected, (
        f"{relative(path)}: {name}'s first layer takes {expected} channels/features, but INPUTS "
        f"gives shape {spec.shape}")
    if spec.dtype.is_floating_point:
        x = torch.randn(spec.shape, generator=torch.Generator().manual_seed(0)).to(device)
    else:
        x = torch.zeros(spec.shape, dtype=spec.dtype, device=device)
    args = [a.to(device) if isinstance(a, torch.Tensor) else a for a in spec.args]
    with torch.no_grad():
        out = model(x, *args, **spec.kwargs)
    assert isinstance(out, torch.Tensor)
    assert out.shape[0] == spec.shape[0]


def test_examples_are_found() -> None:
    assert len(FILES) >= 10
    assert EXAMPLES / "lenet.net" in FILES
    assert EXAMPLES / "init" / "normal.net" in FILES


def test_inputs_name_existing_models() -> None:
    """No stale INPUTS entries: each names a model declared in an existing example."""
    declared = {(relative(p), name) for p in FILES for name in declared_models(p)}
    assert set(INPUTS) <= declared, set(INPUTS) - declared


@pytest.mark.parametrize("path", FILES, ids=relative)
def test_example_loads_and_runs(path: Path) -> None:
    for name in declared_models(path):
        run_forward(path, name)


@pytest.mark.parametrize("path", FILES, ids=relative)
def test_example_passes_check(path: Path) -> None:
    assert check(path) == []
