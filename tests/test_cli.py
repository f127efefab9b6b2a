"""The netdsl command: exit codes, diagnostics on stderr, JSON on stdout."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from netdsl.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ERRORS = Path(__file__).resolve().parent / "cases" / "errors"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netdsl", *args], capture_output=True,
                          text=True, cwd=cwd, check=False)


def test_valid_examples_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in EXAMPLES.rglob("*.net"))
    assert main(["check", *files]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"netdsl: {len(files)} valid\n"


def test_invalid_spec_exits_1_with_every_error(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ERRORS)
    assert main(["check", "many_errors.net", str(EXAMPLES / "lenet.net")]) == 1
    err = capsys.readouterr().err
    assert err == (ERRORS / "many_errors.expected").read_text() + "netdsl: 1 valid, 1 invalid\n"


def test_json_format(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ERRORS)
    assert main(["check", "--format", "json", "unknown_layer.net"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report == {"checked": 1, "valid": 0, "invalid": 1, "diagnostics": [{
        "path": "unknown_layer.net", "line": 2, "column": 12, "end_line": 2, "end_column": 18,
        "severity": "error", "code": "NDL002",
        "message": "unknown layer 'Conv2D'; did you mean 'Conv2d'?"}]}


def test_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "no/such/file.net"]) == 2
    assert capsys.readouterr().err == ("netdsl: error: no/such/file.net: no such file\n"
                                       "netdsl: 0 valid, 1 missing\n")


def test_bad_flag_is_a_usage_error() -> None:
    result = run("check", "--frobnicate", str(EXAMPLES / "lenet.net"))
    assert result.returncode == 2
    assert "unrecognized arguments: --frobnicate" in result.stderr


def test_python_dash_m_and_console_script_agree() -> None:
    result = run("check", str(EXAMPLES / "alexnet.net"))
    assert (result.returncode, result.stderr) == (0, "netdsl: 1 valid\n")


@pytest.mark.parametrize(("content", "message"), [
    (b"\xff\xfe m\x00o\x00", "not UTF-8 text (byte 0)"),
    (b"model M {\x00}", "spec contains a NUL character"),
])
def test_odd_files_are_reported_not_raised(tmp_path: Path, content: bytes, message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "odd.net"
    path.write_bytes(content)
    assert main(["check", str(path)]) == 1
    assert message in capsys.readouterr().err


def test_empty_file_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.net").write_text("")
    assert main(["check", str(tmp_path / "empty.net")]) == 0
    assert capsys.readouterr().err == (
        f"{tmp_path / 'empty.net'}:1:1: note[NDL202]: declares no model or block: nothing to "
        "check\n"
        "    \n"
        "    ^\n"
        "netdsl: 1 valid (1 note)\n")


def test_directory_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error[NDL013]: {tmp_path}: is a directory, not a spec file")


def test_control_characters_are_escaped(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ctl.net"
    path.write_text("model M { x = Bad\x1b[31m() }", encoding="utf-8")
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b" in err


LAYERS_MODULE = '''
import torch
from torch import nn


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor
'''
SCALED_SPEC = "model M {\n    input x: [N, 4]\n    fc = Linear(4, 4)\n    scale = Scale(0.5)\n}\n"


def custom_project(root: Path) -> None:
    (root / "mypkg").mkdir()
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "layers.py").write_text(LAYERS_MODULE)
    (root / "scaled.net").write_text(SCALED_SPEC)


def test_custom_layers_from_the_command_line(tmp_path: Path) -> None:
    custom_project(tmp_path)
    without = run("check", "scaled.net", cwd=tmp_path)
    assert without.returncode == 1 and "unknown layer 'Scale'" in without.stderr
    given = run("check", "--modules", "mypkg.layers", "scaled.net", cwd=tmp_path)
    assert (given.returncode, given.stderr) == (0, "netdsl: 1 valid\n")


def test_custom_layers_from_pyproject(tmp_path: Path) -> None:
    custom_project(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.netdsl]\nmodules = ["mypkg.layers"]\n')
    (tmp_path / "sub").mkdir()  # found from a directory below the project too
    (tmp_path / "sub" / "scaled.net").write_text(SCALED_SPEC)
    result = run("check", "scaled.net", cwd=tmp_path / "sub")
    assert (result.returncode, result.stderr) == (0, "netdsl: 1 valid\n")


@pytest.mark.parametrize(("pyproject", "flag", "message"), [
    (None, ["--modules", "nope.layers"],
     "netdsl: error: cannot import module 'nope.layers': ModuleNotFoundError: No module named "
     "'nope'\n"),
    ('[tool.netdsl]\nmodules = "mypkg.layers"\n', [],
     "[tool.netdsl] modules must be a list of module names\n"),
])
def test_custom_layer_configuration_mistakes_are_usage_errors(
        tmp_path: Path, pyproject: str | None, flag: list[str], message: str) -> None:
    custom_project(tmp_path)
    if pyproject is not None:
        (tmp_path / "pyproject.toml").write_text(pyproject)
    result = run("check", *flag, "scaled.net", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.endswith(message)


# ---------------------------------------------------------------- `-`: the spec from stdin

BAD_SPEC = "model Bad {\n    input x: [N, 4]\n    fc = Linear(4, 2)\n    forward(x) = x -> fcc\n}\n"
MODEL_COMMANDS = [["summary"], ["graph", "--format", "dot"], ["export"]]


def from_stdin(monkeypatch: pytest.MonkeyPatch, text: str, argv: list[str]) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    return main(argv)


@pytest.mark.parametrize("command", MODEL_COMMANDS, ids=lambda c: c[0])
def test_model_commands_read_the_spec_from_stdin(command: list[str],
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`-` gives what the file gives; an exported file names where its spec came from."""
    lenet = EXAMPLES / "lenet.net"
    assert main([command[0], str(lenet), *command[1:]]) == 0
    from_file = capsys.readouterr()
    assert from_stdin(monkeypatch, lenet.read_text(), [command[0], "-", *command[1:]]) == 0
    from_pipe = capsys.readouterr()
    assert from_pipe.err == from_file.err == ""
    if command[0] == "export":
        assert from_pipe.out.splitlines()[0] == "# LeNet, exported by `netdsl export` from <stdin>."
        assert from_file.out.splitlines()[0] == \
            f"# LeNet, exported by `netdsl export` from {lenet}."
        assert from_pipe.out.splitlines()[1:] == from_file.out.splitlines()[1:]
    else:
        assert from_pipe.out == from_file.out


@pytest.mark.parametrize("command", MODEL_COMMANDS, ids=lambda c: c[0])
def test_spec_errors_from_stdin_name_stdin(command: list[str], monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert from_stdin(monkeypatch, BAD_SPEC, [command[0], "-", *command[1:]]) == 1
    assert capsys.readouterr() == ("", (
        "<stdin>:4:23: error[NDL002]: undefined name 'fcc' in forward; did you mean 'fc'?\n"
        "        forward(x) = x -> fcc\n"
        "                          ^^^\n"))


def test_summary_json_from_stdin_locates_errors_in_stdin(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    assert from_stdin(monkeypatch, BAD_SPEC, ["summary", "-", "--format", "json"]) == 1
    (found,) = json.loads(capsys.readouterr().out)["diagnostics"]
    assert (found["path"], found["line"], found["column"]) == ("<stdin>", 4, 23)


def test_stdin_spec_imports_resolve_against_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "blocks.net").write_text(
        "block Head(n: int) {\n    fc = Linear(4, n)\n    forward(x) = fc(x)\n}\n")
    monkeypatch.chdir(tmp_path)
    spec = 'from "blocks.net" import Head\nmodel M {\n    input x: [N, 4]\n    head = Head(3)\n}\n'
    assert from_stdin(monkeypatch, spec, ["graph", "-"]) == 0
    assert '"head<br/>Head(3)"' in capsys.readouterr().out


@pytest.mark.parametrize(("command", "name"), [("summary", "depth"), ("summary", "source"),
                                               ("export", "source"), ("export", "path"),
                                               ("check", "source")])
def test_a_model_parameter_named_as_the_commands_own_keyword_is_a_usage_error(
        command: str, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The API takes ``-p`` values as keyword arguments beside its own: Python would read
    ``depth=3`` as the summary's depth."""
    assert main([command, str(EXAMPLES / "lenet.net"), "-p", f"{name}=3"]) == 2
    assert capsys.readouterr().err == (
        f"netdsl: error: -p {name}: netdsl {command} cannot take a model parameter of that "
        f"name\n")


def test_a_model_parameter_named_params_is_passed_on(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "wide.net"
    spec.write_text("model Wide(params: int = 2) {\n    input x: [N, 4]\n"
                    "    fc = Linear(4, params)\n}\n")
    assert main(["export", str(spec), "-p", "params=5"]) == 0
    assert "nn.Linear(4, 5)" in capsys.readouterr().out
