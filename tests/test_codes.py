"""Diagnostic codes: every code is documented with a bad spec and its fix (docs/errors.md), every
code the package names exists and every error code is raised somewhere, and every error of the
error cases carries a known code.

A section of docs/errors.md is ``## NDLxxx: short-name``; its examples follow "Bad:" and "Fixed:".
Each holds a spec (a ```net block, written to spec.net) and then either the first error it
reports (a ```text block, compared with ``netdsl.check``) or a ```console block: a netdsl
command run in the spec's folder, with the start of what it prints to stderr. A ```net block
named in its fence (```net blocks.net) is a file the section's examples import.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from netdsl import cli, codes
from netdsl.api import check, diagnose
from netdsl.codes import CODES

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "errors.md"
SOURCES = ROOT / "src" / "netdsl"
CASES = Path(__file__).parent / "cases" / "errors"

HEADING = re.compile(r"^## (NDL\d{3}): (\S+)$", re.M)
FENCE = re.compile(r"^```(\w+)(?: (\S+))?\n(.*?)^```$", re.M | re.S)
# Codes whose section has no example: no spec should produce them.
WITHOUT_EXAMPLES = {codes.INTERNAL}


@dataclass
class Example:
    spec: str | None  # the spec file's text
    output: str | None  # the first error as rendered, or the command's stderr (its start)
    command: list[str] | None  # a netdsl command line, without "netdsl"


@dataclass
class Section:
    code: str
    name: str
    text: str
    files: dict[str, str]  # files the examples import, by name
    bad: Example | None
    fixed: Example | None


def _example(text: str) -> Example:
    spec = output = command = None
    for kind, _, body in FENCE.findall(text):
        if kind == "net":
            spec = body
        elif kind == "text":
            output = body
        elif kind == "console":
            first, _, rest = body.partition("\n")
            assert first.startswith("$ netdsl "), first
            command = shlex.split(first.removeprefix("$ netdsl "))
            output = rest or None
    return Example(spec, output, command)


def sections() -> list[Section]:
    text = DOC.read_text(encoding="utf-8")
    heads = list(HEADING.finditer(text))
    found = []
    for head, after in zip(heads, [*heads[1:], None], strict=True):
        body = text[head.end():after.start() if after else len(text)]
        intro, _, rest = body.partition("\nBad:\n")
        bad, _, fixed = rest.partition("\nFixed:\n")
        files = {name: spec for kind, name, spec in FENCE.findall(intro) if kind == "net" and name}
        found.append(Section(head.group(1), head.group(2), body, files,
                             _example(bad) if rest else None,
                             _example(fixed) if fixed else None))
    return found


SECTIONS = sections()
EXAMPLES = [s for s in SECTIONS if s.bad is not None]


def test_every_code_has_a_section() -> None:
    headings = [s.code for s in SECTIONS]
    assert len(headings) == len(set(headings)), "a code has two sections"
    assert set(headings) == set(CODES)
    assert [s.code for s in SECTIONS] == sorted(headings)
    for section in SECTIONS:
        assert section.name == CODES[section.code][0], section.code


def test_every_section_has_examples() -> None:
    for section in SECTIONS:
        if section.code in WITHOUT_EXAMPLES:
            assert section.bad is None and "no example" in section.text, section.code
            continue
        assert section.bad is not None and section.fixed is not None, section.code
        assert section.bad.spec is not None or section.bad.command is not None, section.code
        assert section.fixed.spec is not None, section.code


def _write(section: Section, example: Example, folder: Path) -> None:
    for name, text in section.files.items():
        folder.joinpath(name).write_text(text, encoding="utf-8")
    if example.spec is not None:
        folder.joinpath("spec.net").write_text(example.spec, encoding="utf-8")


def _run(command: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    status = cli.main(command)
    return status, capsys.readouterr().err


@pytest.mark.parametrize("section", EXAMPLES, ids=lambda s: s.code)
def test_bad_example_reports_its_code(section: Section, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert section.bad is not None
    _write(section, section.bad, tmp_path)
    monkeypatch.chdir(tmp_path)
    if section.bad.command is not None:
        status, stderr = _run(section.bad.command, capsys)
        assert status == 1
        first = next(line for line in stderr.splitlines() if "error" in line)
        assert f"error[{section.code}]: " in first
        assert stderr.startswith(section.bad.output or "")
        return
    found = diagnose(Path("spec.net"))
    assert found, f"{section.code}: the bad example checks clean"
    first = found[0]
    assert first.code == section.code, first.render(first.severity)
    if section.bad.output is not None:
        assert first.render(first.severity) + "\n" == section.bad.output


@pytest.mark.parametrize("section", EXAMPLES, ids=lambda s: s.code)
def test_fixed_example_checks_clean(section: Section, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert section.fixed is not None
    _write(section, section.fixed, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert diagnose(Path("spec.net")) == []  # no warnings or notes either
    if section.fixed.command is not None:
        status, stderr = _run(section.fixed.command, capsys)
        assert status == 0, stderr


def _referenced() -> set[str]:
    """The ``codes.NAME`` attributes the package's modules name (codes.py itself aside)."""
    found: set[str] = set()
    for path in SOURCES.glob("*.py"):
        if path.name != "codes.py":
            found |= set(re.findall(r"\bcodes\.([A-Z][A-Z0-9_]*)\b", path.read_text("utf-8")))
    return found


def _constants() -> dict[str, str]:
    """codes.py's code constants: NAME -> code."""
    return {name: value for name, value in vars(codes).items()
            if name.isupper() and isinstance(value, str) and value in CODES}


def test_referenced_codes_exist() -> None:
    constants = _constants()
    assert sorted(set(constants.values())) == sorted(CODES), "a code without a constant"
    assert len(set(constants.values())) == len(constants), "a code with two names"
    unknown = {name for name in _referenced() if not hasattr(codes, name)}
    assert not unknown, f"not in netdsl.codes: {sorted(unknown)}"


def test_every_code_is_reported_somewhere() -> None:
    # A code nobody raises (or reports) is dead.
    unused = set(_constants()) - _referenced()
    assert not unused, f"error codes nothing raises: {sorted(unused)}"


@pytest.mark.parametrize("case", sorted(CASES.glob("*.net")), ids=lambda p: p.stem)
def test_error_case_has_codes(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)  # as tests/test_errors.py does
    errors = check(Path(case.name))
    assert errors
    for err in errors:
        assert err.code in CODES, f"{err.code}: {err.render('error')}"


def test_unreadable_files_have_the_file_code(tmp_path: Path) -> None:
    binary = tmp_path / "binary.net"
    binary.write_bytes(b"model M { fc = Linear(4, 4) }\xff\n")
    (tmp_path / "folder.net").mkdir()
    for path in (binary, tmp_path / "folder.net"):
        assert [e.code for e in check(path)] == [codes.FILE]
