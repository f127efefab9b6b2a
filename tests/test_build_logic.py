"""Build-time logic (if / for / let / def / assert, layers as values, declarations that are
modules, contextual names, conditional init), each spec next to the module a careful engineer
would write by hand: same state_dict keys in the same order, bitwise-equal tensors under the
same seed, equal outputs.
"""

from __future__ import annotations

import inspect
import itertools
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import same_state, seeded
from torch import nn
from torchvision.models.resnet import BasicBlock as TorchvisionBasicBlock
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation, StochasticDepth

import netdsl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# ---------------------------------------------------------------- helpers




def same_output(a: nn.Module, b: nn.Module, *args: Any) -> None:
    a.eval()
    b.eval()
    with torch.no_grad():
        out_a, out_b = a(*args), b(*args)
    assert torch.equal(out_a, out_b)


def parity(spec: str, hand: Callable[[], nn.Module], *inputs: torch.Tensor,
           **params: Any) -> nn.Module:
    """Build the spec and the hand-written module under seed 0; same state, same output."""
    got = seeded(lambda: netdsl.loads(spec, **params))
    want = seeded(hand)
    same_state(got, want)
    if inputs:
        same_output(got, want, *inputs)
    return got


def data(*shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(1234))


def forward_source(module: nn.Module) -> str:
    return inspect.getsource(type(module).forward)


def has_branch(source: str) -> bool:
    return any(line.strip().startswith(("if ", "elif ", "else")) for line in source.splitlines())


def root(**children: nn.Module) -> nn.Module:
    """A hand-written module whose forward runs its children in order (a model without a
    forward does the same)."""
    return nn.Sequential(OrderedDict(children))


# ---------------------------------------------------------------- if / elif / else


IF_MODEL = """
model M(kind: str = "a", n: int = 4) {
    if kind == "a" {
        fc = Linear(n, 2)
    } elif kind == "b" {
        fc = Linear(n, 3, bias=false)
        act = Tanh()
    } else {
        fc = sequential { Linear(n, n)  ReLU()  Linear(n, 5) }
    }
}
"""


@pytest.mark.parametrize("kind", ["a", "b", "c"])
def test_if_elif_else_in_a_model_body(kind: str) -> None:
    def hand() -> nn.Module:
        if kind == "a":
            return root(fc=nn.Linear(4, 2))
        if kind == "b":
            return root(fc=nn.Linear(4, 3, bias=False), act=nn.Tanh())
        return root(fc=nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 5)))

    got = parity(IF_MODEL, hand, data(2, 4), kind=kind)
    assert [name for name, _ in got.named_children()] == (["fc", "act"] if kind == "b"
                                                          else ["fc"])


CONDITIONS = """
model M(n: int = 3, flag: bool = true, mode: str = "a") {
    body = sequential {
        if n == 3 { Linear(4, 4) }
        if n != 3 { Linear(4, 4, bias=false) }
        if n < 3 { Tanh() }
        if n <= 3 { ReLU() }
        if n > 3 { Sigmoid() }
        if n >= 3 { Linear(4, 4) }
        if n > 1 and flag { ReLU6() }
        if n > 5 or not flag { Hardtanh() }
        if not (n == 2 or n == 4) { Linear(4, 4) }
        if mode in ("a", "b") { GELU() }
        if mode not in ("a", "b") { SiLU() }
        if 1 <= n <= 3 { Linear(4, 4) }
        if 1 <= n < 3 { ELU() }
        if n in [1, 2, 3] and mode != "c" { Softsign() }
    }
}
"""


def conditions_by_hand(n: int, flag: bool, mode: str) -> nn.Module:
    layers: list[nn.Module] = []
    if n == 3:
        layers.append(nn.Linear(4, 4))
    if n != 3:
        layers.append(nn.Linear(4, 4, bias=False))
    if n < 3:
        layers.append(nn.Tanh())
    if n <= 3:
        layers.append(nn.ReLU())
    if n > 3:
        layers.append(nn.Sigmoid())
    if n >= 3:
        layers.append(nn.Linear(4, 4))
    if n > 1 and flag:
        layers.append(nn.ReLU6())
    if n > 5 or not flag:
        layers.append(nn.Hardtanh())
    if not (n == 2 or n == 4):
        layers.append(nn.Linear(4, 4))
    if mode in ("a", "b"):
        layers.append(nn.GELU())
    if mode not in ("a", "b"):
        layers.append(nn.SiLU())
    if 1 <= n <= 3:
        layers.append(nn.Linear(4, 4))
    if 1 <= n < 3:
        layers.append(nn.ELU())
    if n in [1, 2, 3] and mode != "c":
        layers.append(nn.Softsign())
    return root(body=nn.Sequential(*layers))


@pytest.mark.parametrize(("n", "flag", "mode"),
                         [(3, True, "a"), (2, False, "c"), (4, True, "b"), (6, False, "z"),
                          (1, True, "c")])
def test_conditions_in_a_sequential(n: int, flag: bool, mode: str) -> None:
    got = parity(CONDITIONS, lambda: conditions_by_hand(n, flag, mode), data(3, 4),
                 n=n, flag=flag, mode=mode)
    assert [type(m) for m in got.body] == [
        type(m) for m in conditions_by_hand(n, flag, mode).body]


@pytest.mark.parametrize("deep", [False, True])
def test_if_in_list_and_dict_bodies(deep: bool) -> None:
    spec = """
    model M(deep: bool = false, width: int = 4) {
        layers = list [
            Linear(width, width)
            if deep { Linear(width, width)  Linear(width, width, bias=false) }
            else { Identity() }
            Linear(width, 2)
        ]
        heads = dict {
            main: Linear(2, 2)
            if deep { extra: Linear(2, 3) } else { small: Linear(2, 1) }
            if not deep and width > 8 { never: Linear(2, 9) }
        }
        forward(x) {
            for layer in layers { x = layer(x) }
            return heads["main"](x)
        }
    }"""

    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers = [nn.Linear(4, 4)]
            if deep:
                layers += [nn.Linear(4, 4), nn.Linear(4, 4, bias=False)]
            else:
                layers += [nn.Identity()]
            self.layers = nn.ModuleList([*layers, nn.Linear(4, 2)])
            heads: dict[str, nn.Module] = {"main": nn.Linear(2, 2)}
            if deep:
                heads["extra"] = nn.Linear(2, 3)
            else:
                heads["small"] = nn.Linear(2, 1)
            self.heads = nn.ModuleDict(heads)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x)
            return self.heads["main"](x)  # type: ignore[no-any-return]

    got = parity(spec, Hand, data(2, 4), deep=deep)
    assert list(got.heads) == (["main", "extra"] if deep else ["main", "small"])


def test_conditional_expression_in_arguments_and_lets() -> None:
    spec = """
    model M(big: bool = true, n: int = 3) {
        let width = 16 if big else 4
        let act_kind = "relu" if n > 2 else "tanh"
        fc1 = Linear(4, width, bias=true if n == 3 else false)
        fc2 = Linear(width, width // 2 if big and n > 1 else width)
        drop = Dropout(0.5 if act_kind == "relu" else 0.1)
        fc3 = Linear(8 if big and n > 1 else width, 1 if n < 0 else 2 if n < 5 else 3)
    }"""

    def hand(big: bool, n: int) -> nn.Module:
        width = 16 if big else 4
        act_kind = "relu" if n > 2 else "tanh"
        fc2_out = width // 2 if big and n > 1 else width
        return root(fc1=nn.Linear(4, width, bias=n == 3), fc2=nn.Linear(width, fc2_out),
                    drop=nn.Dropout(0.5 if act_kind == "relu" else 0.1),
                    fc3=nn.Linear(fc2_out, 1 if n < 0 else 2 if n < 5 else 3))

    for big, n in [(True, 3), (False, 1), (True, 7)]:
        got = parity(spec, lambda big=big, n=n: hand(big, n), data(2, 4), big=big, n=n)
        assert got.drop.p == (0.5 if n > 2 else 0.1)


# ---------------------------------------------------------------- absent children


class HandBasicBlock(nn.Module):
    """examples/residual.net's BasicBlock by hand: torchvision's, with the downsample built
    after bn2 (the spec's declaration order) and None when not needed."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("inplanes", "planes", "stride"), [(4, 4, 1), (4, 8, 2), (4, 8, 1)])
def test_absent_child_and_straight_line_forward(inplanes: int, planes: int, stride: int
                                                ) -> None:
    spec = (EXAMPLES / "residual.net").read_text()
    got = seeded(lambda: netdsl.loads(spec, model="BasicBlock", inplanes=inplanes,
                                      planes=planes, stride=stride))
    want = seeded(lambda: HandBasicBlock(inplanes, planes, stride))
    same_state(got, want)
    same_output(got, want, data(2, inplanes, 8, 8))
    present = want.downsample is not None
    assert ("downsample" in dict(got.named_children())) == present
    assert getattr(got, "downsample", None) is None or present
    source = forward_source(got)
    assert not has_branch(source) and " if " not in source
    assert ("self.downsample(x)" in source) == present


def test_absent_child_reads_as_none_like_torchvision() -> None:
    spec = (EXAMPLES / "residual.net").read_text()
    got = netdsl.loads(spec, model="BasicBlock", inplanes=4, planes=4)
    want = TorchvisionBasicBlock(4, 4)
    assert got.downsample is None and want.downsample is None
    assert "downsample" not in dict(got.named_children())
    assert [k for k, _ in got.named_modules()] == [k for k, _ in want.named_modules()]


# ---------------------------------------------------------------- for


def test_for_at_model_level_with_fstring_names() -> None:
    spec = """
    model M(widths: list = [4, 8, 6]) {
        for i in range(len(widths) - 1) {
            f"layer{i + 1}" = Linear(widths[i], widths[i + 1])
            f"act{i + 1}" = ReLU()
        }
        head = Linear(widths[-1], 2)
    }"""

    def hand() -> nn.Module:
        return root(layer1=nn.Linear(4, 8), act1=nn.ReLU(), layer2=nn.Linear(8, 6),
                    act2=nn.ReLU(), head=nn.Linear(6, 2))

    parity(spec, hand, data(3, 4))


VGG = """
let cfg = [4, "M", 8, 8, "M", 6]

block make_layers(cfg: list, batch_norm: bool = false) = sequential {
    let in_channels = 3
    for v in cfg {
        if v == "M" {
            MaxPool2d(kernel_size=2, stride=2)
        } else {
            Conv2d(in_channels, v, kernel_size=3, padding=1)
            if batch_norm { BatchNorm2d(v) }
            ReLU(inplace=true)
            let in_channels = v
        }
    }
}

model VGG(batch_norm: bool = false) {
    features = make_layers(cfg, batch_norm)
    forward(x) = x -> features
}
"""


def vgg_layers(cfg: list[int | str], batch_norm: bool) -> nn.Sequential:
    """torchvision.models.vgg.make_layers."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            assert isinstance(v, int)
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_for_in_a_sequential_splices_several_items(batch_norm: bool) -> None:
    got = parity(VGG, lambda: root(features=vgg_layers([4, "M", 8, 8, "M", 6], batch_norm)),
                 data(2, 3, 8, 8), batch_norm=batch_norm)
    assert type(got.features) is nn.Sequential  # a declaration that is a sequential: no wrapper


def test_named_sequential_keys_from_fstrings_and_tuple_unpacking() -> None:
    spec = """
    model M(settings: list = [(4, 8, 2, "relu"), (8, 6, 1, "tanh"), (6, 6, 3, "relu")]) {
        features = sequential {
            stem: Linear(4, 4)
            for i, (inp, out, n, act) in enumerate(settings) {
                for j in range(n) {
                    f"block{i}_{j}": Linear(inp if j == 0 else out, out)
                }
                if act == "relu" { f"act{i}": ReLU() } else { f"act{i}": Tanh() }
            }
        }
    }"""
    settings = [(4, 8, 2, "relu"), (8, 6, 1, "tanh"), (6, 6, 3, "relu")]

    def hand() -> nn.Module:
        items: list[tuple[str, nn.Module]] = [("stem", nn.Linear(4, 4))]
        for i, (inp, out, n, _act) in enumerate(settings):
            for j in range(n):
                items.append((f"block{i}_{j}", nn.Linear(inp if j == 0 else out, out)))
            items.append((f"act{i}", nn.ReLU() if _act == "relu" else nn.Tanh()))
        return root(features=nn.Sequential(OrderedDict(items)))

    got = parity(spec, hand, data(2, 4))
    assert list(got.features._modules)[:4] == ["stem", "block0_0", "block0_1", "act0"]


def test_for_with_tuple_targets_zip_enumerate_slices() -> None:
    spec = """
    model M(channels: list = [3, 4, 8, 6], kernels: tuple = (1, 3, 5)) {
        let ks = [k for k in kernels if k > 1]
        convs = sequential {
            for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])) {
                Conv2d(c_in, c_out, kernel_size=kernels[i], padding=kernels[i] // 2)
            }
        }
        extra = list [
            for t, k in zip([channels[-1], channels[-1]], ks) {
                Conv2d(t, t, k, padding=k // 2, bias=false)
            }
        ]
        last = list [ for c in channels[::-1][:2] { BatchNorm2d(c) } ]
        forward(x) {
            x = convs(x)
            for conv in extra { x = conv(x) }
            return last[0](x)
        }
    }"""
    channels, kernels = [3, 4, 8, 6], (1, 3, 5)

    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            ks = [k for k in kernels if k > 1]
            self.convs = nn.Sequential(*[
                nn.Conv2d(c_in, c_out, kernel_size=kernels[i], padding=kernels[i] // 2)
                for i, (c_in, c_out) in enumerate(itertools.pairwise(channels))])
            self.extra = nn.ModuleList([
                nn.Conv2d(t, t, k, padding=k // 2, bias=False)
                for t, k in zip([channels[-1], channels[-1]], ks, strict=False)])
            self.last = nn.ModuleList([nn.BatchNorm2d(c) for c in channels[::-1][:2]])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.convs(x)
            for conv in self.extra:
                x = conv(x)
            return self.last[0](x)  # type: ignore[no-any-return]

    got = parity(spec, Hand, data(2, 3, 6, 6))
    assert [m.num_features for m in got.last] == [6, 8]


def test_list_comprehensions_with_filters_in_lets() -> None:
    spec = """
    model M(n: int = 6) {
        let evens = [i * 2 for i in range(1, n) if i % 2 == 0]
        let pairs = [(a, b) for a, b in zip(evens, evens[1:])]
        let total = sum([b - a for a, b in pairs])
        for a, b in pairs { f"fc{a}_{b}" = Linear(a, b) }
        tail = Linear(evens[-1], total)
    }"""

    def hand() -> nn.Module:
        evens = [i * 2 for i in range(1, 6) if i % 2 == 0]
        assert evens == [4, 8]
        return root(fc4_8=nn.Linear(4, 8), tail=nn.Linear(8, 4))

    parity(spec, hand, data(2, 4))


def test_repeat_comprehension() -> None:
    spec = """
    model M(depth: int = 3) {
        blocks = sequential { Linear(4, 4) for i in range(depth) }
        grown = list [ Linear(4 + i, 5 + i) for i in range(depth) ]
        pairs = sequential { Linear(a, b) for a, b in [(4, 6), (6, 2)] }
        forward(x) = x -> blocks -> pairs
    }"""

    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.Sequential(*[nn.Linear(4, 4) for _ in range(3)])
            self.grown = nn.ModuleList([nn.Linear(4 + i, 5 + i) for i in range(3)])
            self.pairs = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pairs(self.blocks(x))  # type: ignore[no-any-return]

    got = parity(spec, Hand, data(2, 4))
    assert len({id(m) for m in got.blocks}) == 3


# ---------------------------------------------------------------- let re-binding


MOBILENET_LIKE = """
model M(setting: list = [[1, 4, 1, 1], [2, 6, 2, 2], [2, 8, 2, 1]]) {
    let input_channel = 3
    features = sequential {
        Conv2d(3, 4, 1)
        let input_channel = 4
        for t, c, n, s in setting {
            for i in range(n) {
                Conv2d(input_channel, c, kernel_size=1, stride=s if i == 0 else 1)
                let input_channel = c
            }
        }
    }
    head = Linear(input_channel, input_channel * 2)   # the model's scope sees the new value
    forward(x) = x -> features -> mean([2, 3]) -> head
}
"""


def test_let_rebinding_is_seen_by_loops_and_after_a_nested_body() -> None:
    setting = [[1, 4, 1, 1], [2, 6, 2, 2], [2, 8, 2, 1]]

    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = [nn.Conv2d(3, 4, 1)]
            input_channel = 4
            for _t, c, n, s in setting:
                for i in range(n):
                    layers.append(nn.Conv2d(input_channel, c, kernel_size=1,
                                            stride=s if i == 0 else 1))
                    input_channel = c
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(input_channel, input_channel * 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x).mean([2, 3]))  # type: ignore[no-any-return]

    got = parity(MOBILENET_LIKE, Hand, data(2, 3, 8, 8))
    assert got.head.in_features == 8


def test_let_with_tuple_targets() -> None:
    spec = """
    model M(shape: tuple = (4, (6, 2))) {
        let inp, (hidden, out) = shape
        let a, b = (hidden, out)
        let a, b = (b * 2, a)     # the right-hand side first, as in Python
        fc1 = Linear(inp, hidden)
        fc2 = Linear(hidden, out)
        fc3 = Linear(out, a * b)
    }"""
    parity(spec, lambda: root(fc1=nn.Linear(4, 6), fc2=nn.Linear(6, 2), fc3=nn.Linear(2, 24)),
           data(2, 4))


# ---------------------------------------------------------------- file-level let and def


DEFS = """
let BASE = 8
let WIDTHS = [BASE, BASE * 2, 12]

def make_divisible(v: float, divisor: int, min_value: int = none) -> int {
    if min_value == none { min_value = divisor }
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v { new_v = new_v + divisor }
    return new_v
}

def total(values: list) -> int {
    acc = 0
    for v in values {
        if v > 10 { acc = acc + v } elif v > 8 { acc = acc + 2 * v } else { acc = acc + 1 }
    }
    return acc
}

def scaled(c: int, mult: float = 1.0) -> int = make_divisible(c * mult, 4)

def pick(flag: bool) -> float {
    assert flag or not flag, "never"
    if flag { return 0.25 }
    return 0.5
}

model M(mult: float = 1.5) {
    assert len(WIDTHS) == 3, "three widths"
    assert mult > 0 and scaled(8, mult) % 4 == 0, f"bad multiplier {mult}"
    let hidden = scaled(WIDTHS[1], mult)
    fc1 = Linear(BASE, hidden)
    fc2 = Linear(hidden, make_divisible(hidden / 3, 8, min_value=16))
    fc3 = Linear(make_divisible(hidden / 3, 8, 16), total(WIDTHS))
    drop = Dropout(pick(mult > 1))
    forward(x) = x -> fc1 -> fc2 -> fc3 -> mul(scaled(BASE)) -> add(pick(false)) -> drop
    init {
        Linear.weight: normal(0, 1 / scaled(BASE, 2.0))
        Linear.bias: constant(pick(true))
    }
}
"""


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's _make_divisible."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@pytest.mark.parametrize("mult", [1.5, 1.0, 0.75])
def test_file_level_let_and_def(mult: float) -> None:
    def total(values: list[int]) -> int:
        acc = 0
        for v in values:
            acc += v if v > 10 else 2 * v if v > 8 else 1
        return acc

    def scaled(c: int, m: float = 1.0) -> int:
        return make_divisible(c * m, 4)

    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            hidden = scaled(16, mult)
            self.fc1 = nn.Linear(8, hidden)
            self.fc2 = nn.Linear(hidden, make_divisible(hidden / 3, 8, 16))
            self.fc3 = nn.Linear(make_divisible(hidden / 3, 8, 16), total([8, 16, 12]))
            self.drop = nn.Dropout(0.25 if mult > 1 else 0.5)
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 1 / scaled(8, 2.0))
                    nn.init.constant_(m.bias, 0.25)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.drop(self.fc3(self.fc2(self.fc1(x))) * 8 + 0.5)  # type: ignore

    got = parity(DEFS, Hand, data(2, 8), mult=mult)
    assert "8" in forward_source(got) and "scaled" not in forward_source(got)


@pytest.mark.parametrize("last", [None, 3])
def test_optional_parameters_default_to_none(last: int | None) -> None:
    spec = """
    def out_of(c: int, last: int = none) -> int = c * 2 if last == none else last
    model M(last: int = none, input: int = 4) {
        fc1 = Linear(input, out_of(input, last))
        fc2 = Linear(out_of(input, last), out_of(input, none) if last != none else 1)
    }"""
    out = 8 if last is None else last
    parity(spec, lambda: root(fc1=nn.Linear(4, out), fc2=nn.Linear(out, 8 if last else 1)),
           data(2, 4), last=last)


def test_a_failing_assert_gives_its_message() -> None:
    with pytest.raises(netdsl.NetDSLError) as err:
        netdsl.loads(DEFS, mult=-1.0)
    assert err.value.message == "bad multiplier -1.0"


# ---------------------------------------------------------------- layers as values


def test_layer_parameters_and_partial() -> None:
    spec = """
    block ConvBN(i: int, o: int, norm_layer: layer = BatchNorm2d, act: layer = ReLU) {
        conv = Conv2d(i, o, 3, padding=1, bias=false)
        bn = norm_layer(o)
        act = act(inplace=true)
        forward(x) = x -> conv -> bn -> act
    }
    model M(norm_layer: layer = BatchNorm2d, block: layer = ConvBN) {
        a = block(3, 4)
        b = block(4, 4, norm_layer=partial(BatchNorm2d, eps=0.001, momentum=0.01), act=ReLU6)
        c = ConvBN(4, 6, norm_layer=norm_layer)
        let pointwise = partial(partial(Conv2d, kernel_size=1), bias=false)
        d = pointwise(6, 2)
    }"""

    class ConvBN(nn.Module):
        def __init__(self, i: int, o: int, norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
                     act: Callable[..., nn.Module] = nn.ReLU) -> None:
            super().__init__()
            self.conv = nn.Conv2d(i, o, 3, padding=1, bias=False)
            self.bn = norm_layer(o)
            self.act = act(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.bn(self.conv(x)))  # type: ignore[no-any-return]

    def hand() -> nn.Module:
        from functools import partial

        return root(a=ConvBN(3, 4),
                    b=ConvBN(4, 4, norm_layer=partial(nn.BatchNorm2d, eps=0.001, momentum=0.01),
                             act=nn.ReLU6),
                    c=ConvBN(4, 6), d=nn.Conv2d(6, 2, kernel_size=1, bias=False))

    got = parity(spec, hand, data(2, 3, 5, 5))
    assert (got.b.bn.eps, got.b.bn.momentum) == (0.001, 0.01)
    assert type(got.b.act) is nn.ReLU6


@pytest.mark.parametrize("model", ["M", "big"])
def test_layer_values_compare_by_what_they_build(model: str) -> None:
    spec = """
    block Small(i: int, o: int) { fc = Linear(i, o) }
    block Big(i: int, o: int) { fc1 = Linear(i, 8)  fc2 = Linear(8, o) }
    model M(block: layer = Small) {
        let expansion = 2 if block == Big else 1
        body = block(4, 4)
        head = Linear(4, 2 * expansion)
    }
    model big = M(Big)
    """

    def hand() -> nn.Module:
        if model == "big":
            return root(body=root(fc1=nn.Linear(4, 8), fc2=nn.Linear(8, 4)), head=nn.Linear(4, 4))
        return root(body=root(fc=nn.Linear(4, 4)), head=nn.Linear(4, 2))

    got = parity(spec, hand, data(2, 4), model=model)
    assert type(got.body).__name__ == ("Big" if model == "big" else "Small")


def test_torchvision_ops_layers() -> None:
    spec = """
    model M(norm_layer: layer = BatchNorm2d) {
        stem = Conv2dNormActivation(3, 8, stride=2, norm_layer=norm_layer,
                                    activation_layer=ReLU6)
        mid = Conv2dNormActivation(8, 8, kernel_size=1,
                                   norm_layer=partial(BatchNorm2d, eps=0.001),
                                   activation_layer=SiLU)
        se = SqueezeExcitation(8, 2, activation=partial(SiLU, inplace=true))
        proj = Conv2dNormActivation(8, 4, kernel_size=1, norm_layer=norm_layer,
                                    activation_layer=none)
        drop = StochasticDepth(0.2, "row")
    }"""

    def hand() -> nn.Module:
        from functools import partial

        return root(
            stem=Conv2dNormActivation(3, 8, stride=2, norm_layer=nn.BatchNorm2d,
                                      activation_layer=nn.ReLU6),
            mid=Conv2dNormActivation(8, 8, kernel_size=1,
                                     norm_layer=partial(nn.BatchNorm2d, eps=0.001),
                                     activation_layer=nn.SiLU),
            se=SqueezeExcitation(8, 2, activation=partial(nn.SiLU, inplace=True)),
            proj=Conv2dNormActivation(8, 4, kernel_size=1, norm_layer=nn.BatchNorm2d,
                                      activation_layer=None),
            drop=StochasticDepth(0.2, "row"))

    got = parity(spec, hand, data(2, 3, 8, 8))
    assert type(got.stem) is Conv2dNormActivation and type(got.drop) is StochasticDepth
    assert type(got.mid[2]) is nn.SiLU and got.mid[1].eps == 0.001
    assert len(got.proj) == 2
    # StochasticDepth draws in train mode: the same draws as torchvision's under one seed.
    want = seeded(hand)
    got.train()
    want.train()
    x = data(4, 3, 8, 8)
    torch.manual_seed(5)
    out_got = got(x)
    torch.manual_seed(5)
    assert torch.equal(out_got, want(x))


# ---------------------------------------------------------------- declarations that are modules


def test_block_declared_as_a_layer_is_that_layer() -> None:
    spec = """
    block conv3x3(i: int, o: int, stride: int = 1) = Conv2d(i, o, 3, stride=stride, padding=1,
                                                           bias=false)
    model M {
        a = conv3x3(3, 4)
        b = conv3x3(4, 8, stride=2)
        c = sequential { conv3x3(8, 8)  ReLU() }
    }"""
    got = parity(spec, lambda: root(
        a=nn.Conv2d(3, 4, 3, padding=1, bias=False),
        b=nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False),
        c=nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.ReLU())), data(1, 3, 8, 8))
    assert type(got.a) is nn.Conv2d and type(got.c[0]) is nn.Conv2d


def test_block_declared_as_a_sequential_has_no_wrapper() -> None:
    spec = """
    block T(i: int, o: int) = sequential {
        norm: BatchNorm2d(i)
        relu: ReLU(inplace=true)
        conv: Conv2d(i, o, kernel_size=1, stride=1, bias=false)
        pool: AvgPool2d(kernel_size=2, stride=2)
    }
    block U(i: int) = sequential { Conv2d(i, i, 1)  ReLU() }
    model M {
        features = sequential {
            first: T(4, 6)
            second: U(6)
        }
        tail = U(6)
    }"""

    def transition(i: int, o: int) -> nn.Sequential:
        """torchvision.models.densenet._Transition, as add_module calls."""
        t = nn.Sequential()
        t.add_module("norm", nn.BatchNorm2d(i))
        t.add_module("relu", nn.ReLU(inplace=True))
        t.add_module("conv", nn.Conv2d(i, o, kernel_size=1, stride=1, bias=False))
        t.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))
        return t

    got = parity(spec, lambda: root(
        features=nn.Sequential(OrderedDict([
            ("first", transition(4, 6)),
            ("second", nn.Sequential(nn.Conv2d(6, 6, 1), nn.ReLU()))])),
        tail=nn.Sequential(nn.Conv2d(6, 6, 1), nn.ReLU())), data(2, 4, 8, 8))
    assert "features.first.norm.weight" in got.state_dict()
    assert "features.second.0.weight" in got.state_dict()
    assert type(got.features.first) is nn.Sequential


PARTIAL_DECL = """
model Net(inp: int, width: int = 4, classes: int = 2, act: bool = true) {
    fc1 = Linear(inp, width)
    if act { act = ReLU() }
    fc2 = Linear(width, classes)
}
model small = Net(4, width=8)
model tiny = Net(inp=3, classes=3, act=false)
"""


def net_by_hand(inp: int, width: int = 4, classes: int = 2, act: bool = True) -> nn.Module:
    children: dict[str, nn.Module] = {"fc1": nn.Linear(inp, width)}
    if act:
        children["act"] = nn.ReLU()
    children["fc2"] = nn.Linear(width, classes)
    return root(**children)


@pytest.mark.parametrize(("model", "params", "hand_args"), [
    ("small", {}, {"inp": 4, "width": 8}),
    ("small", {"width": 16}, {"inp": 4, "width": 16}),
    ("small", {"classes": 5, "act": False}, {"inp": 4, "width": 8, "classes": 5, "act": False}),
    ("tiny", {}, {"inp": 3, "classes": 3, "act": False}),
    ("tiny", {"width": 6, "inp": 5}, {"inp": 5, "width": 6, "classes": 3, "act": False}),
])
def test_partial_declaration_leaves_its_parameters_open(model: str, params: dict[str, Any],
                                                        hand_args: dict[str, Any]) -> None:
    got = seeded(lambda: netdsl.loads(PARTIAL_DECL, model=model, **params))
    want = seeded(lambda: net_by_hand(**hand_args))
    same_state(got, want)
    same_output(got, want, data(2, hand_args["inp"]))


# ---------------------------------------------------------------- names


def test_children_keys_and_params_named_by_contextual_keywords() -> None:
    spec = """
    block Inner(init: int, block: int) {
        block = Linear(init, block)
        forward(input) = input -> block
    }
    model M(list: int = 4, dict: int = 3, model: int = 2) {
        let init = list + 1
        block = Inner(list, init)
        list = list [ Linear(init, dict) ]
        dict = dict { input: Linear(dict, model), init: Tanh() }
        model = sequential { block: Linear(model, model)  list: ReLU() }
        input_head = Linear(model, 1)
        forward(input) {
            input = block(input)
            for layer in list { input = layer(input) }
            return input -> dict["input"] -> dict["init"] -> model -> input_head
        }
    }"""

    class Inner(nn.Module):
        def __init__(self, init: int, block: int) -> None:
            super().__init__()
            self.block = nn.Linear(init, block)

        def forward(self, input: torch.Tensor) -> torch.Tensor:
            return self.block(input)  # type: ignore[no-any-return]

    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Inner(4, 5)
            self.list = nn.ModuleList([nn.Linear(5, 3)])
            self.dict = nn.ModuleDict({"input": nn.Linear(3, 2), "init": nn.Tanh()})
            self.model = nn.Sequential(OrderedDict([("block", nn.Linear(2, 2)),
                                                    ("list", nn.ReLU())]))
            self.input_head = nn.Linear(2, 1)

        def forward(self, input: torch.Tensor) -> torch.Tensor:
            input = self.block(input)
            for layer in self.list:
                input = layer(input)
            return self.input_head(self.model(self.dict["init"](self.dict["input"](input))))

    parity(spec, Hand, data(2, 4))


def test_contextual_keyword_child_named_input() -> None:
    spec = """
    model M {
        input = Linear(4, 3)
        init = Linear(3, 2)
        expect = Tanh()
        forward(x) = x -> input -> init -> expect
    }"""
    parity(spec, lambda: root(input=nn.Linear(4, 3), init=nn.Linear(3, 2), expect=nn.Tanh()),
           data(2, 4))


def test_a_parameter_may_share_its_name_with_a_child() -> None:
    spec = """
    model M(dropout: float = 0.3, fc: int = 6) {
        fc = Linear(4, fc)
        dropout = Dropout(p=dropout)
        forward(x) = x -> fc -> dropout
    }"""
    got = parity(spec, lambda: root(fc=nn.Linear(4, 6), dropout=nn.Dropout(p=0.3)), data(2, 4))
    assert got.dropout.p == 0.3
    got = parity(spec, lambda: root(fc=nn.Linear(4, 2), dropout=nn.Dropout(p=0.1)), data(2, 4),
                 dropout=0.1, fc=2)


# ---------------------------------------------------------------- init rules


VGG_INIT = """
model M(init_weights: bool = true, batch_norm: bool = true) {
    features = sequential {
        Conv2d(3, 4, 3, padding=1)
        if batch_norm { BatchNorm2d(4) }
        ReLU(inplace=true)
    }
    classifier = sequential { Linear(4 * 4 * 4, 8)  ReLU(true)  Linear(8, 2) }
    forward(x) = x -> features -> flatten(1) -> classifier
    if init_weights {
        init {
            Conv2d.weight: kaiming_normal(mode="fan_out", nonlinearity="relu")
            if batch_norm {
                BatchNorm2d.weight: constant(1)
                BatchNorm2d.bias: constant(0.5)
            }
            Conv2d.bias: constant(0)
            Linear.weight: normal(0, 0.01)
            Linear.bias: constant(0)
        }
    }
}
"""


@pytest.mark.parametrize(("init_weights", "batch_norm"),
                         [(True, True), (False, True), (True, False)])
def test_conditional_init_blocks_and_if_inside_init(init_weights: bool, batch_norm: bool
                                                    ) -> None:
    class Hand(nn.Module):
        """torchvision.models.vgg.VGG's init loop."""

        def __init__(self) -> None:
            super().__init__()
            bn = [nn.BatchNorm2d(4)] if batch_norm else []
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), *bn, nn.ReLU(True))
            self.classifier = nn.Sequential(nn.Linear(64, 8), nn.ReLU(True), nn.Linear(8, 2))
            if init_weights:
                for m in self.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                        nn.init.constant_(m.bias, 0)
                    elif isinstance(m, nn.BatchNorm2d):
                        nn.init.constant_(m.weight, 1)
                        nn.init.constant_(m.bias, 0.5)
                    elif isinstance(m, nn.Linear):
                        nn.init.normal_(m.weight, 0, 0.01)
                        nn.init.constant_(m.bias, 0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.features(x), 1))  # type: ignore

    parity(VGG_INIT, Hand, data(2, 3, 4, 4), init_weights=init_weights, batch_norm=batch_norm)


RESNET_INIT = """
block Basic(c: int) {
    conv1 = Conv2d(c, c, 3, padding=1, bias=false)
    bn1 = BatchNorm2d(c)
    conv2 = Conv2d(c, c, 3, padding=1, bias=false)
    bn2 = BatchNorm2d(c)
    forward(x) = relu(x + (x -> conv1 -> bn1 -> relu -> conv2 -> bn2))
}
block Bottleneck(c: int) {
    conv1 = Conv2d(c, c, 1, bias=false)
    bn1 = BatchNorm2d(c)
    conv3 = Conv2d(c, c, 1, bias=false)
    bn3 = BatchNorm2d(c)
    forward(x) = relu(x + (x -> conv1 -> bn1 -> relu -> conv3 -> bn3))
}
model M(zero_init_residual: bool = false) {
    conv1 = Conv2d(3, 4, 3, padding=1, bias=false)
    bn1 = BatchNorm2d(4)
    layer1 = sequential { Basic(4)  Bottleneck(4) }
    layer2 = sequential { Bottleneck(4)  Basic(4) }
    bn2 = BatchNorm2d(4)   # not a block's bn2: never zeroed
    forward(x) = x -> conv1 -> bn1 -> layer1 -> layer2 -> bn2
    init {
        Conv2d.weight: kaiming_normal(mode="fan_out", nonlinearity="relu")
        BatchNorm2d.weight: constant(1)
        BatchNorm2d.bias: constant(0)
        if zero_init_residual {
            Bottleneck.bn3.weight: constant(0)
            Basic.bn2.weight: constant(0)
        }
    }
}
"""


@pytest.mark.parametrize("zero_init_residual", [False, True])
def test_init_rules_by_block_type_and_subpath(zero_init_residual: bool) -> None:
    class Basic(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))

    class Bottleneck(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv3 = nn.Conv2d(c, c, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(c)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x + self.bn3(self.conv3(torch.relu(self.bn1(self.conv1(x))))))

    class Hand(nn.Module):
        """torchvision.models.resnet.ResNet's init loops."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(4)
            self.layer1 = nn.Sequential(Basic(4), Bottleneck(4))
            self.layer2 = nn.Sequential(Bottleneck(4), Basic(4))
            self.bn2 = nn.BatchNorm2d(4)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
            if zero_init_residual:
                for m in self.modules():
                    if isinstance(m, Bottleneck):
                        nn.init.constant_(m.bn3.weight, 0)
                    elif isinstance(m, Basic):
                        nn.init.constant_(m.bn2.weight, 0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn2(self.layer2(self.layer1(self.bn1(self.conv1(x)))))  # type: ignore

    got = parity(RESNET_INIT, Hand, data(2, 3, 4, 4), zero_init_residual=zero_init_residual)
    assert torch.equal(got.bn2.weight, torch.ones(4))
    zero = torch.zeros(4) if zero_init_residual else torch.ones(4)
    assert torch.equal(got.layer1[0].bn2.weight, zero)
    assert torch.equal(got.layer2[0].bn3.weight, zero)
