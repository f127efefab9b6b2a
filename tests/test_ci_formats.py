"""netdsl in CI: every report format (text, JSON, GitHub annotations, SARIF 2.1.0 validated
against its schema), --strict, --model/-p, stdin, and the pre-commit hook manifest."""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pre_commit.clientlib import load_manifest

from netdsl.cli import main
from netdsl.codes import CODES, severity
from netdsl.report import Record, github, sarif

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ERRORS = Path(__file__).resolve().parent / "cases" / "errors"
WARNINGS = Path(__file__).resolve().parent / "cases" / "warnings"
# The OASIS SARIF 2.1.0 schema (errata01), as published in oasis-tcs/sarif-spec.
SARIF_SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json")
                          .read_text(encoding="utf-8"))
ALL_EXAMPLES = sorted(str(p) for p in EXAMPLES.rglob("*.net"))


def out_of(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_strict_check_of_every_example_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = out_of(capsys, "check", "--strict", *ALL_EXAMPLES)
    assert (code, out, err) == (0, "", f"netdsl: {len(ALL_EXAMPLES)} valid\n")


@pytest.mark.parametrize("case", ["skipped", "empty_file", "no_input", "unused",
                                  "unmatched_init", "forgotten_flatten"])
def test_warnings_pass_unless_strict(case: str, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(WARNINGS)
    assert out_of(capsys, "check", f"{case}.net")[0] == 0
    code, _, err = out_of(capsys, "check", "--strict", f"{case}.net")
    assert code == 1
    assert "error[NDL1" in err or "error[NDL2" in err
    assert err.endswith("netdsl: 0 valid, 1 invalid\n")


def test_json_reports_every_field(capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ERRORS)
    code, out, _ = out_of(capsys, "check", "--format", "json", "unknown_layer.net",
                          str(EXAMPLES / "lenet.net"))
    assert code == 1
    assert json.loads(out) == {"checked": 2, "valid": 1, "invalid": 1, "diagnostics": [{
        "path": "unknown_layer.net", "line": 2, "column": 12, "end_line": 2,
        "end_column": 18, "severity": "error", "code": "NDL002",
        "message": "unknown layer 'Conv2D'; did you mean 'Conv2d'?"}]}


def test_json_reports_usage_errors_with_their_path(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    code, out, _ = out_of(capsys, "check", "--format", "json", str(tmp_path / "gone.net"),
                          str(tmp_path), str(EXAMPLES / "lenet.net"))
    assert code == 2  # a missing file is a usage error, whatever else was found
    report = json.loads(out)
    assert report["checked"] == 2
    assert [(d["path"], d["code"], d["severity"]) for d in report["diagnostics"]] == [
        (str(tmp_path / "gone.net"), "NDL013", "error"), (str(tmp_path), "NDL013", "error")]
    assert report["diagnostics"][0]["message"] == f"{tmp_path / 'gone.net'}: no such file"


def test_text_keeps_the_summary_line_when_a_file_is_missing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = out_of(capsys, "check", str(tmp_path / "gone.net"), str(EXAMPLES / "lenet.net"))
    assert code == 2
    assert err == (f"netdsl: error: {tmp_path / 'gone.net'}: no such file\n"
                   "netdsl: 1 valid, 1 missing\n")


def test_github_annotations(capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(WARNINGS)
    code, out, _ = out_of(capsys, "check", "--format", "github", "skipped.net",
                          "forgotten_flatten.net")
    assert code == 0
    assert out.splitlines() == [
        "::notice file=skipped.net,line=1,col=7,endLine=1,endColumn=10,title=NDL201 skipped::"
        "skipped: Mlp is checked for names only; its layers and shapes need values: check "
        "--model Mlp -p hidden=...",
        "::warning file=forgotten_flatten.net,line=5,col=10,endLine=5,endColumn=21,"
        "title=NDL103 flatten::Linear(128) was inferred on an input of shape [N, 64, 7, 7], "
        "so it sees only the last dimension (7): did you forget flatten? (x -> flatten(1) "
        "gives it [N, 3136])"]


def test_github_escaping() -> None:
    record = Record("dir,a:b/x%.net", 1, 2, 1, 3, "error", "NDL002", "100% wrong\r\nnext: a, b")
    assert github([record]) == (
        "::error file=dir%2Ca%3Ab/x%25.net,line=1,col=2,endLine=1,endColumn=3,"
        "title=NDL002 unknown-name::100%25 wrong%0D%0Anext: a, b")


def _sarif(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code, out, _ = out_of(capsys, *args, "--format", "sarif")
    log = json.loads(out)
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(log)
    return code, log


def test_sarif_is_valid_against_the_schema(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.chdir(ERRORS)
    code, log = _sarif(capsys, "check", "many_errors.net", "unknown_layer.net",
                       str(WARNINGS / "unused.net"), str(tmp_path / "gone.net"))
    assert code == 2
    run = log["runs"][0]  # type: ignore[index]
    results = run["results"]
    rules = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    assert rules == sorted({r["ruleId"] for r in results})
    assert all(rules[r["ruleIndex"]] == r["ruleId"] for r in results)
    gone, first = results[0], results[1]  # usage errors are found first
    assert gone["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": (tmp_path / "gone.net").as_uri()}}
    assert first["level"] == "error"
    assert first["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "many_errors.net"},
        "region": {"startLine": 5, "startColumn": 9, "endLine": 5, "endColumn": 13}}
    assert {r["level"] for r in results} == {"error", "warning"}


def test_sarif_of_a_valid_run_has_no_results(capsys: pytest.CaptureFixture[str]) -> None:
    code, log = _sarif(capsys, "check", str(EXAMPLES / "lenet.net"))
    assert code == 0
    assert log["runs"][0]["results"] == []  # type: ignore[index]


def test_check_a_model_with_parameter_values(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    spec = tmp_path / "mlp.net"
    spec.write_text("model Mlp(hidden: int) {\n    input x: [N, 784]\n"
                    "    fc1 = Linear(784, hidden)\n    fc2 = Linear(100, 10)\n}\n")
    assert out_of(capsys, "check", str(spec))[0] == 0  # names only: nothing wrong with them
    code, _, err = out_of(capsys, "check", "--model", "Mlp", "-p", "hidden=64", str(spec))
    assert code == 1
    assert "error[NDL007]: Linear(100, 10) expects 100 input features, but receives 64" in err
    assert out_of(capsys, "check", "-p", "hidden=100", str(spec))[0] == 0


def test_choose_a_model_by_its_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "two.net"
    spec.write_text("model A { fc = Linear(1, 1) }\nmodel B { fc = Linear(1, 1) }\n")
    code, _, err = out_of(capsys, "check", "-p", "x=1", str(spec))
    assert code == 1
    assert f"{spec}: declares several models (A, B); choose one with model= (--model on the " \
           f"command line)" in err


def test_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("model M {\n    a = Lnear(1, 2)\n}\n"))
    code, out, _ = out_of(capsys, "check", "--format", "json", "-")
    assert code == 1
    [diagnostic] = json.loads(out)["diagnostics"]
    assert (diagnostic["path"], diagnostic["line"], diagnostic["code"]) == ("<stdin>", 2,
                                                                            "NDL002")


@pytest.mark.parametrize("command", [
    ["summary", str(EXAMPLES / "lenet.net")],
    ["init-report", str(EXAMPLES / "init" / "kaiming_relu.net")],
    ["probe", str(EXAMPLES / "lenet.net"), "--input", "2,3,32,32", "--seed", "0"],
])
def test_every_reporting_command_speaks_every_format(
        command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = out_of(capsys, *command, "--format", "json")
    assert code == 0
    assert json.loads(out)["diagnostics"] == []
    code, log = _sarif(capsys, *command)
    assert (code, log["runs"][0]["results"]) == (0, [])  # type: ignore[index]
    assert out_of(capsys, *command, "--format", "github")[0] == 0


@pytest.mark.parametrize("command", ["summary", "init-report"])
def test_errors_of_reporting_commands_in_json(command: str, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ERRORS)
    code, out, _ = out_of(capsys, command, "unknown_layer.net", "--format", "json")
    assert code == 1
    assert [d["code"] for d in json.loads(out)["diagnostics"]] == ["NDL002"]


def test_init_report_warns_in_every_format(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(WARNINGS)
    code, out, _ = out_of(capsys, "init-report", "unmatched_init.net", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert [d["code"] for d in report["diagnostics"]] == ["NDL101", "NDL101"]
    assert report["entries"][0]["parameter"] == "fc1.weight"


def test_pre_commit_hook_manifest_is_valid_and_runs() -> None:
    hook, _ = load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))
    assert (hook["id"], hook["language"], hook["files"]) == ("netdsl-check", "python", r"\.net$")
    # What pre-commit runs: the entry with the matching files appended.
    entry = shlex.split(hook["entry"])
    assert entry[0] == "netdsl"
    command = [sys.executable, "-m", "netdsl", *entry[1:], *hook["args"], *ALL_EXAMPLES]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stderr) == (0, f"netdsl: {len(ALL_EXAMPLES)} valid\n")
    bad = subprocess.run([*command[:-len(ALL_EXAMPLES)], str(ERRORS / "unknown_layer.net")],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 1


def test_pre_commit_fmt_hook_leaves_formatted_specs_and_rewrites_others(tmp_path: Path) -> None:
    _, hook = load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))
    assert (hook["id"], hook["language"], hook["files"]) == ("netdsl-fmt", "python", r"\.net$")
    entry = shlex.split(hook["entry"])
    assert entry[0] == "netdsl"
    command = [sys.executable, "-m", "netdsl", *entry[1:], *hook["args"]]
    done = subprocess.run([*command, *ALL_EXAMPLES], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, "")  # the examples are formatted: nothing to do
    ugly = tmp_path / "ugly.net"
    ugly.write_text("model M {\n  x=Linear( 2,3 )\n}\n")
    done = subprocess.run([*command, str(ugly)], capture_output=True, text=True, check=False)
    # pre-commit stops the commit because the file changed; the hook itself succeeds
    assert (done.returncode, done.stdout) == (0, f"reformatted {ugly}\n")
    assert ugly.read_text() == "model M {\n    x = Linear(2, 3)\n}\n"


def test_the_documented_workflow_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/ci.md's workflow is valid YAML, and its netdsl commands pass on the examples."""
    import yaml  # pre-commit's dependency

    text = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    workflow = yaml.safe_load(text.split("```yaml\n")[2].split("```")[0])
    steps = workflow["jobs"]["netdsl"]["steps"]
    commands = [s["run"] for s in steps if s.get("run", "").startswith("netdsl ")]
    assert commands
    for command in commands:
        args = shlex.split(command.replace("$(git ls-files '*.net')", ""))[1:]
        assert main([*args, *ALL_EXAMPLES]) == 0
        assert capsys.readouterr().out == ""  # no annotations: every example is clean


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text(min_size=1), st.sampled_from(sorted(CODES)),
       st.one_of(st.none(), st.integers(1, 10**6)))
def test_any_message_stays_one_annotation_and_valid_sarif(message: str, path: str, code: str,
                                                          line: int | None) -> None:
    """Whatever a spec puts in a message or a file name, a GitHub annotation stays one line
    that starts a command, and the SARIF log stays valid."""
    column = None if line is None else 1
    rec = Record(path, line, column, line, column, severity(code), code, message)
    [annotation] = github([rec]).split("\n")
    assert annotation.startswith(("::error ", "::warning ", "::notice "))
    assert "\r" not in annotation
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(sarif([rec]))
