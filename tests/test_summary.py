"""netdsl summary against the truth: the real model's parameters, the shapes a real forward
produces (forward hooks on a concrete input), multiply-adds computed by hand, torchinfo's
totals and memory estimates, and torch's FlopCounterMode run on the real model.

Symbolic dimensions are run as REAL_SIZE in the real forwards; the summary shows them by name,
so shapes are compared after substituting the name with that size.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torchinfo
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import netdsl
from netdsl.cli import main
from netdsl.errors import UsageValueError
from netdsl.flop_formulas import formulas
from netdsl.summary import Summary

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REAL_SIZE = 2

Shape = tuple[int, ...]


# ---------------------------------------------------------------- helpers


def example(name: str) -> Path:
    return EXAMPLES / name


def leaves(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if not list(module.children()):
            yield name, module


def parse_shape(text: str, sizes: dict[str, int]) -> Shape:
    """``[N, 6, 28, 28]`` -> ``(2, 6, 28, 28)`` with ``sizes = {"N": 2}``."""
    dims = [d.strip() for d in text.strip("[]").split(",")]
    return tuple(int(d) if d.isdigit() else sizes[d] for d in dims)


def observe(model: nn.Module, inputs: Sequence[torch.Tensor],
            keys: Sequence[Sequence[str]] = (),
            taken: dict[str, list[Shape]] | None = None) -> dict[str, list[Shape]]:
    """Every module's output shapes during real forwards: one per combination of ``keys`` (the
    non-tensor arguments), or one forward when there are none; its first input's shapes in
    ``taken``, if given."""
    seen: dict[str, list[Shape]] = {}
    handles = []
    for name, module in model.named_modules():
        def hook(_m: nn.Module, args: Any, out: Any, name: str = name) -> None:
            first = out[0] if isinstance(out, (tuple, list)) else out
            seen.setdefault(name, []).append(tuple(first.shape))
            if taken is not None and args and isinstance(args[0], torch.Tensor):
                taken.setdefault(name, []).append(tuple(args[0].shape))
        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for combo in itertools.product(*keys):
                model(*inputs, *combo)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def hand_mult_adds(module: nn.Module, output: Shape) -> int | None:
    """Multiply-adds of one sample, torchinfo's way: each output element of a Linear costs
    in_features, of a convolution in_channels / groups * prod(kernel_size)."""
    per_sample = math.prod(output[1:])
    if isinstance(module, nn.Linear):
        return per_sample * module.in_features
    if isinstance(module, nn.Conv2d):
        return per_sample * module.in_channels // module.groups * math.prod(module.kernel_size)
    return None


_PER_OUTPUT = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
               nn.Hardsigmoid, nn.LeakyReLU, nn.ELU, nn.PReLU)
_PER_INPUT = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
              nn.Softmax)
_NO_ARITHMETIC = (nn.Dropout, nn.Flatten, nn.Identity, nn.Embedding)


def hand_elementwise(module: nn.Module, x: Shape, out: Shape) -> int | None:
    """FLOPs of one sample beyond 2 per multiply-add, as DeepSpeed's flops profiler counts a
    layer (deepspeed/profiling/flops_profiler/profiler.py, written out again here from its
    functions): an activation 1 per output element, pooling and softmax 1 per input element,
    eval-mode BatchNorm 2 per element with its affine weights, LayerNorm and GroupNorm 5.
    None for a layer it does not describe."""
    if isinstance(module, _PER_OUTPUT):
        return math.prod(out[1:])
    if isinstance(module, _PER_INPUT):
        return math.prod(x[1:])
    if isinstance(module, nn.BatchNorm2d):
        return math.prod(x[1:]) * (2 if module.affine else 1)
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        affine = module.weight is not None
        return math.prod(x[1:]) * (5 if affine else 4)
    if isinstance(module, (nn.Linear, nn.Conv2d, *_NO_ARITHMETIC)):
        return 0  # FlopCounterMode's Linear and convolution: 2 per multiply-add, bias left out
    return None


def real_memory(model: nn.Module) -> nn.Module:
    """The model built by netdsl.load, moved to real CPU memory (zeros: only shapes and counts
    matter here, and this skips initialising AlexNet's 61M parameters)."""
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            tensor.zero_()
    return model


def real_input(*shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(99))


# Each example: the summary's inputs (None: as declared), the concrete real input, the keys for
# the non-tensor arguments, and the size the summary's symbols stand for in the real run.
EXAMPLE_RUNS: dict[str, tuple[str, list[list[int | str]] | None, Shape, list[list[str]]]] = {
    "lenet": ("lenet.net", None, (2, 3, 32, 32), []),
    "alexnet_declared": ("alexnet.net", None, (2, 3, 224, 224), []),
    "alexnet_given": ("alexnet.net", [[2, 3, 224, 224]], (2, 3, 224, 224), []),
    "resnet18": ("resnet18.net", None, (2, 3, 224, 224), []),
    "module_list": ("module_list.net", None, (2, 10), []),
    "module_dict": ("module_dict.net", None, (2, 10, 32, 32),
                    [["conv", "pool"], ["relu", "prelu"]]),
}

_REAL: dict[str, tuple[nn.Module, dict[str, list[Shape]], dict[str, list[Shape]]]] = {}


def real_run(file: str, shape: Shape, keys: list[list[str]]
             ) -> tuple[nn.Module, dict[str, list[Shape]], dict[str, list[Shape]]]:
    """The real model (netdsl.load, real tensors), its modules' output shapes and input shapes,
    cached per file: the AlexNet runs share one forward."""
    key = f"{file}{shape}{keys}"
    if key not in _REAL:
        model = real_memory(netdsl.load(example(file), device="meta")).eval()
        taken: dict[str, list[Shape]] = {}
        _REAL[key] = (model, observe(model, [real_input(*shape)], keys, taken), taken)
    return _REAL[key]


# ---------------------------------------------------------------- summary vs the real model


@pytest.mark.parametrize("case", list(EXAMPLE_RUNS))
def test_summary_matches_real_model(case: str) -> None:
    file, inputs, shape, keys = EXAMPLE_RUNS[case]
    summary = netdsl.summary(example(file), inputs=inputs, depth=None)
    model, seen, taken = real_run(file, shape, keys)
    params = list(model.parameters())

    assert summary.total_params == sum(p.numel() for p in params)
    assert summary.trainable_params == sum(p.numel() for p in params if p.requires_grad)
    assert summary.non_trainable_params == summary.total_params - summary.trainable_params
    assert summary.size_mb == pytest.approx(
        sum(p.numel() * p.element_size() for p in params) / 1e6)

    # At depth None, a row per module (containers and blocks too), in module order.
    assert [r.path for r in summary.rows] == [name for name, _ in model.named_modules() if name]
    sizes = {"N": REAL_SIZE}
    counted = not keys  # a forward that picks dict entries by key has no single count
    for row in summary.rows:
        module = model.get_submodule(row.path)
        assert row.depth == row.path.count(".") + 1
        assert row.params == sum(p.numel() for p in module.parameters()), row.path
        assert row.trainable == sum(p.numel() for p in module.parameters()
                                    if p.requires_grad), row.path
        observed = seen.get(row.path)
        # A module list is iterated, never called; a key-picking forward has no one forward
        # to show a container's output from.
        if observed is None or (not counted and list(module.children())):
            assert row.output is None, row.path
            continue
        assert row.output is not None, row.path
        assert parse_shape(row.output, sizes) in observed, (row.path, row.output, observed)
        if len(set(observed)) == 1:
            assert parse_shape(row.output, sizes) == observed[0]
        if list(module.children()):
            continue
        # Per sample for a symbolic batch; for the whole input when the shape is given.
        out = parse_shape(row.output, sizes)
        hand = hand_mult_adds(module, out)
        batch = 1 if inputs is None else shape[0]
        assert row.macs == (((hand or 0) * batch) if counted else None), row.path
        # Every call of the layer (a block's one ReLU runs twice).
        calls = [hand_elementwise(module, x, y) for x, y in zip(taken[row.path], observed,
                                                                   strict=True)]
        assert None not in calls, f"{row.path}: {type(module).__name__} not described"
        elementwise = sum(c or 0 for c in calls)
        assert row.flops == (None if row.macs is None
                             else 2 * row.macs + elementwise * batch), row.path


def test_summary_shows_symbols_by_name() -> None:
    summary = netdsl.summary(example("lenet.net"))
    assert summary.inputs == ["x: [N, 3, 32, 32]"]
    assert all(r.output is not None and r.output.startswith("[N, ") for r in summary.rows)
    assert summary.per == "per sample"


def test_lenet_mult_adds_by_hand() -> None:
    """Per sample, from the layer shapes of LeNet on a 3x32x32 image."""
    conv1 = (6 * 28 * 28) * (3 * 5 * 5)        # 4,704 outputs x 75     = 352,800
    conv2 = (16 * 10 * 10) * (6 * 5 * 5)       # 1,600 outputs x 150    = 240,000
    fc1 = 120 * (16 * 5 * 5)                   #                          48,000
    fc2 = 84 * 120                             #                          10,080
    fc3 = 10 * 84                              #                             840
    assert conv1 + conv2 + fc1 + fc2 + fc3 == 651_720
    relus = 6 * 28 * 28 + 16 * 10 * 10 + 120 + 84  # one FLOP per element of each output
    pools = 6 * 28 * 28 + 16 * 10 * 10  # one per element of each input
    summary = netdsl.summary(example("lenet.net"))
    assert summary.macs == 651_720
    assert summary.flops == 2 * 651_720 + relus + pools == 1_316_252
    assert [r.macs for r in summary.rows if r.depth == 2 and r.macs] == \
        [conv1, conv2, fc1, fc2, fc3]
    assert [r.macs for r in summary.rows if r.depth == 1] == [conv1 + conv2, fc1 + fc2 + fc3]


def test_alexnet_mult_adds_by_hand() -> None:
    """One 224x224 image: 714,188,480, torchinfo's figure, recomputed from the real layers and
    the shapes a real forward produces."""
    model, seen, _ = real_run("alexnet.net", (2, 3, 224, 224), [])
    by_hand = 0
    for name, module in leaves(model):
        macs = hand_mult_adds(module, seen[name][0])
        by_hand += macs or 0
    assert by_hand == 714_188_480
    # Written out: conv1..conv5, then the three Linear layers.
    assert (64 * 55 * 55 * 3 * 11 * 11 + 192 * 27 * 27 * 64 * 5 * 5 + 384 * 13 * 13 * 192 * 9
            + 256 * 13 * 13 * 384 * 9 + 256 * 13 * 13 * 256 * 9
            + 9216 * 4096 + 4096 * 4096 + 4096 * 1000) == 714_188_480

    declared = netdsl.summary(example("alexnet.net"))
    assert (declared.macs, declared.per) == (714_188_480, "per sample")
    one = netdsl.summary(example("alexnet.net"), inputs=[[1, 3, 224, 224]])
    assert one.macs == 714_188_480
    two = netdsl.summary(example("alexnet.net"), inputs=[[2, 3, 224, 224]])
    assert (two.macs, two.per) == (2 * 714_188_480, "for this input")


def test_module_dict_every_key_has_a_shape() -> None:
    summary = netdsl.summary(example("module_dict.net"))
    rows = {r.path: r for r in summary.rows}
    assert rows["choices.conv"].output == "[N, 10, 30, 30]"  # 32 - 3 + 1
    assert rows["choices.pool"].output == "[N, 10, 10, 10]"  # 32 // 3
    # Which layers run depends on the keys: no one count stands for the model.
    assert rows["choices.conv"].macs is None and summary.macs is None
    assert summary.why_not_counted == ("the forward picks dict entries by key (choice, act): "
                                       "costs depend on the keys")


def test_summary_without_inputs_lists_layers_without_shapes(tmp_path: Path) -> None:
    spec = tmp_path / "plain.net"
    spec.write_text("model Plain {\n    a = Linear(4, 8)\n    b = ReLU()\n"
                    "    c = Linear(8, 2)\n}\n",
                    encoding="utf-8")
    summary = netdsl.summary(spec)
    assert [(r.path, r.output, r.params, r.macs) for r in summary.rows] == [
        ("a", None, 4 * 8 + 8, None), ("b", None, 0, None), ("c", None, 8 * 2 + 2, None)]
    assert summary.total_params == 4 * 8 + 8 + 8 * 2 + 2
    given = netdsl.summary(spec, inputs=[["B", 4]])
    assert [r.output for r in given.rows] == ["[B, 8]", "[B, 8]", "[B, 2]"]


def test_a_forward_that_fails_on_one_sample_is_not_counted(tmp_path: Path) -> None:
    """The shape pass runs N as a large size; counting per sample runs it as 1, where squeeze()
    also takes the batch dimension away and BatchNorm1d refuses the 1-D tensor left."""
    spec = tmp_path / "squeeze.net"
    spec.write_text("model Squeeze {\n    input x: [N, 4, 1]\n    bn = BatchNorm1d(4)\n"
                    "    forward(x) = x.squeeze() -> bn\n}\n", encoding="utf-8")
    with pytest.raises(ValueError) as real:
        nn.BatchNorm1d(4).eval()(real_input(1, 4, 1).squeeze())
    summary = netdsl.summary(spec)
    assert (summary.macs, summary.memory) == (None, None)
    assert summary.why_not_counted == \
        f"the forward fails with a batch of 1: ValueError: {real.value}"
    assert netdsl.summary(spec, inputs=[[2, 4, 1]]).macs == 0


def test_symbolic_spatial_dims_are_not_shown_as_numbers() -> None:
    """With x: [N, 3, H, W], ResNet-18's conv1 output is [N, 64, H', W'] where H' depends on H.
    Real forwards at two sizes show which dimensions vary; the summary must not print a number
    for those (it has no real H to compute one from), nor count mult-adds from them."""
    summary = netdsl.summary(example("resnet18.net"), inputs=[["N", 3, "H", "W"]], depth=None)
    model = real_memory(netdsl.load(example("resnet18.net"), device="meta")).eval()
    small = observe(model, [real_input(2, 3, 64, 64)])
    large = observe(model, [real_input(2, 3, 96, 96)])
    wrong = []
    for row in summary.rows:
        assert row.output is not None
        shown = [d.strip() for d in row.output.strip("[]").split(",")]
        varies = [a != b for a, b in zip(small[row.path][0], large[row.path][0], strict=True)]
        if any(v and d.isdigit() for v, d in zip(varies, shown, strict=True)):
            wrong.append(f"{row.path}: {row.output}")
        if any(varies) and row.macs is not None:
            wrong.append(f"{row.path}: macs {row.macs:,}")
    assert not wrong, "\n".join(wrong[:6])
    assert summary.why_not_counted == "H, W symbolic: give --input (inputs=) with numbers"


# ---------------------------------------------------------------- the command line


class LeNetByHand(nn.Module):
    """The seed's LeNet (LeNetSequential), by hand, for ``side`` x ``side`` images: 32 -> 28 ->
    14 -> 10 -> 5 (64 -> 60 -> 30 -> 26 -> 13)."""

    def __init__(self, side: int = 32, classes: int = 10) -> None:
        super().__init__()
        final = ((side - 4) // 2 - 4) // 2
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2))
        self.classifier = nn.Sequential(
            nn.Linear(16 * final * final, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "summary", str(example("lenet.net")), "--format", "json")
    assert code == 0
    data = json.loads(out)
    model, seen, _ = real_run("lenet.net", (2, 3, 32, 32), [])
    assert data["model"] == "LeNet"
    assert data["total_params"] == sum(p.numel() for p in model.parameters()) == 62_006
    assert [r["path"] for r in data["rows"]] == [n for n, _ in model.named_modules() if n]
    for row in data["rows"]:
        assert parse_shape(row["output"], {"N": REAL_SIZE}) == seen[row["path"]][0]
    assert (data["macs"], data["flops"]) == (651_720, 1_316_252)  # as test_lenet_mult_adds_by_hand


# LeNet's table, worked out by hand (torchinfo prints the same parameters, output shapes and
# memory lines for a [1, 3, 32, 32] input). Per sample: conv1 has 6 x 28 x 28 outputs of
# 3 x 5 x 5 multiply-adds each, conv2 16 x 10 x 10 of 6 x 5 x 5, the Linear layers
# in x out; FLOPs are twice that, and (DeepSpeed's convention) one per element of each ReLU's
# output and each max pool's input: 4,704 and 1,600 for the first two pairs, 120 and 84 for the
# classifier's ReLUs. Memory: the input is 3 x 32 x 32 floats (12,288 bytes); the
# outputs of the layers with parameters are 4,704 + 1,600 + 120 + 84 + 10 = 6,518 floats, twice
# (the gradient) = 52,144 bytes; the parameters 62,006 floats = 248,024 bytes; 312,456 in all.
LENET_TABLE = """\
LeNet    input x: [N, 3, 32, 32]
path            layer                               output           params     MACs      FLOPs
-----------------------------------------------------------------------------------------------
features        sequential                          [N, 16, 5, 5]     2,872  592,800  1,198,208
  features.0    Conv2d(3*, 6, 5)                    [N, 6, 28, 28]      456  352,800    705,600
  features.1    ReLU()                              [N, 6, 28, 28]        0        0      4,704
  features.2    MaxPool2d(kernel_size=2, stride=2)  [N, 6, 14, 14]        0        0      4,704
  features.3    Conv2d(6*, 16, 5)                   [N, 16, 10, 10]   2,416  240,000    480,000
  features.4    ReLU()                              [N, 16, 10, 10]       0        0      1,600
  features.5    MaxPool2d(kernel_size=2, stride=2)  [N, 16, 5, 5]         0        0      1,600
classifier      sequential                          [N, 10]          59,134   58,920    118,044
  classifier.0  Linear(400*, 120)                   [N, 120]         48,120   48,000     96,000
  classifier.1  ReLU()                              [N, 120]              0        0        120
  classifier.2  Linear(120*, 84)                    [N, 84]          10,164   10,080     20,160
  classifier.3  ReLU()                              [N, 84]               0        0         84
  classifier.4  Linear(84*, 10)                     [N, 10]             850      840      1,680
-----------------------------------------------------------------------------------------------
total params: 62,006    trainable: 62,006    non-trainable: 0    size: 0.25 MB
MACs (per sample): 651,720    FLOPs: 1,316,252 (2 per MAC; elementwise ops as DeepSpeed counts them)
input size (MB, per sample): 0.01
forward/backward pass size (MB): 0.05
params size (MB): 0.25
estimated total size (MB): 0.31
* inferred from the input shape
"""


def test_cli_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "summary", str(example("lenet.net")))
    assert code == 0
    assert out == LENET_TABLE
    # The memory lines are torchinfo's, for one sample.
    info = str(torchinfo.summary(LeNetByHand(), input_size=(1, 3, 32, 32), verbose=0))
    for line in ("Input size (MB): 0.01", "Forward/backward pass size (MB): 0.05",
                 "Params size (MB): 0.25", "Estimated Total Size (MB): 0.31",
                 "Total params: 62,006"):
        assert line in info


def test_cli_depth(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "summary", str(example("lenet.net")), "--depth", "1")
    assert code == 0
    rows = [line.split()[0] for line in out.splitlines()[3:5]]
    assert rows == ["features", "classifier"]
    assert "features.0" not in out
    code, out, _ = run_main(capsys, "summary", str(example("resnet18.net")), "--depth", "all",
                            "--format", "json")
    assert code == 0
    assert "layer2.0.downsample.0" in [r["path"] for r in json.loads(out)["rows"]]


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_cli_bad_depth_exits_2(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["summary", str(example("lenet.net")), "--depth", value])
    assert info.value.code == 2
    assert "--depth" in capsys.readouterr().err


def test_api_bad_depth() -> None:
    with pytest.raises(UsageValueError, match="depth is at least 0, got -1"):
        netdsl.summary(example("lenet.net"), depth=-1)


def test_cli_input_and_param_change_shapes_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "summary", str(example("lenet.net")), "--input", "B,3,64,64",
                            "-p", "classes=7", "--format", "json")
    assert code == 0
    data = json.loads(out)
    hand = LeNetByHand(side=64, classes=7)
    seen = observe(hand, [real_input(2, 3, 64, 64)])
    assert data["inputs"] == ["x: [B, 3, 64, 64]"]
    assert data["total_params"] == sum(p.numel() for p in hand.parameters()) == 338_231
    for row in data["rows"]:
        module = hand.get_submodule(row["path"])
        assert row["params"] == sum(p.numel() for p in module.parameters()), row["path"]
        assert parse_shape(row["output"], {"B": 2}) == seen[row["path"]][0], row["path"]
    assert data["rows"][-1]["output"] == "[B, 7]"


def test_cli_spec_without_inputs_shows_dashes(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "plain.net"
    spec.write_text("model Plain {\n    a = Linear(4, 8)\n    b = ReLU()\n}\n", encoding="utf-8")
    code, out, _ = run_main(capsys, "summary", str(spec))
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.startswith(("a ", "b "))]
    # No input shape: no output, MACs or FLOPs.
    assert rows == [["a", "Linear(4,", "8)", "-", "40", "-", "-"],
                    ["b", "ReLU()", "-", "0", "-", "-"]]
    assert "MACs, FLOPs, memory: not counted (no input shape)" in out
    assert "total params: 40" in out


def test_cli_invalid_spec_exits_1_with_located_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.net").write_text("model M {\n    input x: [N, 3, 32, 32]\n"
                               "    c = Conv2d(4, 8, 3)\n}\n", encoding="utf-8")
    code, out, err = run_main(capsys, "summary", "bad.net")
    assert code == 1
    assert out == ""
    assert err.startswith("bad.net:3:9: error[NDL007]: Conv2d(4, 8, 3) expects 4 input channels, "
                          "but receives 3 (x: [N, 3, 32, 32])")


def test_cli_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "summary", str(tmp_path / "nope.net"))
    assert code == 2
    assert out == ""
    assert "nope.net: no such file" in err


@pytest.mark.parametrize("flags", [["-p", "classes"], ["-p", "=7"], ["--input", "2,3,x-1"],
                                   ["--input", "2,,3"]])
def test_cli_malformed_flags_exit_2(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["summary", str(example("lenet.net")), *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "bad parameter" in err or "bad shape" in err


def test_cli_unknown_param_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "summary", str(example("lenet.net")), "-p", "clases=7")
    assert code == 1
    assert "LeNet has no parameter 'clases'; did you mean 'classes'?" in err


# ---------------------------------------------------------------- the zoo, against torchinfo

ZOO = EXAMPLES / "zoo"
GPT_SMALL = {"vocab_size": 50, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32}
# Each spec: its model, parameters, and the input (small sizes and few classes, for time).
ZOO_RUNS: dict[str, tuple[str, str | None, dict[str, Any], Shape, torch.dtype]] = {
    "resnet18": ("resnet.net", "resnet18", {"num_classes": 10}, (1, 3, 64, 64), torch.float32),
    "mobilenet_v2": ("mobilenet_v2.net", "mobilenet_v2", {"num_classes": 10}, (1, 3, 64, 64),
                     torch.float32),
    "densenet121": ("densenet.net", "densenet121", {"num_classes": 10}, (1, 3, 64, 64),
                    torch.float32),
    "vgg11": ("vgg.net", "vgg11", {"num_classes": 10}, (1, 3, 32, 32), torch.float32),
    "squeezenet1_0": ("squeezenet.net", "squeezenet1_0", {"num_classes": 10}, (2, 3, 64, 64),
                      torch.float32),
    "vit_b_16": ("vit.net", "vit_b_16", {"num_classes": 10, "image_size": 32}, (1, 3, 32, 32),
                 torch.float32),
    "gpt": ("gpt.net", None, GPT_SMALL, (2, 16), torch.int64),
}

_ZOO: dict[str, tuple[Summary, nn.Module, torch.Tensor]] = {}


def zoo_run(case: str) -> tuple[Summary, nn.Module, torch.Tensor]:
    """The summary (all rows), the real model netdsl.load builds (zeros, eval mode) and the
    input, cached per case."""
    if case not in _ZOO:
        file, model, params, shape, dtype = ZOO_RUNS[case]
        summary = netdsl.summary(ZOO / file, model=model, inputs=[list(shape)], depth=None,
                                 **params)
        # to_empty makes each module's tensors anew, which would untie a tied parameter.
        real = (netdsl.load(ZOO / file, model=model, **params) if summary.shared else
                real_memory(netdsl.load(ZOO / file, model=model, device="meta", **params)))
        real.eval()
        _ZOO[case] = (summary, real, torch.zeros(shape, dtype=dtype))
    return _ZOO[case]


def own_bytes(modules: Iterator[nn.Module]) -> int:
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters(recurse=False))


@pytest.mark.parametrize("case", list(ZOO_RUNS))
def test_totals_and_memory_match_torchinfo(case: str) -> None:
    summary, model, x = zoo_run(case)
    info = torchinfo.summary(model, input_data=[x], verbose=0)
    params = list(model.parameters())  # a tied parameter once
    assert summary.total_params == sum(p.numel() for p in params)
    # torchinfo adds up its layers, so a tied parameter counts in each layer that holds it.
    assert info.total_params == summary.total_params + summary.shared_params
    assert info.trainable_params == summary.trainable_params + summary.shared_params
    assert info.total_params - info.trainable_params == summary.non_trainable_params
    assert summary.buffers == sum(b.numel() for b in model.buffers())

    memory = summary.memory
    assert memory is not None
    assert memory.forward_backward_bytes == info.total_output_bytes
    # torchinfo measures sys.getsizeof(storage): the bytes and a Python object's few dozen.
    assert 0 <= info.total_input - memory.input_bytes < 100
    assert f"{memory.input_bytes / 1e6:.2f}" == f"{info.total_input / 1e6:.2f}"
    # Ours: every parameter's bytes, once. torchinfo's: those of each leaf layer that runs, so a
    # tied parameter counts in each layer that holds it.
    assert memory.params_bytes == sum(p.numel() * p.element_size() for p in params)
    if case == "vit_b_16":
        # ...and none of a block's own (class_token, pos_embedding) or of out_proj, which
        # MultiheadAttention uses by its weight without calling it.
        out_projs = own_bytes(m for name, m in model.named_modules() if name.endswith("out_proj"))
        blocks = own_bytes(m for m in model.modules() if list(m.children()))
        assert info.total_param_bytes == memory.params_bytes - out_projs - blocks
    else:
        assert info.total_param_bytes == memory.params_bytes + 4 * summary.shared_params
    assert memory.total_bytes == (memory.input_bytes + memory.forward_backward_bytes
                                  + memory.params_bytes)


@pytest.mark.parametrize("case", list(ZOO_RUNS))
def test_flops_match_flop_counter_on_the_real_model(case: str) -> None:
    """FlopCounterMode on the real CPU model: torch's own formulas alone give twice the MACs,
    of every row and in total; with netdsl's elementwise formulas the FLOPs. Each leaf layer
    DeepSpeed's convention describes has its FLOPs by hand (hand_elementwise). On CPU,
    attention would run a fused kernel FlopCounterMode has no formula for (and
    MultiheadAttention its no-grad fast path): the math backend, with gradients on, runs the ops
    the meta device runs."""
    summary, model, x = zoo_run(case)
    taken: dict[str, list[Shape]] = {}
    outputs = observe(model, [x], taken=taken)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as stock:
        model(x)
    with sdpa_kernel(SDPBackend.MATH), \
            FlopCounterMode(display=False, custom_mapping=formulas()) as counter:
        model(x)
    assert summary.macs is not None and 2 * summary.macs == stock.get_total_flops() > 0
    assert summary.flops == counter.get_total_flops() > stock.get_total_flops()
    assert summary.uncounted == {}
    for row in summary.rows:
        if row.flops is None:
            continue
        assert row.macs is not None
        assert 2 * row.macs == row_count(summary, row, stock, model), row.path
        assert row.flops == row_count(summary, row, counter, model), row.path
        module = model.get_submodule(row.path)
        if not list(module.children()) and row.path in taken:
            # Every call (a block's one ReLU runs twice), for the whole batch.
            calls = [hand_elementwise(module, x, y)
                     for x, y in zip(taken[row.path], outputs[row.path], strict=True)]
            if None not in calls:
                extra = sum(x[0] * (c or 0) for x, c in zip(taken[row.path], calls, strict=True))
                assert row.flops == 2 * row.macs + extra, row.path


def row_count(summary: Summary, row: Any, counter: FlopCounterMode, model: nn.Module) -> int:
    """What ``counter`` counted for the row's module; for a list or dict, which is never
    called, the sum over its children's rows (summed the same way)."""
    counts = counter.get_flop_counts()
    key = f"{type(model).__name__}.{row.path}"
    children = [r for r in summary.rows
                if r.depth == row.depth + 1 and r.path.startswith(row.path + ".")]
    if key in counts or not children:
        return sum(counts.get(key, {}).values())
    return sum(row_count(summary, child, counter, model) for child in children)


@pytest.mark.parametrize("case", ["lenet", "vgg11", "squeezenet1_0"])
def test_mult_adds_match_torchinfo(case: str) -> None:
    """For Conv and Linear layers on [N, features] inputs, torchinfo's mult-adds are the
    multiply-adds plus one addition per output element for a bias."""
    if case == "lenet":
        summary, model = netdsl.summary(example("lenet.net"), inputs=[[1, 3, 32, 32]]), \
            LeNetByHand()
        x = real_input(1, 3, 32, 32)
    else:
        summary, model, x = zoo_run(case)
    outputs = observe(model, [x])
    biases = sum(math.prod(outputs[name][0]) for name, m in leaves(model)
                 if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None)
    info = torchinfo.summary(model, input_data=[x], verbose=0)
    assert info.total_mult_adds == summary.macs + biases


def test_tied_parameters_counted_once_and_marked() -> None:
    summary, model, _ = zoo_run("gpt")
    every = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    wte = model.get_submodule("transformer.wte").weight
    assert summary.total_params == sum(p.numel() for p in model.parameters()) == \
        every - wte.numel()
    assert summary.shared_params == wte.numel() == 50 * 32
    assert summary.shared == [f"lm_head.weight = transformer.wte.weight ({50 * 32:,})"]
    rows = {r.path: r for r in summary.rows}
    assert rows["lm_head"].tied == ["lm_head.weight = transformer.wte.weight"]
    assert rows["lm_head"].params == 0  # its only parameter is counted at transformer.wte
    assert rows["transformer.wte"].params == wte.numel() and not rows["transformer.wte"].tied
    assert sum(r.params for r in summary.rows if r.depth == 1) == summary.total_params
    # transformer, a ModuleDict, is never called: its row adds up its children's calls. The
    # model's own forward adds the token and position embeddings: B x T x n_embd, in no row.
    assert (summary.own_macs, summary.own_flops) == (0, 2 * 16 * 32)
    assert sum(r.flops or 0 for r in summary.rows if r.depth == 1) + summary.own_flops == \
        summary.flops
    assert rows["transformer"].flops == sum(r.flops or 0 for r in summary.rows
                                            if r.depth == 2 and r.path.startswith("transformer."))
    folded = netdsl.summary(ZOO / "gpt.net", inputs=[[2, 16]], depth=0, **GPT_SMALL)
    assert folded.rows == [] and folded.total_params == summary.total_params
    text = netdsl.summary(ZOO / "gpt.net", inputs=[[2, 16]], depth=1, **GPT_SMALL)
    assert [r.tied for r in text.rows if r.path == "lm_head"] == [
        ["lm_head.weight = transformer.wte.weight"]]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_depth_folds_rows_into_their_ancestor(depth: int) -> None:
    full, model, _ = zoo_run("densenet121")
    file, name, params, shape, _ = ZOO_RUNS["densenet121"]
    folded = netdsl.summary(ZOO / file, model=name, inputs=[list(shape)], depth=depth, **params)
    rows = {r.path: r for r in full.rows}
    assert [r.path for r in folded.rows] == [r.path for r in full.rows if r.depth <= depth]
    for row in folded.rows:
        same = rows[row.path]
        assert (row.params, row.trainable, row.macs, row.flops, row.output) == \
            (same.params, same.trainable, same.macs, same.flops, same.output), row.path
        below = [r for r in full.rows if r.path.startswith(row.path + ".")]
        assert row.folded == (row.depth == depth and bool(below)), row.path
        children = [r for r in below if r.depth == row.depth + 1]
        if children:  # a block's own forward here only concatenates: no FLOPs
            assert row.params == sum(r.params for r in children), row.path
            assert row.flops == sum(r.flops or 0 for r in children), row.path
            assert row.params == sum(p.numel() for p in model.get_submodule(row.path).parameters())
    top = [r for r in folded.rows if r.depth == 1]
    assert sum(r.params for r in top) == folded.total_params
    # DenseNet's own forward: a ReLU and the average pool on the last [1024, 2, 2] map.
    assert (folded.own_macs, folded.own_flops) == (0, 2 * 1024 * 2 * 2)
    assert sum(r.flops or 0 for r in top) + folded.own_flops == folded.flops


def test_recurrent_layers_are_counted(tmp_path: Path) -> None:
    """Each step of each LSTM layer multiplies the input and the hidden state by 4 gates'
    weights, a GRU's by 3; on meta, torch runs the steps as matmuls FlopCounterMode counts."""
    spec = tmp_path / "rnn.net"
    spec.write_text("model Rnn {\n    input x: [N, 7, 8]\n"
                    "    lstm = LSTM(8, 16, num_layers=2, batch_first=true)\n"
                    "    gru = GRU(16, 4, batch_first=true)\n"
                    "    forward(x) {\n        y, state = lstm(x)\n        z, h = gru(y)\n"
                    "        return z\n    }\n}\n", encoding="utf-8")
    summary = netdsl.summary(spec, inputs=[[2, 7, 8]])
    steps = 2 * 7  # batch x time
    lstm = steps * ((8 + 16) * 4 * 16 + (16 + 16) * 4 * 16)
    gru = steps * (16 + 4) * 3 * 4
    assert [(r.path, r.macs) for r in summary.rows] == [("lstm", lstm), ("gru", gru)]
    # The elementwise rest of a step, per hidden unit: an LSTM adds its two gate products
    # (4), takes 3 sigmoids and a tanh (4), makes c = f * c + i * g (3) and h = o * tanh(c)
    # (2): 13; a GRU adds the r and z products (2), takes 2 sigmoids (2), makes
    # n = tanh(i_n + r * h_n) (3) and h = n + z * (h - n) (3): 10.
    lstm_rest = 2 * steps * 13 * 16  # two layers
    gru_rest = steps * 10 * 4
    assert summary.flops == 2 * (lstm + gru) + lstm_rest + gru_rest
    assert summary.uncounted == {}


def test_batch_norm_is_counted() -> None:
    """FlopCounterMode alone counts 0 for BatchNorm; netdsl's formula counts it as DeepSpeed
    does, in the total and on each row that runs it."""
    with FlopCounterMode(display=False) as counter:
        nn.BatchNorm2d(4).eval()(real_input(1, 4, 8, 8))
    assert counter.get_total_flops() == 0
    summary, _, _ = zoo_run("resnet18")
    rows = {r.path: r for r in summary.rows}
    # resnet18 on 64x64: bn1 normalises the stem's 64 x 32 x 32 output, 2 FLOPs an element.
    assert (rows["bn1"].macs, rows["bn1"].flops) == (0, 64 * 32 * 32 * 2)
    assert rows["bn1"].uncounted == []


def test_uncounted_ops_are_named(tmp_path: Path) -> None:
    """An op no formula counts (torch's or netdsl's) is named, in the total and on each row
    that runs it, and marks the row's counts: never a silent 0."""
    spec = tmp_path / "shrink.net"
    spec.write_text("model Shrink {\n    input x: [N, 8]\n    fc = Linear(8, 4)\n"
                    "    shrink = Hardshrink()\n    forward(x) { return shrink(fc(x)) }\n}\n",
                    encoding="utf-8")
    summary = netdsl.summary(spec)
    assert summary.uncounted == {"aten.hardshrink": 1}
    rows = {r.path: r for r in summary.rows}
    assert (rows["shrink"].uncounted, rows["shrink"].flops) == (["aten.hardshrink"], 0)
    assert (rows["fc"].uncounted, rows["fc"].macs) == ([], 8 * 4)
    gpt, _, _ = zoo_run("gpt")
    # Views compute nothing (_unsafe_view too: Linear on [B, T, C] ends in one).
    assert gpt.uncounted == {}
    text = netdsl.summary(spec).as_dict()
    assert text["uncounted"] == {"aten.hardshrink": 1}


def test_cli_names_the_uncounted_ops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "shrink.net"
    spec.write_text("model Shrink {\n    input x: [N, 8]\n    shrink = Hardshrink()\n"
                    "    forward(x) { return shrink(x) }\n}\n", encoding="utf-8")
    code, out, _ = run_main(capsys, "summary", str(spec))
    assert code == 0
    assert "shrink  Hardshrink()  [N, 8]       0    0+     0+" in out
    assert "+ not counted (no FLOP formula): aten.hardshrink x1" in out


ROW_KEYS = {"path": str, "layer": str, "depth": int, "output": (str, type(None)),
            "params": int, "trainable": int, "macs": (int, type(None)),
            "flops": (int, type(None)), "folded": bool, "tied": list, "uncounted": list}
SUMMARY_KEYS = {"model": str, "inputs": list, "depth": (int, type(None)), "rows": list,
                "total_params": int, "trainable_params": int, "non_trainable_params": int,
                "size_mb": float, "buffers": int, "shared": list, "shared_params": int,
                "macs": (int, type(None)), "flops": (int, type(None)), "own_macs": int,
                "own_flops": int, "per": str, "uncounted": dict, "memory": (dict, type(None)),
                "why_not_counted": str}
MEMORY_KEYS = {"input_bytes", "forward_backward_bytes", "params_bytes", "total_bytes"}


def test_as_dict_schema() -> None:
    summary, _, _ = zoo_run("gpt")
    data = json.loads(json.dumps(summary.as_dict()))
    assert set(data) == set(SUMMARY_KEYS)
    for key, kind in SUMMARY_KEYS.items():
        assert isinstance(data[key], kind), key
    assert set(data["memory"]) == MEMORY_KEYS
    assert all(isinstance(v, int) for v in data["memory"].values())
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in data["uncounted"].items())
    for row in data["rows"]:
        assert set(row) == set(ROW_KEYS)
        for key, kind in ROW_KEYS.items():
            assert isinstance(row[key], kind), (row["path"], key)


def test_docs_show_the_lenet_table() -> None:
    doc = (EXAMPLES.parent / "docs" / "summary.md").read_text(encoding="utf-8")
    assert "$ netdsl summary examples/lenet.net\n" + LENET_TABLE + "```" in doc


# One layer on [2, 6, 8]: (its spec, FLOPs of the 96 elements by DeepSpeed's formulas).
ELEMENTWISE_LAYERS = {
    "ReLU()": 96, "GELU()": 96, "SiLU()": 96, "Hardswish()": 96, "Sigmoid()": 96,
    "Tanh()": 96, "LeakyReLU(0.1)": 96, "ELU()": 96, "ReLU6()": 96, "Softmax(dim=-1)": 96,
    "LogSoftmax(dim=-1)": 96, "BatchNorm1d(6)": 2 * 96, "BatchNorm1d(6, affine=false)": 96,
    "LayerNorm(8)": 5 * 96, "LayerNorm(8, elementwise_affine=false)": 4 * 96,
    "GroupNorm(2, 6)": 5 * 96, "InstanceNorm1d(6)": 4 * 96, "MaxPool1d(2)": 96,
    "AvgPool1d(2)": 96, "AdaptiveAvgPool1d(3)": 96, "AdaptiveMaxPool1d(3)": 96,
    "Upsample(scale_factor=2)": 2 * 96, "Upsample(scale_factor=2, mode=\"linear\")": 2 * 96,
    "Dropout(0.5)": 0, "Flatten()": 0, "ZeroPad1d(2)": 0,
}


@pytest.mark.parametrize("layer", list(ELEMENTWISE_LAYERS))
def test_elementwise_layers_are_counted_as_on_the_real_model(layer: str, tmp_path: Path) -> None:
    """The meta count equals FlopCounterMode's, with the same formulas, on the real CPU layer
    (where torch may run other aten ops: max_pool1d, not max_pool2d_with_indices), and the
    figure worked out by hand."""
    spec = tmp_path / "one.net"
    spec.write_text(f"model One {{\n    input x: [2, 6, 8]\n    layer = {layer}\n"
                    "    forward(x) { return layer(x) }\n}\n", encoding="utf-8")
    summary = netdsl.summary(spec)
    model = netdsl.load(spec).eval()
    with FlopCounterMode(display=False, custom_mapping=formulas()) as counter:
        model(real_input(2, 6, 8))
    assert (summary.macs, summary.uncounted) == (0, {})
    assert summary.flops == counter.get_total_flops() == ELEMENTWISE_LAYERS[layer]
