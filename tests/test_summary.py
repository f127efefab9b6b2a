"""netdsl summary against the truth: the real model's parameters, the shapes a real forward
produces (forward hooks on a concrete input), and multiply-adds computed by hand.

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
from torch import nn

import netdsl
from netdsl.cli import main

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
            keys: Sequence[Sequence[str]] = ()) -> dict[str, list[Shape]]:
    """Every leaf's output shapes during real forwards: one per combination of ``keys`` (the
    non-tensor arguments), or one forward when there are none."""
    seen: dict[str, list[Shape]] = {}
    handles = []
    for name, module in leaves(model):
        def hook(_m: nn.Module, _args: Any, out: Any, name: str = name) -> None:
            first = out[0] if isinstance(out, (tuple, list)) else out
            seen.setdefault(name, []).append(tuple(first.shape))
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

_REAL: dict[str, tuple[nn.Module, dict[str, list[Shape]]]] = {}


def real_run(file: str, shape: Shape, keys: list[list[str]]) -> tuple[nn.Module,
                                                                      dict[str, list[Shape]]]:
    """The real model (netdsl.load, real tensors) and its leaves' output shapes, cached per
    file: the AlexNet runs share one forward."""
    key = f"{file}{shape}{keys}"
    if key not in _REAL:
        model = real_memory(netdsl.load(example(file), device="meta")).eval()
        _REAL[key] = (model, observe(model, [real_input(*shape)], keys))
    return _REAL[key]


# ---------------------------------------------------------------- summary vs the real model


@pytest.mark.parametrize("case", list(EXAMPLE_RUNS))
def test_summary_matches_real_model(case: str) -> None:
    file, inputs, shape, keys = EXAMPLE_RUNS[case]
    summary = netdsl.summary(example(file), inputs=inputs)
    model, seen = real_run(file, shape, keys)
    params = list(model.parameters())

    assert summary.total_params == sum(p.numel() for p in params)
    assert summary.trainable_params == sum(p.numel() for p in params if p.requires_grad)
    assert summary.size_mb == pytest.approx(
        sum(p.numel() * p.element_size() for p in params) / 1e6)

    # One row per layer, in module order.
    assert [r.path for r in summary.rows] == [name for name, _ in leaves(model)]
    sizes = {"N": REAL_SIZE}
    for row in summary.rows:
        module = model.get_submodule(row.path)
        assert row.params == sum(p.numel() for p in module.parameters()), row.path
        assert row.trainable == sum(p.numel() for p in module.parameters()
                                    if p.requires_grad), row.path
        assert row.output is not None, row.path
        observed = seen[row.path]
        assert parse_shape(row.output, sizes) in observed, (row.path, row.output, observed)
        if len(set(observed)) == 1:
            assert parse_shape(row.output, sizes) == observed[0]
        # Per sample for a symbolic batch; for the whole input when the shape is given.
        hand = hand_mult_adds(module, parse_shape(row.output, sizes))
        batch = 1 if inputs is None else shape[0]
        assert row.mult_adds == (None if hand is None else hand * batch), row.path


def test_summary_shows_symbols_by_name() -> None:
    summary = netdsl.summary(example("lenet.net"))
    assert summary.inputs == ["x: [N, 3, 32, 32]"]
    assert all(r.output is not None and r.output.startswith("[N, ") for r in summary.rows)
    assert summary.mult_adds_per == "per sample"


def test_lenet_mult_adds_by_hand() -> None:
    """Per sample, from the layer shapes of LeNet on a 3x32x32 image."""
    conv1 = (6 * 28 * 28) * (3 * 5 * 5)        # 4,704 outputs x 75     = 352,800
    conv2 = (16 * 10 * 10) * (6 * 5 * 5)       # 1,600 outputs x 150    = 240,000
    fc1 = 120 * (16 * 5 * 5)                   #                          48,000
    fc2 = 84 * 120                             #                          10,080
    fc3 = 10 * 84                              #                             840
    assert conv1 + conv2 + fc1 + fc2 + fc3 == 651_720
    summary = netdsl.summary(example("lenet.net"))
    assert summary.mult_adds == 651_720
    assert [r.mult_adds for r in summary.rows if r.mult_adds is not None] == \
        [conv1, conv2, fc1, fc2, fc3]


def test_alexnet_mult_adds_by_hand() -> None:
    """One 224x224 image: 714,188,480, torchinfo's figure, recomputed from the real layers and
    the shapes a real forward produces."""
    model, seen = real_run("alexnet.net", (2, 3, 224, 224), [])
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
    assert (declared.mult_adds, declared.mult_adds_per) == (714_188_480, "per sample")
    one = netdsl.summary(example("alexnet.net"), inputs=[[1, 3, 224, 224]])
    assert one.mult_adds == 714_188_480
    two = netdsl.summary(example("alexnet.net"), inputs=[[2, 3, 224, 224]])
    assert (two.mult_adds, two.mult_adds_per) == (2 * 714_188_480, "for this input")


def test_module_dict_every_key_has_a_shape() -> None:
    summary = netdsl.summary(example("module_dict.net"))
    rows = {r.path: r for r in summary.rows}
    assert rows["choices.conv"].output == "[N, 10, 30, 30]"  # 32 - 3 + 1
    assert rows["choices.pool"].output == "[N, 10, 10, 10]"  # 32 // 3
    assert rows["choices.conv"].mult_adds == 10 * 30 * 30 * 10 * 3 * 3


def test_summary_without_inputs_lists_layers_without_shapes(tmp_path: Path) -> None:
    spec = tmp_path / "plain.net"
    spec.write_text("model Plain {\n    a = Linear(4, 8)\n    b = ReLU()\n"
                    "    c = Linear(8, 2)\n}\n",
                    encoding="utf-8")
    summary = netdsl.summary(spec)
    assert [(r.path, r.output, r.params, r.mult_adds) for r in summary.rows] == [
        ("a", None, 4 * 8 + 8, None), ("b", None, 0, None), ("c", None, 8 * 2 + 2, None)]
    assert summary.total_params == 4 * 8 + 8 + 8 * 2 + 2
    given = netdsl.summary(spec, inputs=[["B", 4]])
    assert [r.output for r in given.rows] == ["[B, 8]", "[B, 8]", "[B, 2]"]


def test_symbolic_spatial_dims_are_not_shown_as_numbers() -> None:
    """With x: [N, 3, H, W], ResNet-18's conv1 output is [N, 64, H', W'] where H' depends on H.
    Real forwards at two sizes show which dimensions vary; the summary must not print a number
    for those (it has no real H to compute one from), nor count mult-adds from them."""
    summary = netdsl.summary(example("resnet18.net"), inputs=[["N", 3, "H", "W"]])
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
        if any(varies) and row.mult_adds is not None:
            wrong.append(f"{row.path}: mult_adds {row.mult_adds:,}")
    assert not wrong, "\n".join(wrong[:6])


# ---------------------------------------------------------------- the command line


class LeNet64(nn.Module):
    """LeNet on 3x64x64 images with 7 classes, by hand: 64 -> 60 -> 30 -> 26 -> 13."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2))
        self.classifier = nn.Sequential(
            nn.Linear(16 * 13 * 13, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 7))

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
    model, seen = real_run("lenet.net", (2, 3, 32, 32), [])
    assert data["model"] == "LeNet"
    assert data["total_params"] == sum(p.numel() for p in model.parameters()) == 62_006
    assert [r["path"] for r in data["rows"]] == [name for name, _ in leaves(model)]
    for row in data["rows"]:
        assert parse_shape(row["output"], {"N": REAL_SIZE}) == seen[row["path"]][0]
    assert data["mult_adds"] == 651_720


def test_cli_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "summary", str(example("lenet.net")))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("LeNet") and "x: [N, 3, 32, 32]" in lines[0]
    assert lines[1].split() == ["path", "layer", "output", "params"]
    model, seen = real_run("lenet.net", (2, 3, 32, 32), [])
    for name, module in leaves(model):
        row = next(line for line in lines if line.startswith(name + " "))
        params = sum(p.numel() for p in module.parameters())
        assert row.rstrip().endswith(f"{params:,}"), row
        shape = ", ".join(["N", *map(str, seen[name][0][1:])])
        assert f"[{shape}]" in row, row
    assert "total params: 62,006" in out
    assert "651,720" in out


def test_cli_input_and_param_change_shapes_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "summary", str(example("lenet.net")), "--input", "B,3,64,64",
                            "-p", "classes=7", "--format", "json")
    assert code == 0
    data = json.loads(out)
    hand = LeNet64()
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
    assert rows == [["a", "Linear(4,", "8)", "-", "40"], ["b", "ReLU()", "-", "0"]]
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
