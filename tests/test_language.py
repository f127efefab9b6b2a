"""Language features, each compiled and compared with the module a careful engineer would write
by hand: same tree, same state_dict keys and values under the same seed, same outputs."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from helpers import Scale
from torch import nn

import netdsl


def same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def seeded(build: object, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    module = build() if callable(build) else build  # type: ignore[operator]
    assert isinstance(module, nn.Module)
    return module


def test_named_sequential_children_are_ordereddict_keys() -> None:
    spec = """
    model M {
        body = sequential { conv1: Conv2d(1, 20, 5)  relu1: ReLU()  conv2: Conv2d(20, 64, 5) }
    }"""
    got = seeded(lambda: netdsl.loads(spec))
    want = seeded(lambda: nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 20, 5)), ("relu1", nn.ReLU()), ("conv2", nn.Conv2d(20, 64, 5))])))
    assert list(got.body._modules) == ["conv1", "relu1", "conv2"]
    same_state(got.body, want)
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(got(x), want(x))


def test_nested_containers_and_repeats() -> None:
    spec = """
    model M(depth: int = 3) {
        let width = 8
        stages = list [
            sequential { Linear(width * (i + 1), width * (i + 2)) ReLU() } for i in range(depth)
        ]
        heads = dict { a: list [ Linear(32, 2), Linear(32, 3) ], b: Identity() }
        forward(x, head) {
            for stage in stages { x = stage(x) }
            return heads[head][1](x)  # indexing a dict by a constant is checked statically
        }
    }"""
    spec = spec.replace("heads[head][1](x)", 'heads["a"][1](x)')

    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stages = nn.ModuleList(
                [nn.Sequential(nn.Linear(8 * (i + 1), 8 * (i + 2)), nn.ReLU()) for i in range(3)])
            self.heads = nn.ModuleDict({"a": nn.ModuleList([nn.Linear(32, 2), nn.Linear(32, 3)]),
                                        "b": nn.Identity()})

        def forward(self, x: torch.Tensor, head: str) -> torch.Tensor:
            for stage in self.stages:
                x = stage(x)
            return self.heads["a"][1](x)  # type: ignore[index, no-any-return]

    got, want = seeded(lambda: netdsl.loads(spec)), seeded(Hand)
    same_state(got, want)
    x = torch.randn(4, 8)
    assert torch.equal(got(x, "unused"), want(x, "unused"))
    assert len({id(m) for m in got.stages}) == 3


def test_blocks_are_reusable_and_share_their_class() -> None:
    spec = """
    block Mlp(inp: int, out: int, hidden: int = 16) {
        fc1 = Linear(inp, hidden)
        fc2 = Linear(hidden, out)
        forward(x) = x -> fc1 -> relu -> fc2
    }
    model M {
        a = Mlp(4, 8)
        b = Mlp(8, 2, hidden=32)
        forward(x) = x -> a -> b
    }"""

    class Mlp(nn.Module):
        def __init__(self, inp: int, out: int, hidden: int = 16) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(inp, hidden), nn.Linear(hidden, out)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x)))  # type: ignore[no-any-return]

    got = seeded(lambda: netdsl.loads(spec))
    want = seeded(lambda: nn.Sequential(OrderedDict([("a", Mlp(4, 8)), ("b", Mlp(8, 2, 32))])))
    same_state(got, want)
    x = torch.randn(3, 4)
    assert torch.equal(got(x), want(x))
    assert type(got.a) is type(got.b) and type(got.a).__name__ == "Mlp"


def test_forward_graph_features() -> None:
    spec = """
    model M(scale: float = 0.5) {
        left = Linear(6, 4)
        right = Linear(6, 4)
        mix = Linear(8, 6)
        forward(x) {
            y = cat([left(x), right(x)], dim=1)
            z = mix(y) * scale + x
            z = z.view(z.size(0), 2, 3).transpose(1, 2)
            return softmax(reshape(z, -1, 6), 1) - sigmoid(x) @ eye
        }
    }""".replace(" @ eye", "")

    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.left, self.right, self.mix = nn.Linear(6, 4), nn.Linear(6, 4), nn.Linear(8, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.cat([self.left(x), self.right(x)], dim=1)
            z = self.mix(y) * 0.5 + x
            z = z.view(z.size(0), 2, 3).transpose(1, 2)
            return torch.softmax(z.reshape(-1, 6), 1) - torch.sigmoid(x)

    got, want = seeded(lambda: netdsl.loads(spec)), seeded(Hand)
    x = torch.randn(5, 6)
    assert torch.equal(got(x), want(x))


def test_no_forward_runs_children_in_order_and_loops_lists() -> None:
    spec = """
    model M {
        first = Linear(3, 5)
        middle = list [ Linear(5, 5) for i in range(4) ]
        last = sequential { Tanh() Linear(5, 1) }
    }"""
    got = seeded(lambda: netdsl.loads(spec))
    x = torch.randn(2, 3)
    want = got.first(x)
    for layer in got.middle:
        want = layer(want)
    assert torch.equal(got(x), got.last(want))


def test_custom_modules_come_from_python() -> None:
    spec = "model M { s = Scale(2.0) }"
    model = netdsl.loads(spec, modules={"Scale": Scale})
    assert torch.equal(model(torch.ones(2)), torch.full((2,), 2.0))
    with pytest.raises(netdsl.NetDSLError, match="unknown layer 'Scale'"):
        netdsl.loads(spec)
    with pytest.raises(netdsl.NetDSLError, match="argument 'factor' expects float, got str"):
        netdsl.loads('model M { s = Scale("x") }', modules={"Scale": Scale})


# ------------------------------------------------------------------ init rules


def test_init_precedence_path_beats_type_beats_module() -> None:
    spec = """
    model M {
        features = sequential { Linear(4, 4) Linear(4, 4) }
        head = Linear(4, 2)
        init {
            Module.*: zeros()
            Linear.weight: normal(0, 0.02)
            "features.1".weight: ones()
            Linear.bias: constant(0.5)
            Linear.bias: constant(0.25)   # a later rule of the same rank wins
        }
    }"""

    def hand() -> nn.Module:
        model = nn.Module()
        model.features = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
        model.head = nn.Linear(4, 2)
        for path, module in model.named_modules():
            if isinstance(module, nn.Linear):
                if path == "features.1":
                    nn.init.ones_(module.weight)
                else:
                    nn.init.normal_(module.weight, 0, 0.02)
                nn.init.constant_(module.bias, 0.25)
        return model

    got, want = seeded(lambda: netdsl.loads(spec)), seeded(hand)
    same_state(got, want)
    assert torch.equal(got.features[1].weight, torch.ones(4, 4))


def test_init_fan_and_let_per_parameter() -> None:
    spec = """
    model M {
        a = Linear(8, 16)
        b = Conv2d(3, 4, 3)
        init {
            let std = sqrt(2 / fan_in)
            Linear.weight: normal(0, std)
            Conv2d.weight: uniform(-1 / sqrt(fan_in), 1 / sqrt(fan_in))
            Module.bias: zeros()
        }
    }"""

    def hand() -> nn.Module:
        model = nn.Module()
        model.a, model.b = nn.Linear(8, 16), nn.Conv2d(3, 4, 3)
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, (2 / 8) ** 0.5)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                bound = 1 / (3 * 3 * 3) ** 0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)
        return model

    same_state(seeded(lambda: netdsl.loads(spec)), seeded(hand))


def test_block_init_runs_when_the_block_is_built() -> None:
    spec = """
    block Head(n: int) {
        fc = Linear(n, n)
        init { Linear.weight: normal(0, 0.01) }
    }
    model M {
        head = Head(4)
        tail = Linear(4, 4)
    }"""

    class Head(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.fc = nn.Linear(n, n)
            nn.init.normal_(self.fc.weight, 0, 0.01)

    def hand() -> nn.Module:
        model = nn.Module()
        model.head, model.tail = Head(4), nn.Linear(4, 4)
        return model

    same_state(seeded(lambda: netdsl.loads(spec)), seeded(hand))


def test_xavier_builtin_equals_the_seeds_hand_computed_bound() -> None:
    builtin = "model M { l = Linear(64, 64, bias=false) init { Linear.weight: " \
              "xavier_uniform(gain=gain(\"tanh\")) } }"
    by_hand = "model M { l = Linear(64, 64, bias=false) init { " \
              "let a = sqrt(6 / (fan_in + fan_out)) * gain(\"tanh\") " \
              "Linear.weight: uniform(-a, a) } }"
    a, b = seeded(lambda: netdsl.loads(builtin)), seeded(lambda: netdsl.loads(by_hand))
    assert torch.allclose(a.l.weight, b.l.weight, atol=1e-7)


def test_pipelines_that_reuse_their_source_keep_its_value() -> None:
    # `return x -> a -> add(x)` must add the original x, even though the generated code writes
    # one assignment per stage.
    spec = """
    model M {
        a = Linear(3, 3)
        forward(x) {
            y = x -> a -> add(x)
            x = x -> a -> mul(x)
            return x -> a -> add(x) -> mul(y)
        }
    }"""
    model = seeded(lambda: netdsl.loads(spec))
    x = torch.randn(2, 3)
    y = model.a(x) + x
    x2 = model.a(x) * x
    assert torch.equal(model(x), (model.a(x2) + x2) * y)


def test_generated_forward_reads_like_hand_written_code() -> None:
    import inspect

    model = netdsl.loads("""
    model M {
        features = Conv2d(1, 2, 3)
        classifier = Linear(8, 2)
        forward(x) = x -> features -> flatten(1) -> classifier
    }""")
    assert inspect.getsource(type(model).forward) == (
        "def forward(self, x):\n"
        "    x = self.features(x)\n"
        "    x = _torch.flatten(x, 1)\n"
        "    x = self.classifier(x)\n"
        "    return x\n")
