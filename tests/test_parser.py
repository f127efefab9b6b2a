"""The grammar and the parser: strict LALR build, layout rules, the AST and its JSON form."""

from __future__ import annotations

import itertools
import string
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lark.exceptions import UnexpectedInput, UnexpectedToken
from pydantic import BaseModel

import netdsl
from netdsl import codes
from netdsl import nodes as n
from netdsl import parser as parser_module
from netdsl.habits import _Scan
from netdsl.parser import build_parser, grammar_text

ROOT = Path(__file__).resolve().parents[1]

LENET = """\
# LeNet
model LeNet(classes: int = 10) {
    features = sequential { Conv2d(3, 6, 5) ReLU() MaxPool2d(2, 2) }
    classifier = sequential {
        Linear(16 * 5 * 5, 120),
        ReLU(),
        Linear(120, classes),   # trailing comma, comment
    }
    forward(x) = x -> features -> flatten(1) -> classifier
}
"""


def test_grammar_builds_in_strict_mode() -> None:
    # strict=True turns every shift/reduce or regex collision into an error.
    build_parser(strict=True)


def test_grammar_file_is_the_shipped_one() -> None:
    assert grammar_text().startswith("// The netdsl language")


def test_the_shipped_tables_are_made_from_this_grammar() -> None:
    # If this fails, the grammar (or lark) changed: run `python -m netdsl.parser`.
    assert parser_module._shipped_tables(grammar_text()) is not None, \
        "grammar/netdsl-tables.json is stale: run python -m netdsl.parser"


def test_the_shipped_tables_parse_as_a_parser_built_from_the_grammar() -> None:
    # LALR state numbers differ from build to build (set order), so compare what they parse:
    # every spec in the repository, and the error each bad case gets.
    shipped, built = parser_module.get_parser(), build_parser(strict=True)
    texts = [p.read_text(encoding="utf-8") for p in sorted(ROOT.glob("**/*.net"))
             if ".venv" not in p.parts]
    assert len(texts) > 100
    for text in texts:
        assert _outcome(shipped, text) == _outcome(built, text)


def test_the_parser_is_read_from_the_tables_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unbuildable(parser_module.Lark):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("built the LALR tables")

    monkeypatch.setattr(parser_module, "Lark", Unbuildable)
    parsed = build_parser().parse("model A { Linear(3, 4) }", start="start")
    assert parsed.data == "start"


def _outcome(parser: Any, text: str) -> object:
    try:
        return parser.parse(text, start="start")
    except UnexpectedInput as err:
        return (type(err).__name__, err.line, err.column, sorted(err.expected)
                if isinstance(err, UnexpectedToken) else None)


def test_parse_returns_nodes_with_spans() -> None:
    spec = netdsl.parse(LENET, path="lenet.net")
    (model,) = spec.models
    assert model.kind == "model" and model.name.name == "LeNet"
    assert [p.name.name for p in model.params] == ["classes"]
    assert [c.name.name for c in model.children] == ["features", "classifier"]
    features = model.children[0]
    assert isinstance(features.module, n.Sequential)
    assert [m.name.name for m in features.module.items] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert (features.span.line, features.span.column) == (3, 5)
    assert features.module.items[2].span.column == 52


def test_crlf_blank_lines_and_comments_parse_the_same() -> None:
    crlf = "\r\n\r\n".join(LENET.splitlines()) + "\r\n"
    a = netdsl.parse(LENET, path="x.net")
    b = netdsl.parse(crlf, path="x.net")
    strip = {"span", "path_span", "target_span"}
    assert _without(a.model_dump(), strip) == _without(b.model_dump(), strip)


def test_commas_are_optional_and_may_trail() -> None:
    with_commas = "model M { s = sequential { Linear(1, 2,), ReLU(), } d = dict { a: ReLU(), } }"
    without = "model M { s = sequential { Linear(1, 2) ReLU() } d = dict { a: ReLU() } }"
    strip = {"span"}
    assert _without(netdsl.parse(with_commas).model_dump(), strip) == _without(
        netdsl.parse(without).model_dump(), strip)


def test_spec_round_trips_through_json() -> None:
    spec = netdsl.parse(LENET, path="lenet.net")
    again = n.Spec.model_validate_json(spec.model_dump_json())
    assert again == spec


def test_literals() -> None:
    spec = netdsl.parse(
        'model M { let a = (1_000, 2.5e-3, .5, "s\\"q", \'x\', true, False, none, [1, 2]) }')
    let = spec.models[0].body[0]
    assert isinstance(let, n.Let) and isinstance(let.value, n.TupleExpr)
    values = [i.value if isinstance(i, n.Constant) else None for i in let.value.items]
    assert values == [1000, 0.0025, 0.5, 's"q', "x", True, False, None, None]
    assert type(values[5]) is bool and type(values[0]) is int


def test_operator_precedence() -> None:
    spec = netdsl.parse("model M { let a = 1 + 2 * -3 ** 2 }")
    value = spec.models[0].body[0].value  # type: ignore[union-attr]
    assert isinstance(value, n.BinOp) and value.op == "+"
    assert isinstance(value.right, n.BinOp) and value.right.op == "*"
    assert isinstance(value.right.right, n.UnaryOp)


def test_pipeline_is_left_associative() -> None:
    spec = netdsl.parse("model M { forward(x) = x -> a -> flatten(1) }")
    ret = spec.models[0].forwards[0].body[0]
    assert isinstance(ret, n.Return) and isinstance(ret.value, n.Pipeline)
    assert isinstance(ret.value.source, n.Pipeline)
    assert isinstance(ret.value.stage, n.Call)


# ------------------------------------------------------------------ properties

_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s not in {"model", "block", "from", "import", "let", "sequential", "list", "dict",
                        "for", "in", "range", "forward", "return", "init", "true", "false",
                        "none"})


@settings(max_examples=200, deadline=None)
@given(widths=st.lists(st.integers(1, 4096), min_size=2, max_size=6), name=_names,
       commas=st.booleans(), newline=st.sampled_from(["\n", "\r\n", " "]))
def test_generated_sequentials_parse_to_their_layers(widths: list[int], name: str,
                                                     commas: bool, newline: str) -> None:
    sep = "," + newline if commas else newline
    layers = sep.join(f"Linear({a}, {b})" for a, b in itertools.pairwise(widths))
    spec = netdsl.parse(f"model M {{{newline}{name} = sequential {{ {layers} }}{newline}}}")
    seq = spec.models[0].children[0].module
    assert isinstance(seq, n.Sequential)
    got = [[a.value for a in item.args] for item in seq.items]  # type: ignore[union-attr]
    assert got == [[a, b] for a, b in itertools.pairwise(widths)]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable, max_size=80))
def test_any_text_parses_or_fails_with_a_location(text: str) -> None:
    try:
        netdsl.parse(text)
    except netdsl.NetDSLError as err:
        assert err.line is not None and err.line >= 1
        assert err.column is not None and err.column >= 1
        assert str(err).startswith(f"<string>:{err.line}:{err.column}: ")


def _without(data: object, keys: set[str]) -> object:
    if isinstance(data, dict):
        return {k: _without(v, keys) for k, v in data.items() if k not in keys}
    if isinstance(data, list):
        return [_without(v, keys) for v in data]
    return data


# ------------------------------------------------------------------ Python habits
# (The messages themselves are in tests/cases/errors/habit_*.)

def _syntax_error(text: str) -> netdsl.NetDSLError:
    try:
        netdsl.parse(text, path="x.net")
    except netdsl.NetDSLError as err:
        return err
    raise AssertionError(f"parsed: {text!r}")


@pytest.mark.parametrize("text", [
    "model M { a = Linear(1, 1)\n b = nn.Linear(1, 1) }",
    "model M { forward(x) = x -> self.fc }",
    "model M { a = sequential { ReLU()\n}",
    "model M { a = Linear(1, 1) // one\n}",
    "model M { f = lambda x: x }",
    "model M { task x = Linear(1, 1) }",
    "model M { a = Linear(1, 1) $ }",
    'model M { f"{i:3}" = Linear(1, 1) }',
])
def test_every_syntax_error_has_the_syntax_code(text: str) -> None:
    assert _syntax_error(text).code == codes.SYNTAX


@pytest.mark.parametrize("text", [
    # Words near a keyword or an op (task, stack) are names: a child, a variable.
    "model M { task = Linear(1, 1)\n forward(x) { stack = task(x)\n return stack } }",
    # A prefix the spec defines as a name is that name: the forward's checks judge it.
    "model M { fc = Linear(2, 2)\n forward(x) { F = fc(x)\n return F.relu() } }",
    # '//' where it continues an expression is floor division.
    "model M(n: int = 8) { let a = n // 2\n fc = Linear(a, 2)\n forward(x) = x // 2 }",
    # A method and a forward written as the spec writes them.
    "model M { fc = Linear(2, 2)\n def head(x) = fc(x)\n forward(x) = head(x) }",
])
def test_spellings_that_look_like_habits_still_parse(text: str) -> None:
    netdsl.parse(text)


def test_a_word_is_not_corrected_to_an_unrelated_keyword() -> None:
    # 'task' is close to the op 'stack' and to 'assert', but neither makes sense there.
    item = _syntax_error("model M { task x = Linear(1, 1) }")
    assert "did you mean" not in item.message and item.column == 11
    statement = _syntax_error("model M { forward(x) { task x } }")
    assert "did you mean" not in statement.message and statement.column == 24
    # A slip of a keyword that fits the position is suggested.
    assert _syntax_error("model M { lte x = 1 }").message.endswith("did you mean 'let'?")
    assert _syntax_error("modle M { }").message.endswith("did you mean 'model'?")


def test_an_unclosed_brace_is_found_in_linear_time() -> None:
    body = "".join(f"    c{i} = Linear(1, 1)  # (\n" for i in range(2_000))
    text = "model M {\n    a = sequential {\n        ReLU()\n" + body + "}\n"
    err = _syntax_error(text)
    assert (err.line, err.column) == (2, 20)
    assert err.message == "syntax error: '{' is not closed: its '}' is missing"
    # The bracket scan is one pass over the text: a spec of 1 MiB is scanned at once.
    big = "model M {\n    a = sequential {\n" + "    s = sequential { ReLU() }\n" * 35_000
    start = time.perf_counter()
    scan = _Scan(big, len(big))
    assert time.perf_counter() - start < 2
    assert [at for _, at, _ in scan.open] == [8, 29]


def test_the_transform_makes_the_nodes_validation_would() -> None:
    """The transform builds nodes without pydantic's validation (issue 12): on every spec in the
    repository they equal the nodes validated from their own dump, and hold no lark tokens (a
    Token is a str, so equality alone would not tell)."""
    specs = []
    for path in sorted(ROOT.glob("**/*.net")):
        if ".venv" in path.parts:
            continue
        try:
            specs.append(netdsl.parse(path.read_text(encoding="utf-8"), path=str(path)))
        except netdsl.NetDSLError:
            continue
    assert len(specs) > 100
    for spec in specs:
        assert n.Spec.model_validate(spec.model_dump()) == spec, spec.path
        assert not [v for v in _values(spec) if type(v) is not str and isinstance(v, str)]


def _values(root: object) -> list[object]:
    found: list[object] = []
    stack = [root]
    while stack:
        value = stack.pop()
        found.append(value)
        if isinstance(value, BaseModel):
            stack += [getattr(value, name) for name in type(value).model_fields]
        elif isinstance(value, (list, tuple)):
            stack += value
    return found


@pytest.mark.parametrize("end", [" ", "\t", "  \t ", " \r"])
def test_spaces_ending_a_line_do_not_change_how_if_and_for_read(end: str) -> None:
    """``if`` and ``for`` starting a line begin a statement (a loop item in a sequential), with
    or without invisible spaces ending the line before."""
    forward = ("model M {\n    forward(x) {\n        y = x<end>\n        if true { y = y + 1 }\n"
               "        return y\n    }\n}\n")
    loop = ("model M {\n    s = sequential {\n        ReLU()<end>\n"
            "        for i in range(2) { ReLU() }\n    }\n}\n")
    for text in (forward, loop):
        plain = netdsl.parse(text.replace("<end>", ""))
        spaced = netdsl.parse(text.replace("<end>", end))
        assert _without(spaced.model_dump(), {"span", "path_span", "target_span"}) == \
            _without(plain.model_dump(), {"span", "path_span", "target_span"})
