"""The layer registry: every public torch.nn module, by introspection, checked against torch."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import netdsl
from netdsl.registry import layer_signature, torch_layers


def test_every_public_torch_nn_module_is_a_layer() -> None:
    layers = torch_layers()
    public = {name for name in dir(nn) if not name.startswith("_")
              and isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), nn.Module)}
    containers = {"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList",
                  "ParameterDict", "Container"}
    assert set(layers) == public - containers
    assert len(layers) > 140
    for name, cls in layers.items():
        assert layer_signature(cls, name).params is not None


CASES: list[tuple[str, Callable[[], nn.Module]]] = [
    ("LayerNorm((10,))", lambda: nn.LayerNorm((10,))),
    ("LayerNorm([10, 4], eps=1e-6)", lambda: nn.LayerNorm([10, 4], eps=1e-6)),
    ("Embedding(100, 16, padding_idx=0)", lambda: nn.Embedding(100, 16, padding_idx=0)),
    ("LSTM(10, 20, num_layers=2, batch_first=true)",
     lambda: nn.LSTM(10, 20, num_layers=2, batch_first=True)),
    ("GRU(8, 8, bidirectional=True)", lambda: nn.GRU(8, 8, bidirectional=True)),
    ("MultiheadAttention(16, 4)", lambda: nn.MultiheadAttention(16, 4)),
    ("TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, batch_first=true)",
     lambda: nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32,
                                        batch_first=True)),
    ("BatchNorm1d(10, momentum=none)", lambda: nn.BatchNorm1d(10, momentum=None)),
    ("GroupNorm(2, 4)", lambda: nn.GroupNorm(2, 4)),
    ("Conv1d(3, 4, 3, padding=\"same\")", lambda: nn.Conv1d(3, 4, 3, padding="same")),
    ("ConvTranspose2d(3, 1, 3, stride=2)", lambda: nn.ConvTranspose2d(3, 1, 3, stride=2)),
    ("Conv3d(2, 4, (1, 3, 3), bias=false)", lambda: nn.Conv3d(2, 4, (1, 3, 3), bias=False)),
    ("Bilinear(3, 4, 5)", lambda: nn.Bilinear(3, 4, 5)),
    ("PReLU(num_parameters=3, init=0.1)", lambda: nn.PReLU(num_parameters=3, init=0.1)),
    ("Unflatten(1, (2, 5))", lambda: nn.Unflatten(1, (2, 5))),
    ("AdaptiveAvgPool2d((none, 7))", lambda: nn.AdaptiveAvgPool2d((None, 7))),
]


@pytest.mark.parametrize(("call", "hand"), CASES, ids=[c for c, _ in CASES])
def test_layer_families_build_like_torch(call: str, hand: Callable[[], nn.Module]) -> None:
    torch.manual_seed(0)
    got = netdsl.loads(f"model M {{ layer = {call} }}").layer
    torch.manual_seed(0)
    want = hand()
    assert repr(got) == repr(want)
    sa, sb = got.state_dict(), want.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(("call", "message"), [
    ("LayerNorm(\"x\")", "LayerNorm() argument 'normalized_shape' expects "
                         "int | list[int] | tuple[int, ...], got str ('x')"),
    ("Conv2d(3, 6, 5, padding_mode=\"mirror\")",
     "Conv2d() argument 'padding_mode' expects 'zeros' | 'reflect' | 'replicate' | 'circular', "
     "got str ('mirror')"),
    ("Dropout(p=\"0.5\")", "Dropout() argument 'p' expects float, got str ('0.5')"),
    ("Linear(4, 2, device=\"cpu\")",
     "Linear() argument 'device' is set by netdsl.load(..., device=...), not in the spec"),
])
def test_arguments_are_checked_against_torch_annotations(call: str, message: str) -> None:
    with pytest.raises(netdsl.NetDSLError) as info:
        netdsl.loads(f"model M {{ layer = {call} }}")
    assert info.value.message == message
