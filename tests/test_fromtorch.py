"""netdsl import / netdsl.from_module: an nn.Module -> a spec that builds the same module.

The truth is the module itself: the spec's model loads the original's state_dict with
strict=True and gives the same outputs (torch.equal), for hand-written modules and for every
torchvision classification builder that can be imported, in both modes where the forward reads
self.training; the others fail with the reason listed here (and in docs/import.md).
Representatives of each family are compared on real tensors; the rest on the meta device (keys,
shapes, dtypes and every layer's repr), or on real tensors too with NETDSL_IMPORT_ALL=1.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
import warnings
from collections import OrderedDict, namedtuple
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear
from torchvision.models import regnet

import netdsl
from netdsl.cli import main
from netdsl.fmt import format_text
from netdsl.fromtorch import ImportFailure, from_module

BUILDERS = torchvision.models.list_models(module=torchvision.models)

# Compared on real tensors in every run: the smallest builder of each family, and the ones the
# issue names.
REAL = ["alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "efficientnet_v2_s",
        "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "resnet18",
        "regnet_x_400mf", "resnet50", "shufflenet_v2_x1_0", "squeezenet1_0", "squeezenet1_1",
        "vgg11", "vit_b_32", "maxvit_t"]
# Import and round-trip as well (the same code as their family's representative, larger).
ALSO = ["convnext_base", "convnext_large", "convnext_small", "densenet161", "densenet169",
        "densenet201", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
        "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
        "efficientnet_v2_l", "efficientnet_v2_m", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
        "resnet101", "resnet152", "resnet34", "resnext101_32x8d", "resnext101_64x4d",
        "resnext50_32x4d", "shufflenet_v2_x0_5", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
        "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "vit_b_16",
        "vit_h_14", "vit_l_16", "vit_l_32", "wide_resnet101_2", "wide_resnet50_2",
        # RegNet names its blocks "block1-0": written as string keys ("block1-0": Block(...)).
        *(name for name in BUILDERS if name.startswith("regnet") and name != "regnet_x_400mf")]
# Their forward reads self.training (the aux heads run in training only, where it returns a
# named tuple): compared in both modes, each with its input size (Inception's aux head needs
# 299x299 in training, and two images for the BatchNorm of its 1x1 map).
MODES = {"googlenet": (1, 64), "inception_v3": (2, 299)}
ALL_REAL = os.environ.get("NETDSL_IMPORT_ALL") == "1"

_SPELLING = "has no netdsl spelling (docs/forward-functions.md lists what a forward may call)"
_SWIN = ("features.1.0.attn (torchvision.models.swin_transformer.ShiftedWindowAttention{v}): "
         "function torchvision.models.swin_transformer._get_relative_position_bias "
         "(fx node '_get_relative_position_bias') " + _SPELLING)
# The builders that cannot be imported, each with the reason from_module gives.
FAILS = {
    **{f"swin_{size}": _SWIN.format(v="") for size in "bst"},
    **{f"swin_v2_{size}": _SWIN.format(v="V2") for size in "bst"},
}


def test_the_lists_cover_every_builder() -> None:
    assert sorted([*REAL, *ALSO, *MODES, *FAILS]) == sorted(BUILDERS)


def _kwargs(name: str) -> dict[str, Any]:
    """Small inputs: 10 classes, and ViT at 64x64 (56 for the 14-pixel patches of vit_h_14)."""
    if name.startswith("vit"):
        return {"num_classes": 10, "image_size": 56 if name == "vit_h_14" else 64}
    return {"num_classes": 10}


def _build(name: str, device: str = "cpu") -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GoogLeNet's and Inception's init_weights notices
        with torch.device(device), _widths_on_cpu():
            return torchvision.models.get_model(name, **_kwargs(name))


class _widths_on_cpu:
    """RegNet computes its widths with tensors and .tolist(), which the meta device cannot."""

    def __enter__(self) -> None:
        self.original = regnet.BlockParams.__dict__["from_init_params"]
        compute = self.original.__func__

        def on_cpu(cls: type, *args: Any, **kwargs: Any) -> Any:
            with torch.device("cpu"):
                return compute(cls, *args, **kwargs)

        regnet.BlockParams.from_init_params = classmethod(on_cpu)  # type: ignore[assignment]

    def __exit__(self, *exc: object) -> None:
        regnet.BlockParams.from_init_params = self.original  # type: ignore[method-assign]


def _same_outputs(original: nn.Module, size: int = 64) -> str:
    text = from_module(original)
    rebuilt = netdsl.loads(text)
    rebuilt.load_state_dict(original.state_dict(), strict=True)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    original.eval()
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(original(x), rebuilt(x))
    return text


@pytest.mark.parametrize("name", REAL + (ALSO if ALL_REAL else []))
def test_builder_round_trips(name: str) -> None:
    torch.manual_seed(0)
    # MaxViT's windows and grids of 7 need 224 pixels (7 x 32).
    _same_outputs(_build(name), {"vit_h_14": 56, "maxvit_t": 224}.get(name, 64))


def _same_in_both_modes(original: nn.Module, x: torch.Tensor) -> tuple[str, Any]:
    """The spec's model gives the original's outputs in eval and in training mode, each item
    of a tuple (torchvision's named tuples equal the spec's tuples), dropout drawing the
    same numbers from the same seed. The spec, and what the original gave in training."""
    text = from_module(original)
    rebuilt = netdsl.loads(text)
    rebuilt.load_state_dict(original.state_dict(), strict=True)
    for training in (False, True):
        original.train(training)
        rebuilt.train(training)
        with torch.no_grad():
            torch.manual_seed(1)
            expected = original(x)
            torch.manual_seed(1)
            got = rebuilt(x)
        if isinstance(expected, tuple):
            assert type(got) is tuple and len(got) == len(expected)
            assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
        else:
            assert torch.equal(expected, got)
    return text, expected


@pytest.mark.parametrize("name", sorted(MODES))
def test_builder_whose_forward_reads_the_mode_round_trips_in_both_modes(name: str) -> None:
    torch.manual_seed(0)
    original = _build(name)
    batch, size = MODES[name]
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    _, trained = _same_in_both_modes(original, x)
    assert isinstance(trained, tuple)  # the aux heads ran, and their logits were compared


def test_googlenet_reads_the_mode_where_torchvision_does() -> None:
    spec = from_module(_build("googlenet", "meta"))
    assert ("        if training {\n            aux1_out = inception4a_out -> aux1\n        }\n"
            in spec)
    assert ("        if training {\n            return fc_out, aux2_out, aux1_out\n        }\n"
            "        return fc_out\n") in spec
    assert spec.count("training") == 3  # the blocks read no mode


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(F.relu(self.fc(x)), 0.2) + F.silu(x)


def test_functions_at_their_defaults_are_written_without_them() -> None:
    """fx records F.relu(x) as relu(x, inplace=False): the keyword at torch's default goes,
    one that differs (leaky_relu's 0.2) stays."""
    original = Functional()
    text = from_module(original)
    assert "x -> fc -> relu -> leaky_relu(negative_slope=0.2)" in text
    assert "inplace" not in text
    rebuilt = netdsl.loads(text)
    rebuilt.load_state_dict(original.state_dict(), strict=True)
    x = torch.randn(3, 4)
    assert torch.equal(rebuilt(x), original(x))


class Scaled(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 / math.sqrt(x.size(-1)))


def test_math_on_a_traced_size_is_the_languages_function() -> None:
    """nanoGPT's attention scale: fx records math.sqrt on the traced size; the language's sqrt
    is math's on a size."""
    text = _same_outputs(Scaled(), 4)
    assert "sqrt_out = x.size(-1) -> sqrt" in text


def test_a_call_given_the_mode_is_written_with_training() -> None:
    """DenseNet with dropout calls F.dropout(..., training=self.training): True in one trace,
    False in the other, the module's mode in both."""
    torch.manual_seed(0)
    original = torchvision.models.densenet121(num_classes=10, drop_rate=0.2)
    text, _ = _same_in_both_modes(original, torch.randn(2, 3, 32, 32))
    assert "-> conv2\n                     -> dropout(p=0.2, training=training)\n" in text
    assert text.count("training") == 2  # that call's, and no if


def test_an_init_hint_set_on_a_layer_is_left_out() -> None:
    """torchvision's Inception sets stddev on layers for its init loop: not a Linear argument,
    not an attribute Linear sets, so nothing Linear computes with."""
    original = _build("inception_v3", "meta")
    assert original.AuxLogits.fc.stddev == 0.001
    rebuilt = netdsl.loads(from_module(original), device="meta")
    assert _leaves(rebuilt) == _leaves(original)
    assert not hasattr(rebuilt.AuxLogits.fc, "stddev")


def _leaves(module: nn.Module) -> list[tuple[str, str]]:
    """Each module without children: its path and, for a torch or torchvision layer, its repr
    (its class and arguments); a block's class and repr are netdsl's own."""
    layer = ("torch.nn", "torchvision.ops")
    return [(path, repr(m) if type(m).__module__.startswith(layer) else "block")
            for path, m in module.named_modules() if not list(m.children())]


@pytest.mark.parametrize("name", ALSO)
def test_builder_round_trips_on_meta(name: str) -> None:
    """The same code as the family's real test, on meta: the tree, every layer's arguments
    (its repr) and the state_dict's keys, shapes and dtypes."""
    original = _build(name, "meta")
    rebuilt = netdsl.loads(from_module(original), device="meta")
    assert _leaves(rebuilt) == _leaves(original)
    assert {k: (v.shape, v.dtype) for k, v in rebuilt.state_dict().items()} == \
        {k: (v.shape, v.dtype) for k, v in original.state_dict().items()}


@pytest.mark.parametrize("name", sorted(FAILS))
def test_builder_that_cannot_be_imported(name: str) -> None:
    with pytest.raises(ImportFailure) as caught:
        from_module(_build(name, "meta"))
    assert str(caught.value) == FAILS[name]


# ---------------------------------------------------------------- what the spec says


@pytest.fixture(scope="module")
def resnet18_spec() -> str:
    return from_module(torchvision.models.resnet18(num_classes=10))


def _uses(spec: str, block: str) -> int:
    return len(re.findall(rf"\b{block}\(", spec)) - 1  # less its declaration


def test_repeated_blocks_become_one_block_with_parameters(resnet18_spec: str) -> None:
    # torchvision's resnet18: eight BasicBlocks, three of them with a downsample shortcut.
    assert "block BasicBlock(in_channels: int) {" in resnet18_spec
    assert "block BasicBlock2(in_channels: int, out_channels: int) {" in resnet18_spec
    assert (_uses(resnet18_spec, "BasicBlock"), _uses(resnet18_spec, "BasicBlock2")) == (5, 3)
    assert "BasicBlock3" not in resnet18_spec
    assert "layer2 = sequential {\n        BasicBlock2(64, 128)\n        BasicBlock(128)\n" \
        in resnet18_spec


def _declarations(spec: str) -> dict[str, str]:
    return dict(re.findall(r"^(?:model|block) (\w+)[^\n]*\{\n(.*?)^\}", spec, re.M | re.S))


def test_the_spec_is_shorter_than_one_declaration_per_instance(resnet18_spec: str) -> None:
    bodies = _declarations(resnet18_spec)
    naive = sum(len(body.splitlines()) * max(_uses(resnet18_spec, name), 1)
                for name, body in bodies.items())
    assert len(resnet18_spec.splitlines()) < naive * 0.75


def test_numbers_of_the_forward_are_parameters_too() -> None:
    # torchvision's ConvNeXt LayerNorm2d passes its width to layer_norm in its forward.
    spec = from_module(_build("convnext_tiny", "meta"))
    assert "block LayerNorm2d(weight_size: int) {" in spec
    assert "-> layer_norm((weight_size,), weight=weight, bias=bias, eps=1e-06)" in spec
    assert "LayerNorm2d2" not in spec
    assert _uses(spec, "LayerNorm2d") == 5  # the stem, three downsamplings, the head


def test_layers_are_written_with_their_non_default_arguments(resnet18_spec: str) -> None:
    assert "conv1 = Conv2d(3, 64, 7, stride=2, padding=3, bias=false)" in resnet18_spec
    assert "bn1 = BatchNorm2d(64)\n" in resnet18_spec
    assert "maxpool = MaxPool2d(3, stride=2, padding=1)" in resnet18_spec
    assert "avgpool = AdaptiveAvgPool2d((1, 1))" in resnet18_spec
    assert "fc = Linear(512, 10)" in resnet18_spec


def test_the_forward_is_a_pipeline(resnet18_spec: str) -> None:
    assert ("    forward(x) = x -> conv1 -> bn1 -> relu -> maxpool -> layer1 -> layer2 -> layer3 "
            "-> layer4\n                 -> avgpool -> flatten(1) -> fc\n") in resnet18_spec
    assert ("        bn2_out = x -> conv1 -> bn1 -> relu -> conv2 -> bn2\n"
            "        return bn2_out + x -> relu\n") in resnet18_spec


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "shufflenet_v2_x1_0", "vit_b_32",
                                  "googlenet"])
def test_the_imported_spec_passes_check(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.net"
    path.write_text(from_module(_build(name, "meta")))
    assert netdsl.check(path) == []


def _exported_class(spec: Path, name: str, tmp_path: Path) -> type[nn.Module]:
    """The class ``name`` of the file ``netdsl export`` writes for ``spec``, imported from it."""
    file = tmp_path / f"{spec.stem}_exported.py"
    file.write_text(netdsl.export(spec))
    loader = importlib.util.spec_from_file_location(file.stem, file)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    found: type[nn.Module] = getattr(module, name)
    return found


def _body(spec: str) -> str:
    """A spec without its first line, which names where it was imported from."""
    first, _, rest = spec.partition("\n")
    assert first.startswith("# Imported from ")
    return rest


@pytest.mark.parametrize("name", ["alexnet", "resnet18", "mobilenet_v2", "shufflenet_v2_x0_5",
                                  "efficientnet_b0", "mnasnet0_5", "squeezenet1_0",
                                  "regnet_x_400mf", "convnext_tiny", "vit_b_16"])
def test_importing_an_exported_spec_gives_the_spec_back(name: str, tmp_path: Path) -> None:
    """import -> export -> import is a fixed point: the spec of the exported class is, byte for
    byte after fmt, the spec it was exported from."""
    original = _build(name, "meta")
    spec = tmp_path / f"{name}.net"
    spec.write_text(from_module(original))
    with torch.device("meta"):
        again = _exported_class(spec, type(original).__name__, tmp_path)()
    assert _body(format_text(from_module(again))) == _body(format_text(spec.read_text()))


# ---------------------------------------------------------------- hand-written modules


class Scale(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.randn(n, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class Unit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.scale = Scale(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.scale(self.bn(self.conv(x))))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 8, 3, padding=1), act=nn.ReLU()))
        self.units = nn.ModuleList([Unit(8, 8, 1), Unit(8, 16, 2), Unit(16, 16, 1)])
        self.heads = nn.ModuleDict({"a": nn.Linear(16, 4), "b": nn.Linear(16, 4)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for unit in self.units:
            x = unit(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        out = torch.cat([self.heads["a"](x), self.heads["b"](x)], dim=1)
        return out + x.mean(dim=1, keepdim=True)[:, :1] * 2


def test_a_hand_written_module_round_trips() -> None:
    torch.manual_seed(0)
    text = _same_outputs(Net(), 16)
    assert "stem = sequential {\n        conv: Conv2d(3, 8, 3, padding=1)\n        act: ReLU()" \
        in text
    assert ("units = list [\n        Unit(8, 8, 1)\n        Unit(8, 16, 2)\n"
            "        Unit(16, 16, 1)") in text
    assert 'heads = dict {\n        a: Linear(16, 4)\n        b: Linear(16, 4)\n    }' in text
    assert "block Unit(in_channels: int, out_channels: int, stride: int) {" in text
    assert "conv = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=false)" \
        in text
    assert "block Scale(gain_size: int) {\n    param gain = zeros(gain_size, 1, 1)\n" in text


class Noisy(nn.Module):
    """Random numbers drawn in a written order, and values used in another."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Dropout(0.5)
        self.second = nn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.first(x)
        b = self.second(x)
        s = x.sigmoid()
        t = x.tanh()
        return (b + a) * (t - s)


class Staged(nn.Module):
    """Keys as RegNet's AnyStage names its blocks ("block1-0"), and one with a space."""

    def __init__(self) -> None:
        super().__init__()
        self.stage = nn.Sequential(OrderedDict([("block1-0", nn.Conv2d(3, 4, 3)),
                                                ("act 1", nn.ReLU())]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(x)


class Pooled(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 3, stride=2)


def test_arguments_torch_passes_at_their_defaults_are_left_out() -> None:
    """F.max_pool2d passes padding, dilation, ceil_mode and return_indices on to the trace, at
    torch's defaults (netdsl's max_pool2d takes none of the last three): they go."""
    text = _same_outputs(Pooled(), 9)
    assert "forward(x) = x -> max_pool2d(3, stride=2)\n" in text


def test_sequential_keys_that_are_not_names_are_written_as_strings() -> None:
    torch.manual_seed(0)
    text = _same_outputs(Staged(), 8)
    assert '        "block1-0": Conv2d(3, 4, 3)\n        "act 1": ReLU()\n' in text


def test_values_are_computed_in_the_order_written() -> None:
    module = Noisy()
    text = from_module(module)
    rebuilt = netdsl.loads(text)
    x = torch.randn(4, 8)
    torch.manual_seed(1)
    expected = module(x)  # training mode: both dropouts draw
    torch.manual_seed(1)
    assert torch.equal(rebuilt(x), expected)
    assert ("        first_out = x -> first\n        second_out = x -> second\n"
            "        sigmoid_out = x.sigmoid()\n        tanh_out = x.tanh()\n"
            "        return (second_out + first_out) * (tanh_out - sigmoid_out)\n") in text


class Lift(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        if self.training:
            x = x + 1
        return x


Outputs = namedtuple("Outputs", ["logits", "aux"])


class Moded(nn.Module):
    """Reads the mode as GoogLeNet does (an aux head in training, a named tuple), and as
    netdsl's else does (a value of eval's own)."""

    def __init__(self) -> None:
        super().__init__()
        self.lifts = nn.Sequential(Lift(4), Lift(4))
        self.aux = nn.Linear(4, 2)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> Any:
        x = self.lifts(x)
        if self.training:
            aux = self.aux(x)
        else:
            mean = x.mean(-1)
        x = self.head(self.drop(x))
        if self.training:
            return Outputs(x, aux)
        return x, mean


class Watch(nn.Module):
    """A value of eval's own, before a computation both modes share."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> Any:
        if not self.training:
            mean = x.mean(-1)
        x = self.fc(x)
        return x if self.training else (x, mean)


def test_a_forward_that_reads_the_mode_is_imported_in_both_modes() -> None:
    torch.manual_seed(0)
    module = Moded()
    text, _ = _same_in_both_modes(module, torch.randn(3, 4))
    assert ("        lifts_out = x -> lifts\n"
            "        if training {\n            aux_out = lifts_out -> aux\n"
            "        } else {\n            mean_out = lifts_out.mean(-1)\n        }\n"
            "        head_out = lifts_out -> drop -> head\n"
            "        if training {\n            return head_out, aux_out\n        }\n"
            "        return head_out, mean_out\n") in text
    text, _ = _same_in_both_modes(Lift(4), torch.randn(3, 4))
    assert ("    forward(x) {\n        fc_out = x -> fc\n"
            "        if training {\n            return fc_out + 1\n        }\n"
            "        return fc_out\n    }\n") in text
    text, _ = _same_in_both_modes(Watch(), torch.randn(3, 4))
    assert ("        if not training {\n            mean_out = x.mean(-1)\n        }\n"
            "        fc_out = x -> fc\n"
            "        if training {\n            return fc_out\n        }\n"
            "        return fc_out, mean_out\n") in text


def test_the_modules_modes_are_restored() -> None:
    module = Moded()
    module.lifts[1].eval()  # a frozen part, as a BatchNorm kept in eval while the rest trains
    modes = [m.training for m in module.modules()]
    from_module(module)
    assert [m.training for m in module.modules()] == modes


def test_the_model_is_named_as_asked() -> None:
    assert "model Tiny {" in from_module(Net(), name="Tiny")


# ---------------------------------------------------------------- module arguments


class Seq2Seq(nn.Module):
    """Stacks built from a layer torch deep-copies, one with a final LayerNorm, one without."""

    def __init__(self, d_model: int = 16, encoder_norm: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, 2, 32, dropout=0.0, batch_first=True),
            num_layers=2, norm=encoder_norm)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d_model, 2, 24, norm_first=True, batch_first=True),
            num_layers=3)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return self.decoder(tgt, self.encoder(src))


def _same_seq2seq_outputs(original: nn.Module, d_model: int = 16) -> str:
    text = from_module(original)
    rebuilt = netdsl.loads(text)
    rebuilt.load_state_dict(original.state_dict(), strict=True)
    generator = torch.Generator().manual_seed(0)
    src = torch.randn(2, 5, d_model, generator=generator)
    tgt = torch.randn(2, 4, d_model, generator=generator)
    original.eval()
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(original(src, tgt), rebuilt(src, tgt))
    return text


def _unwrapped(text: str) -> str:
    """The spec's text with fmt's line breaks undone, so that a long call reads as one line."""
    return re.sub(r"\(\s+", "(", " ".join(text.split()))


def test_module_arguments_are_written_as_nested_calls() -> None:
    torch.manual_seed(0)
    text = _unwrapped(_same_seq2seq_outputs(Seq2Seq(encoder_norm=nn.LayerNorm(16))))
    assert ("encoder = TransformerEncoder(TransformerEncoderLayer(16, 2, dim_feedforward=32, "
            "dropout=0.0, batch_first=true), 2, norm=LayerNorm(16))") in text
    assert ("decoder = TransformerDecoder(TransformerDecoderLayer(16, 2, dim_feedforward=24, "
            "batch_first=true, norm_first=true), 3)") in text


def test_a_norm_argument_is_its_child_of_that_name() -> None:
    torch.manual_seed(0)
    text = _unwrapped(_same_seq2seq_outputs(
        Seq2Seq(encoder_norm=nn.LayerNorm(16, eps=1e-3, bias=False))))
    assert "norm=LayerNorm(16, eps=0.001, bias=false))" in text


class Stacks(nn.Module):
    """Two encoders that differ only in a nested layer's width: one block with a parameter
    (and a forward returning two values, which needs a return statement)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = Seq2Seq(16)
        self.b = Seq2Seq(8)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a(x, x), self.b(y, y)


def test_a_nested_calls_values_become_block_parameters() -> None:
    text = from_module(Stacks())
    assert "a = Seq2Seq(16)\n    b = Seq2Seq(8)" in text
    assert "block Seq2Seq(d_model: int) {" in text
    assert "TransformerEncoderLayer(d_model, 2, dim_feedforward=32" in text
    x, y = torch.randn(1, 3, 16), torch.randn(1, 3, 8)
    original = Stacks().eval()
    rebuilt = netdsl.loads(from_module(original)).eval()
    rebuilt.load_state_dict(original.state_dict(), strict=True)
    with torch.no_grad():
        assert all(torch.equal(o, r) for o, r in zip(original(x, y), rebuilt(x, y), strict=True))


class WholeTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.transformer = nn.Transformer(16, 2, num_encoder_layers=1, num_decoder_layers=2,
                                          dim_feedforward=32, batch_first=True)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return self.transformer(src, tgt)


def test_a_transformer_is_written_with_its_encoder_and_decoder() -> None:
    torch.manual_seed(0)
    text = _same_seq2seq_outputs(WholeTransformer())
    assert "custom_encoder=TransformerEncoder(TransformerEncoderLayer(16, 2" in text
    assert "custom_decoder=TransformerDecoder(TransformerDecoderLayer(16, 2" in text


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) if x.sum() > 0 else x


class Hidden(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = NonDynamicallyQuantizableLinear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class TorchRelu(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


class ToList(nn.Module):
    def forward(self, x: torch.Tensor) -> Any:
        return x.tolist()


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x)[0]


class Grandchild(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Scale(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.inner.gain


class Cache(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(2), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class Tied(nn.Module):
    """nanoGPT's weight tying: the head's weight is the embedding's."""

    def __init__(self, by_position: bool = False) -> None:
        super().__init__()
        self.wte = nn.Embedding(11, 8)
        self.blocks = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
        self.head = nn.Linear(8, 11, bias=False)
        self.head.weight = self.wte.weight
        if by_position:
            self.blocks[1].weight = self.blocks[0].weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.wte(idx)))


def test_tied_parameters_stay_tied() -> None:
    module = Tied()
    text = from_module(module)
    assert "    tie head.weight = wte.weight\n" in text
    rebuilt = netdsl.loads(text)
    rebuilt.load_state_dict(module.state_dict(), strict=True)
    assert rebuilt.head.weight is rebuilt.wte.weight
    idx = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    assert torch.equal(rebuilt(idx), module(idx))


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.b = self.a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


_HERE = "tests.test_fromtorch" if __name__ == "tests.test_fromtorch" else __name__


def _diverged() -> Seq2Seq:
    """An encoder whose second layer is no longer a copy of the first."""
    module = Seq2Seq()
    module.encoder.layers[1].norm_first = True
    return module



@pytest.mark.parametrize(("module", "message"), [
    (Branchy(), f"the model ({_HERE}.Branchy): torch.fx cannot trace its forward: TraceError: "
                "symbolically traced variables cannot be used as inputs to control flow"),
    (Hidden(), "fc (torch.nn.modules.linear.NonDynamicallyQuantizableLinear): not a layer of the "
               "language (docs/language.md §6 says which classes are)"),
    (TorchRelu(), f"the model ({_HERE}.TorchRelu): function torch.relu (fx node 'relu') "
                  + _SPELLING),
    (ToList(), f"the model ({_HERE}.ToList): tensor method 'tolist' (fx node 'tolist') "
               + _SPELLING),
    (Attention(), "mha (MultiheadAttention): rebuilding it as MultiheadAttention(embed_dim=8, "
                  "num_heads=2, kdim=8, vdim=8) gives a different module: its parameters or "
                  "buffers differ"),
    (Grandchild(), f"the model ({_HERE}.Grandchild): the forward reads 'inner.gain', a tensor "
                   "that is not the module's own parameter or buffer"),
    (Cache(), f"the model ({_HERE}.Cache): buffer 'mask' is not in the state_dict, so its "
              "values cannot be carried over"),
    (Tied(by_position=True), "parameter 'blocks.1.weight' is 'blocks.0.weight'; a tie names "
                             "the modules on its path by name, not by position"),
    (Seq2Seq(encoder_norm=Scale(16)), f"encoder (TransformerEncoder): argument 'norm' is a "
                                      f"{_HERE}.Scale, which is not a layer of the language"),
    (_diverged(), "encoder (TransformerEncoder): rebuilding it as TransformerEncoder("
                  "encoder_layer=TransformerEncoderLayer(d_model=16, nhead=2, "
                  "dim_feedforward=32, dropout=0.0, batch_first=true), num_layers=2) gives a "
                  "different module: its layers.1.norm_first is True, the rebuilt one's False"),
    (Shared(), "b (torch.nn.modules.linear.Linear): the same module as 'a'; a spec builds each "
               "child of its own (share its parameters with tie instead)"),
    (nn.Sequential(nn.Linear(1, 1)), "torch.nn.modules.container.Sequential is a layer or a "
                                     "container, not a model: import a module of your own "
                                     "class that holds it"),
])
def test_what_cannot_be_imported_says_why(module: nn.Module, message: str) -> None:
    with pytest.raises(ImportFailure) as caught:
        from_module(module)
    assert str(caught.value) == message


def test_usage_mistakes_are_type_errors() -> None:
    with pytest.raises(TypeError, match=r"^from_module\(\) takes an nn.Module, got int$"):
        from_module(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"name= takes a name .*, got '1x'$"):
        from_module(Net(), name="1x")


def test_from_module_is_public() -> None:
    assert netdsl.from_module is from_module
    assert "from_module" in netdsl.__all__


# ---------------------------------------------------------------- the command


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["import", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_import_writes_the_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "r18.net"
    code, stdout, stderr = _run(capsys, "torchvision.models:resnet18", "--arg", "num_classes=10",
                                "-o", str(out))
    assert (code, stdout, stderr) == (0, "", f"netdsl: wrote {out}\n")
    assert out.read_text() == from_module(torchvision.models.resnet18(num_classes=10))


def test_an_input_shape_becomes_the_models_input_declaration(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """With --input the imported spec's shapes are checked: no NDL203 note, and the shape pass
    infers torchvision's own output shape."""
    out = tmp_path / "r18.net"
    code, _, _ = _run(capsys, "torchvision.models:resnet18", "--arg", "num_classes=10",
                      "--input", "N,3,64,64", "-o", str(out))
    assert code == 0
    assert "model ResNet {\n    input x: [N, 3, 64, 64]\n    conv1 = " in out.read_text()
    assert netdsl.diagnose(out) == []
    summary = netdsl.summary(out)
    original = torchvision.models.resnet18(num_classes=10)
    assert summary.total_params == sum(p.numel() for p in original.parameters())
    assert summary.rows[-1].output == "[N, 10]"
    without = from_module(original)
    assert [d.code for d in netdsl.diagnose(out, source=without)] == ["NDL203"]


def test_import_prints_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = _run(capsys, "torchvision.models:squeezenet1_1", "--arg", "num_classes=7",
                           "--arg", "dropout=0.25", "--name", "Squeeze")
    assert code == 0
    assert stdout == from_module(torchvision.models.squeezenet1_1(num_classes=7, dropout=0.25),
                                 name="Squeeze")


def test_import_finds_the_users_module_in_the_current_directory(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "netdsl_import_case.py").write_text(
        "from torch import nn\n\n"
        "class Head(nn.Module):\n"
        "    def __init__(self, width):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(width, 2)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(x).softmax(-1)\n\n"
        "def build(width=4):\n"
        "    return Head(width)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "netdsl_import_case", raising=False)
    code, stdout, _ = _run(capsys, "netdsl_import_case:build", "--arg", "width=3")
    assert code == 0
    assert stdout == ("# Imported from netdsl_import_case.Head by netdsl import.\n\n"
                      "model Head {\n    fc = Linear(3, 2)\n    forward(x) {\n"
                      "        fc_out = x -> fc\n        return fc_out.softmax(-1)\n    }\n}\n")


def test_import_of_a_module_it_cannot_write_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = _run(capsys, "torchvision.models:swin_t", "--arg", "num_classes=10")
    assert (code, stdout) == (1, "")
    assert stderr.endswith(f"netdsl: error: cannot import torchvision.models:swin_t: "
                           f"{FAILS['swin_t']}\n")


@pytest.mark.parametrize(("args", "message"), [
    (["torchvision.models"], "netdsl: error: 'torchvision.models' is not MODULE:FACTORY "
                             "(e.g. torchvision.models:resnet18)\n"),
    (["torchvision.models:resnet19"], "netdsl: error: module 'torchvision.models' has no "
                                      "'resnet19'\n"),
    (["nope_not_a_module:f"], "netdsl: error: cannot import module 'nope_not_a_module': "
                              "ModuleNotFoundError: No module named 'nope_not_a_module'\n"),
    (["torchvision.models:resnet18", "--arg", "num_class=2"],
     "netdsl: error: torchvision.models:resnet18() failed: TypeError: ResNet.__init__() got an "
     "unexpected keyword argument 'num_class'\n"),
    (["math:pi"], "netdsl: error: 'math:pi' is not callable\n"),
    (["torchvision.models:alexnet", "--name", "1x"],
     "netdsl: error: from_module() name= takes a name (letters, digits and _, starting with a "
     "letter), got '1x'\n"),
    (["collections:OrderedDict"], "netdsl: error: collections:OrderedDict() returned "
                                  "OrderedDict, not an nn.Module\n"),
    (["torchvision.models:alexnet", "--input", "N,3,64,64", "--input", "N,3"],
     "netdsl: error: from_module() inputs: 2 shapes for a forward of 1 argument(s) (x)\n"),
])
def test_import_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str],
                                    message: str) -> None:
    code, stdout, stderr = _run(capsys, *args)
    assert (code, stdout, stderr) == (2, "", message)


@pytest.mark.parametrize(("value", "expected"), [
    ("10", 10), ("0.5", 0.5), ("'a'", "a"), ("true", True), ("None", None), ("null", None),
    ("[1, 2]", [1, 2]), ("(1, 2)", (1, 2)), ('{"a": 1}', {"a": 1}),
])
def test_arg_values_are_literals_or_json(value: str, expected: object) -> None:
    from netdsl.fromtorch_factory import parse_arg

    assert parse_arg(f"x={value}") == ("x", expected)


def test_arg_values_are_never_evaluated(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["import", "torchvision.models:resnet18", "--arg", "num_classes=__import__('os')"])
    assert caught.value.code == 2
    assert capsys.readouterr().err.endswith(
        "netdsl import: error: argument --arg: bad argument \"num_classes=__import__('os')\": "
        "the value is a Python literal or JSON (a string is quoted: "
        "num_classes='\"__import__('os')\"')\n")


@pytest.mark.parametrize("name", ["densenet121", "mobilenet_v2", "resnet18"])
def test_the_spec_is_in_fmts_layout(name: str) -> None:
    spec = from_module(_build(name, "meta"))
    assert format_text(spec) == spec
    assert max(len(line) for line in spec.splitlines()) <= 100
