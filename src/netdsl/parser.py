"""Parser: ``.net`` text -> lark tree, the one place where lark's exceptions become NetDSLErrors.

The grammar file is ``grammar/netdsl.lark`` at the top of the repository; wheels carry a copy
inside the package (``netdsl/grammar/netdsl.lark``, see pyproject.toml), and an editable install
reads the checkout's file. The LALR parser is built once per process.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .errors import NetDSLError, Span

GRAMMAR_NAME = "netdsl.lark"

# Readable names for the grammar's named terminals in "expected ..." messages.
_TERMINAL_NAMES = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "MODEL": "'model'",
    "BLOCK": "'block'",
    "$END": "end of file",
}

# Known mistakes, recognised by the parser state they leave it in (lark's match_examples).
_KNOWN_MISTAKES = {
    "layer names are torch.nn class names without a prefix: write 'Conv2d(...)', "
    "not 'nn.Conv2d(...)'": [
        "model M { a = nn.Conv2d(1, 1, 1) }",
        "model M { a = sequential { nn.ReLU() } }",
    ],
    "children of a sequential are named with ':' (name: Layer(...)), not '='": [
        "model M { a = sequential { conv = Conv2d(1, 1, 1) } }",
    ],
    "a model's children are assigned with '=' (name = Layer(...)), not ':'": [
        "model M { a: Linear(1, 1) }",
    ],
    "a layer needs parentheses, even without arguments: write 'ReLU()'": [
        "model M { a = ReLU }",
        "model M { a = sequential { ReLU } }",
        "model M { a = sequential { ReLU Linear(1, 1) } }",
    ],
}


def grammar_text() -> str:
    """The grammar, from the installed package or, in a checkout, from ``grammar/``."""
    packaged = resources.files("netdsl").joinpath("grammar").joinpath(GRAMMAR_NAME)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[2] / "grammar" / GRAMMAR_NAME
    return checkout.read_text(encoding="utf-8")


def build_parser(*, strict: bool = False) -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        strict=strict,
    )


@functools.lru_cache(maxsize=1)
def get_parser() -> Lark:
    return build_parser()


def parse_tree(text: str, path: str) -> Tree[Token]:
    """Parse ``text`` into lark's tree; syntax errors become located :class:`NetDSLError`."""
    parser = get_parser()
    try:
        return parser.parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, parser, text, path) from None
    except RecursionError:
        raise NetDSLError("spec is nested too deeply", Span(
            path=path, line=1, column=1, end_line=1, end_column=2)) from None


def _syntax_error(err: UnexpectedInput, parser: Lark, text: str, path: str) -> NetDSLError:
    line, column = max(err.line, 1), max(err.column, 1)
    width = 1
    if isinstance(err, UnexpectedToken) and err.token.type != "$END":
        width = max(len(str(err.token)), 1)
    span = Span(path=path, line=line, column=column, end_line=line, end_column=column + width)
    return NetDSLError(_syntax_message(err, parser, text), span)


def _syntax_message(err: UnexpectedInput, parser: Lark, text: str) -> str:
    known = _known_mistake(err, parser)
    if known:
        return f"syntax error: {known}"
    if isinstance(err, UnexpectedCharacters):
        char = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        return f"syntax error: unexpected character {char!r}"
    if isinstance(err, UnexpectedEOF) or (
        isinstance(err, UnexpectedToken) and err.token.type == "$END"
    ):
        return f"syntax error: unexpected end of file; expected {_expected(err, parser)}"
    assert isinstance(err, UnexpectedToken)
    return f"syntax error: unexpected {str(err.token)!r}; expected {_expected(err, parser)}"


def _known_mistake(err: UnexpectedInput, parser: Lark) -> str | None:
    if not isinstance(err, UnexpectedToken):
        return None
    try:
        return err.match_examples(parser.parse, _KNOWN_MISTAKES, use_accepts=True)
    except UnexpectedInput:  # an example that stopped parsing elsewhere: no match
        return None


# When a name, a number and a string may all come next, the parser wants an expression: say so
# instead of listing every token that can start one.
def _expected(err: UnexpectedInput, parser: Lark) -> str:
    expected = set(getattr(err, "expected", ()) or ())
    names = set()
    if {"NAME", "INT", "FLOAT", "STRING"} <= expected:
        expected = {t for t in expected if not _starts_expression(t, parser)}
        names.add("an expression")
    names |= {_describe_terminal(t, parser) for t in expected}
    return _join_choices(sorted(names))


def _starts_expression(name: str, parser: Lark) -> bool:
    if name in {"NAME", "INT", "FLOAT", "STRING"}:
        return True
    try:
        pattern = parser.get_terminal(name).pattern
    except KeyError:
        return False
    return pattern.type == "str" and pattern.value in {
        "(", "[", "-", "+", "true", "false", "True", "False", "none", "None"}


def _join_choices(names: list[str]) -> str:
    if not names:
        return "something else"
    if len(names) == 1:
        return names[0]
    return "one of " + ", ".join(names)


def _describe_terminal(name: str, parser: Lark) -> str:
    if name in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[name]
    try:
        pattern = parser.get_terminal(name).pattern
    except KeyError:
        return name
    if pattern.type == "str":
        return repr(pattern.value)
    return name.lower()
