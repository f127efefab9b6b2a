"""The torchvision zoo in netdsl: ``examples/zoo/<family>.net`` against ``torchvision.models``.

Each torchvision builder is a model of the same name in its family's spec, taking the builder's
keyword arguments. For every case below, built after ``torch.manual_seed(0)`` on both sides: the
same ``state_dict`` keys in the same order with bitwise-equal tensors, identical outputs in eval
mode, identical outputs and gradients in train mode (``torch.manual_seed(1)`` before each
forward, so dropout and stochastic depth draw the same masks), and torchvision's weights load
strictly into the netdsl model. Then ``netdsl.summary`` totals against torchvision's parameter
counts, and each spec's length against torchvision's own code (``benchmarks/zoo_lines.py``).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.vision_transformer import ConvStemConfig

import netdsl

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "examples" / "zoo"

# Small inputs keep the file fast; 64x64 is enough for every family (googlenet's aux heads pool
# a 4x4 map there) but ViT, whose input must be image_size square (torchvision asserts it).
INPUT_SHAPE = (2, 3, 64, 64)

# Families whose input side is the builder's image_size (its default here, or the case's).
IMAGE_SIZE = {"vit.net": 224}

# torchvision's googlenet(weights=None) warns that its default init will change.
GOOGLENET_WARNING = "ignore:The default weight initialization of GoogleNet:FutureWarning"

# (spec file, builder, kwargs): the contract.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("vgg.net", "vgg11", {}),
    ("vgg.net", "vgg16_bn", {"num_classes": 10}),
    ("vgg.net", "vgg11", {"init_weights": False}),
    ("resnet.net", "resnet50", {}),
    ("resnet.net", "resnext50_32x4d", {}),
    ("resnet.net", "wide_resnet50_2", {}),
    ("resnet.net", "resnet18", {"zero_init_residual": True}),
    ("resnet.net", "resnet50", {"num_classes": 10, "zero_init_residual": True,
                                "replace_stride_with_dilation": [False, True, True]}),
    ("mobilenet_v2.net", "mobilenet_v2", {}),
    ("mobilenet_v2.net", "mobilenet_v2", {"width_mult": 0.5}),
    ("mobilenet_v2.net", "mobilenet_v2", {"width_mult": 0.1, "num_classes": 10}),
    ("squeezenet.net", "squeezenet1_0", {}),
    ("squeezenet.net", "squeezenet1_1", {"num_classes": 10}),
    ("densenet.net", "densenet121", {}),
    ("densenet.net", "densenet169", {"num_classes": 10}),
    ("densenet.net", "densenet121", {"drop_rate": 0.2}),
    ("densenet.net", "densenet121", {"memory_efficient": True}),
    ("googlenet.net", "googlenet", {}),
    ("googlenet.net", "googlenet", {"aux_logits": False}),
    ("googlenet.net", "googlenet", {"transform_input": True, "aux_logits": True}),
    ("efficientnet.net", "efficientnet_b0", {}),
    ("efficientnet.net", "efficientnet_b1", {"num_classes": 10}),
    ("efficientnet.net", "efficientnet_b0", {"stochastic_depth_prob": 0.5, "dropout": 0.3}),
    ("shufflenet.net", "shufflenet_v2_x1_0", {}),
    ("shufflenet.net", "shufflenet_v2_x0_5", {"num_classes": 10}),
    # Full-size ViT-B takes several seconds a case: three at 224, the others at image_size=32.
    ("vit.net", "vit_b_16", {}),
    ("vit.net", "vit_b_32", {}),
    ("vit.net", "vit_b_16", {"representation_size": 768}),
    ("vit.net", "vit_b_16", {"image_size": 32, "dropout": 0.1, "attention_dropout": 0.1,
                             "num_classes": 10}),
    ("vit.net", "vit_b_32", {"image_size": 32, "conv_stem_configs": [
        ConvStemConfig(64, 3, 4), ConvStemConfig(128, 3, 4, nn.BatchNorm2d, nn.SiLU),
        ConvStemConfig(256, 3, 2)]}),
    ("convnext.net", "convnext_tiny", {}),
    ("convnext.net", "convnext_small", {"num_classes": 10}),
]


def _id_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_id_value(v) for v in value) + "]"
    if isinstance(value, type):  # a layer class: nn.BatchNorm2d
        return value.__name__
    return repr(value)


def case_id(builder: str, kwargs: dict[str, Any]) -> str:
    """``resnet50``, ``resnet50-num_classes=10``, ..."""
    return "-".join([builder, *(f"{key}={_id_value(value)}" for key, value in kwargs.items())])


def _marks(builder: str) -> list[pytest.MarkDecorator]:
    return [pytest.mark.filterwarnings(GOOGLENET_WARNING)] if builder == "googlenet" else []


def _params(cases: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    return [pytest.param(file, builder, kwargs, id=case_id(builder, kwargs), marks=_marks(builder))
            for file, builder, kwargs in cases]


# Every (file, builder) of the table once, at default kwargs.
BUILDERS: list[tuple[str, str]] = list(dict.fromkeys((file, builder) for file, builder, _ in CASES))


# ---------------------------------------------------------------- helpers


@contextmanager
def quiet_googlenet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The default weight initialization of GoogleNet",
                                category=FutureWarning)
        yield


def build_reference(builder: str, kwargs: dict[str, Any], seed: int = 0) -> nn.Module:
    """``torchvision.models.<builder>(weights=None, **kwargs)`` right after ``manual_seed``."""
    torch.manual_seed(seed)
    with quiet_googlenet():
        return getattr(torchvision.models, builder)(weights=None, **copy.deepcopy(kwargs))


def build_netdsl(file: str, builder: str, kwargs: dict[str, Any], seed: int = 0) -> nn.Module:
    """``netdsl.load("examples/zoo/<file>", model=<builder>, **kwargs)`` right after
    ``manual_seed``."""
    torch.manual_seed(seed)
    return netdsl.load(ZOO / file, model=builder, **copy.deepcopy(kwargs))


def build_pair(file: str, builder: str, kwargs: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    return build_reference(builder, kwargs), build_netdsl(file, builder, kwargs)


def input_shape(file: str, kwargs: dict[str, Any]) -> tuple[int, ...]:
    """INPUT_SHAPE, or for a family of IMAGE_SIZE an image_size square."""
    if file not in IMAGE_SIZE:
        return INPUT_SHAPE
    side = kwargs.get("image_size", IMAGE_SIZE[file])
    return (*INPUT_SHAPE[:2], side, side)


def random_input(shape: tuple[int, ...] = INPUT_SHAPE, seed: int = 1234) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def assert_same_state(ref: nn.Module, got: nn.Module) -> None:
    """Same state_dict keys in the same order, and bitwise-equal tensors."""
    state_ref, state_got = ref.state_dict(), got.state_dict()
    keys_ref, keys_got = list(state_ref), list(state_got)
    if keys_ref != keys_got:
        pairs = enumerate(zip(keys_ref, keys_got, strict=False))
        index = next((i for i, (a, b) in pairs if a != b), min(len(keys_ref), len(keys_got)))
        first_ref = keys_ref[index] if index < len(keys_ref) else "<end>"
        first_got = keys_got[index] if index < len(keys_got) else "<end>"
        pytest.fail(f"state_dict keys differ at #{index}: torchvision {first_ref!r}, netdsl "
                    f"{first_got!r} ({len(keys_ref)} vs {len(keys_got)} keys)")
    for key, tensor in state_ref.items():
        other = state_got[key]
        assert tensor.dtype == other.dtype, f"{key}: dtype {tensor.dtype} vs {other.dtype}"
        assert tensor.shape == other.shape, f"{key}: shape {tuple(tensor.shape)} vs " \
                                            f"{tuple(other.shape)}"
        assert torch.equal(tensor, other), f"{key}: values differ (bitwise init)"


def as_outputs(output: Any) -> tuple[torch.Tensor, ...]:
    """A forward's result as a tuple of tensors (torchvision's namedtuples are tuples too)."""
    if isinstance(output, torch.Tensor):
        return (output,)
    assert isinstance(output, tuple), f"unexpected output type {type(output).__name__}"
    assert all(isinstance(o, torch.Tensor) for o in output), \
        f"non-tensor in output: {[type(o).__name__ for o in output]}"
    return tuple(output)


def assert_same_outputs(ref: Any, got: Any, mode: str) -> None:
    outs_ref, outs_got = as_outputs(ref), as_outputs(got)
    assert len(outs_ref) == len(outs_got), \
        f"{mode}: torchvision returns {len(outs_ref)} outputs, netdsl {len(outs_got)}"
    for index, (a, b) in enumerate(zip(outs_ref, outs_got, strict=True)):
        assert a.shape == b.shape, \
            f"{mode} output {index}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
        assert torch.equal(a, b), \
            f"{mode} output {index}: max abs difference {(a - b).abs().max().item():.3g}"


def assert_same_grads(ref: nn.Module, got: nn.Module) -> None:
    """Same parameter names in the same order, and bitwise-equal ``.grad`` (or both None)."""
    named_ref, named_got = list(ref.named_parameters()), list(got.named_parameters())
    assert len(named_ref) == len(named_got), \
        f"{len(named_ref)} parameters in torchvision, {len(named_got)} in netdsl"
    for (name_ref, p_ref), (name_got, p_got) in zip(named_ref, named_got, strict=True):
        assert name_ref == name_got, f"parameter names differ: {name_ref!r} vs {name_got!r}"
        if p_ref.grad is None or p_got.grad is None:
            assert p_ref.grad is None and p_got.grad is None, \
                f"{name_ref}.grad: torchvision {'None' if p_ref.grad is None else 'set'}, " \
                f"netdsl {'None' if p_got.grad is None else 'set'}"
            continue
        assert torch.equal(p_ref.grad, p_got.grad), \
            f"{name_ref}.grad differs: max abs difference " \
            f"{(p_ref.grad - p_got.grad).abs().max().item():.3g}"


def eval_forward(model: nn.Module, x: torch.Tensor) -> Any:
    model.eval()
    with torch.no_grad():
        return model(x.clone())


def train_step(model: nn.Module, x: torch.Tensor) -> Any:
    """Train-mode forward after ``manual_seed(1)``, then backward of the sum of all outputs."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    output = model(x.clone())
    sum(o.sum() for o in as_outputs(output)).backward()
    return output


def assert_equivalent(ref: nn.Module, got: nn.Module,
                      shape: tuple[int, ...] = INPUT_SHAPE) -> None:
    """State, eval outputs, train outputs and gradients, in that order (``got`` is netdsl's)."""
    assert_same_state(ref, got)
    x = random_input(shape)
    assert_same_outputs(eval_forward(ref, x), eval_forward(got, x), "eval")
    out_ref = train_step(ref, x)
    out_got = train_step(got, x)
    assert_same_outputs(out_ref, out_got, "train")
    assert_same_grads(ref, got)


# ---------------------------------------------------------------- parity


@pytest.mark.parametrize(("file", "builder", "kwargs"), _params(CASES))
def test_zoo_matches_torchvision(file: str, builder: str, kwargs: dict[str, Any]) -> None:
    ref, got = build_pair(file, builder, kwargs)
    assert_equivalent(ref, got, input_shape(file, kwargs))
    # Last, so that a successful load cannot hide a difference found above.
    got.load_state_dict(ref.state_dict(), strict=True)


def test_densenet_memory_efficient_matches_plain_build() -> None:
    """netdsl's checkpointed densenet121 against its own memory_efficient=False build: same
    weights, outputs and gradients (checkpointing must not change training)."""
    plain = build_netdsl("densenet.net", "densenet121", {"memory_efficient": False})
    checkpointed = build_netdsl("densenet.net", "densenet121", {"memory_efficient": True})
    layer = "features.denseblock1.denselayer1.norm1"
    calls = {"plain": 0, "checkpointed": 0}

    def counter(tag: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            calls[tag] += 1
        return hook

    plain.get_submodule(layer).register_forward_hook(counter("plain"))
    checkpointed.get_submodule(layer).register_forward_hook(counter("checkpointed"))
    assert_equivalent(plain, checkpointed)
    # eval (no_grad: no checkpoint) + train forward, and the checkpoint's recompute in backward.
    assert calls == {"plain": 2, "checkpointed": 3}, f"{layer} forward calls: {calls}"


@pytest.mark.parametrize(("file", "builder"), [
    pytest.param(file, builder, id=builder, marks=_marks(builder)) for file, builder in BUILDERS])
def test_summary_total_params(file: str, builder: str) -> None:
    with torch.device("meta"):
        ref = build_reference(builder, {})
    expected = sum(p.numel() for p in ref.parameters())
    total = netdsl.summary(ZOO / file, model=builder).total_params
    assert total == expected, f"{builder}: netdsl summary {total:,}, torchvision {expected:,}"


# ---------------------------------------------------------------- line counts


def _load_zoo_lines() -> ModuleType:
    """benchmarks/zoo_lines.py, imported by path (benchmarks is not a package)."""
    path = ROOT / "benchmarks" / "zoo_lines.py"
    spec = importlib.util.spec_from_file_location("zoo_lines", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


zoo_lines = _load_zoo_lines()


@pytest.mark.parametrize("file", list(zoo_lines.FAMILIES))
def test_spec_shorter_than_torchvision(file: str) -> None:
    name, spec, reference = zoo_lines.family_counts(file)
    print(f"{name}: {spec} spec lines, {reference} torchvision lines")
    assert spec < reference, f"{name}: {spec} spec lines, not fewer than torchvision's {reference}"


# ---------------------------------------------------------------- every builder


def zoo_builders() -> list[tuple[str, str]]:
    """Every model of every zoo file that is a torchvision builder (the generic ResNet, VGG, ...
    classes take required arguments and are reached through them)."""
    found = []
    for path in sorted(ZOO.glob("*.net")):
        for decl in netdsl.parse_file(path).models:
            if decl.kind == "model" and hasattr(torchvision.models, decl.name.name) and \
                    decl.name.name[0].islower():
                found.append((path.name, decl.name.name))
    return found


def test_every_torchvision_builder_of_the_families_is_there() -> None:
    families = {"vgg.net": "vgg", "resnet.net": "resnet", "mobilenet_v2.net": "mobilenetv2",
                "squeezenet.net": "squeezenet", "densenet.net": "densenet",
                "googlenet.net": "googlenet", "efficientnet.net": "efficientnet",
                "shufflenet.net": "shufflenetv2", "vit.net": "vision_transformer",
                "convnext.net": "convnext"}
    written = {builder for _, builder in zoo_builders()}
    for file, module in families.items():
        public = set(importlib.import_module(f"torchvision.models.{module}").__all__)
        builders = {name for name in public if name[0].islower()}
        assert builders <= written, f"{file}: missing {sorted(builders - written)}"


@pytest.mark.parametrize(("file", "builder"), [
    pytest.param(file, builder, id=builder, marks=_marks(builder))
    for file, builder in zoo_builders()])
def test_builder_has_torchvision_keys_and_shapes(file: str, builder: str) -> None:
    """Every builder, at its defaults, on the meta device: the same keys, in the same order,
    with the same shapes (so the same parameter count) as torchvision's."""
    with torch.device("meta"):
        ref = build_reference(builder, {})
    got = netdsl.load(ZOO / file, model=builder, device="meta")
    expected = [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    assert [(k, tuple(v.shape)) for k, v in got.state_dict().items()] == expected
