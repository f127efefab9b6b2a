"""Shapes and inference against the truth: real PyTorch forwards and hand-written modules.

Inferred input dimensions are checked against the shapes a real forward actually feeds each
layer (forward pre-hooks on a real input), and every omitted-argument spec is compared with the
hand-written torch module and with the fully explicit spec: same seed -> same repr, bitwise-equal
state_dict, same random-number state afterwards. Nothing here compares netdsl with its own
earlier output.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from seed_models import LeNetSequential
from torch import nn

import netdsl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REAL_SIZE = 2  # what a symbolic dimension is in the real runs

# The input-dimension attributes of built torch layers, and which dimension of the input each
# one must equal: channels at dim 1, features in the last dimension.
CHANNEL_ATTRS = ("in_channels", "num_features", "num_channels")
LAST_DIM_ATTRS = ("in_features", "input_size", "embed_dim")


# ---------------------------------------------------------------- helpers


def example(name: str) -> Path:
    return EXAMPLES / name


def seeded(build: Callable[[], nn.Module], seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """The module built right after ``torch.manual_seed(seed)``, and the RNG state after it."""
    torch.manual_seed(seed)
    module = build()
    return module, torch.random.get_rng_state()


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    """Same state_dict keys in the same order, and bitwise-equal tensors."""
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for key, tensor in state_a.items():
        other = state_b[key]
        assert tensor.dtype == other.dtype, key
        assert tensor.shape == other.shape, key
        assert torch.equal(tensor, other), f"{key} differs"


def real_input(shape: list[int | str], seed: int = 1234) -> torch.Tensor:
    dims = [REAL_SIZE if isinstance(d, str) else d for d in shape]
    return torch.randn(dims, generator=torch.Generator().manual_seed(seed))


@dataclass
class Declared:
    """A model's declared inputs, read from the spec: tensor shapes and non-tensor types."""

    shapes: dict[str, list[int | str]]
    types: dict[str, str]
    order: list[str]


def declared_inputs(path: Path, model: str) -> Declared:
    """The input declarations with parameters evaluated (``[N, width]`` -> ``[N, 256]``).

    This is the declaration as written, not anything inferred: ``Summary.inputs`` lists it as
    ``x: [N, 256]`` or ``choice: str``.
    """
    result = Declared({}, {}, [])
    for text in netdsl.summary(path, model=model).inputs:
        name, _, kind = text.partition(": ")
        result.order.append(name)
        if kind.startswith("["):
            dims = [d.strip() for d in kind.strip("[]").split(",")]
            result.shapes[name] = [int(d) if d.isdigit() else d for d in dims]
        else:
            result.types[name] = kind
    return result


def leaves(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if not list(module.children()):
            yield name, module


def dict_keys(model: nn.Module) -> list[str]:
    keys: list[str] = []
    for module in model.modules():
        if isinstance(module, nn.ModuleDict):
            keys += [k for k in module if k not in keys]
    return keys


def run_every_key(model: nn.Module, declared: Declared) -> int:
    """Call the model with the declared tensors and every combination of dict keys for the
    non-tensor (key) inputs; combinations a forward rejects as unknown keys are skipped."""
    tensors = {name: real_input(shape) for name, shape in declared.shapes.items()}
    keyed = [name for name in declared.order if name in declared.types]
    for name in keyed:
        assert declared.types[name] == "str", f"no real value for input {name}"
    runs = 0
    for combo in itertools.product(dict_keys(model), repeat=len(keyed)):
        args = {**tensors, **dict(zip(keyed, combo, strict=True))}
        try:
            model(**{name: args[name] for name in declared.order})
        except netdsl.UnknownKeyError:
            continue
        runs += 1
    return runs


def record_inputs(model: nn.Module) -> tuple[dict[str, list[tuple[int, ...]]],
                                             list[torch.utils.hooks.RemovableHandle]]:
    """Forward pre-hooks on every leaf module: the shapes of the first tensor it receives."""
    seen: dict[str, list[tuple[int, ...]]] = {}
    handles = []
    for name, module in leaves(model):
        def hook(_module: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            if args and isinstance(args[0], torch.Tensor):
                seen.setdefault(name, []).append(tuple(args[0].shape))
        handles.append(module.register_forward_pre_hook(hook))
    return seen, handles


def has_input_dim(module: nn.Module) -> bool:
    return any(hasattr(module, a) for a in (*CHANNEL_ATTRS, *LAST_DIM_ATTRS, "normalized_shape"))


def input_dim_checks(module: nn.Module, shape: tuple[int, ...]) -> list[tuple[str, Any, Any]]:
    """(attribute, the layer's value, the value the input it received says) for each
    input-dimension attribute the layer has."""
    checks: list[tuple[str, Any, Any]] = []
    for attr in CHANNEL_ATTRS:
        if hasattr(module, attr):
            checks.append((attr, getattr(module, attr), shape[1]))
    for attr in LAST_DIM_ATTRS:
        if hasattr(module, attr):
            checks.append((attr, getattr(module, attr), shape[-1]))
    if hasattr(module, "normalized_shape"):
        normalized = tuple(module.normalized_shape)
        checks.append(("normalized_shape", normalized, shape[-len(normalized):]))
    return checks


def example_models() -> list[tuple[Path, str]]:
    """Every (file, model) under examples/ whose model declares inputs and loads on its defaults
    (the zoo's generic ResNet, VGG, ... need arguments; their builders are in tests/test_zoo.py).
    The zoo's GPT, UNet and Seq2Seq are left out too: run for real at their defaults they are too
    big for this file (GPT-2 124M), and tests/test_zoo_references.py runs them against their
    references."""
    found = []
    for path in sorted(EXAMPLES.rglob("*.net")):
        if path.parent == EXAMPLES / "zoo":
            continue
        for decl in netdsl.parse_file(path).models:
            if decl.kind == "model" and decl.inputs and all(
                    p.default is not None for p in decl.params or []):
                found.append((path, decl.name.name))
    return found


EXAMPLE_MODELS = example_models()


# ---------------------------------------------------------------- inferred == real, examples


def test_examples_declare_inputs() -> None:
    names = {(p.relative_to(EXAMPLES).as_posix(), m) for p, m in EXAMPLE_MODELS}
    assert {("lenet.net", "LeNet"), ("resnet18.net", "ResNet18"), ("alexnet.net", "AlexNet"),
            ("module_dict.net", "ModuleDict"), ("module_list.net", "ModuleList")} <= names


@pytest.mark.parametrize(("path", "model_name"), EXAMPLE_MODELS,
                         ids=[f"{p.relative_to(EXAMPLES).as_posix()}::{m}"
                              for p, m in EXAMPLE_MODELS])
def test_input_dims_equal_what_a_real_forward_feeds(path: Path, model_name: str) -> None:
    model = netdsl.load(path, model=model_name, device="meta").to_empty(device="cpu").eval()
    with torch.no_grad():  # real memory; the values do not matter, only the shapes
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            tensor.zero_()
    declared = declared_inputs(path, model_name)
    seen, handles = record_inputs(model)
    with torch.no_grad():
        runs = run_every_key(model, declared)
        # Branches taken only in training (GoogLeNet's aux heads) are shape-checked too.
        model.train()
        run_every_key(model, declared)
    for handle in handles:
        handle.remove()
    assert runs >= 1
    if path.name == "module_dict.net":
        assert runs == 2 * 2  # choice in (conv, pool) x act in (relu, prelu)

    checked = 0
    for name, module in leaves(model):
        received = seen.get(name, [])
        if has_input_dim(module):  # it must have been called, or nothing is checked
            assert received, f"{name} ({module}) was never called"
        for shape in received:
            for attr, value, received in input_dim_checks(module, shape):
                assert value == received, (
                    f"{name}: {attr}={value}, but a real forward feeds it {list(shape)}")
                checked += 1
    assert checked > 0


def test_inferred_examples_say_what_the_seed_wrote() -> None:
    """LeNet's omitted dimensions are the seed's Conv2d(3, 6, 5), Conv2d(6, 16, 5),
    Linear(16*5*5, 120), Linear(120, 84), Linear(84, classes)."""
    model = netdsl.load(example("lenet.net"), device="meta")
    assert [m.in_channels for m in model.features if isinstance(m, nn.Conv2d)] == [3, 6]
    assert [m.in_features for m in model.classifier if isinstance(m, nn.Linear)] == \
        [16 * 5 * 5, 120, 84]
    resnet = netdsl.load(example("resnet18.net"), device="meta")
    assert (resnet.conv1.in_channels, resnet.bn1.num_features, resnet.fc.in_features) == \
        (3, 64, 512)


# ---------------------------------------------------------------- the omission rule


class M(nn.Module):
    """A hand-written model named like the specs below, children in the order given (keyword
    arguments are evaluated in order, so the children are constructed in that order)."""

    def __init__(self, **children: nn.Module) -> None:
        super().__init__()
        for name, child in children.items():
            setattr(self, name, child)


class B(nn.Module):
    """The hand-written form of ``block B`` below."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 16, 3)
        self.bn = nn.BatchNorm2d(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


@dataclass
class Case:
    """A spec with omitted input dimensions, the same spec written out, the hand-written
    module, and the hand-written forward with the inputs to run it on."""

    omitted: str
    explicit: str
    hand: Callable[[], nn.Module]
    forward: Callable[..., Any]
    inputs: list[dict[str, Any]]


def _loop(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for layer in m.layers:
        x = layer(x)
    return x


IMAGE = {"x": real_input(["N", 3, 32, 32])}
CASES: dict[str, Case] = {
    "conv_positional": Case(
        "model M { input x: [N, 3, 32, 32]  c = Conv2d(16, 5) }",
        "model M { input x: [N, 3, 32, 32]  c = Conv2d(3, 16, 5) }",
        lambda: M(c=nn.Conv2d(3, 16, 5)),
        lambda m, x: m.c(x), [IMAGE]),
    "conv_keywords": Case(
        "model M { input x: [N, 3, 32, 32]  c = Conv2d(out_channels=16, kernel_size=5) }",
        "model M { input x: [N, 3, 32, 32]  c = Conv2d(3, out_channels=16, kernel_size=5) }",
        lambda: M(c=nn.Conv2d(3, out_channels=16, kernel_size=5)),
        lambda m, x: m.c(x), [IMAGE]),
    "linear_after_flatten": Case(
        "model M { input x: [N, 4, 5, 5]  fc = Linear(10)  forward(x) = x -> flatten(1) -> fc }",
        "model M { input x: [N, 4, 5, 5]  fc = Linear(100, 10)  "
        "forward(x) = x -> flatten(1) -> fc }",
        lambda: M(fc=nn.Linear(4 * 5 * 5, 10)),
        lambda m, x: m.fc(torch.flatten(x, 1)), [{"x": real_input(["N", 4, 5, 5])}]),
    "batchnorm": Case(
        "model M { input x: [N, 3, 8, 8]  c = Conv2d(6, 3, padding=1)  bn = BatchNorm2d() }",
        "model M { input x: [N, 3, 8, 8]  c = Conv2d(3, 6, 3, padding=1)  bn = BatchNorm2d(6) }",
        lambda: M(c=nn.Conv2d(3, 6, 3, padding=1), bn=nn.BatchNorm2d(6)),
        lambda m, x: m.bn(m.c(x)), [{"x": real_input(["N", 3, 8, 8])}]),
    "groupnorm_second_parameter": Case(
        "model M { input x: [N, 6, 4, 4]  gn = GroupNorm(2) }",
        "model M { input x: [N, 6, 4, 4]  gn = GroupNorm(2, 6) }",
        lambda: M(gn=nn.GroupNorm(2, 6)),
        lambda m, x: m.gn(x), [{"x": real_input(["N", 6, 4, 4])}]),
    "layernorm_last_dim": Case(
        "model M { input x: [N, 5, 12]  ln = LayerNorm() }",
        "model M { input x: [N, 5, 12]  ln = LayerNorm(12) }",
        lambda: M(ln=nn.LayerNorm(12)),
        lambda m, x: m.ln(x), [{"x": real_input(["N", 5, 12])}]),
    "layernorm_keyword_only": Case(
        "model M { input x: [N, 5, 12]  ln = LayerNorm(eps=0.001) }",
        "model M { input x: [N, 5, 12]  ln = LayerNorm(12, eps=0.001) }",
        lambda: M(ln=nn.LayerNorm(12, eps=0.001)),
        lambda m, x: m.ln(x), [{"x": real_input(["N", 5, 12])}]),
    "list_each_gets_previous_output": Case(
        "model M { input x: [N, 8]  layers = list [ Linear(16) for i in range(3) ]\n"
        "  forward(x) { for l in layers { x = l(x) } return x } }",
        "model M { input x: [N, 8]\n"
        "  layers = list [ Linear(8, 16), Linear(16, 16), Linear(16, 16) ]\n"
        "  forward(x) { for l in layers { x = l(x) } return x } }",
        lambda: M(layers=nn.ModuleList([nn.Linear(8, 16), nn.Linear(16, 16),
                                        nn.Linear(16, 16)])),
        _loop, [{"x": real_input(["N", 8])}]),
    "dict_every_branch_same_input": Case(
        "model M { input x: [N, 8]  input k: str\n"
        "  heads = dict { a: Linear(4), b: Linear(6) }  forward(x, k) = heads[k](x) }",
        "model M { input x: [N, 8]  input k: str\n"
        "  heads = dict { a: Linear(8, 4), b: Linear(8, 6) }  forward(x, k) = heads[k](x) }",
        lambda: M(heads=nn.ModuleDict({"a": nn.Linear(8, 4), "b": nn.Linear(8, 6)})),
        lambda m, x, k: m.heads[k](x),
        [{"x": real_input(["N", 8]), "k": "a"}, {"x": real_input(["N", 8]), "k": "b"}]),
    "block_infers_from_its_caller": Case(
        "block B { conv = Conv2d(16, 3)  bn = BatchNorm2d() }\n"
        "model M { input x: [N, 5, 9, 9]  b1 = B()  b2 = B()  forward(x) = x -> b1 -> b2 }",
        "block B(c: int) { conv = Conv2d(c, 16, 3)  bn = BatchNorm2d(16) }\n"
        "model M { input x: [N, 5, 9, 9]  b1 = B(5)  b2 = B(16)  forward(x) = x -> b1 -> b2 }",
        lambda: M(b1=B(5), b2=B(16)),
        lambda m, x: m.b2(m.b1(x)), [{"x": real_input(["N", 5, 9, 9])}]),
    "multihead_attention_embed_dim": Case(
        "model M { input x: [7, N, 8]  attn = MultiheadAttention(2)\n"
        "  forward(x) = attn(x, x, x)[0] }",
        "model M { input x: [7, N, 8]  attn = MultiheadAttention(8, 2)\n"
        "  forward(x) = attn(x, x, x)[0] }",
        lambda: M(attn=nn.MultiheadAttention(8, 2)),
        lambda m, x: m.attn(x, x, x)[0], [{"x": real_input([7, "N", 8])}]),
    "lstm_cell_input_size": Case(
        "model M { input x: [N, 8]  cell = LSTMCell(16)  forward(x) = cell(x)[0] }",
        "model M { input x: [N, 8]  cell = LSTMCell(8, 16)  forward(x) = cell(x)[0] }",
        lambda: M(cell=nn.LSTMCell(8, 16)),
        lambda m, x: m.cell(x)[0], [{"x": real_input(["N", 8])}]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_omitted_equals_hand_written_and_explicit(name: str) -> None:
    case = CASES[name]
    for seed in (0, 7):
        ours, rng_ours = seeded(lambda: netdsl.loads(case.omitted), seed)
        explicit, rng_explicit = seeded(lambda: netdsl.loads(case.explicit), seed)
        hand, rng_hand = seeded(case.hand, seed)
        assert repr(ours) == repr(hand) == repr(explicit)
        assert_same_state(ours, hand)
        assert_same_state(ours, explicit)
        # Construction drew exactly as many random numbers as the hand-written __init__.
        assert torch.equal(rng_ours, rng_hand)
        assert torch.equal(rng_explicit, rng_hand)
    ours.eval()
    hand.eval()
    with torch.no_grad():
        for inputs in case.inputs:
            assert torch.equal(ours(**inputs), case.forward(hand, **inputs))


def test_block_instances_infer_separately() -> None:
    model = netdsl.loads(CASES["block_infers_from_its_caller"].omitted, device="meta")
    assert (model.b1.conv.in_channels, model.b2.conv.in_channels) == (5, 16)
    assert (model.b1.bn.num_features, model.b2.bn.num_features) == (16, 16)


def test_list_inference_follows_the_loop() -> None:
    model = netdsl.loads(CASES["list_each_gets_previous_output"].omitted, device="meta")
    assert [layer.in_features for layer in model.layers] == [8, 16, 16]


# ---------------------------------------------------------------- random numbers


@pytest.mark.parametrize("name", ["lenet.net", "resnet18.net", "alexnet.net",
                                  "module_dict.net", "init/xavier_tanh.net"])
def test_shape_pass_draws_no_random_numbers(name: str) -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    assert netdsl.check(example(name)) == []
    assert torch.equal(torch.random.get_rng_state(), before)
    model = netdsl.load(example(name), device="meta")
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(p.is_meta for p in model.parameters())
    netdsl.summary(example(name))
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("seed", [0, 31])
def test_inferred_lenet_equals_the_seed(seed: int) -> None:
    ours, rng_ours = seeded(lambda: netdsl.load(example("lenet.net")), seed)
    theirs, rng_theirs = seeded(lambda: LeNetSequential(10), seed)
    assert_same_state(ours, theirs)
    assert torch.equal(rng_ours, rng_theirs)
    x = real_input(["N", 3, 32, 32])
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


# ---------------------------------------------------------------- scale


def test_hundred_billion_parameters_on_meta(tmp_path: Path) -> None:
    spec = tmp_path / "huge.net"
    spec.write_text("model Huge {\n    input x: [N, 100000]\n"
                    "    layers = sequential { Linear(100000) for i in range(10) }\n}\n",
                    encoding="utf-8")
    expected = 10 * (100_000 * 100_000 + 100_000)  # weight + bias of ten Linear(1e5, 1e5)
    assert netdsl.check(spec) == []
    model = netdsl.load(spec, device="meta")
    params = list(model.parameters())
    assert all(p.device.type == "meta" for p in params)
    assert sum(p.numel() for p in params) == expected
    assert [layer.in_features for layer in model.layers] == [100_000] * 10
    summary = netdsl.summary(spec)
    assert summary.total_params == summary.trainable_params == expected
    assert summary.macs == 10 * 100_000 * 100_000  # per sample


def test_ten_thousand_layers_check_clean(tmp_path: Path) -> None:
    spec = tmp_path / "deep.net"
    spec.write_text("model Deep { layers = sequential { Linear(8, 8) for i in range(10000) } }",
                    encoding="utf-8")
    assert netdsl.check(spec) == []
    model = netdsl.load(spec, device="meta")
    assert len(model.layers) == 10_000
    assert sum(p.numel() for p in model.parameters()) == 10_000 * (8 * 8 + 8)


# ---------------------------------------------------------------- errors


def check_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> str:
    """Every error netdsl.check reports for ``text``, rendered, with the path as ``spec.net``."""
    monkeypatch.chdir(tmp_path)
    Path("spec.net").write_text(text, encoding="utf-8")
    return "\n".join(e.render("error") for e in netdsl.check(Path("spec.net")))


def test_block_cannot_declare_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = ("block B {\n    input x: [N, 8]\n    fc = Linear(3)\n}\n"
            "model M {\n    input x: [N, 8]\n    b = B()\n}\n")
    assert check_text(tmp_path, monkeypatch, text) == (
        "spec.net:2:5: error[NDL001]: input declarations belong to models: a block's input comes "
        "from where it is used\n"
        "        input x: [N, 8]\n"
        "        ^^^^^^^^^^^^^^^")


def test_expect_output_needs_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "model M {\n    fc = Linear(3, 3)\n    expect output: [N, 3]\n}\n"
    assert check_text(tmp_path, monkeypatch, text) == (
        "spec.net:3:5: error[NDL011]: expect output needs input declarations (input x: [N, ...])\n"
        "        expect output: [N, 3]\n"
        "        ^^^^^^^^^^^^^^^^^^^^^")


def test_cannot_infer_from_a_symbolic_dim(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    text = "model M {\n    input x: [N, C]\n    fc = Linear(4)\n}\n"
    assert check_text(tmp_path, monkeypatch, text) == (
        "spec.net:3:10: error[NDL007]: cannot infer in_features of Linear(4): it receives "
        "x: [N, C], where that dimension is symbolic\n"
        "        fc = Linear(4)\n"
        "             ^^^^^^^^^")


def test_cannot_infer_from_a_symbolic_dim_in_a_block(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    text = ("block Head(n: int) {\n    fc = Linear(n)\n}\n"
            "model M {\n    input x: [N, C]\n    head = Head(4)\n}\n")
    assert check_text(tmp_path, monkeypatch, text) == (
        "spec.net:2:10: error[NDL007]: cannot infer in_features of Linear(4): it receives "
        "x: [N, C], where that dimension is symbolic\n"
        "        fc = Linear(n)\n"
        "             ^^^^^^^^^")


def test_block_with_explicit_dims_is_checked_per_use(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    text = ("block B {\n    conv = Conv2d(5, 16, 3)\n}\n"
            "model M {\n    input x: [N, 5, 9, 9]\n    b1 = B()\n    b2 = B()\n}\n")
    assert check_text(tmp_path, monkeypatch, text) == (
        "spec.net:2:12: error[NDL007]: Conv2d(5, 16, 3) expects 5 input channels, but receives 16 "
        "(x -> b1: [N, 16, 7, 7]); write Conv2d(16, 16, 3) or leave in_channels out to infer it\n"
        "        conv = Conv2d(5, 16, 3)\n"
        "               ^^^^^^^^^^^^^^^^")


def test_block_inference_checks_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "block B {\n    conv = Conv2d(16, 3)\n}\nmodel M {\n    input x: [N, 5, 9, 9]\n" \
           "    b = B()\n}\n"
    assert check_text(tmp_path, monkeypatch, text) == ""
    assert netdsl.load(Path("spec.net"), device="meta").b.conv.in_channels == 5


def test_layer_reused_with_another_width(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """One mistake, one message. After an input-dimension mismatch the check goes on as if the
    dimension were right (docs/language.md §13.2), so torch's own complaint about the same
    mismatch ('a and b must have same reduction dim') must not follow it."""
    text = "model M {\n    input x: [N, 8]\n    a = Linear(8)\n" \
           "    forward(x) = a(cat([x, a(x)], 1))\n}\n"
    assert check_text(tmp_path, monkeypatch, text) == (
        "spec.net:3:9: error[NDL007]: Linear(8, 8) was inferred with in_features=8 from an earlier "
        "call, but now receives x -> cat: [N, 16]\n"
        "        a = Linear(8)\n"
        "            ^^^^^^^^^")


def test_layer_reused_with_another_width_raises_on_load() -> None:
    with pytest.raises(netdsl.NetDSLError, match=r"was inferred with in_features=8 from an "
                                                 r"earlier call, but now receives x -> cat"):
        netdsl.loads("model M { input x: [N, 8]  a = Linear(8)  "
                     "forward(x) = a(cat([x, a(x)], 1)) }")


def test_a_real_width_equal_to_a_sentinel_is_not_symbolic() -> None:
    """1009 is the size netdsl runs the first symbolic dimension as; a declared width of 1009
    is still a real width, and Linear(4) after it is Linear(1009, 4)."""
    text = "model M { input x: [N, 1009]  fc = Linear(4) }"
    torch.manual_seed(0)
    ours = netdsl.loads(text)
    torch.manual_seed(0)
    hand = M(fc=nn.Linear(1009, 4))
    assert_same_state(ours, hand)


def test_a_dim_derived_from_a_symbolic_one_cannot_be_inferred() -> None:
    """After flatten(1), [N, C, 4] has C * 4 features: no Linear(4) fits every C (a real
    Linear(k, 4) takes C = k / 4 only), so inference must refuse, as it does for [N, C]."""
    text = "model M { input x: [N, C, 4]  fc = Linear(4)  forward(x) = x -> flatten(1) -> fc }"
    with pytest.raises(netdsl.NetDSLError, match=r"cannot infer in_features of Linear\(4\)"):
        model = netdsl.loads(text)
        pytest.fail(f"built {model.fc} for a C that is symbolic")  # shows what it built
