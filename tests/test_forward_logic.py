"""Forward features (if / elif / else, training, conditional expressions, slices, unpacking,
lists, loops over children and dict items, methods, checkpoint, dropout, tracing), each against
the forward a careful engineer would write by hand: same outputs (and gradients), in train and
eval mode where it matters; plus the exact messages of the new forward mistakes.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.fx
import torch.nn.functional as F
import torch.utils.checkpoint
from helpers import same_state, seeded
from torch import nn

import netdsl

# ---------------------------------------------------------------- helpers




def data(*shape: int, seed: int = 1234) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def equal(a: Any, b: Any) -> bool:
    """Outputs equal: tensors bitwise, tuples item by item, anything else by ==."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(equal, a, b))
    return bool(a == b)


def run(module: nn.Module, *args: Any, train: bool = False, seed: int = 7) -> Any:
    module.train(train)
    torch.manual_seed(seed)
    with torch.no_grad():
        return module(*args)


def pair(spec: str, hand: Callable[[], nn.Module], **params: Any) -> tuple[nn.Module, nn.Module]:
    got = seeded(lambda: netdsl.loads(spec, **params))
    want = seeded(hand)
    same_state(got, want)
    return got, want


def agree(got: nn.Module, want: nn.Module, *args: Any, modes: tuple[bool, ...] = (False, True)
          ) -> None:
    for train in modes:
        assert equal(run(got, *args, train=train), run(want, *args, train=train)), train


def source(module: nn.Module, name: str = "forward") -> str:
    return inspect.getsource(getattr(type(module), name))


def branches(code: str) -> list[str]:
    return [line.strip() for line in code.splitlines()
            if line.strip().startswith(("if ", "elif ", "else:"))]


def error(spec: str, **params: Any) -> netdsl.NetDSLError:
    with pytest.raises(netdsl.NetDSLError) as caught:
        netdsl.loads(spec, **params)
    return caught.value


# ---------------------------------------------------------------- if on constants


CONST_IF = """
model M(mode: str = "a", k: int = 2) {
    fc = Linear(4, 4)
    forward(x) {
        if mode == "a" {
            x = fc(x)
        } elif mode == "b" and k > 1 {
            x = x * 2
        } elif not (mode in ("c", "d")) {
            x = x - 3
        } else {
            x = -x
        }
        return x + k if k >= 3 else x
    }
}
"""


@pytest.mark.parametrize(("mode", "k"), [("a", 2), ("b", 2), ("b", 1), ("c", 5), ("e", 3)])
def test_if_on_constants_compiles_to_straight_line_code(mode: str, k: int) -> None:
    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if mode == "a":
                x = self.fc(x)
            elif mode == "b" and k > 1:
                x = x * 2
            elif mode not in ("c", "d"):
                x = x - 3
            else:
                x = -x
            return x + k if k >= 3 else x

    got, want = pair(CONST_IF, Hand, mode=mode, k=k)
    agree(got, want, data(3, 4), modes=(False,))
    code = source(got)
    assert branches(code) == []
    assert "mode" not in code and " k" not in code and " if " not in code


EARLY_RETURN = """
model M(k: int = 2, big: bool = false) {
    if big { extra = Linear(4, 4) }
    forward(x) {
        if k >= 3 { return x + k }
        if not extra { return x * 2 }
        return extra(x)
    }
}
"""


@pytest.mark.parametrize(("k", "big"), [(3, False), (2, False), (3, True)])
def test_early_return_under_a_constant_condition(k: int, big: bool) -> None:
    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.extra = nn.Linear(4, 4) if big else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if k >= 3:
                return x + k
            if not self.extra:
                return x * 2
            return self.extra(x)  # type: ignore[no-any-return]

    got, want = pair(EARLY_RETURN, Hand, k=k, big=big)
    agree(got, want, data(3, 4), modes=(False,))
    assert branches(source(got)) == []


def test_early_return_under_a_constant_condition_that_is_false() -> None:
    model = netdsl.loads(EARLY_RETURN, k=2, big=True)
    x = data(3, 4)
    assert torch.equal(model(x), model.extra(x))
    assert branches(source(model)) == []


def test_constants_fold_in_expressions() -> None:
    spec = """
    model M(k: int = 3, scale: float = 0.5, names: tuple = ("a", "b")) {
        let width = k * 4
        forward(x) {
            y = x * (k * 2 - 1) + scale / 2
            z = x.view(-1, width // 3) if "b" in names and not k < 2 else x
            big = k > 2
            flags = (k == 3, 1 <= k <= 2, "c" not in names)
            return y + z, big, flags
        }
    }"""

    def hand(x: torch.Tensor) -> Any:
        y = x * 5 + 0.25
        z = x.view(-1, 4)
        return y + z, True, (True, False, True)

    model = netdsl.loads(spec)
    x = data(2, 4)
    assert equal(model(x), hand(x))
    code = source(model)
    assert "(x * 5)" in code and "0.25" in code and "x.view(-1, 4)" in code
    assert branches(code) == [] and " if " not in code
    assert "(True, False, True)" in code


# ---------------------------------------------------------------- if on training


TRAINING = """
model M(k: int = 2) {
    fc = Linear(4, 4)
    drop = Dropout(0.5)
    forward(x) {
        x = fc(x)
        if training {
            x = drop(x) * k
        } elif k > 5 {
            x = x + 100
        } else {
            x = x - 1
        }
        if not training and k == 2 { x = x / 3 }
        y = x * 2 if training else x * 4
        return x, y
    }
}
"""


@pytest.mark.parametrize("k", [2, 6])
def test_if_on_training_is_a_run_time_branch(k: int) -> None:
    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.drop = nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.fc(x)
            if self.training:
                x = self.drop(x) * k
            elif k > 5:
                x = x + 100
            else:
                x = x - 1
            if not self.training and k == 2:
                x = x / 3
            y = x * 2 if self.training else x * 4
            return x, y

    got, want = pair(TRAINING, Hand, k=k)
    x = data(8, 4)
    agree(got, want, x)
    assert not equal(run(got, x, train=True), run(got, x, train=False))
    code = source(got)
    # `not training and k == 2` is `not training` for k == 2 and false (no if at all) for k == 6.
    assert branches(code) == ["if self.training:", "else:"] + (
        ["if (not self.training):"] if k == 2 else [])
    assert ("100" in code) == (k == 6)


GOOGLENET = """
block Aux(c: int, classes: int) {
    fc = Linear(c, classes)
    forward(x) = x -> relu -> fc
}
model Net(aux_logits: bool = true, transform_input: bool = false, classes: int = 3) {
    conv = Linear(4, 4)
    if aux_logits {
        aux1 = Aux(4, classes)
        aux2 = Aux(4, classes)
    }
    mid = Linear(4, 4)
    dropout = Dropout(0.5)
    fc = Linear(4, classes)
    forward(x) {
        if transform_input {
            x = cat((unsqueeze(x[:, 0], 1) * 2, x[:, 1:]), 1)
        }
        x = conv(x)
        out1 = none
        if aux1 and training { out1 = aux1(x) }
        x = mid(x)
        out2 = none
        if aux2 and training { out2 = aux2(x) }
        x = x -> dropout -> fc
        if training and aux_logits { return x, out2, out1 }
        return x
    }
}
"""


class HandAux(nn.Module):
    def __init__(self, c: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(x))  # type: ignore[no-any-return]


class HandGoogLeNet(nn.Module):
    """torchvision.models.googlenet.GoogLeNet's forward, in small."""

    def __init__(self, aux_logits: bool, transform_input: bool) -> None:
        super().__init__()
        self.aux_logits, self.transform_input = aux_logits, transform_input
        self.conv = nn.Linear(4, 4)
        self.aux1: nn.Module | None = None
        self.aux2: nn.Module | None = None
        if aux_logits:
            self.aux1, self.aux2 = HandAux(4, 3), HandAux(4, 3)
        self.mid = nn.Linear(4, 4)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> Any:
        if self.transform_input:
            x = torch.cat((torch.unsqueeze(x[:, 0], 1) * 2, x[:, 1:]), 1)
        x = self.conv(x)
        aux1: torch.Tensor | None = None
        if self.aux1 is not None and self.training:
            aux1 = self.aux1(x)
        x = self.mid(x)
        aux2: torch.Tensor | None = None
        if self.aux2 is not None and self.training:
            aux2 = self.aux2(x)
        x = self.fc(self.dropout(x))
        if self.training and self.aux_logits:
            return x, aux2, aux1
        return x


@pytest.mark.parametrize(("aux_logits", "transform_input"),
                         [(True, False), (False, False), (True, True), (False, True)])
def test_absent_child_and_training_fold_googlenet_style(aux_logits: bool, transform_input: bool
                                                        ) -> None:
    got, want = pair(GOOGLENET, lambda: HandGoogLeNet(aux_logits, transform_input),
                     aux_logits=aux_logits, transform_input=transform_input)
    x = data(5, 4)
    agree(got, want, x)
    assert isinstance(run(got, x, train=True), tuple) == aux_logits
    assert isinstance(run(got, x, train=False), torch.Tensor)
    code = source(got)
    assert ("aux1" in code) == aux_logits
    # `aux1 and training` is `training` when aux1 is present, nothing at all when it is absent;
    # `training and aux_logits` likewise.
    expected = ["if self.training:"] * 3 if aux_logits else []
    assert branches(code) == expected


def test_return_in_both_branches_of_a_run_time_if() -> None:
    spec = """
    model M {
        fc = Linear(4, 2)
        forward(x) {
            y = fc(x)
            if training {
                return y, x
            } else {
                return y
            }
        }
    }"""

    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> Any:
            y = self.fc(x)
            if self.training:
                return y, x
            return y

    got, want = pair(spec, Hand)
    agree(got, want, data(3, 4))
    assert isinstance(run(got, data(3, 4), train=True), tuple)


def test_run_time_conditions_on_values() -> None:
    spec = """
    model M(t: float = 0.0) {
        forward(x, flag) {
            y = x if x.sum() > t else -x
            mask = (x > 0).float()
            if flag and not x.shape[0] == 1 { y = y * 2 }
            elif x.shape[0] == 1 or flag { y = y * 3 }
            return y * mask, x.shape[1] != 4, x.ndim >= 2
        }
    }"""

    def hand(x: torch.Tensor, flag: bool) -> Any:
        y = x if x.sum() > 0.0 else -x
        mask = (x > 0).float()
        if flag and not x.shape[0] == 1:
            y = y * 2
        elif x.shape[0] == 1 or flag:
            y = y * 3
        return y * mask, x.shape[1] != 4, x.ndim >= 2

    model = netdsl.loads(spec)
    for x in (data(3, 4), -data(3, 4).abs(), data(1, 5)):
        for flag in (True, False):
            assert equal(model(x, flag), hand(x, flag))


# ---------------------------------------------------------------- slices and unpacking


def test_slices_and_tuple_unpacking() -> None:
    spec = """
    model M {
        conv = Conv2d(2, 2, 1)
        forward(x) {
            first = x[:, 0]
            middle = x[:, 1:3]
            every_other = x[..., ::2]
            tail = x[:, -1:, 1:, :-1]
            x1, x2 = x.chunk(2, dim=1)
            n, c, h, w = x.size()
            out = cat((x1, conv(x2)), dim=1)
            out = out.view(n, 2, c // 2, h, w)
            out = transpose(out, 1, 2).contiguous().view(n, c, h, w)
            return out, first, middle, every_other, tail
        }
    }"""

    class Hand(nn.Module):
        """torchvision's ShuffleNetV2 InvertedResidual (stride 1) and channel_shuffle."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x: torch.Tensor) -> Any:
            first, middle, every_other = x[:, 0], x[:, 1:3], x[..., ::2]
            tail = x[:, -1:, 1:, :-1]
            x1, x2 = x.chunk(2, dim=1)
            n, c, h, w = x.size()
            out = torch.cat((x1, self.conv(x2)), dim=1)
            out = out.view(n, 2, c // 2, h, w)
            out = torch.transpose(out, 1, 2).contiguous().view(n, c, h, w)
            return out, first, middle, every_other, tail

    got, want = pair(spec, Hand)
    agree(got, want, data(2, 4, 3, 5), modes=(False,))
    code = source(got)
    assert "x[:, 1:3]" in code and "x[..., ::2]" in code and "x1, x2 = x.chunk(2, dim=1)" in code


# ---------------------------------------------------------------- lists, children(), dicts


DENSE = """
block Layer(c: int, growth: int) {
    norm = BatchNorm2d(c)
    conv = Conv2d(c, growth, 3, padding=1, bias=false)
    forward(features) = cat(features, 1) -> norm -> relu -> conv
}
model Block(n: int = 3, c: int = 4, growth: int = 2) {
    for i in range(n) { f"denselayer{i + 1}" = Layer(c + i * growth, growth) }
    forward(init_features) {
        features = [init_features]
        for layer in children() {
            new_features = layer(features)
            features.append(new_features)
        }
        return cat(features, 1)
    }
}
"""


def test_lists_append_and_children_densenet_style() -> None:
    class Layer(nn.Module):
        def __init__(self, c: int, growth: int) -> None:
            super().__init__()
            self.norm = nn.BatchNorm2d(c)
            self.conv = nn.Conv2d(c, growth, 3, padding=1, bias=False)

        def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
            return self.conv(F.relu(self.norm(torch.cat(features, 1))))  # type: ignore

    class Block(nn.ModuleDict):
        """torchvision.models.densenet._DenseBlock."""

        def __init__(self) -> None:
            super().__init__()
            for i in range(3):
                self.add_module(f"denselayer{i + 1}", Layer(4 + i * 2, 2))

        def forward(self, init_features: torch.Tensor) -> torch.Tensor:  # type: ignore
            features = [init_features]
            for _name, layer in self.items():
                new_features = layer(features)
                features.append(new_features)
            return torch.cat(features, 1)

    got, want = pair(DENSE, Block)
    agree(got, want, data(2, 4, 5, 5))


def test_dict_items_slices_and_indexes_of_sequentials() -> None:
    spec = """
    model M {
        s = sequential { Linear(4, 4)  Tanh()  Linear(4, 4)  ReLU() }
        heads = dict { a: Linear(4, 2), b: Linear(4, 3) }
        forward(x) {
            x = s[:1](x)
            for layer in s[1:] { x = layer(x) }
            y = s[-2:](x)
            outs = []
            for key, head in heads.items() { outs.append(head(x)) }
            for head in heads.values() { outs.append(head(y)) }
            outs.extend([x, y])
            return cat(outs, 1), s[::2](x)
        }
    }"""

    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.s = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU())
            self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 3)})

        def forward(self, x: torch.Tensor) -> Any:
            x = self.s[:1](x)
            for layer in self.s[1:]:
                x = layer(x)
            y = self.s[-2:](x)
            outs = []
            for _key, head in self.heads.items():
                outs.append(head(x))
            for head in self.heads.values():
                outs.append(head(y))
            outs.extend([x, y])
            return torch.cat(outs, 1), self.s[::2](x)

    got, want = pair(spec, Hand)
    agree(got, want, data(3, 4), modes=(False,))


# ---------------------------------------------------------------- methods, checkpoint, dropout


CHECKPOINT = """
model M(memory_efficient: bool = false, drop_rate: float = 0.25) {
    norm1 = BatchNorm2d(6)
    conv1 = Conv2d(6, 4, 1, bias=false)
    norm2 = BatchNorm2d(4)
    conv2 = Conv2d(4, 2, 3, padding=1, bias=false)

    def bn_function(*inputs) = cat(inputs, 1) -> norm1 -> relu -> conv1
    def scale(y, by=2) { return y * by }

    forward(a, b) {
        features = [a, b]
        if memory_efficient {
            bottleneck = checkpoint(bn_function, *features, use_reentrant=false)
        } else {
            bottleneck = bn_function(*features)
        }
        new_features = bottleneck -> norm2 -> relu -> conv2
        if drop_rate > 0 {
            new_features = dropout(new_features, p=drop_rate, training=training)
        }
        return scale(new_features) + scale(new_features, by=3)
    }
}
"""


class HandDenseLayer(nn.Module):
    """torchvision.models.densenet._DenseLayer, in small."""

    def __init__(self, memory_efficient: bool, drop_rate: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(6)
        self.conv1 = nn.Conv2d(6, 4, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 2, 3, padding=1, bias=False)
        self.memory_efficient, self.drop_rate = memory_efficient, drop_rate

    def bn_function(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.conv1(F.relu(self.norm1(torch.cat(inputs, 1))))  # type: ignore

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        features = [a, b]
        if self.memory_efficient:
            bottleneck = torch.utils.checkpoint.checkpoint(self.bn_function, *features,
                                                           use_reentrant=False)
        else:
            bottleneck = self.bn_function(*features)
        new_features = self.conv2(F.relu(self.norm2(bottleneck)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features * 2 + new_features * 3  # type: ignore[no-any-return]


def outputs_and_grads(module: nn.Module, a: torch.Tensor, b: torch.Tensor, train: bool
                      ) -> list[torch.Tensor]:
    module.train(train)
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    module.zero_grad()
    torch.manual_seed(11)
    out = module(a, b)
    (out * out).sum().backward()
    assert a.grad is not None and b.grad is not None
    grads = [p.grad for p in module.parameters()]
    assert all(g is not None for g in grads)
    return [out.detach(), a.grad, b.grad, *(g for g in grads if g is not None)]


@pytest.mark.parametrize("drop_rate", [0.0, 0.25])
@pytest.mark.parametrize("memory_efficient", [False, True])
def test_methods_checkpoint_and_dropout(memory_efficient: bool, drop_rate: float) -> None:
    got, want = pair(CHECKPOINT, lambda: HandDenseLayer(memory_efficient, drop_rate),
                     memory_efficient=memory_efficient, drop_rate=drop_rate)
    a, b = data(2, 3, 4, 4), data(2, 3, 4, 4, seed=99)
    for train in (True, False):
        ours, theirs = outputs_and_grads(got, a, b, train), outputs_and_grads(want, a, b, train)
        assert len(ours) == len(theirs)
        for x, y in zip(ours, theirs, strict=True):
            assert torch.equal(x, y)
    code = source(got)
    assert ("_checkpoint(self.bn_function, *features, use_reentrant=False)" in code) == \
        memory_efficient
    assert branches(code) == []
    # The checkpointed path and the plain one agree too.
    plain = seeded(lambda: netdsl.loads(CHECKPOINT, memory_efficient=not memory_efficient,
                                        drop_rate=drop_rate))
    for x, y in zip(outputs_and_grads(got, a, b, True), outputs_and_grads(plain, a, b, True),
                    strict=True):
        assert torch.equal(x, y)


def test_dropout_draws_like_f_dropout() -> None:
    spec = """
    model M(p: float = 0.3) {
        forward(x) = dropout(x, p, training=training) + dropout(x, p=0.5, training=true)
    }"""
    model = netdsl.loads(spec)
    x = data(4, 8)
    for train in (True, False):
        model.train(train)
        torch.manual_seed(3)
        got = model(x)
        torch.manual_seed(3)
        want = F.dropout(x, 0.3, training=train) + F.dropout(x, p=0.5, training=True)
        assert torch.equal(got, want)


def test_pad() -> None:
    spec = """
    model M {
        forward(x) = pad(x, (1, 2)) + pad(x, (1, 2), value=3.0) - pad(x, (0, 3), mode="replicate")
    }"""
    x = data(2, 3, 4)
    want = F.pad(x, (1, 2)) + F.pad(x, (1, 2), value=3.0) - F.pad(x, (0, 3), mode="replicate")
    assert torch.equal(netdsl.loads(spec)(x), want)


# ---------------------------------------------------------------- fx and compile


TRACEABLE = """
block Down(i: int, o: int, stride: int = 1) {
    conv = Conv2d(i, o, 3, stride=stride, padding=1, bias=false)
    bn = BatchNorm2d(o)
    if stride != 1 or i != o {
        downsample = sequential { Conv2d(i, o, 1, stride=stride, bias=false)  BatchNorm2d(o) }
    }
    forward(x) {
        identity = x
        out = x -> conv -> bn
        if downsample { identity = downsample(x) }
        return relu(out + identity)
    }
}
model M(use_extra: bool = false) {
    a = Down(3, 3)
    b = Down(3, 4, stride=2)
    drop = Dropout(0.5)
    forward(x) {
        x = x -> a -> b
        if use_extra { x = x * 100 }
        if training { x = drop(x) }
        return x -> mean([2, 3])
    }
}
"""


def test_fx_symbolic_trace_of_folded_and_training_branches() -> None:
    model = seeded(lambda: netdsl.loads(TRACEABLE)).eval()
    x = data(2, 3, 8, 8)
    traced = torch.fx.symbolic_trace(model)  # traced in eval mode: the eval branch
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))
    targets = [str(node.target) for node in traced.graph.nodes if node.op == "call_module"]
    assert "b.downsample.0" in targets and not any(t.startswith("a.downsample") for t in targets)
    assert "drop" not in targets


@pytest.mark.parametrize("which", ["resnet", "googlenet"])
def test_torch_compile_of_folded_and_training_branches(which: str) -> None:
    if which == "resnet":
        model, x = seeded(lambda: netdsl.loads(TRACEABLE)), data(2, 3, 8, 8)
        hand: nn.Module = model
    else:
        model, x = seeded(lambda: netdsl.loads(GOOGLENET)), data(2, 4)
        hand = seeded(lambda: HandGoogLeNet(True, False))
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # no graph breaks
    for train in (False, True):
        model.train(train)
        hand.train(train)
        torch.manual_seed(4)
        with torch.no_grad():
            want = hand(x)
        torch.manual_seed(4)
        with torch.no_grad():
            got = compiled(x)
        assert equal(got, want)


# ---------------------------------------------------------------- mistakes


@pytest.mark.parametrize(("spec", "message", "where"), [
    pytest.param("""
model M(big: bool = false) {
    if big { extra = Linear(4, 4) }
    fc = Linear(4, 4)
    forward(x) = extra(fc(x))
}""", "'extra' is none here (a child whose condition did not hold); test it first: "
      "if extra { ... }", (5, 18), id="absent child called"),
    pytest.param("""
model M {
    layers = list [ Linear(4, 4), Linear(4, 4) ]
    forward(x) {
        for layer in layers { return layer(x) }
        return x
    }
}""", "'return' inside a for loop is not supported; return after the loop", (5, 31),
        id="return in loop"),
    pytest.param("""
model M {
    forward(x) {
        if training { return x } else { return -x }
        y = x * 2
        return y
    }
}""", "code after 'return' never runs", (5, 9), id="code after return in both branches"),
    pytest.param("""
model M {
    fc = Linear(4, 4)
    forward(x) {
        x.relu()
        return fc(x)
    }
}""", "only a list's append and extend can stand alone as a statement; assign other results "
      "to a name", (5, 9), id="call as a statement"),
    pytest.param("""
model M {
    fc = Linear(4, 4)
    forward(x) {
        fc(x)
        return x
    }
}""", "syntax error: a call's result is assigned to a name (y = fc(x)); only a list's append "
      "and extend stand alone", (5, 11), id="bare call as a statement"),
    pytest.param("""
model M {
    forward(x) {
        outs = [x]
        outs.insert(0, x)
        return outs
    }
}""", "only a list's append and extend can stand alone as a statement; assign other results "
      "to a name", (5, 9), id="unknown list method"),
    pytest.param("""
model M {
    def f(y) = f(y)
    forward(x) = f(x)
}""", "method 'f' calls itself (f -> f); recursion is not allowed", (3, 16), id="direct recursion"),
    pytest.param("""
model M {
    fc = Linear(4, 4)
    def f(y) = fc(y)
    forward(x) = checkpoint(f, x)
}""", "checkpoint() is missing required argument 'use_reentrant'", (5, 18),
        id="checkpoint without use_reentrant"),
])
def test_forward_mistakes(spec: str, message: str, where: tuple[int, int]) -> None:
    err = error(spec)
    assert err.message == message
    assert (err.line, err.column) == where


def test_mutual_method_recursion_is_refused() -> None:
    err = error("""
model M {
    def a(y) = b(y) + 1
    def b(y) = a(y) * 2
    forward(x) = a(x)
}""")
    assert err.message == "method 'a' calls itself (a -> b -> a); recursion is not allowed"
    assert (err.line, err.column) == (4, 16)


def test_looping_over_an_absent_child_names_it() -> None:
    err = error("""
model M(big: bool = false) {
    if big { extra = list [ Linear(4, 4) ] }
    forward(x) {
        for layer in extra { x = layer(x) }
        return x
    }
}""")
    assert err.message == ("can only loop over a list, a sequential, a dict's items() or a "
                           "value, not none: 'extra' is a child whose condition did not hold")
    assert (err.line, err.column) == (5, 22)


COMPARED_WITH_NONE = """
model M(big: bool = true) {
    if big { extra = Linear(4, 4) }
    forward(x) {
        if extra != none { x = extra(x) }
        return x
    }
}
"""


@pytest.mark.parametrize("big", [False, True])
def test_a_child_compared_with_none(big: bool) -> None:
    model = seeded(lambda: netdsl.loads(COMPARED_WITH_NONE, big=big))
    x = data(2, 4)
    assert torch.equal(model(x), model.extra(x) if big else x)
    assert branches(source(model)) == []


@pytest.mark.parametrize("spec", [
    "model M(s: tuple = (Linear, 2)) { forward(x) = x * s[1] }",
    "let S = [(Linear, 2)]\nmodel M { forward(x) = x * S[0][1] }",
])
def test_constants_indexed_by_constants_fold(spec: str) -> None:
    """A layer inside a constant never reaches the generated code: indexing folds first."""
    model = netdsl.loads(spec, model="M")
    x = data(2, 3)
    assert torch.equal(model(x), x * 2)
    assert "Linear" not in source(model)


def test_a_layer_is_not_a_value_in_a_forward() -> None:
    # A block named like a Python builtin must not reach the generated code as that name.
    err = error("block print(i: int) { fc = Linear(i, i) }\n"
                "model M(s: list = [print, 2]) { forward(x) = (x * s[1], s[0]) }")
    assert err.message == ("layer (print) is not a value in a forward (a layer is built as a "
                           "child, and called there)")
    assert (err.line, err.column) == (2, 57)


def test_forward_mistake_absent_child_in_a_block() -> None:
    spec = """
    block B(stride: int = 1) {
        conv = Conv2d(2, 2, 1)
        if stride != 1 { downsample = Conv2d(2, 2, 1, stride=stride) }
        forward(x) = conv(x) + downsample(x)
    }
    model M { b = B() }"""
    err = error(spec)
    assert err.message == ("'downsample' is none here (a child whose condition did not hold); "
                           "test it first: if downsample { ... }")
    assert (err.line, err.column) == (5, 32)


def test_grouped_outputs_stay_a_tuple() -> None:
    model = netdsl.loads("model M { forward(x) { a, b = x.chunk(2, 1) return b, a } }")
    x = data(2, 4)
    got = model(x)
    assert isinstance(got, tuple) and len(got) == 2
    assert torch.equal(got[0], x[:, 2:]) and torch.equal(got[1], x[:, :2])


def test_children_keep_their_declaration_order_in_forward_loops() -> None:
    spec = """
    model M {
        for i in range(3) { f"l{2 - i}" = Linear(4, 4) }
        forward(x) {
            for layer in children() { x = layer(x) }
            return x
        }
    }"""
    model = seeded(lambda: netdsl.loads(spec))
    hand = seeded(lambda: nn.Sequential(OrderedDict(
        [("l2", nn.Linear(4, 4)), ("l1", nn.Linear(4, 4)), ("l0", nn.Linear(4, 4))])))
    same_state(model, hand)
    x = data(2, 4)
    assert torch.equal(model(x), hand(x))
