"""The initialisation lab: probe, gain, plot, init-report, reinitialize.

Every number is checked against the seed notes' experiments written out by hand in PyTorch (the
seed's MLP class, its ``initialize()``, ``torch.randn`` input, ``x.std()`` after each layer), run
under the same seed -- never against netdsl's own earlier output.
"""

from __future__ import annotations

import builtins
import json
import math
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netdsl
import netdsl.plot
from netdsl.cli import main
from netdsl.gain import measure

ROOT = Path(__file__).resolve().parent.parent
INIT = "examples/init"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Init = Callable[[torch.Tensor, int], Any]
Activation = Callable[[torch.Tensor], torch.Tensor]


# --- the seed's experiments, by hand ------------------------------------------------------------

class MLP(nn.Module):
    """The seed's MLP: ``layers`` x ``nn.Linear(n, n)``, an optional activation after each."""

    def __init__(self, neural_num: int, layers: int, activation: Activation | None = None,
                 bias: bool = False) -> None:
        super().__init__()
        self.linears = nn.ModuleList([nn.Linear(neural_num, neural_num, bias=bias)
                                      for _ in range(layers)])
        self.neural_num = neural_num
        self.activation = activation
        self.linear_stds: list[float] = []
        self.activation_stds: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear in self.linears:
            x = linear(x)
            self.linear_stds.append(x.std().item())
            if self.activation is not None:
                x = self.activation(x)
                self.activation_stds.append(x.std().item())
        return x

    def initialize(self, init: Init) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                init(m.weight.data, self.neural_num)


def init_normal(w: torch.Tensor, n: int) -> None:
    nn.init.normal_(w)


def init_scaled_normal(w: torch.Tensor, n: int) -> None:
    nn.init.normal_(w, std=np.sqrt(1 / n))


def init_xavier_tanh(w: torch.Tensor, n: int) -> None:
    a = np.sqrt(6 / (n + n))
    a *= nn.init.calculate_gain("tanh")
    nn.init.uniform_(w, -a, a)


def init_kaiming_relu(w: torch.Tensor, n: int) -> None:
    nn.init.normal_(w, std=np.sqrt(2 / n))


def hand_run(init: Init, activation: Activation | None = None, *, seed: int = 1,
             layers: int = 100, width: int = 256, batch: int = 16) -> MLP:
    """set_seed, build, initialize, randn input, forward: the seed's script, std per layer."""
    torch.manual_seed(seed)
    net = MLP(width, layers, activation)
    net.initialize(init)
    inputs = torch.randn((batch, width))
    with torch.no_grad():
        net(inputs)
    return net


def same_floats(got: list[float], want: list[float]) -> bool:
    """Bitwise float equality, NaN equal to NaN."""
    return len(got) == len(want) and all(
        g == w or (math.isnan(g) and math.isnan(w)) for g, w in zip(got, want, strict=True))


def close(got: float, want: float, rel: float = 1e-4) -> bool:
    return math.isclose(got, want, rel_tol=rel)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The matmuls here are tiny: one thread is faster and steadier on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- running the command in-process -------------------------------------------------------------

@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Relative paths as a user types them (they appear in init-report's output)."""
    monkeypatch.chdir(ROOT)
    yield


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def probe_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    code, out, _ = run_cli(capsys, "probe", *args, "--json")
    assert code == 0
    # Strict JSON: non-finite numbers come as the strings "nan", "inf", "-inf".
    report: dict[str, Any] = json.loads(out, parse_constant=_refuse)
    assert list(report) == ["results", "diagnostics"]
    assert report["diagnostics"] == []
    results: list[dict[str, Any]] = report["results"]
    for result in results:
        for row in result["rows"]:
            for key in ("mean", "std", "min", "max"):
                row[key] = float(row[key])
    return results


def _refuse(token: str) -> float:
    raise AssertionError(f"probe --json printed the non-standard JSON token {token}")


def probe_one(capsys: pytest.CaptureFixture[str], path: str | Path, *args: str,
              seed: int = 1, shape: str = "16,256") -> dict[str, Any]:
    (result,) = probe_json(capsys, str(path), "--input", shape, "--seed", str(seed), *args)
    return result


def column(rows: list[dict[str, Any]], key: str, module: str | None = None) -> list[Any]:
    """One field of the rows, optionally only the rows of one module/op (e.g. "tanh")."""
    return [r[key] for r in rows if module is None or r["module"] == module]


def write_spec(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


TANH_NO_GAIN = """\
model TanhMLP(width: int = 256, depth: int = 100) {
    input x: [N, width]
    linears = list [ Linear(width, width, bias=false) for i in range(depth) ]

    forward(x) {
        for linear in linears {
            x = tanh(linear(x))
        }
        return x
    }

    init {
        Linear.weight: normal(0, sqrt(1 / width))
    }
}
"""


# --- 1. probe against the seed's tables ---------------------------------------------------------

def test_probe_normal_explodes_like_the_seed(capsys: pytest.CaptureFixture[str],
                                             in_repo: None) -> None:
    result = probe_one(capsys, f"{INIT}/normal.net")
    rows = result["rows"]
    stds = column(rows, "std")
    assert len(rows) == 100
    assert column(rows, "module") == [f"linears.{i}" for i in range(100)]
    assert close(stds[0], 15.959932327270508)
    assert close(stds[1], 256.6237487792969)

    bad = [r for r in rows if not math.isfinite(r["std"])]
    first = bad[0]
    assert 28 <= first["index"] <= 32
    assert first["note"].startswith(("first NaN", "first inf"))
    assert all(r["note"] == "" for r in rows if r is not first)
    assert "explode" in result["verdict"]
    assert f"row {first['index']}" in result["verdict"]

    hand = hand_run(init_normal)
    assert same_floats(stds, hand.linear_stds)


def test_probe_scaled_normal_stays_near_one(capsys: pytest.CaptureFixture[str],
                                            in_repo: None) -> None:
    result = probe_one(capsys, f"{INIT}/scaled_normal.net")
    stds = column(result["rows"], "std")
    assert len(stds) == 100
    assert close(stds[0], 0.9974957704544067)
    assert close(stds[1], 1.0024365186691284)
    assert all(0.85 <= s <= 1.3 for s in stds)
    assert result["verdict"].startswith("bounded")
    assert same_floats(stds, hand_run(init_scaled_normal).linear_stds)


@pytest.mark.parametrize(("spec", "init", "op", "activation"), [
    ("xavier_tanh.net", init_xavier_tanh, "tanh", torch.tanh),
    ("kaiming_relu.net", init_kaiming_relu, "relu", torch.relu),
])
def test_probe_activation_rows_match_hand_run(capsys: pytest.CaptureFixture[str], in_repo: None,
                                              spec: str, init: Init, op: str,
                                              activation: Activation) -> None:
    result = probe_one(capsys, f"{INIT}/{spec}")
    rows = result["rows"]
    hand = hand_run(init, activation)
    assert len(rows) == 200
    assert column(rows, "module") == [m for i in range(100) for m in (f"linears.{i}", op)]
    assert same_floats(column(rows, "std", op), hand.activation_stds)
    linear_stds = [r["std"] for r in rows if r["module"] != op]
    assert same_floats(linear_stds, hand.linear_stds)
    assert result["verdict"].startswith("bounded")
    assert "vanish" not in result["verdict"] and "explode" not in result["verdict"]


def test_probe_relu_rows_count_zeros(capsys: pytest.CaptureFixture[str], in_repo: None) -> None:
    result = probe_one(capsys, f"{INIT}/kaiming_relu.net", shape="4,256")
    torch.manual_seed(1)
    net = MLP(256, 100, torch.relu)
    net.initialize(init_kaiming_relu)
    x = torch.randn((4, 256))
    zeros = []
    with torch.no_grad():
        for linear in net.linears:
            x = torch.relu(linear(x))
            zeros.append((x == 0).float().mean().item())
    assert column(result["rows"], "zeros", "relu") == zeros


def test_probe_tanh_without_gain_vanishes(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    path = write_spec(tmp_path, "tanh_no_gain.net", TANH_NO_GAIN)
    result = probe_one(capsys, path)
    stds = column(result["rows"], "std", "tanh")
    hand = hand_run(init_scaled_normal, torch.tanh)
    assert same_floats(stds, hand.activation_stds)
    assert stds[-1] < 0.25 * stds[0]  # the hand run vanishes ...
    assert "vanish" in result["verdict"]  # ... and the probe says so
    assert result["rows"][-1]["note"].startswith("vanishing")


def test_probe_python_api_agrees_with_hand_run() -> None:
    result = netdsl.probe(ROOT / INIT / "scaled_normal.net", (16, 256), seed=1)
    assert result.seed == 1 and result.input == [16, 256]
    assert same_floats(result.stds(), hand_run(init_scaled_normal).linear_stds)
    small = netdsl.probe(ROOT / INIT / "xavier_tanh.net", (8, 32), seed=3, width=32, depth=7)
    hand = hand_run(init_xavier_tanh, torch.tanh, seed=3, layers=7, width=32, batch=8)
    assert same_floats(small.stds(), hand.activation_stds)


# --- 2. gradients --------------------------------------------------------------------------------

SMALL_MLP = """\
model Small(width: int = 32, depth: int = 5) {
    input x: [N, width]
    linears = list [ Linear(width, width) for i in range(depth) ]

    forward(x) {
        for linear in linears {
            x = tanh(linear(x))
        }
        return x
    }

    init {
        Linear.weight: normal(0, sqrt(2 / width))
    }
}
"""


def test_probe_backward_matches_hand_gradients(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    path = write_spec(tmp_path, "small.net", SMALL_MLP)
    result = probe_one(capsys, path, "--backward", seed=7, shape="16,32")

    torch.manual_seed(7)
    net = MLP(32, 5, torch.tanh, bias=True)
    net.initialize(init_kaiming_relu)  # normal(0, sqrt(2 / n)) on every weight; biases default
    output = net(torch.randn((16, 32)))
    output.sum().backward()
    want = [{"parameter": name, "std": p.grad.std().item(), "norm": p.grad.norm().item()}
            for name, p in net.named_parameters()]

    assert [g["parameter"] for g in result["grads"]] == [f"linears.{i}.{p}" for i in range(5)
                                                         for p in ("weight", "bias")]
    assert result["grads"] == want
    assert same_floats(column(result["rows"], "std", "tanh"), net.activation_stds)


def test_probe_without_backward_has_no_grads(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    path = write_spec(tmp_path, "small.net", SMALL_MLP)
    assert probe_one(capsys, path, shape="4,32")["grads"] is None
    args = ("probe", str(path), "--input", "4,32", "--seed", "1")
    assert run_cli(capsys, *args, "--format", "json") == run_cli(capsys, *args, "--json")


# --- 3. gain -------------------------------------------------------------------------------------

GAINS: list[tuple[str, float | None, Activation]] = [
    ("tanh", None, torch.tanh),
    ("relu", None, torch.relu),
    ("leaky_relu", None, lambda x: F.leaky_relu(x, 0.01)),
    ("leaky_relu", 0.2, lambda x: F.leaky_relu(x, 0.2)),
    ("sigmoid", None, torch.sigmoid),
    ("selu", None, F.selu),
]


def hand_gain(f: Activation, seed: int, samples: int = 10000) -> float:
    torch.manual_seed(seed)
    x = torch.randn(samples)
    return (x.std() / f(x).std()).item()


def gain_lines(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, str]:
    code, out, _ = run_cli(capsys, "gain", *args)
    assert code == 0
    return {line.split()[0]: line.split()[1] for line in out.splitlines()}


def test_gain_tanh_is_five_thirds(capsys: pytest.CaptureFixture[str]) -> None:
    lines = gain_lines(capsys, "tanh", "--seed", "0")
    assert lines["nonlinearity"] == "tanh"
    assert lines["calculate_gain"] == "1.666667"
    empirical = float(lines["empirical"])
    hand = hand_gain(torch.tanh, 0)
    assert abs(empirical - hand) <= 0.05 * hand
    assert lines["empirical"] == f"{hand:.6f}"


@pytest.mark.parametrize(("nonlinearity", "param", "f"), GAINS)
@pytest.mark.parametrize("seed", [0, 5])
def test_gain_matches_torch_and_hand_measurement(capsys: pytest.CaptureFixture[str],
                                                 nonlinearity: str, param: float | None,
                                                 f: Activation, seed: int) -> None:
    args = [nonlinearity, "--seed", str(seed)] + ([] if param is None else ["--param", str(param)])
    lines = gain_lines(capsys, *args)
    exact = nn.init.calculate_gain(nonlinearity, param)  # type: ignore[arg-type]
    hand = hand_gain(f, seed)
    assert lines["calculate_gain"] == f"{exact:.6f}"
    assert lines["empirical"] == f"{hand:.6f}"
    assert lines["nonlinearity"] == nonlinearity + ("" if param is None else f"({param})")

    measured = measure(nonlinearity, param, seed=seed)
    assert (measured.calculate_gain, measured.empirical) == (exact, hand)


def test_gain_samples_option(capsys: pytest.CaptureFixture[str]) -> None:
    lines = gain_lines(capsys, "sigmoid", "--samples", "500", "--seed", "3")
    assert lines["empirical"] == f"{hand_gain(torch.sigmoid, 3, samples=500):.6f}"


# --- 4. plot -------------------------------------------------------------------------------------

def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which must come first after the signature."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def plot(capsys: pytest.CaptureFixture[str], png: Path, *files: str) -> bytes:
    code, out, err = run_cli(capsys, "probe", *files, "--input", "16,256", "--seed", "1",
                             "--plot", str(png))
    assert code == 0
    assert all(f in out for f in files)
    assert f"netdsl: wrote {png}" in err
    data = png.read_bytes()
    width, height = png_size(data)
    assert width > 0 and height > 0
    assert matplotlib.image.imread(png).shape[:2] == (height, width)
    return data


def test_plot_writes_a_png_that_follows_the_data(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path, in_repo: None) -> None:
    normal, scaled, both = (tmp_path / f"{n}.png" for n in ("normal", "scaled", "all"))
    normal_bytes = plot(capsys, normal, f"{INIT}/normal.net")
    scaled_bytes = plot(capsys, scaled, f"{INIT}/scaled_normal.net")
    assert normal_bytes != scaled_bytes
    assert not np.array_equal(matplotlib.image.imread(normal), matplotlib.image.imread(scaled))

    all_bytes = plot(capsys, both, *(f"{INIT}/{n}.net" for n in
                                     ("normal", "scaled_normal", "xavier_tanh", "kaiming_relu")))
    assert all_bytes not in (normal_bytes, scaled_bytes)


def test_plot_overlays_one_curve_per_file(tmp_path: Path) -> None:
    results = [(name, netdsl.probe(ROOT / INIT / f"{name}.net", (16, 256), seed=1))
               for name in ("normal", "scaled_normal", "xavier_tanh")]
    seen: dict[str, Any] = {}
    assert not hasattr(netdsl.plot, "plt")  # matplotlib is imported only inside plot_stds

    import matplotlib.pyplot as plt

    def keep(fig: Any) -> None:
        seen["fig"] = fig

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt, "close", keep)
        netdsl.plot.plot_stds(results, tmp_path / "three.png")
    (ax,) = seen["fig"].axes
    curves = [line for line in ax.get_lines() if line.get_label() in dict(results)]
    assert [c.get_label() for c in curves] == ["normal", "scaled_normal", "xavier_tanh"]
    hand = hand_run(init_scaled_normal).linear_stds
    assert list(curves[1].get_ydata()) == hand
    plt.close(seen["fig"])


def test_plot_without_matplotlib_says_how_to_install(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path, in_repo: None) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    png = tmp_path / "never.png"
    code, _, err = run_cli(capsys, "probe", f"{INIT}/scaled_normal.net", "--input", "4,256",
                           "--plot", str(png))
    assert code == 2
    assert 'pip install "netdsl[plot]"' in err
    assert not png.exists()


# --- 5. init-report ------------------------------------------------------------------------------

CONV_W = "torch default (Conv2d: kaiming_uniform(a=sqrt(5)))"
CONV_B = "torch default (Conv2d: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)))"
LIN_W = "torch default (Linear: kaiming_uniform(a=sqrt(5)))"
LIN_B = "torch default (Linear: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)))"

# torch/nn/modules/conv.py _ConvNd.reset_parameters and linear.py Linear.reset_parameters:
# init.kaiming_uniform_(self.weight, a=math.sqrt(5)); bound = 1 / math.sqrt(fan_in);
# init.uniform_(self.bias, -bound, bound). Shapes as torchvision.models.AlexNet has them.
ALEXNET_REPORT = """\
parameter            shape             set by
features.0.weight    [64, 3, 11, 11]   torch default (Conv2d: kaiming_uniform(a=sqrt(5)))
features.0.bias      [64]              torch default (Conv2d: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)))
features.3.weight    [192, 64, 5, 5]   torch default (Conv2d: kaiming_uniform(a=sqrt(5)))
features.3.bias      [192]             torch default (Conv2d: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)))
features.6.weight    [384, 192, 3, 3]  torch default (Conv2d: kaiming_uniform(a=sqrt(5)))
features.6.bias      [384]             torch default (Conv2d: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)))
features.8.weight    [256, 384, 3, 3]  torch default (Conv2d: kaiming_uniform(a=sqrt(5)))
features.8.bias      [256]             torch default (Conv2d: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)))
features.10.weight   [256, 256, 3, 3]  torch default (Conv2d: kaiming_uniform(a=sqrt(5)))
features.10.bias     [256]             torch default (Conv2d: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)))
classifier.1.weight  [4096, 9216]      torch default (Linear: kaiming_uniform(a=sqrt(5)))
classifier.1.bias    [4096]            torch default (Linear: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)))
classifier.4.weight  [4096, 4096]      torch default (Linear: kaiming_uniform(a=sqrt(5)))
classifier.4.bias    [4096]            torch default (Linear: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)))
classifier.6.weight  [1000, 4096]      torch default (Linear: kaiming_uniform(a=sqrt(5)))
classifier.6.bias    [1000]            torch default (Linear: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)))
"""  # noqa: E501


def test_init_report_alexnet_is_all_torch_defaults(capsys: pytest.CaptureFixture[str],
                                                   in_repo: None) -> None:
    code, out, err = run_cli(capsys, "init-report", "examples/alexnet.net")
    assert code == 0
    assert out == ALEXNET_REPORT
    assert err == ""


def test_alexnet_report_agrees_with_torchvision_and_the_api() -> None:
    import torchvision

    with torch.device("meta"):
        reference = torchvision.models.AlexNet()
    want = [(name, tuple(p.shape)) for name, p in reference.named_parameters()]
    report = netdsl.init_report(ROOT / "examples" / "alexnet.net")
    assert [(e.parameter, e.shape) for e in report.entries] == want
    assert [e.set_by for e in report.entries] == [CONV_W, CONV_B] * 5 + [LIN_W, LIN_B] * 3
    assert all(e.rule is None for e in report.entries)
    assert report.unmatched == []


@pytest.mark.parametrize("make", [lambda: nn.Conv2d(6, 4, 3), lambda: nn.Linear(12, 5)])
def test_the_described_torch_defaults_are_what_torch_draws(make: Callable[[], nn.Module]) -> None:
    torch.manual_seed(11)
    layer = make()
    torch.manual_seed(11)
    weight, bias = torch.empty_like(layer.weight), torch.empty_like(layer.bias)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # kaiming_uniform(a=sqrt(5))
    fan_in = weight[0].numel()
    nn.init.uniform_(bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
    assert torch.equal(layer.weight, weight) and torch.equal(layer.bias, bias)


def rule_line(path: Path, rule: str) -> int:
    (line,) = [i for i, text in enumerate(path.read_text().splitlines(), 1)
               if text.strip() == rule]
    return line


def test_init_report_xavier_tanh_points_at_the_rule(capsys: pytest.CaptureFixture[str],
                                                    in_repo: None) -> None:
    spec = "examples/init/xavier_tanh.net"
    rule = "Linear.weight: uniform(-a, a)"
    set_by = f"{spec}:{rule_line(ROOT / spec, rule)}: {rule}"
    code, out, err = run_cli(capsys, "init-report", spec)
    assert code == 0 and err == ""
    want = ["parameter          shape       set by"] + [
        f"{f'linears.{i}.weight':<17}  [256, 256]  {set_by}" for i in range(100)]
    assert out.splitlines() == want

    report = netdsl.init_report(spec)
    assert [(e.parameter, e.shape, e.set_by) for e in report.entries] == [
        (f"linears.{i}.weight", (256, 256), set_by) for i in range(100)]
    assert report.unmatched == []


def test_init_report_resnet18_names_the_rule_lines() -> None:
    import torchvision

    spec = ROOT / "examples" / "resnet18.net"
    rules = {kind: f"{spec}:{rule_line(spec, text)}: {text}" for kind, text in [
        ("conv", 'Conv2d.weight: kaiming_normal(mode="fan_out", nonlinearity="relu")'),
        ("bn.weight", "BatchNorm2d.weight: constant(1)"),
        ("bn.bias", "BatchNorm2d.bias: constant(0)")]}
    with torch.device("meta"):
        reference = torchvision.models.resnet18(num_classes=10)
    want = []
    for name, module in reference.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            if isinstance(module, nn.Conv2d):
                set_by = rules["conv"]
            elif isinstance(module, nn.BatchNorm2d):
                set_by = rules[f"bn.{pname}"]
            else:
                set_by = LIN_W if pname == "weight" else LIN_B
            want.append((f"{name}.{pname}", tuple(param.shape), set_by))
    report = netdsl.init_report(spec, num_classes=10)
    assert [(e.parameter, e.shape, e.set_by) for e in report.entries] == want
    assert report.unmatched == []


UNMATCHED = """\
model Tiny(width: int = 8) {
    input x: [N, width]
    fc = Linear(width, width)
    forward(x) = x -> fc

    init {
        Linear.weight: normal(0, 1)
        Conv2d.weight: normal(0, 1)
    }
}
"""


def test_rule_matching_nothing_is_warned_about(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    path = write_spec(tmp_path, "tiny.net", UNMATCHED)
    lines = UNMATCHED.splitlines()
    used = rule_line(path, "Linear.weight: normal(0, 1)")
    unused = rule_line(path, "Conv2d.weight: normal(0, 1)")
    column_ = lines[unused - 1].index("Conv2d") + 1

    code, out, err = run_cli(capsys, "init-report", str(path))
    assert code == 0
    assert err == (
        f"{path}:{unused}:{column_}: warning[NDL101]: init rule matched no parameter of Tiny\n"
        "            Conv2d.weight: normal(0, 1)\n"
        "            ^^^^^^^^^^^^^^^^^^^^^^^^^^^\n")
    assert out.splitlines() == [
        "parameter  shape   set by",
        f"fc.weight  [8, 8]  {path}:{used}: Linear.weight: normal(0, 1)",
        f"fc.bias    [8]     {LIN_B}",
    ]

    report = netdsl.init_report(path)
    assert [(e.parameter, e.shape, e.set_by) for e in report.entries] == [
        ("fc.weight", (8, 8), f"{path}:{used}: Linear.weight: normal(0, 1)"),
        ("fc.bias", (8,), LIN_B)]
    assert [(str(r.rule.span), r.rule.target, r.rule.param) for r in report.unmatched] == [
        (f"{path}:{unused}:{column_}", "Conv2d", "weight")]


# --- 6. re-runnable initialisation ---------------------------------------------------------------

REINIT_CASES = [("examples/resnet18.net", {"num_classes": 10}),
                ("examples/init/xavier_tanh.net", {})]


def poison(model: nn.Module) -> None:
    """What to_empty() may leave behind, made certain: NaN in floats, 7 in integers."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.fill_(math.nan if tensor.is_floating_point() else 7)


def reinitialised(path: Path, params: dict[str, Any], seed: int) -> nn.Module:
    model = netdsl.load(path, device="meta", **params)
    model = model.to_empty(device="cpu")
    poison(model)
    torch.manual_seed(seed)
    netdsl.reinitialize(model, path, **params)
    return model


def built(path: Path, params: dict[str, Any], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return netdsl.load(path, **params)


def has_nan(model: nn.Module) -> bool:
    return any(t.is_floating_point() and bool(t.isnan().any())
               for t in model.state_dict().values())


@pytest.mark.parametrize(("spec", "params"), REINIT_CASES)
def test_reinitialize_after_meta_equals_normal_build(spec: str, params: dict[str, Any]) -> None:
    path = ROOT / spec
    again, normal = reinitialised(path, params, 0), built(path, params, 0)
    assert not has_nan(again)
    want, got = normal.state_dict(), again.state_dict()
    assert list(got) == list(want)
    different = [k for k in want if got[k].dtype != want[k].dtype
                 or got[k].device != want[k].device or not torch.equal(got[k], want[k])]
    assert different == []


# Layers whose torch construction draws through children: MultiheadAttention builds out_proj (a
# Linear, reset by its own reset_parameters) before its _reset_parameters, which leaves
# out_proj.weight alone; TransformerEncoderLayer has no reset method of its own at all.
ATTENTION = """\
model Attn(d: int = 16) {
    input x: [N, 4, d]
    attn = MultiheadAttention(d, 2, batch_first=true)
    forward(x) = attn(x, x, x)
}
"""
ENCODER = """\
model Enc(d: int = 16) {
    input x: [N, 4, d]
    enc = TransformerEncoderLayer(d, 2, dim_feedforward=32, batch_first=true)
    forward(x) = enc(x)
}
"""


@pytest.mark.parametrize("text", [ATTENTION, ENCODER], ids=["MultiheadAttention", "Encoder"])
def test_reinitialize_composite_torch_layers(tmp_path: Path, text: str) -> None:
    path = write_spec(tmp_path, "composite.net", text)
    again, normal = reinitialised(path, {}, 0), built(path, {}, 0)
    got, want = again.state_dict(), normal.state_dict()
    assert [k for k, v in got.items() if v.is_floating_point() and v.isnan().any()] == []
    assert [k for k in want if not torch.equal(got[k], want[k])] == []


def test_reinitialize_resets_batchnorm_buffers() -> None:
    model = reinitialised(ROOT / "examples" / "resnet18.net", {"num_classes": 10}, 0)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 20
    for bn in norms:
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
        assert bn.num_batches_tracked.item() == 0
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))


def expected_std(name: str, param: torch.Tensor) -> float | None:
    """The std each init intends, computed by hand from the shape (None: not checked)."""
    if param.dim() == 4:  # kaiming_normal(mode="fan_out", nonlinearity="relu")
        fan_out = param.shape[0] * param[0, 0].numel()
        return math.sqrt(2 / fan_out)
    if name.startswith("linears."):  # uniform(-a, a), a = sqrt(6 / (n + n)) * 5/3
        return math.sqrt(6 / (256 + 256)) * 5 / 3 / math.sqrt(3)
    if name == "fc.weight":  # torch default: uniform(+-1/sqrt(fan_in)), std = bound / sqrt(3)
        return 1 / math.sqrt(param.shape[1]) / math.sqrt(3)
    return None


@pytest.mark.parametrize(("spec", "params"), REINIT_CASES)
def test_reinitialized_weights_have_the_intended_distribution(spec: str,
                                                              params: dict[str, Any]) -> None:
    path = ROOT / spec
    again = dict(reinitialised(path, params, 1234).named_parameters())
    normal = dict(built(path, params, 0).named_parameters())
    checked = 0
    for name, param in normal.items():
        want = expected_std(name, param)
        if want is None:
            continue
        got, reference = again[name].std().item(), param.std().item()
        assert not torch.equal(again[name], param), name  # another seed: other numbers ...
        assert close(got, reference, rel=0.06), name  # ... from the same distribution
        assert close(got, want, rel=0.06) and close(reference, want, rel=0.06), name
        checked += 1
    assert checked >= 21 if "resnet" in spec else checked == 100
