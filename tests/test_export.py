"""``netdsl export``: every example and zoo spec, exported to a plain PyTorch file, against
``netdsl.load``.

The truth for each case is the model netdsl builds: the exported file, imported as an ordinary
module, built after the same ``torch.manual_seed``, has the same ``state_dict`` keys in the same
order with bitwise-equal tensors, and gives identical outputs in eval mode. Each file passes
``ruff check`` with the project's configuration. LeNet's file is pinned as a careful engineer
writes it by hand; the command's usage and spec errors are pinned too.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torchvision
from helpers import Scale, same_state, seeded
from torch import nn

import netdsl
from netdsl import cli
from netdsl.plan import ModelPlan

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"

# (spec, model, parameters): every example, and for the zoo each family's smallest builder
# with few classes (GPT and the seq2seq transformer at a few layers and widths).
CASES: list[tuple[str, str | None, dict[str, Any]]] = [
    *((str(p.relative_to(ROOT)), None, {}) for p in sorted(ROOT.glob("examples/*.net"))),
    *((str(p.relative_to(ROOT)), None, {}) for p in sorted(ROOT.glob("examples/init/*.net"))),
    ("examples/zoo/convnext.net", "convnext_tiny", {"num_classes": 10}),
    ("examples/zoo/densenet.net", "densenet121", {"num_classes": 10}),
    ("examples/zoo/densenet.net", "densenet121", {"num_classes": 10, "memory_efficient": True}),
    ("examples/zoo/efficientnet.net", "efficientnet_b0", {"num_classes": 10}),
    ("examples/zoo/googlenet.net", "googlenet", {"num_classes": 10}),
    ("examples/zoo/gpt.net", None, {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16,
                                    "vocab_size": 97}),
    ("examples/zoo/gpt.net", None, {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16,
                                    "vocab_size": 97, "flash": False, "bias": False}),
    ("examples/zoo/mobilenet_v2.net", "mobilenet_v2", {"num_classes": 10, "width_mult": 0.5}),
    ("examples/zoo/resnet.net", "resnet18", {"num_classes": 10}),
    ("examples/zoo/resnet.net", "resnet18", {"num_classes": 10, "zero_init_residual": True}),
    ("examples/zoo/resnet.net", "resnet50", {"num_classes": 10}),
    ("examples/zoo/shufflenet.net", "shufflenet_v2_x0_5", {"num_classes": 10}),
    ("examples/zoo/squeezenet.net", "squeezenet1_0", {"num_classes": 10}),
    ("examples/zoo/transformer.net", None, {"src_vocab": 50, "tgt_vocab": 60, "d_model": 32,
                                            "nhead": 2}),
    ("examples/zoo/unet.net", None, {}),
    ("examples/zoo/vgg.net", "vgg11_bn", {"num_classes": 10}),
    ("examples/zoo/vit.net", "vit_b_32", {"num_classes": 10, "image_size": 32}),
]


def _case_id(case: tuple[str, str | None, dict[str, Any]]) -> str:
    return Path(case[0]).stem + (f"-{case[1]}" if case[1] else "") + (
        "-" + "-".join(f"{k}={v}" for k, v in case[2].items() if k != "num_classes")
        if len(case[2]) > 1 or "num_classes" not in case[2] else "")


def exported_module(source: str, tmp_path: Path, name: str = "exported") -> ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_class(module: ModuleType) -> type[nn.Module]:
    """The file's last class: the model (its blocks come before it)."""
    classes = [v for v in vars(module).values()
               if isinstance(v, type) and v.__module__ == module.__name__]
    return classes[-1]


def inputs(plan: ModelPlan) -> list[Any]:
    """Small inputs of the declared shapes: symbolic sizes 2 for the batch, 32 (or their bound)
    after it; token ids below 10; the first key of a dict choice."""
    made: list[Any] = []
    for given in plan.inputs or []:
        if given.shape is None:
            made.append(plan.key_args[given.name][0])
            continue
        shape = [d if isinstance(d, int) else 2 if i == 0 else min(32, given.bounds.get(d, 32))
                 for i, d in enumerate(given.shape)]
        if given.dtype.is_floating_point:
            made.append(torch.randn(shape, dtype=given.dtype))
        else:
            made.append(torch.randint(0, 10, shape, dtype=given.dtype))
    if not plan.inputs:  # the zoo's image models: a small image
        side = 32 if "vit" in plan.name.lower() else 64
        made.append(torch.randn(2, 3, side, side))
    return made


def ruff(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RUFF), "check", "--no-cache", "--config",
                           str(ROOT / "pyproject.toml"), str(path)],
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize(("spec", "model", "params"), CASES, ids=[_case_id(c) for c in CASES])
def test_export_matches_load(spec: str, model: str | None, params: dict[str, Any],
                             tmp_path: Path) -> None:
    source = netdsl.export(ROOT / spec, model=model, **params)
    exported = model_class(exported_module(source, tmp_path))
    ours = seeded(lambda: netdsl.load(ROOT / spec, model=model, **params))
    theirs = seeded(exported)
    same_state(ours, theirs)
    ours.eval()
    theirs.eval()
    given = inputs(netdsl.load_plan(ROOT / spec, model=model, **params))
    with torch.no_grad():
        expected, got = ours(*given), theirs(*given)
    assert type(expected) is type(got)
    for a, b in zip(expected if isinstance(expected, tuple) else [expected],
                    got if isinstance(got, tuple) else [got], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)  # normal.net: inf
    checked = ruff(tmp_path / "exported.py")
    assert checked.returncode == 0, checked.stdout + checked.stderr


LENET = '''\
# LeNet, exported by `netdsl export` from examples/lenet.net.
# Parameters: classes=10
# Plain PyTorch: this file does not need netdsl.

import torch
from torch import nn


class LeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(400, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x
'''


def test_lenet_reads_as_written_by_hand() -> None:
    assert netdsl.export(ROOT / "examples/lenet.net").replace(str(ROOT) + "/", "") == LENET


# ---------------------------------------------------------------- classes and init loops


def _load_both(tmp_path: Path, text: str, **options: Any) -> tuple[nn.Module, nn.Module, str]:
    spec = tmp_path / "spec.net"
    spec.write_text(text)
    source = netdsl.export(spec, **options)
    exported = model_class(exported_module(source, tmp_path, "spec_export"))
    ours, theirs = seeded(lambda: netdsl.load(spec, **options)), seeded(exported)
    same_state(ours, theirs)
    return ours, theirs, source


def test_block_instances_of_one_structure_share_a_class_with_parameters(tmp_path: Path) -> None:
    source = netdsl.export(ROOT / "examples/zoo/resnet.net", model="resnet18", num_classes=10)
    module = exported_module(source, tmp_path, "resnet18_export")
    # torchvision's own names: the stride-1 block keeps its width, the others change it.
    assert list(inspect.signature(module.BasicBlock).parameters) == ["inplanes"]
    assert list(inspect.signature(module.BasicBlock2).parameters) == ["inplanes", "planes"]
    assert "self.layer2 = nn.Sequential(BasicBlock2(inplanes=64, planes=128), " \
           "BasicBlock(inplanes=128))" in source


def test_init_rules_become_the_loop_torchvision_writes(tmp_path: Path) -> None:
    source = netdsl.export(ROOT / "examples/zoo/resnet.net", model="resnet50", num_classes=10,
                           zero_init_residual=True)
    assert '''\
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        for m in self.modules():
            if isinstance(m, (Bottleneck, Bottleneck2)):
                nn.init.constant_(m.bn3.weight, 0)
''' in source
    module = exported_module(source, tmp_path, "resnet50_export")
    ours = seeded(lambda: netdsl.load(ROOT / "examples/zoo/resnet.net", model="resnet50",
                                      num_classes=10, zero_init_residual=True))
    same_state(ours, seeded(model_class(module)))


def test_a_path_rule_comes_first_in_the_chain() -> None:
    source = netdsl.export(ROOT / "examples/zoo/squeezenet.net", model="squeezenet1_0")
    assert '''\
        for name, m in self.named_modules():
            if name == 'classifier.1':
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight)
                nn.init.constant_(m.bias, 0)
''' in source


# Block.lin.weight overrides Module.* with a random draw: a second loop (torchvision's
# zero_init_residual form) would draw twice, so each parameter is set in netdsl's order.
ONE_BY_ONE = '''\
block Block(n: int) {
    lin = Linear(n, n)
    act = ReLU()
}
model M {
    input x: [N, 4]
    a = Block(4)
    head = Linear(4, 2)
    init {
        Module.*: normal(0, 1)
        Linear.bias: zeros()
        Block.lin.weight: normal(0, 2)
    }
}
'''


def test_rules_no_loop_can_write_are_written_one_parameter_at_a_time(tmp_path: Path) -> None:
    _, _, source = _load_both(tmp_path, ONE_BY_ONE)
    assert '''\
        nn.init.normal_(self.get_parameter('a.lin.weight'), 0, 2)
        nn.init.zeros_(self.get_parameter('a.lin.bias'))
        nn.init.normal_(self.get_parameter('head.weight'), 0, 1)
        nn.init.zeros_(self.get_parameter('head.bias'))
''' in source


def test_rules_that_match_nothing_write_nothing(tmp_path: Path) -> None:
    _, _, source = _load_both(tmp_path, '''\
model M {
    input x: [N, 4]
    lin = Linear(4, 4, bias=false)
    init {
        Conv2d.weight: normal(0, 1)
        Linear.bias: zeros()
    }
}
''')
    assert "for m in" not in source and "nn.init" not in source


def test_fan_rules_compute_the_fans_per_parameter(tmp_path: Path) -> None:
    source = netdsl.export(ROOT / "examples/init/xavier_tanh.net")
    assert '''\
        for m in self.modules():
            if isinstance(m, nn.Linear):
                fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
                a = math.sqrt(6 / (fan_in + fan_out)) * 1.6666666666666667
                nn.init.uniform_(m.weight, -a, a)
''' in source


def test_a_blocks_rule_on_its_own_param_selects_the_block(tmp_path: Path) -> None:
    _, _, source = _load_both(tmp_path, '''\
block Head(n: int) {
    param scale = ones(n)
    lin = sequential {
        Linear(n, n)
        if n > 4 { ReLU() }
    }
    forward(x) = lin(x) * scale
    init { Head.scale: normal(1.0, 0.1) }
}
model M {
    input x: [N, 4]
    a = Head(4)
    up = Linear(4, 8)
    b = Head(8)
    forward(x) = x -> a -> up -> b
    init {
        Linear.weight: normal(0, 0.5)
        Head.scale: normal(2.0, 0.1)
    }
}
''')
    assert "            if isinstance(m, type(self)):\n" in source  # in Head: itself
    assert "            if isinstance(m, (Head, Head2)):\n" in source  # in M: both classes


def test_sizes_of_params_and_numbers_of_the_forward_become_constructor_parameters(
        tmp_path: Path) -> None:
    # torchvision's LayerNorm2d: its width sizes its params and is the forward's shape.
    ours, theirs, source = _load_both(tmp_path, '''\
block Norm(width: int) {
    param weight = ones(width)
    buffer shift = zeros(width, 1)
    forward(x) = layer_norm(x, (width,), weight=weight, eps=1e-05) + shift[:, 0]
}
model M {
    input x: [N, 4]
    a = Norm(4)
    up = Linear(4, 8)
    b = Norm(8)
    forward(x) = x -> a -> up -> b
}
''')
    assert '''\
class Norm(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.weight = nn.Parameter(torch.ones(width))
        self.register_buffer('shift', torch.zeros(width, 1))

    def forward(self, x):
        return F.layer_norm(x, (self.width,), weight=self.weight, eps=1e-05) + self.shift[:, 0]
''' in source
    assert "self.a = Norm(width=4)" in source and "self.b = Norm(width=8)" in source
    x = torch.randn(3, 4)
    assert torch.equal(ours(x), theirs(x))


def test_a_forward_reads_its_parameters_under_names_the_module_leaves_free(
        tmp_path: Path) -> None:
    # self.half would hide nn.Module.half; the second parameter's own name is then taken.
    ours, theirs, source = _load_both(tmp_path, '''\
block Norm(half: int, half_: int) {
    param weight = ones(half)
    forward(x) = layer_norm(x, (half,), weight=weight) * half_
}
model M {
    input x: [N, 4]
    a = Norm(4, 2)
    up = Linear(4, 8)
    b = Norm(8, 3)
    forward(x) = x -> a -> up -> b
}
''')
    assert "        self.half_ = half\n        self.half__ = half_\n" in source
    assert "return F.layer_norm(x, (self.half_,), weight=self.weight) * self.half__" in source
    x = torch.randn(3, 4)
    assert torch.equal(ours(x), theirs(x))
    assert theirs.half().a.weight.dtype == torch.float16  # Module.half is still the method


def test_classes_come_in_the_order_the_spec_declares_their_blocks(tmp_path: Path) -> None:
    _, _, source = _load_both(tmp_path, '''\
block A { lin = Linear(4, 4) }
block B { act = ReLU() }
block C { lin = Linear(4, 4) }
model M {
    input x: [N, 4]
    c = C()
    a = A()
    b = B()
    forward(x) = x -> c -> a -> b
}
''')
    assert re.findall(r"^class (\w+)", source, re.M) == ["A", "B", "C", "M"]


def test_params_buffers_and_ties_keep_their_options_and_places(tmp_path: Path) -> None:
    ours, theirs, source = _load_both(tmp_path, '''\
model M(n: int = 4) {
    input x: [N, 4]
    param scale = ones(n)
    a = Linear(n, n)
    buffer steps = zeros(1, dtype=long)
    param(requires_grad=false) frozen = empty(n).normal_(std=0.02)
    buffer(persistent=false) mask = ones(n)
    b = Linear(n, n)
    tie b.weight = a.weight
    forward(x) = b(a(x) * scale * mask + frozen)
}
''')
    assert '''\
        self.scale = nn.Parameter(torch.ones(4))
        self.a = nn.Linear(4, 4)
        self.register_buffer('steps', torch.zeros(1, dtype=torch.long))
        self.frozen = nn.Parameter(torch.empty(4).normal_(std=0.02), requires_grad=False)
        self.register_buffer('mask', torch.ones(4), persistent=False)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight
''' in source
    assert [name for name, _ in ours.named_buffers()] == ["steps", "mask"]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(
        ours.named_buffers(), theirs.named_buffers(), strict=True))
    assert theirs.b.weight is theirs.a.weight and not theirs.frozen.requires_grad


def test_names_that_would_hide_the_files_own_get_an_underscore(tmp_path: Path) -> None:
    _, _, source = _load_both(tmp_path, '''\
block math(n: int) {
    lin = Linear(n, n)
    act = ReLU()
}
model list {
    input x: [N, 4]
    a = math(4)
    up = Linear(4, 8)
    b = math(8)
}
''')
    assert "class math_(nn.Module):\n    def __init__(self, n: int) -> None:\n" in source
    assert "class list_(nn.Module):\n" in source
    assert "        self.b = math_(n=8)\n" in source


def test_a_custom_layer_is_imported_from_its_module(tmp_path: Path) -> None:
    _, _, source = _load_both(tmp_path, '''\
model M {
    input x: [N, 4]
    lin = Linear(4, 4)
    scale = Scale(2.0)
}
''', modules={"Scale": Scale})
    assert "import helpers\n" in source
    assert "self.scale = helpers.Scale(2.0)" in source


# ---------------------------------------------------------------- errors


def _export_error(tmp_path: Path, text: str, **options: Any) -> str:
    spec = tmp_path / "bad.net"
    spec.write_text(text)
    with pytest.raises(netdsl.NetDSLError) as caught:
        netdsl.export(spec, **options)
    return str(caught.value).replace(str(tmp_path), "<tmp>")


def test_a_layer_class_a_file_cannot_import_is_refused(tmp_path: Path) -> None:
    class Local(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    message = _export_error(tmp_path, "model M {\n    input x: [N, 4]\n    a = Local()\n}\n",
                            modules={"Local": Local})
    assert message == (
        "<tmp>/bad.net:3:9: cannot export layer Local: an exported file cannot "
        "import test_export.test_a_layer_class_a_file_cannot_import_is_refused.<locals>.Local "
        "(define the class at the top level of an importable module)\n"
        "        a = Local()\n"
        "            ^^^^^^^")


def test_a_forward_name_that_would_hide_an_import_is_refused(tmp_path: Path) -> None:
    message = _export_error(tmp_path, '''\
model M {
    input x: [N, 4]
    lin = Linear(4, 4)
    forward(x) {
        F = lin(x)
        return F
    }
}
''')
    assert message == (
        "<tmp>/bad.net:1:1: cannot export: the generated code names 'F', which "
        "the exported file imports; rename it in the spec\n"
        "    model M {\n"
        "    ^^^^^^^^^")


def test_a_param_whose_constant_changes_after_it_is_refused(tmp_path: Path) -> None:
    message = _export_error(tmp_path, '''\
model M(n: int = 4) {
    input x: [N, 4]
    let k = n
    param w = zeros(k)
    let k = 2 * n
    lin = Linear(4, k)
}
''')
    assert message == (
        "<tmp>/bad.net:4:15: cannot export param 'w': its expression uses a "
        "constant assigned again after it\n"
        "        param w = zeros(k)\n"
        "                  ^^^^^^^^")


def test_spec_errors_are_the_checks_own(tmp_path: Path) -> None:
    with pytest.raises(netdsl.NetDSLError) as caught:
        netdsl.export(ROOT / "examples/lenet.net", classes="x")
    assert str(caught.value).replace(str(ROOT), "<root>") == (
        "<root>/examples/lenet.net:5:7: LeNet() argument 'classes' expects int, "
        "got str ('x')\n"
        "    model LeNet(classes: int = 10) {\n"
        "          ^^^^^")


# ---------------------------------------------------------------- the command


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.mark.usefixtures("in_root")
def test_cli_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lenet.py"
    assert cli.main(["export", "examples/lenet.net", "-o", str(out), "-p", "classes=7"]) == 0
    assert capsys.readouterr().err == f"netdsl: wrote {out}\n"
    assert out.read_text() == netdsl.export("examples/lenet.net", classes=7)
    assert "nn.Linear(84, 7)" in out.read_text()


@pytest.mark.usefixtures("in_root")
def test_cli_prints_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", "examples/lenet.net"]) == 0
    assert capsys.readouterr().out == LENET


@pytest.mark.usefixtures("in_root")
def test_cli_usage_and_spec_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", "missing.net"]) == 2
    assert capsys.readouterr().err == "netdsl: error: missing.net: no such file\n"
    assert cli.main(["export", "examples/lenet.net", "-o", str(tmp_path / "no/such/x.py")]) == 2
    assert capsys.readouterr().err == \
        f"netdsl: error: cannot write {tmp_path}/no/such/x.py: No such file or directory\n"
    assert cli.main(["export", "examples/zoo/vgg.net"]) == 1
    assert capsys.readouterr().err.startswith(
        "error[NDL014]: examples/zoo/vgg.net: declares several models (VGG, vgg11, ")


def test_the_docs_show_real_output(tmp_path: Path) -> None:
    """Every file shown in docs/export.md is (part of) what the command writes."""
    docs = (ROOT / "docs" / "export.md").read_text()
    spec = tmp_path / "one_by_one.net"
    spec.write_text(ONE_BY_ONE)
    imported = tmp_path / "convnext.net"  # the spec netdsl import writes for torchvision's
    with torch.device("meta"):
        imported.write_text(netdsl.from_module(torchvision.models.convnext_tiny(num_classes=10)))
    written = [netdsl.export(ROOT / "examples/zoo/resnet.net", model="resnet18", num_classes=10),
               netdsl.export(ROOT / "examples/zoo/squeezenet.net", model="squeezenet1_0"),
               netdsl.export(ROOT / "examples/init/xavier_tanh.net"), netdsl.export(spec),
               netdsl.export(imported)]
    shown = re.findall(r"```python\n(.*?)```", docs, re.S)[1:]  # after the API call
    assert len(shown) == 6
    for block in shown:
        assert any(block in text for text in written), block
    session = re.search(r"```text\n\$ netdsl export examples/lenet.net\n(.*?)```", docs, re.S)
    assert session is not None and session.group(1) == LENET
