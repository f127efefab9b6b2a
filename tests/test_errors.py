"""Invalid specs: each case file under cases/errors/ is checked, and every error it produces is
compared with the exact text in the matching .expected file (path:line:col, message, source line
and caret). Adding a case is adding two files."""

from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from netdsl.api import check, diagnose

CASES = Path(__file__).parent / "cases" / "errors"


@pytest.mark.parametrize("case", sorted(CASES.glob("*.net")), ids=lambda p: p.stem)
def test_error_case(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)  # paths in messages are as given: relative to the cases folder
    errors = check(Path(case.name))
    rendered = "\n".join(e.render("error") for e in errors)
    assert errors, f"{case.name} should be invalid"
    assert rendered + "\n" == case.with_suffix(".expected").read_text(encoding="utf-8")


def test_every_case_has_expected_output() -> None:
    cases = {p.stem for p in CASES.glob("*.net")}
    expected = {p.stem for p in CASES.glob("*.expected")}
    assert cases == expected


def test_load_raises_the_first_error_with_all_attached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)
    with pytest.raises(netdsl.NetDSLError) as info:
        netdsl.load("many_errors.net")
    err = info.value
    assert (err.path, err.line, err.column) == ("many_errors.net", 5, 9)
    assert str(err) == (
        "many_errors.net:5:9: unknown layer 'Relu'; did you mean 'ReLU'?\n"
        "            Relu()\n"
        "            ^^^^"
    )
    assert [(e.line, e.column) for e in err.errors] == [(5, 9), (6, 19), (8, 32), (9, 35)]


WARNING_CASES = Path(__file__).parent / "cases" / "warnings"


def _diagnostics(case: Path) -> str:
    return "\n".join(d.render(d.severity) for d in diagnose(Path(case.name))) + "\n"


@pytest.mark.parametrize("case", sorted(WARNING_CASES.glob("*.net")), ids=lambda p: p.stem)
def test_warning_case(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Specs that build but are probably not meant so, and what a check cannot cover: each
    case's warnings and notes (and any errors), exactly."""
    monkeypatch.chdir(WARNING_CASES)
    rendered = _diagnostics(case)
    assert "warning[" in rendered or "note[" in rendered, f"{case.name} should warn"
    assert rendered == case.with_suffix(".expected").read_text(encoding="utf-8")


def test_every_warning_case_has_expected_output() -> None:
    cases = {p.stem for p in WARNING_CASES.glob("*.net")}
    assert cases == {p.stem for p in WARNING_CASES.glob("*.expected")}
