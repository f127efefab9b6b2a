"""netdsl against the truth: the seed's hand-written PyTorch modules and torchvision.

Every comparison here is against code written by hand (copied from the seed notes) or against
torchvision, never against netdsl's own earlier output. Same seed -> same state_dict keys in the
same order, bitwise-equal tensors and identical outputs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch._dynamo
import torchvision
from seed_models import LeNetSequential
from torch import nn
from torchvision.models.resnet import BasicBlock as TorchvisionBasicBlock
from torchvision.models.resnet import conv1x1

import netdsl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# ---------------------------------------------------------------- helpers


def example(name: str) -> str:
    return str(EXAMPLES / name)


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a module right after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return build()


def seeded_input(*shape: int, seed: int = 1234) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator)


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    """Same state_dict keys in the same order, and bitwise-equal tensors."""
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for key, tensor in state_a.items():
        other = state_b[key]
        assert tensor.dtype == other.dtype, key
        assert tensor.shape == other.shape, key
        assert torch.equal(tensor, other), f"{key} differs"


def assert_identical(a: torch.Tensor, b: torch.Tensor) -> None:
    """Bitwise equal, treating nan as equal to nan (the exploding init experiment)."""
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def same_output(a: nn.Module, b: nn.Module, *args: Any, **kwargs: Any) -> None:
    with torch.no_grad():
        out_a, out_b = a(*args, **kwargs), b(*args, **kwargs)
    assert torch.equal(out_a, out_b), (out_a - out_b).abs().max()


def randomize_batchnorm(model: nn.Module, seed: int = 7) -> None:
    """Give every BatchNorm random affine parameters and running statistics, so that eval-mode
    comparisons exercise them (their defaults are 1s and 0s)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator))
                module.running_mean.copy_(torch.randn(size, generator=generator))
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)


def dropouts(model: nn.Module) -> list[float]:
    return [m.p for m in model.modules() if isinstance(m, nn.Dropout)]


# ---------------------------------------------------------------- LeNet (seed: LeNetSequential)


def lenet(**params: Any) -> nn.Module:
    return netdsl.load(example("lenet.net"), **params)


@pytest.mark.parametrize("seed", [0, 1, 2024])
def test_lenet_matches_seed(seed: int) -> None:
    ours = seeded(lenet, seed)
    theirs = seeded(lambda: LeNetSequential(10), seed)
    assert_same_state(ours, theirs)
    same_output(ours, theirs, seeded_input(4, 3, 32, 32, seed=seed))


def test_lenet_classes_parameter() -> None:
    ours = seeded(lambda: lenet(classes=7), 3)
    theirs = seeded(lambda: LeNetSequential(7), 3)
    assert ours.classifier[-1].out_features == 7
    assert_same_state(ours, theirs)
    x = seeded_input(2, 3, 32, 32)
    assert ours(x).shape == (2, 7)
    same_output(ours, theirs, x)


def test_lenet_differs_across_seeds() -> None:
    """The parity tests are meaningful only if the seed actually changes the weights."""
    with pytest.raises(AssertionError):
        assert_same_state(seeded(lenet, 0), seeded(lenet, 1))


# ---------------------------------------------------------------- AlexNet (torchvision)


def alexnet(**params: Any) -> nn.Module:
    return netdsl.load(example("alexnet.net"), **params)


def test_alexnet_loads_torchvision_state_dict() -> None:
    theirs = torchvision.models.alexnet(num_classes=10).eval()
    ours = alexnet(num_classes=10).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert_same_state(ours, theirs)
    same_output(ours, theirs, seeded_input(2, 3, 224, 224))


def test_alexnet_same_seed_same_weights() -> None:
    ours = seeded(lambda: alexnet(num_classes=10), 5).eval()
    theirs = seeded(lambda: torchvision.models.alexnet(num_classes=10), 5).eval()
    assert_same_state(ours, theirs)
    same_output(ours, theirs, seeded_input(1, 3, 224, 224))


def test_alexnet_train_mode_dropout_draws_match() -> None:
    ours = seeded(lambda: alexnet(num_classes=10), 6).train()
    theirs = seeded(lambda: torchvision.models.alexnet(num_classes=10), 6).train()
    x = seeded_input(2, 3, 224, 224)
    with torch.no_grad():
        torch.manual_seed(11)
        out_ours = ours(x)
        torch.manual_seed(11)
        out_theirs = theirs(x)
    assert torch.equal(out_ours, out_theirs)


@pytest.mark.parametrize("num_classes", [10, 37])
def test_alexnet_num_classes(num_classes: int) -> None:
    ours = alexnet(num_classes=num_classes, device="meta").eval()
    assert ours.classifier[-1].out_features == num_classes
    assert ours.classifier[-1].weight.shape == (num_classes, 4096)
    assert ours(torch.empty(3, 3, 224, 224, device="meta")).shape == (3, num_classes)


def test_alexnet_default_matches_torchvision_default() -> None:
    ours = alexnet(device="meta")
    with torch.device("meta"):
        theirs = torchvision.models.alexnet()
    assert ours.classifier[-1].out_features == theirs.classifier[-1].out_features == 1000
    assert dropouts(ours) == dropouts(theirs) == [0.5, 0.5]


@pytest.mark.parametrize("p", [0.0, 0.25, 0.8])
def test_alexnet_dropout_parameter(p: float) -> None:
    ours = alexnet(num_classes=10, dropout=p, device="meta")
    with torch.device("meta"):
        theirs = torchvision.models.alexnet(num_classes=10, dropout=p)
    assert dropouts(ours) == dropouts(theirs) == [p, p]


# ---------------------------------------------------------------- ModuleList (seed)


class ModuleList(nn.Module):
    def __init__(self):
        super(ModuleList, self).__init__()  # noqa: UP008  # as in the seed
        self.linears = nn.ModuleList([nn.Linear(10, 10) for i in range(20)])

    def forward(self, x):
        for i, linear in enumerate(self.linears):  # noqa: B007  # as in the seed
            x = linear(x)
        return x


def module_list() -> nn.Module:
    return netdsl.load(example("module_list.net"))


@pytest.mark.parametrize("seed", [0, 1])
def test_module_list_matches_seed(seed: int) -> None:
    ours = seeded(module_list, seed)
    theirs = seeded(ModuleList, seed)
    assert_same_state(ours, theirs)
    same_output(ours, theirs, torch.ones((10, 10)))


def test_module_list_holds_twenty_distinct_linears() -> None:
    linears = module_list().linears
    assert isinstance(linears, nn.ModuleList)
    assert len(linears) == 20
    assert all(type(m) is nn.Linear for m in linears)
    assert len({id(m) for m in linears}) == 20
    assert len({m.weight.data_ptr() for m in linears}) == 20
    assert all(m.in_features == m.out_features == 10 for m in linears)


# ---------------------------------------------------------------- ModuleDict (seed)


class ModuleDict(nn.Module):
    def __init__(self):
        super(ModuleDict, self).__init__()  # noqa: UP008  # as in the seed
        self.choices = nn.ModuleDict({
            'conv': nn.Conv2d(10, 10, 3),
            'pool': nn.MaxPool2d(3)
        })

        self.activations = nn.ModuleDict({
            'relu': nn.ReLU(),
            'prelu': nn.PReLU()
        })

    def forward(self, x, choice, act):
        x = self.choices[choice](x)
        x = self.activations[act](x)
        return x


def module_dict() -> nn.Module:
    return netdsl.load(example("module_dict.net"))


def test_module_dict_matches_seed_state() -> None:
    ours = seeded(module_dict, 1)
    theirs = seeded(ModuleDict, 1)
    assert_same_state(ours, theirs)
    assert isinstance(ours.choices, nn.ModuleDict)
    assert isinstance(ours.activations, nn.ModuleDict)
    assert list(ours.choices) == ["conv", "pool"]
    assert list(ours.activations) == ["relu", "prelu"]


@pytest.mark.parametrize("choice", ["conv", "pool"])
@pytest.mark.parametrize("act", ["relu", "prelu"])
def test_module_dict_forward_matches_seed(choice: str, act: str) -> None:
    ours = seeded(module_dict, 1)
    theirs = seeded(ModuleDict, 1)
    x = seeded_input(4, 10, 32, 32)
    same_output(ours, theirs, x, choice, act)
    same_output(ours, theirs, x, choice=choice, act=act)


def test_module_dict_keyword_call() -> None:
    ours = seeded(module_dict, 1)
    x = seeded_input(4, 10, 32, 32)
    with torch.no_grad():
        out = ours(x, choice="conv", act="relu")
    assert out.shape == (4, 10, 30, 30)
    assert (out >= 0).all()
    assert torch.equal(out, ours(x, "conv", "relu").detach())


FORWARD_LINE = "    forward(x, choice, act) = x -> choices[choice] -> activations[act]"


@pytest.mark.parametrize(("choice", "act", "message", "caret"), [
    ("conv", "tanh", "{line}:67: unknown key 'tanh' for dict 'activations'; "
                     "valid keys: 'relu', 'prelu'", " " * 66 + "^^^"),
    ("lin", "relu", "{line}:44: unknown key 'lin' for dict 'choices'; valid keys: 'conv', 'pool'",
     " " * 43 + "^^^^^^"),
])
def test_module_dict_unknown_key(choice: str, act: str, message: str, caret: str) -> None:
    ours = module_dict()
    with pytest.raises(netdsl.UnknownKeyError) as info:
        ours(seeded_input(4, 10, 32, 32), choice, act)
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, netdsl.NetDSLError)
    path = example("module_dict.net")
    line = Path(path).read_text().splitlines().index(FORWARD_LINE) + 1
    assert str(info.value) == (f"{path}:{message.format(line=line)}\n"
                               f"    {FORWARD_LINE}\n    {caret}")
    # The hand-written module fails with a KeyError too: `except KeyError` catches both.
    with pytest.raises(KeyError):
        ModuleDict()(seeded_input(4, 10, 32, 32), choice, act)


# ---------------------------------------------------------------- the seed's init experiments


class SeedMLP(nn.Module):
    """The seed's MLP: ``layers`` bias-free Linear(neural_num, neural_num) in a ModuleList.

    The seed's forward prints each layer's std and stops at nan; here :func:`layer_stds` records
    them instead, and forward runs every layer (to compare with netdsl's forward).
    """

    activation: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __init__(self, neural_num: int, layers: int) -> None:
        super().__init__()
        self.linears = nn.ModuleList(
            [nn.Linear(neural_num, neural_num, bias=False) for i in range(layers)])
        self.neural_num = neural_num

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear in self.linears:
            x = linear(x)
            if self.activation is not None:
                x = type(self).activation(x)
        return x

    def initialize(self) -> None:
        raise NotImplementedError


class NormalMLP(SeedMLP):
    """Experiment 1: normal(0, 1), no activation."""

    def initialize(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight.data)  # normal: mean=0, std=1


class ScaledNormalMLP(SeedMLP):
    """Experiment 2: std = sqrt(1/n), no activation."""

    def initialize(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight.data, std=np.sqrt(1 / self.neural_num))


class XavierTanhMLP(SeedMLP):
    """Experiment 3: Xavier uniform computed by hand, tanh after each layer."""

    activation = torch.tanh

    def initialize(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                # xavier手动计算
                a = np.sqrt(6 / (self.neural_num + self.neural_num))
                tanh_gain = nn.init.calculate_gain('tanh')  # 计算增益
                a *= tanh_gain
                nn.init.uniform_(m.weight.data, -a, a)


class KaimingReluMLP(SeedMLP):
    """Experiment 4: Kaiming normal by hand, relu after each layer."""

    activation = torch.relu

    def initialize(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                # kaiming初始化手动
                nn.init.normal_(m.weight.data, std=np.sqrt(2 / self.neural_num))


class TanhNoGainMLP(SeedMLP):
    """The seed's remark before Xavier: std = sqrt(1/n) with tanh, no gain, vanishes."""

    activation = torch.tanh

    def initialize(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight.data, std=np.sqrt(1 / self.neural_num))


INIT_EXPERIMENTS: dict[str, type[SeedMLP]] = {
    "init/normal.net": NormalMLP,
    "init/tanh_no_gain.net": TanhNoGainMLP,
    "init/scaled_normal.net": ScaledNormalMLP,
    "init/xavier_tanh.net": XavierTanhMLP,
    "init/kaiming_relu.net": KaimingReluMLP,
}
LAYERS, NEURONS, BATCH = 100, 256, 16


def layer_stds(linears: nn.ModuleList, x: torch.Tensor,
               activation: Callable[[torch.Tensor], torch.Tensor] | None) -> list[float]:
    """The seed's procedure: x.std() after each layer (after its activation, if any)."""
    stds = []
    with torch.no_grad():
        for linear in linears:
            x = linear(x)
            if activation is not None:
                x = activation(x)
            stds.append(x.std().item())
    return stds


def run_seed_experiment(build: Callable[[], nn.Module]
                        ) -> tuple[nn.Module, torch.Tensor]:
    """``torch.manual_seed(1)``, build (and initialise), then draw the seed's input."""
    torch.manual_seed(1)
    net = build()
    inputs = torch.randn((BATCH, NEURONS))  # normal: mean=0, std=1
    return net, inputs


def hand_written(cls: type[SeedMLP]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        net = cls(NEURONS, LAYERS)
        net.initialize()
        return net
    return build


def seed_experiment_stds(spec: str) -> list[float]:
    """The netdsl model's per-layer stds, after checking it against the hand-written MLP."""
    cls = INIT_EXPERIMENTS[spec]
    ours, x_ours = run_seed_experiment(lambda: netdsl.load(example(spec)))
    theirs, x_theirs = run_seed_experiment(hand_written(cls))
    assert torch.equal(x_ours, x_theirs)  # the init drew exactly as many numbers
    assert_same_state(ours, theirs)
    activation = cls.activation
    stds = layer_stds(ours.linears, x_ours, activation)
    assert_identical(torch.tensor(stds, dtype=torch.float64),
                     torch.tensor(layer_stds(theirs.linears, x_theirs, activation),
                                  dtype=torch.float64))
    with torch.no_grad():
        assert_identical(ours(x_ours), theirs(x_theirs))
    return stds


def assert_close_to(value: float, expected: float, rel: float = 1e-4) -> None:
    assert math.isclose(value, expected, rel_tol=rel), (value, expected)


def test_init_normal_explodes_as_in_seed() -> None:
    stds = seed_experiment_stds("init/normal.net")
    assert_close_to(stds[0], 15.959932327270508)
    assert_close_to(stds[1], 256.6237487792969)
    assert_close_to(stds[2], 4107.24560546875)
    first_bad = next(i for i, s in enumerate(stds) if not math.isfinite(s))
    assert 28 <= first_bad <= 32, stds[:35]
    # until then, each layer multiplies the std by about sqrt(256) = 16
    assert all(12 < b / a < 20 for a, b in itertools.pairwise(stds[:first_bad]))


def test_init_scaled_normal_stays_near_one_as_in_seed() -> None:
    stds = seed_experiment_stds("init/scaled_normal.net")
    assert len(stds) == LAYERS
    assert_close_to(stds[0], 0.9974957704544067)
    assert_close_to(stds[1], 1.0024365186691284)
    assert all(0.85 < s < 1.3 for s in stds), stds


@pytest.mark.parametrize("spec", ["init/xavier_tanh.net", "init/kaiming_relu.net"])
def test_init_with_activation_stays_bounded(spec: str) -> None:
    stds = seed_experiment_stds(spec)
    assert len(stds) == LAYERS
    assert all(math.isfinite(s) and 0.1 < s < 10 for s in stds), stds


def test_init_tanh_without_gain_vanishes() -> None:
    stds = seed_experiment_stds("init/tanh_no_gain.net")
    assert len(stds) == LAYERS
    assert stds[-1] < 0.25 * stds[0], stds
    assert all(b < a * 1.05 for a, b in itertools.pairwise(stds))  # shrinking, all the way


def test_init_experiments_are_all_covered() -> None:
    assert sorted(INIT_EXPERIMENTS) == sorted(
        p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.glob("init/*.net"))


# ---------------------------------------------------------------- residual blocks


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + x)


class DownBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + self.downsample(x))


class ResidualNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        self.stage1 = BasicBlock(16, 16)
        self.stage2 = DownBlock(16, 32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stage2(self.stage1(self.stem(x))))
        return self.fc(torch.flatten(x, 1))


def residual(**params: Any) -> nn.Module:
    return netdsl.load(example("residual.net"), **params)


@pytest.mark.parametrize("classes", [10, 4])
def test_residual_net_matches_hand_written(classes: int) -> None:
    ours = seeded(lambda: residual(classes=classes), 2)
    theirs = seeded(lambda: ResidualNet(classes), 2)
    assert_same_state(ours, theirs)
    x = seeded_input(4, 3, 32, 32)
    # train mode: batch statistics, and both update their running statistics alike
    ours.train()
    theirs.train()
    same_output(ours, theirs, x)
    assert_same_state(ours, theirs)
    ours.eval()
    theirs.eval()
    same_output(ours, theirs, x)
    assert ours(x).shape == (4, classes)


def torchvision_block(inplanes: int, planes: int, stride: int) -> nn.Module:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
    return TorchvisionBasicBlock(inplanes, planes, stride, downsample)


@pytest.mark.parametrize(("inplanes", "planes", "stride"), [
    (64, 64, 1),
    (64, 128, 2),
    (32, 32, 2),
    (32, 64, 1),
])
def test_block_matches_torchvision(inplanes: int, planes: int, stride: int) -> None:
    ours = residual(model="BasicBlock", inplanes=inplanes, planes=planes, stride=stride)
    randomize_batchnorm(ours)
    theirs = torchvision_block(inplanes, planes, stride)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    assert_same_state(ours, theirs)
    ours.eval()
    theirs.eval()
    x = seeded_input(2, inplanes, 16, 16)
    same_output(ours, theirs, x)


def test_basic_block_same_seed_as_torchvision() -> None:
    ours = seeded(lambda: residual(model="BasicBlock", inplanes=64, planes=64), 9)
    theirs = seeded(lambda: torchvision_block(64, 64, 1), 9)
    assert_same_state(ours, theirs)


def test_blocks_inside_the_model_share_a_class() -> None:
    ours = netdsl.load(example("resnet18.net"), num_classes=10)
    assert type(ours.layer1[0]) is type(ours.layer1[1]) is type(ours.layer2[1])
    # With a downsample the forward differs (its condition holds): a class of its own.
    assert type(ours.layer2[0]) is type(ours.layer3[0]) is type(ours.layer4[0])
    assert type(ours.layer2[0]) is not type(ours.layer1[0])
    assert {type(m).__name__ for m in ours.modules() if "Block" in type(m).__name__} == {
        "BasicBlock"}


# ---------------------------------------------------------------- ResNet18 (torchvision)


def test_resnet18_matches_torchvision() -> None:
    ours = seeded(lambda: netdsl.load(example("resnet18.net"), num_classes=10), 0).eval()
    theirs = seeded(lambda: torchvision.models.resnet18(num_classes=10), 0).eval()
    assert_same_state(ours, theirs)
    same_output(ours, theirs, seeded_input(2, 3, 224, 224))


def test_resnet18_loads_trained_like_state() -> None:
    ours = netdsl.load(example("resnet18.net"), num_classes=10)
    randomize_batchnorm(ours)
    theirs = torchvision.models.resnet18(num_classes=10)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours.eval()
    theirs.eval()
    same_output(ours, theirs, seeded_input(1, 3, 96, 96))


# ---------------------------------------------------------------- fx, export, compile


@pytest.fixture
def dynamo_reset() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


TRACEABLE: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "lenet": (lenet, (2, 3, 32, 32)),
    "alexnet": (lambda: alexnet(num_classes=10), (1, 3, 224, 224)),
}


def traceable(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The eval-mode model, an input and the eager output."""
    build, shape = TRACEABLE[name]
    model = seeded(build, 0).eval()
    x = seeded_input(*shape)
    with torch.no_grad():
        return model, x, model(x)


@pytest.mark.parametrize("name", sorted(TRACEABLE))
def test_fx_symbolic_trace(name: str) -> None:
    model, x, expected = traceable(name)
    traced = torch.fx.symbolic_trace(model)
    assert any(node.op == "call_module" for node in traced.graph.nodes)
    with torch.no_grad():
        assert torch.equal(traced(x), expected)


@pytest.mark.parametrize("name", sorted(TRACEABLE))
def test_torch_export(name: str) -> None:
    model, x, expected = traceable(name)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.equal(exported.module()(x), expected)


@pytest.mark.parametrize(("name", "backend"), [("lenet", "inductor"), ("alexnet", "aot_eager")])
def test_torch_compile(name: str, backend: str, dynamo_reset: None) -> None:
    model, x, expected = traceable(name)
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    with torch.no_grad():
        out = compiled(x)
    if backend == "aot_eager":  # the same aten kernels as eager: bitwise equal
        assert torch.equal(out, expected)
    else:  # inductor generates its own kernels: equal up to float reassociation
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
