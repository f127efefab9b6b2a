"""The static name pass (netdsl.resolve) for declarations that need parameter values.

* No false positives: every declaration of every valid spec the project has (examples/, the
  ``netdsl`` blocks of the docs, tests/cases/) resolves without an error, with or without
  required parameters.
* Agreement: where the full check runs too (no required parameters), every error the pass
  reports is one the check reports, with the same message and span.
* Cases: what the pass adds to ``netdsl.check``, in tests/cases/errors/unchecked_*.net (their
  exact output is compared by tests/test_errors.py), and the constructs it must accept.
"""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

import pytest
from helpers import Scale

import netdsl
from netdsl import api
from netdsl import nodes as n
from netdsl.check import Checker
from netdsl.errors import NetDSLError, Span
from netdsl.imports import Loader, Unit
from netdsl.registry import Registry
from netdsl.resolve import resolve

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").rglob("*.net"))
CASES = sorted((ROOT / "tests" / "cases").rglob("*.net"))
ERRORS = ROOT / "tests" / "cases" / "errors"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```netdsl\n(.*?)```", re.S)
MODULES = {"Scale": Scale}  # the custom module the docs use (docs/language.md §6)


def _doc_blocks() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            found.append((f"{path.relative_to(ROOT).as_posix()}:{line}", match.group(1)))
    return found


DOC_BLOCKS = _doc_blocks()


def _load(path: Path) -> Unit | None:
    """A spec and its imports, or None when it does not load (a syntax or import error)."""
    try:
        return Loader(path.parent).load_file(path)
    except NetDSLError:
        return None


def _resolved(unit: Unit, modules: dict[str, type] | None = None,
              required_only: bool = False) -> list[NetDSLError]:
    registry = Registry.with_modules(modules)
    checker = Checker(registry)
    errors = []
    for decl in unit.spec.models:
        if required_only and not _required(checker, decl, unit):
            continue
        errors += resolve(unit, decl, registry)
    return errors


def _required(checker: Checker, decl: n.ModelDecl, unit: Unit) -> list[str] | None:
    """The parameters a declaration needs values for (as netdsl.check decides it)."""
    try:
        return api._required(checker, decl, unit)
    except NetDSLError:
        return None  # its parameter list or call is wrong: the check reports that


def _only_errors(found: list[NetDSLError]) -> list[NetDSLError]:
    """What a check reports, without its warnings and notes (a skipped declaration's)."""
    return [e for e in found if isinstance(e, NetDSLError)]


def _shown(errors: list[NetDSLError]) -> str:
    return "\n".join(f"{e.span}: {e.message}" for e in errors)


@functools.cache
def _checked(path: Path) -> tuple[tuple[str, Span | None], ...]:
    """What ``netdsl.check`` reports for a case file, run from its folder (as test_errors)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(path.parent)
        return tuple((e.message, e.span) for e in _only_errors(netdsl.check(Path(path.name))))


# ---------------------------------------------------------------- no false positives


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_examples_resolve_clean(path: Path) -> None:
    unit = _load(path)
    assert unit is not None and unit.spec.models
    errors = _resolved(unit)
    assert not errors, _shown(errors)


@pytest.mark.parametrize(("where", "block"), DOC_BLOCKS, ids=[w for w, _ in DOC_BLOCKS])
def test_doc_blocks_resolve_clean(where: str, block: str, tmp_path: Path) -> None:
    for example in (ROOT / "examples").glob("*.net"):  # for `from "residual.net" import`
        shutil.copy(example, tmp_path / example.name)
    spec = tmp_path / "doc_example.net"
    spec.write_text(block, encoding="utf-8")
    unit = _load(spec)
    checked = {(e.message, e.span) for e in _only_errors(netdsl.check(spec, modules=MODULES))}
    if unit is None:
        assert checked  # an excerpt that does not parse on its own: nothing to resolve
        return
    # A fragment that does not check clean on its own: whatever resolve says, check says too.
    errors = [e for e in _resolved(unit, MODULES) if (e.message, e.span) not in checked]
    assert not errors, _shown(errors)


VALID_CASES = [p for p in CASES if not _checked(p)]


@pytest.mark.parametrize("path", VALID_CASES,
                         ids=lambda p: p.relative_to(ROOT / "tests").as_posix())
def test_valid_cases_resolve_clean(path: Path) -> None:
    unit = _load(path)
    assert unit is not None
    errors = _resolved(unit)
    assert not errors, _shown(errors)


def test_the_clean_specs_are_many() -> None:
    units = [u for u in map(_load, EXAMPLES) if u is not None]
    declarations = sum(len(u.spec.models) for u in units)
    assert declarations >= 100
    checker = Checker(Registry())
    required = sum(1 for u in units for d in u.spec.models if _required(checker, d, u))
    assert required >= 20  # the declarations the check skips, which only this pass reads


# ---------------------------------------------------------------- agreement with the check

ERROR_CASES = sorted(ERRORS.glob("*.net"))


def _agreement(path: Path) -> list[NetDSLError]:
    """The pass's errors on a case's declarations that the check runs too (no required
    parameters)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(path.parent)
        try:
            unit = Loader(Path(".")).load_file(Path(path.name))
        except NetDSLError:
            return []
        checker = Checker(Registry())
        registry = Registry()
        return [e for d in unit.spec.models if _required(checker, d, unit) == []
                for e in resolve(unit, d, registry)]


@pytest.mark.parametrize("path", ERROR_CASES, ids=lambda p: p.stem)
def test_agrees_with_the_check(path: Path) -> None:
    found = _agreement(path)
    reported = set(_checked(path))
    missing = [e for e in found if (e.message, e.span) not in reported]
    assert not missing, _shown(missing)


def test_agreement_is_not_vacuous() -> None:
    """The pass finds mistakes in these cases, so the agreement is tested on them."""
    found = {p.stem for p in ERROR_CASES if _agreement(p)}
    assert {"unknown_layer", "bad_keyword", "undefined_forward_name", "many_errors",
            "logic_unknown_function", "undefined_argument_name",
            "t9_tensor_unknown_function", "unknown_init_function", "unknown_init_type",
            "unknown_op"} <= found


# ---------------------------------------------------------------- what the pass adds

UNCHECKED = sorted(ERRORS.glob("unchecked_*.net"))


def test_unchecked_cases_exist() -> None:
    assert {p.stem for p in UNCHECKED} >= {
        "unchecked_unknown_layer", "unchecked_torch_keyword", "unchecked_forward_name",
        "unchecked_unused_block", "unchecked_let_function"}


@pytest.mark.parametrize("path", UNCHECKED, ids=lambda p: p.stem)
def test_unchecked_errors_come_from_the_pass(path: Path) -> None:
    """Each declaration there needs values: every error the check reports is the pass's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(path.parent)
        unit = Loader(Path(".")).load_file(Path(path.name))
        found = [(e.message, e.span) for e in _resolved(unit, required_only=True)]
    assert found and set(found) == set(_checked(path))


def _errors(text: str, tmp_path: Path) -> list[str]:
    spec = tmp_path / "spec.net"
    spec.write_text(text, encoding="utf-8")
    return [e.message for e in _only_errors(netdsl.check(spec, modules=MODULES))]


# Valid whatever the parameters are: the pass must accept each (and the check says nothing).
ACCEPTED = {
    "let after its use in a loop": """
        model M(n: int) {
            for i in range(n) {
                if i > 0 { fc = Linear(prev, 2) }
                let prev = i + 1
            }
        }""",
    "a let made in one branch": """
        model M(n: int) {
            if n > 2 { let w = 4 } else { let v = 3 }
            fc = Linear(w, 2)
        }""",
    "layer parameter, keywords unknown": """
        block B(norm: layer, n: int) { bn = norm(n, anything=1) }""",
    "generated children in the forward": """
        model M(n: int) {
            for i in range(n) { f"layer{i + 1}" = Linear(4, 4) }
            forward(x) = x -> layer1 -> layer2
        }""",
    "a variable assigned in one branch": """
        model M(n: int) {
            fc = Linear(4, 4)
            forward(x) {
                if n > 1 { y = fc(x) } else { z = x }
                return y + z
            }
        }""",
    "comprehension and repeat variables": """
        model M(widths: list) {
            let pairs = [(a, b) for a, b in zip(widths, widths[1:]) if a > 0]
            body = sequential { Linear(p[0], p[1]) for p in pairs }
        }""",
    "custom module and its keywords": """
        model M(f: float) { s = Scale(factor=f) }""",
    "block keywords": """
        block Head(n: int, bias: bool = true) { fc = Linear(n, n, bias=bias) }
        model M(n: int) { head = Head(n=n, bias=false) }""",
    "a file constant, a def and an op in the forward": """
        let SCALE = 2
        def twice(v: int) -> int = 2 * v
        model M(n: int) { forward(x) = relu(x) * SCALE + twice(n) - x.shape[0] }""",
    "dtypes, inf, training and children()": """
        model M(n: int) {
            fc = Linear(n, n)
            forward(x) {
                for c in children() { x = c(x) }
                m = arange(0, n, dtype=long).float().masked_fill(x > 0, -inf)
                if training { x = dropout(x, 0.1, training=training) }
                return x + m
            }
        }""",
    "a param expression and init rules": """
        model M(n: int) {
            param w = zeros(n).normal_(std=0.02)
            fc = Linear(n, n)
            init {
                let a = sqrt(6 / (fan_in + fan_out))
                Linear.weight: uniform(-a, a)
                Linear.bias: constant(1 / n)
            }
        }""",
    "a partial declaration": """
        block Blk(n: int, k: int = 3) = Conv2d(n, n, k)
        model m = Blk(k=5)""",
    "input dimension left out by keyword count": """
        model M(n: int) { input x: [N, n] fc = Linear(out_features=n) }""",
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=list(ACCEPTED))
def test_accepted(text: str, tmp_path: Path) -> None:
    assert _errors(text, tmp_path) == []


# Each needs values to run, so only the pass reports these; the messages are the check's.
REPORTED = {
    "unknown layer in a container": (
        "model M(n: int) { s = sequential { Relu() Linear(n, 2) } }",
        "unknown layer 'Relu'; did you mean 'ReLU'?"),
    "misspelt parameter": (
        "model M(width: int) { fc = Linear(widht, 4) }",
        "undefined name 'widht'; did you mean 'width'?"),
    "unknown keyword of a block": (
        "block B(n: int) { fc = Linear(n, n) }\nmodel M(n: int) { b = B(m=n) }",
        "B() got an unexpected keyword argument 'm'"),
    "a def called as a layer": (
        "def f(v: int) -> int = v\nmodel M(n: int) { a = f(n) }",
        "'f' is function (f()), not a layer"),
    "unknown name in a param": (
        "model M(n: int) { param w = zeroes(n) }",
        "undefined name 'zeroes' in param 'w'; did you mean 'zeros'?"),
    "unknown name in a method": (
        "model M(n: int) {\n fc = Linear(n, n)\n def f(x) = fcc(x)\n"
        " forward(x) = f(x)\n}",
        "undefined name 'fcc' in forward; did you mean 'fc'?"),
    "a layer called in a forward": (
        "model M(n: int) { forward(x) = Linear(n, n)(x) }",
        "undefined name 'Linear' in forward; did you mean 'linear'?"),
    "unknown init function": (
        "model M(n: int) { fc = Linear(n, n)\n init { Linear.weight: norml(0, 1) } }",
        "unknown init function 'norml'; did you mean 'normal'?"),
    "unknown keyword of a declaration written as a call": (
        "model m = Conv2d(kernal_size=3)",
        "Conv2d() got an unexpected keyword argument 'kernal_size'; did you mean 'kernel_size'?"),
    "unknown keyword of an omitted input dimension's layer": (
        "block B(n: int) { conv = Conv2d(n, 3, paddin=1) }",
        "Conv2d() got an unexpected keyword argument 'paddin'; did you mean 'padding'?"),
    "unknown name in a loop not run": (
        "model M(n: int) { for i in range(n) { fc = Linear(i, sizee) } }",
        "undefined name 'sizee'"),
}


@pytest.mark.parametrize(("text", "message"), REPORTED.values(), ids=list(REPORTED))
def test_reported(text: str, message: str, tmp_path: Path) -> None:
    assert _errors(text, tmp_path) == [message]
