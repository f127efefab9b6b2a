"""``netdsl fmt``: properties over generated specs, every example and every docs spec block
(idempotent, the same nodes apart from spans, every comment kept where it was, blank lines
kept), pinned outputs for small inputs, the command line, and a check that the examples and
the docs are formatted.

Comments are read back with lark's own lexer (a ``COMMENT`` callback), not with the formatter's
reading of them; generated specs also know the comments they were given.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark, Token
from lark.lexer import BasicLexer, LexerThread

import netdsl
from netdsl import NetDSLError
from netdsl.cli import main
from netdsl.fmt import SPEC_BLOCK, format_markdown, format_text, is_excerpt
from netdsl.parser import grammar_text

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").rglob("*.net"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SPANS = {"span", "path_span", "target_span"}


def doc_blocks() -> list[tuple[str, str]]:
    """Every complete spec block of the docs, named by file and line."""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in SPEC_BLOCK.finditer(text):
            if not is_excerpt(match.group(1)):
                line = text.count("\n", 0, match.start()) + 2
                found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return found


SOURCES = [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in EXAMPLES]
SOURCES += doc_blocks()


# ---------------------------------------------------------------- the properties


def _without(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without(v) for k, v in value.items() if k not in SPANS}
    if isinstance(value, list):
        return [_without(v) for v in value]
    return value


def nodes(text: str) -> Any:
    return _without(netdsl.parse(text, path="x.net").model_dump())


_COMMENTS: list[Token] = []
# lark's lexer, made once (Lark.lex makes one per call), reporting the comments it skips.
_LEXER = BasicLexer(Lark(grammar_text(), parser="lalr", lexer="basic",
                         lexer_callbacks={"COMMENT": _COMMENTS.append}).lexer_conf)


def comments(text: str) -> list[tuple[str, bool]]:
    """Each comment's text, and whether it ends a line of code (rather than being a line)."""
    _COMMENTS.clear()
    code_lines = {t.end_line for t in LexerThread.from_text(_LEXER, text).lex(None)}
    return [(str(c).rstrip(), c.line in code_lines) for c in _COMMENTS]


def blank_lines(text: str) -> list[bool]:
    """For each pair of neighbouring tokens with no comment between them (and neither a bracket
    on the inner side), whether a blank line separates them."""
    tokens = list(LexerThread.from_text(_LEXER, text).lex(None))
    found = []
    for before, after in itertools.pairwise(tokens):
        # IF_STMT and FOR_STMT carry the line break before them; the gap is what precedes it.
        start = (after.start_pos or 0) + len(after) - len(str(after).lstrip())
        gap = text[before.end_pos:start]
        if "#" not in gap and str(before) not in "([{" and str(after) not in ")]}":
            found.append(gap.count("\n") >= 2)
    return found


def assert_formats_well(text: str) -> str:
    once = format_text(text)
    assert format_text(once) == once, "not idempotent"
    assert nodes(once) == nodes(text), "the nodes changed"
    assert comments(once) == comments(text), "comments lost, reordered or moved"
    assert blank_lines(once) == blank_lines(text), "blank lines added or lost"
    assert "\n\n\n" not in once and not once.startswith("\n")
    assert once.endswith("\n") or not once
    return once


@pytest.mark.parametrize(("name", "text"), SOURCES, ids=[name for name, _ in SOURCES])
def test_every_example_and_docs_spec_formats_well(name: str, text: str) -> None:
    assert_formats_well(text)


# ---------------------------------------------------------------- generated specs
# A spec is drawn as a list of tokens, then joined with drawn spaces, line breaks and comments.
# "if" and "for" of a statement must begin a line, those of an expression may not, and a dtype
# must be on the line of its shape: NL and SAME before a token say so.

NL, SAME = "\x00nl", "\x00same"
NAMES = ["a", "b", "conv", "fc", "x", "planes", "width", "n", "dilation", "in_channels"]
LAYERS = ["Linear", "Conv2d", "ReLU", "BatchNorm2d", "Dropout", "Block"]
Tokens = list[str]
names = st.sampled_from(NAMES)


@st.composite
def atoms(draw: st.DrawFn) -> Tokens:
    return [draw(st.one_of(
        names, st.integers(0, 10**6).map(str),
        st.sampled_from(["0.5", "1e-3", "2.", ".25", '"s"', "'q'", '"a # not a comment"',
                         'f"layer{i + 1}"', "true", "false", "none", "True", "None"])))]


def parens(tokens: Tokens) -> Tokens:
    return tokens if len(tokens) == 1 else ["(", *tokens, ")"]


@st.composite
def exprs(draw: st.DrawFn, depth: int = 2) -> Tokens:
    if depth == 0:
        return draw(atoms())
    kind = draw(st.sampled_from(["atom", "binop", "unary", "compare", "bool", "not", "ifexp",
                                 "call", "index", "slice", "attr", "list", "tuple", "comp"]))
    if kind == "atom":
        return draw(atoms())
    if kind == "call":
        return [draw(names), *draw(arguments(depth - 1))]
    a, b = parens(draw(exprs(depth - 1))), parens(draw(exprs(depth - 1)))
    pick = st.sampled_from
    return {
        "binop": lambda: [*a, draw(pick(["+", "-", "*", "/", "//", "%", "**", "@"])), *b],
        "unary": lambda: [draw(pick(["-", "+"])), *a],
        "compare": lambda: [*a, draw(pick(["<", "<=", "==", "!=", "in", "not in"])), *b],
        "bool": lambda: [*a, draw(pick(["and", "or"])), *b],
        "not": lambda: ["not", *a],
        "ifexp": lambda: [*a, SAME, "if", *b, "else", *a],
        "index": lambda: [draw(names), "[", *a, "]"],
        "slice": lambda: [draw(names), "[", ":", ",", *a, ":", "]"],
        "attr": lambda: [*a, ".", draw(names)],
        "list": lambda: ["[", *a, ",", *b, *draw(pick([[], [","]])), "]"],
        "tuple": lambda: draw(pick([["(", ")"], ["(", *a, ",", ")"], ["(", *a, ",", *b, ")"]])),
        "comp": lambda: ["[", *a, SAME, "for", draw(names), "in", *b, "]"],
    }[kind]()


@st.composite
def arguments(draw: st.DrawFn, depth: int = 1) -> Tokens:
    """A call's arguments: sometimes many (long lists are wrapped), keywords last."""
    count = draw(st.integers(0, 14))
    args: Tokens = ["("]
    for i in range(count):
        if i:
            args.append(",")
        keyword = draw(st.sampled_from(["", "", "kernel_size", "stride", "bias"]))
        star = draw(st.sampled_from([[], [], [], ["*"]]))
        args += [keyword, "="] if keyword and not star else star
        args += draw(exprs(depth))
    return args + draw(st.sampled_from([[], [","]])) * bool(count) + [")"]


@st.composite
def layers(draw: st.DrawFn) -> Tokens:
    return [draw(st.sampled_from(LAYERS)), *draw(arguments())]


@st.composite
def modules(draw: st.DrawFn, depth: int) -> Tokens:
    kind = draw(st.sampled_from(["layer", "layer", "sequential", "list", "dict"] if depth else
                                ["layer"]))
    if kind == "layer":
        return draw(layers())
    if kind == "dict":
        return ["dict", "{", *draw(bodies(depth - 1, named=True)), "}"]
    opener, closer = ("[", "]") if kind == "list" else ("{", "}")
    return [kind, opener, *draw(bodies(depth - 1)), closer]


@st.composite
def items(draw: st.DrawFn, depth: int, named: bool = False) -> Tokens:
    module = modules(depth)
    if named:
        return [draw(names), ":", *draw(module)]
    kind = draw(st.sampled_from(["child", "child", "module", "repeat", "let", "input", "expect",
                                 "forward", "init", "if", "for", "tensor", "tie", "def"]))
    return {
        "child": lambda: [draw(st.sampled_from([*NAMES, '"key"', 'f"layer{i}"'])), "=",
                          *draw(module)],
        "module": lambda: draw(module),
        "repeat": lambda: [*draw(layers()), SAME, "for", "i", "in", "range", "(", "3", ")"],
        "let": lambda: ["let", draw(names), "=", *draw(exprs())],
        "input": lambda: ["input", "x", ":", "[", "N", ",", "3", "]",
                          *draw(st.sampled_from([[], [SAME, "long"]]))],
        "expect": lambda: ["expect", "output", ":", "[", "N", ",", *draw(exprs(1)), "]"],
        "forward": lambda: draw(forwards()),
        "init": lambda: ["init", "{", *draw(rules()), "}"],
        "if": lambda: [NL, "if", *draw(exprs(1)), "{", *draw(bodies(depth - 1)), "}",
                       *draw(st.sampled_from([[], ["elif", "b", "{", "}"]])), "else",
                       "{", *draw(bodies(depth - 1)), "}"],
        "for": lambda: [NL, "for", "i", "in", *draw(exprs(1)), "{", *draw(bodies(depth - 1)),
                        "}"],
        "tensor": lambda: ["buffer", "(", "persistent", "=", "false", ")", "mask", "=",
                           *draw(exprs())],
        "tie": lambda: ["tie", "a", ".", "weight", "=", "b", ".", "weight"],
        "def": lambda: ["def", "f", "(", "x", ",", "y", "=", "2", ")", "->", "int", "=",
                        *draw(exprs())],
    }[kind]()


@st.composite
def bodies(draw: st.DrawFn, depth: int, named: bool = False) -> Tokens:
    tokens: Tokens = []
    for _ in range(draw(st.integers(0, 4))):
        tokens += draw(items(max(depth, 0), named)) + draw(st.sampled_from([[], [","]]))
    if draw(st.booleans()) and not named:
        tokens += ["assert", *draw(exprs(1)), ",", '"a message"']
    return tokens


@st.composite
def rules(draw: st.DrawFn) -> Tokens:
    target = draw(st.sampled_from([["Linear", ".", "weight"], ['"features.*"', ".", "bias"],
                                   ["Module", ".", "*"], ["Block", ".", "bn", ".", "weight"]]))
    return [*target, ":", "normal", *draw(arguments())] * draw(st.integers(0, 3))


@st.composite
def forwards(draw: st.DrawFn) -> Tokens:
    stages = [draw(st.sampled_from([["fc"], ["flatten", "(", "1", ")"], ["a", ".", "b"],
                                    ["relu", "(", "inplace", "=", "true", ")"]]))
              for _ in range(draw(st.integers(1, 12)))]
    pipeline = ["x"] + [t for stage in stages for t in ["->", *stage]]
    if draw(st.booleans()):
        return ["forward", "(", "x", ")", "=", *pipeline]
    statements = [["y", "=", *pipeline], ["y", "+=", *draw(exprs())],
                  ["feats", ".", "append", "(", "y", ")"],
                  [NL, "if", "y", "{", "y", "=", "x", "}", "else", "{", "y", "=", "-", "x", "}"],
                  [NL, "for", "i", "in", "xs", "{", "y", "=", "i", "(", "y", ")", "}"]]
    body = [t for s in draw(st.lists(st.sampled_from(statements), max_size=4)) for t in s]
    return ["forward", "(", "x", ")", "{", *body, "return", "y", "}"]


@st.composite
def params(draw: st.DrawFn) -> Tokens:
    tokens: Tokens = ["("]
    for i, name in enumerate(draw(st.lists(names, max_size=8, unique=True))):
        tokens += [","] * bool(i) + [name] + draw(st.sampled_from(
            [[], [":", "int"], [":", "int", "=", "1"], [":", "list", "=", "[", "1", "]"]]))
    return [*tokens, ")"]


@st.composite
def specs(draw: st.DrawFn) -> Tokens:
    tokens: Tokens = []
    if draw(st.booleans()):
        tokens += ["from", '"blocks.net"', "import", "Block", ",", "Other"]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["model", "block", "let", "alias"]))
        if kind == "let":
            tokens += ["let", "k", "=", *draw(exprs())]
        elif kind == "alias":
            tokens += ["model", "small", "=", *draw(layers())]
        else:
            tokens += [kind, "M", *draw(params()), "{", *draw(bodies(2)), "}"]
    return tokens


# Mostly one space, so that lines grow long enough to be wrapped. A line break may follow
# spaces (which fmt removes, and which do not change how a statement's "if" or "for" reads);
# none goes before the "if" and "for" of expressions, which would begin statements.
SPACES = [" "] * 30 + ["  ", "\t "]
BREAKS = ["\n", "\n\n", "\n\n\n    ", "  {c}\n", "\n{c}\n\n", "\n   {c}\n{c}\n", " \n",
          "\t \n\n  "]


@st.composite
def spec_texts(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A spec's text, and the comments written into it, in order."""
    text: list[str] = []
    written: list[str] = []
    rule = ""
    for token in draw(specs()):
        if token in (NL, SAME):
            rule = token
            continue
        if text:
            choices = {SAME: SPACES, NL: BREAKS}.get(
                rule, SPACES + BREAKS)
            gap = draw(st.sampled_from(choices))
            while "{c}" in gap:
                written.append(f"# c{len(written)} 'x' {{ #")
                gap = gap.replace("{c}", written[-1], 1)
            text.append(gap)
        text.append(token)
        rule = ""
    return "".join(text) + "\n", written


@settings(max_examples=int(os.environ.get("NETDSL_FMT_EXAMPLES", "300")), deadline=None,
          database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec_texts())
def test_generated_specs_format_well(drawn: tuple[str, list[str]]) -> None:
    text, written = drawn
    once = assert_formats_well(text)
    assert [c for c, _ in comments(once)] == written


# ---------------------------------------------------------------- pinned outputs


PINNED = [
    # spacing and indents
    ("model  M(a:int=1,b : float = 2.0,c=3){\nx=Linear( a,b ,bias = false)\n"
     "forward( x )=x->flatten( 1 )->x\n}\n",
     "model M(a: int = 1, b: float = 2.0, c=3) {\n    x = Linear(a, b, bias=false)\n"
     "    forward(x) = x -> flatten(1) -> x\n}\n"),
    # comments stay, runs of blank lines become one, none just inside a block
    ("# head\n\n\nmodel M {   # trailing\n\n  # leading\n\n\n  a = ReLU()  # t\n  \n\n\n"
     "  b = ReLU()\n  # last\n\n}\n# end",
     "# head\n\nmodel M {   # trailing\n    # leading\n\n    a = ReLU()  # t\n\n"
     "    b = ReLU()\n    # last\n}\n# end\n"),
    # operators, slices, prefix operators, star arguments, rule targets, empty bodies
    ("model M {\n let a=-1+2*-b**2\n s = sequential{}\n init{ Module . * : normal( *xs ) }\n"
     " forward(x){ y=x[:,1:-1,::2]\n if not y{ y+=x[ ... ,0] }\n return y }\n}\n",
     "model M {\n    let a = -1 + 2 * -b ** 2\n    s = sequential {}\n"
     "    init { Module.*: normal(*xs) }\n"
     "    forward(x) { y = x[:, 1:-1, ::2]\n        if not y { y += x[..., 0] }\n"
     "        return y }\n}\n"),
    # items side by side: two spaces; commas kept
    ("model M { s = sequential { ReLU() ReLU(), ReLU() } l = list [Linear(2)] }\n",
     "model M { s = sequential { ReLU()  ReLU(), ReLU() }  l = list [ Linear(2) ] }\n"),
    # a long argument list: filled, and aligned after its bracket
    ("block B(c: int) {\n    conv = Conv2d(in_channels, out_channels, kernel_size=3, "
     "stride=stride, padding=dilation, groups=groups, bias=false, dilation=dilation)\n}\n",
     "block B(c: int) {\n    conv = Conv2d(in_channels, out_channels, kernel_size=3, "
     "stride=stride, padding=dilation,\n                  groups=groups, bias=false, "
     "dilation=dilation)\n}\n"),
    # a long one-line body: one item per line
    ("model M {\n    features = sequential { Conv2d(6, 5)  ReLU()  MaxPool2d(2)  Conv2d(16, 5)  "
     "ReLU()  MaxPool2d(2) }\n}\n",
     "model M {\n    features = sequential {\n        Conv2d(6, 5)\n        ReLU()\n"
     "        MaxPool2d(2)\n        Conv2d(16, 5)\n        ReLU()\n        MaxPool2d(2)\n"
     "    }\n}\n"),
    # a long pipeline: broken before "->", lined up with the value
    ("model M {\n    forward(x) = x -> conv1 -> bn1 -> relu -> maxpool -> layer1 -> layer2 -> "
     "layer3 -> layer4 -> avgpool -> flatten(1) -> fc\n}\n",
     "model M {\n    forward(x) = x -> conv1 -> bn1 -> relu -> maxpool -> layer1 -> layer2 -> "
     "layer3 -> layer4\n                 -> avgpool -> flatten(1) -> fc\n}\n"),
    # a hanging bracket, and a long assert broken after its condition
    ("model M {\nd = Linear(\n3,\n2,   # why\n)\nassert version in (\"1_0\", \"1_1\"), "
     "f\"Unsupported SqueezeNet version {version}: 1_0 or 1_1 expected\"\n}\n",
     "model M {\n    d = Linear(\n        3,\n        2,  # why\n    )\n"
     "    assert version in (\"1_0\", \"1_1\"),\n"
     "        f\"Unsupported SqueezeNet version {version}: 1_0 or 1_1 expected\"\n}\n"),
    # comments keep their column where they can (aligned comments stay aligned)
    ("model M {\n    a = ReLU()       # one\n    bc=ReLU( )       # two\n}\n",
     "model M {\n    a = ReLU()       # one\n    bc = ReLU()      # two\n}\n"),
    # spaces ending a line go, and an "if" starting the next one still begins a statement
    ("model M {\n    forward(x) {\n        y = x \t\n        if true { y = y + 1 }\n"
     "        return y\n    }\n}\n",
     "model M {\n    forward(x) {\n        y = x\n        if true { y = y + 1 }\n"
     "        return y\n    }\n}\n"),
    # a bracket opened too far right for its contents to fit after it: a hanging indent
    ("model M {\n    a_very_very_long_name_for_a_layer_attribute_here_that_goes_on_and_on_and_"
     "on_a = Conv2d(in_c, out_c, kernel_size=3, stride=2, padding=1, bias=false)\n}\n",
     "model M {\n    a_very_very_long_name_for_a_layer_attribute_here_that_goes_on_and_on_and_"
     "on_a = Conv2d(\n        in_c, out_c, kernel_size=3, stride=2, padding=1, bias=false)\n}\n"),
    # a comment-only file, and an empty one
    ("  # only a comment", "# only a comment\n"),
    ("\n\n", ""),
]


@pytest.mark.parametrize(("text", "expected"), PINNED)
def test_pinned_outputs(text: str, expected: str) -> None:
    assert format_text(text) == expected
    assert_formats_well(text)


def test_markdown_formats_complete_blocks_only() -> None:
    text = ("# Title\n\n```netdsl\nmodel M {  x=ReLU() }\n```\n\n```netdsl\n"
            "# examples/lenet.net (excerpt)\n  x=ReLU()\n```\n\n```python\nx=1\n```\n")
    assert format_markdown(text) == text.replace("{  x=ReLU() }", "{ x = ReLU() }")


def test_a_spec_that_does_not_parse_is_its_parse_error() -> None:
    with pytest.raises(NetDSLError) as caught:
        format_text("model M {\n    x = Linear(2, 3\n}\n", "bad.net")
    assert str(caught.value) == (
        "bad.net:2:15: syntax error: '(' is not closed: its ')' is missing\n"
        "        x = Linear(2, 3\n"
        "                  ^")


# ---------------------------------------------------------------- the command

UGLY = "model M {\n  x=Linear( 2,3 )   # why\n\n\n\n  forward(x)=x->x\n}\n"
PRETTY = "model M {\n    x = Linear(2, 3)  # why\n\n    forward(x) = x -> x\n}\n"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    ugly, pretty = tmp_path / "ugly.net", tmp_path / "pretty.net"
    ugly.write_text(UGLY)
    pretty.write_text(PRETTY)
    return ugly, pretty


def test_fmt_rewrites_files_in_place_and_names_those_it_changed(
        files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    ugly, pretty = files
    assert main(["fmt", str(ugly), str(pretty)]) == 0
    assert capsys.readouterr().out == f"reformatted {ugly}\n"
    assert ugly.read_text() == PRETTY and pretty.read_text() == PRETTY


def test_fmt_of_a_directory_formats_the_specs_under_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("b.net", "sub/a.net", ".hidden/c.net", "notes.txt"):
        (tmp_path / name).write_text(UGLY)
    assert main(["fmt", "--check", str(tmp_path)]) == 1
    assert capsys.readouterr().out == (f"would reformat {tmp_path / 'b.net'}\n"
                                       f"would reformat {tmp_path / 'sub' / 'a.net'}\n")
    assert main(["fmt", str(tmp_path)]) == 0
    assert (tmp_path / "sub" / "a.net").read_text() == PRETTY
    assert (tmp_path / ".hidden" / "c.net").read_text() == UGLY
    assert (tmp_path / "notes.txt").read_text() == UGLY


def test_fmt_check_names_files_to_reformat_and_fails(
        files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    ugly, pretty = files
    assert main(["fmt", "--check", str(ugly), str(pretty)]) == 1
    assert capsys.readouterr().out == f"would reformat {ugly}\n"
    assert ugly.read_text() == UGLY
    assert main(["fmt", "--check", str(pretty)]) == 0
    assert capsys.readouterr().out == ""


def test_fmt_diff_prints_a_unified_diff(files: tuple[Path, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ugly, _ = files
    assert main(["fmt", "--diff", str(ugly)]) == 0
    assert capsys.readouterr().out == (
        f"--- a/{ugly}\n+++ b/{ugly}\n@@ -1,7 +1,5 @@\n model M {{\n"
        "-  x=Linear( 2,3 )   # why\n+    x = Linear(2, 3)  # why\n \n-\n-\n"
        "-  forward(x)=x->x\n+    forward(x) = x -> x\n }\n")
    assert ugly.read_text() == UGLY


def test_fmt_reads_stdin_and_writes_stdout(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", _Stdin(UGLY))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == PRETTY


def test_fmt_check_of_stdin(monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", _Stdin(UGLY))
    assert main(["fmt", "--check", "-"]) == 1
    assert capsys.readouterr().out == "would reformat <stdin>\n"
    monkeypatch.setattr("sys.stdin", _Stdin(PRETTY))
    assert main(["fmt", "--check", "-"]) == 0
    assert capsys.readouterr().out == ""


def test_fmt_leaves_a_file_that_does_not_parse(
        files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ugly, _ = files
    bad = tmp_path / "bad.net"
    bad.write_text("model M {\n  x = Linear(2, 3\n}\n")
    assert main(["fmt", str(bad), str(ugly)]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"{bad}:2:13: error[NDL001]: syntax error: '(' is not closed: its ')' is missing\n"
        "      x = Linear(2, 3\n"
        "                ^\n")
    assert captured.out == f"reformatted {ugly}\n"
    assert bad.read_text() == "model M {\n  x = Linear(2, 3\n}\n"


def test_fmt_reports_a_file_it_cannot_write(files: tuple[Path, Path],
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ugly, _ = files

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_text", refuse)
    assert main(["fmt", str(ugly)]) == 1
    assert capsys.readouterr().err == f"error[NDL013]: {ugly}: cannot write: Permission denied\n"


def test_fmt_of_a_missing_file_is_a_usage_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fmt", str(tmp_path / "none.net")]) == 2
    assert capsys.readouterr().err == f"netdsl: error: {tmp_path / 'none.net'}: no such file\n"


class _Stdin:
    def __init__(self, text: str):
        self.text = text

    def read(self) -> str:
        return self.text


def test_markdown_errors_point_at_the_markdown_line() -> None:
    with pytest.raises(NetDSLError) as caught:
        format_markdown("# Title\n\n```netdsl\nmodel M {\n    x = Linear(2, 3\n}\n```\n", "d.md")
    assert str(caught.value).startswith("d.md:5:15: syntax error: '(' is not closed")


@pytest.mark.parametrize("path", [*EXAMPLES, *DOCS], ids=[str(p.relative_to(ROOT))
                                                          for p in [*EXAMPLES, *DOCS]])
def test_examples_and_docs_are_formatted(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    name = str(path.relative_to(ROOT))
    formatted = format_markdown(text, name) if path.suffix == ".md" else format_text(text, name)
    assert formatted == text, f"not formatted: run netdsl fmt on {name}"
