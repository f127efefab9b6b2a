"""Parser: ``.net`` text -> lark tree, the one place where lark's exceptions become NetDSLErrors.

The grammar file is ``grammar/netdsl.lark`` at the top of the repository; wheels carry a copy
inside the package (``netdsl/grammar/netdsl.lark``, see pyproject.toml), and an editable install
reads the checkout's file. The LALR parser is built once per process.

Two jobs besides calling lark: the expressions inside f-strings are parsed here (so that a
mistake in one is located like any other), and of the two spellings of ``if`` and ``for`` (a
statement at the start of a line, a conditional expression or a repeat after a value) the one
the parse can go on with is chosen (see the note in the grammar).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

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
    "FSTRING": "an f-string",
    "IF_STMT": "'if'",
    "IF_EXPR": "'if'",
    "FOR_STMT": "'for'",
    "FOR_EXPR": "'for'",
    "DTYPE": "a dtype",
    "$END": "end of file",
}

# The statement and expression spellings of one keyword (see the grammar's note).
_SWAPS = {"IF_STMT": "IF_EXPR", "IF_EXPR": "IF_STMT", "FOR_STMT": "FOR_EXPR",
          "FOR_EXPR": "FOR_STMT",
          # A dtype word where a dtype cannot go is a name (a child named `half`).
          "DTYPE": "NAME"}

# Known mistakes, recognised by the parser state they leave it in (lark's match_examples).
_KNOWN_MISTAKES = {
    "layer names are torch.nn class names without a prefix: write 'Conv2d(...)', "
    "not 'nn.Conv2d(...)'": [
        "model M { a = nn.Conv2d(1, 1, 1) }",
        "model M { a = sequential { nn.ReLU() } }",
    ],
    "a layer needs parentheses, even without arguments: write 'ReLU()'": [
        "model M { a = ReLU }",
        "model M { a = sequential { ReLU } }",
        "model M { a = sequential { ReLU Linear(1, 1) } }",
    ],
    "a block of items needs braces: write 'if condition { ... }' (there is no ':' "
    "after the condition)": [
        "model M { if a: b = ReLU() }",
        "model M { forward(x) { if a: x = x } }",
    ],
    "a conditional expression is written 'a if condition else b', on one line with its "
    "value; an 'if' that starts a line starts an if-item": [
        "model M { let a = b\n if c else d }",
        "model M { forward(x) { y = x\n if c else x\n return y } }",
    ],
    "a conditional value is written 'a if condition else b' (an if with braces is an item or "
    "a statement, not a value)": [
        "model M { let a = if true { 1 } else { 2 } }",
        "model M { a = Linear(1, if true { 1 } else { 2 }) }",
        "model M { forward(x) { y = if a { x } else { x } return y } }",
    ],
    "a tuple is written in parentheses: let a, b = (1, 2)": [
        "model M { let a, b = 1, 2 }",
        "model M { let a = 1, 2 }",
        "model M { forward(x) { a, b = x, x\n return a } }",
    ],
    "on the line of a module, 'for' makes a repeat ('Layer(...) for i in range(n)', no "
    "braces); a for loop item ('for v in values { ... }') starts on a line of its own": [
        "model M { s = sequential { Linear(2, 2) for i in range(2) { ReLU() } } }",
    ],
    "a call's result is assigned to a name (y = fc(x)); only a list's append and extend "
    "stand alone": [
        "model M { forward(x) { fc(x) return x } }",
    ],
    "a for loop item needs a body in braces ('for v in values { ... }'); a repeat "
    "('Layer(...) for i in range(n)') is an item of a list or sequential, with its 'for' on "
    "the line of its item": [
        "model M { a = list [ Linear(1, 1)\n for i in range(3) ] }",
        "model M { a = sequential { ReLU()\n for i in range(3) } }",
        "model M { a = Linear(1, 1) for i in range(3) }",
    ],
    "'init' starts an init block: init { Linear.weight: normal(0.0, 0.02) }; a param is "
    "initialised in its own expression, as torchvision writes it: "
    "param p = empty(n).normal_(std=0.02)": [
        "model M { param p = empty(3) init normal(std=0.02) }",
    ],
}


def grammar_text() -> str:
    """The grammar, from the installed package or, in a checkout, from ``grammar/``."""
    packaged = resources.files("netdsl").joinpath("grammar").joinpath(GRAMMAR_NAME)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[2] / "grammar" / GRAMMAR_NAME
    return checkout.read_text(encoding="utf-8")


def _strip_break(token: Token) -> Token:
    """``IF_STMT`` / ``FOR_STMT`` match the line break before the keyword: place them on it."""
    raw = str(token)
    word = raw.lstrip(" \t\f\r\n")
    skipped = raw[:len(raw) - len(word)]
    if not skipped:
        return token
    breaks = skipped.count("\n")
    line = (token.line or 1) + breaks
    column = len(skipped) - skipped.rfind("\n") if breaks else (token.column or 1) + len(skipped)
    start = (token.start_pos or 0) + len(skipped)
    return Token(token.type, word, start_pos=start, line=line, column=column, end_line=line,
                 end_column=column + len(word), end_pos=start + len(word))


def build_parser(*, strict: bool = False) -> Lark:
    parser = Lark(
        grammar_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        strict=strict,
        start=["start", "expr"],
        lexer_callbacks={"IF_STMT": _strip_break, "FOR_STMT": _strip_break},
    )
    frontend: Any = parser.parser
    frontend.lexer = _KeywordLexer(frontend.lexer)
    return parser


class _KeywordLexer:
    """lark's contextual lexer, choosing between the two spellings of ``if`` and ``for``.

    The contextual lexer offers the terminals of the parser's current LALR state, and LALR
    merges states, so a spelling can be offered where the parse cannot go on with it
    (``(a\n if c else b)``). Each ``if`` / ``for`` token is tried on a copy of the parser state;
    if only the other spelling goes on, the token becomes that one. lark's ``on_error`` would
    come too late: by then the parser has reduced past the point where the other fits.
    """

    def __init__(self, inner: Any):
        self.inner = inner

    def lex(self, lexer_state: Any, parser_state: Any) -> Iterator[Token]:
        last_line = 0
        for token in self.inner.lex(lexer_state, parser_state):
            other = _SWAPS.get(token.type)
            # An input's dtype is on the line of its shape; on the next line the word begins
            # the next item (`half = Linear(4, 2)`).
            next_line = token.type == "DTYPE" and token.line > last_line
            if other is not None and (next_line or not _takes(parser_state, token)) and _takes(
                    parser_state, Token.new_borrow_pos(other, str(token), token)):
                token = Token.new_borrow_pos(other, str(token), token)
            last_line = token.end_line or token.line
            yield token

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _takes(parser_state: Any, token: Token) -> bool:
    """Whether the parser can shift ``token`` now (tried on a copy, building no tree)."""
    trial = parser_state.copy(deepcopy_values=False)
    trial.parse_conf = copy.copy(parser_state.parse_conf)
    trial.parse_conf.callbacks = {}
    try:
        trial.feed_token(token)
    except UnexpectedToken:
        return False
    return True


@functools.lru_cache(maxsize=1)
def get_parser() -> Lark:
    return build_parser()


def parse_tree(text: str, path: str) -> Tree[Token]:
    """Parse ``text`` into lark's tree; syntax errors become located :class:`NetDSLError`."""
    tree = _parse(text, path, "start")
    if "f'" in text or 'f"' in text:
        _parse_fstrings(tree, path)
    return tree


def _parse(text: str, path: str, start: str) -> Tree[Token]:
    parser = get_parser()
    try:
        return parser.parse(text, start=start)
    except UnexpectedInput as err:
        raise _syntax_error(err, parser, text, path) from None
    except RecursionError:
        raise NetDSLError("spec is nested too deeply", Span(
            path=path, line=1, column=1, end_line=1, end_column=2)) from None


# ---------------------------------------------------------------- f-strings


def _parse_fstrings(tree: Tree[Token], path: str) -> None:
    for sub in tree.iter_subtrees():
        if sub.data == "fstring":
            token = sub.children[0]
            assert isinstance(token, Token)
            sub.children = _fstring_parts(token, path)  # type: ignore[assignment]


def _fstring_parts(token: Token, path: str) -> list[Token | Tree[Token]]:
    """``f"a{i + 1}b"`` -> text, expression tree, text. ``{{`` and ``}}`` are braces."""
    body = str(token)[2:-1]
    base = (token.column or 1) + 2  # column of the body's first character
    parts: list[Token | Tree[Token]] = []
    text: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            text.append(body[i:i + 2])
            i += 2
        elif body.startswith("{{", i) or body.startswith("}}", i):
            text.append(ch)
            i += 2
        elif ch == "}":
            _fstring_error("single '}' is not allowed; write '}}' for a brace", token, base + i,
                           path)
        elif ch == "{":
            end = body.find("}", i)
            if end < 0:
                _fstring_error("'{' is not closed", token, base + i, path)
            if not body[i + 1:end].strip():
                _fstring_error("empty expression in braces", token, base + i, path)
            spec = _format_spec(body[i + 1:end])
            if spec >= 0:
                _fstring_error("format specs and conversions ({x:3}, {x!r}) are not supported",
                               token, base + i + 1 + spec, path)
            parts.append(Token("FSTRING_TEXT", "".join(text)))
            text = []
            parts.append(_fstring_expr(body[i + 1:end], token, base + i + 1, path))
            i = end + 1
        else:
            text.append(ch)
            i += 1
    parts.append(Token("FSTRING_TEXT", "".join(text)))
    return parts


def _format_spec(source: str) -> int:
    """Where a ``:`` or ``!`` outside brackets starts a format spec, or -1."""
    depth = 0
    for i, ch in enumerate(source):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and (ch == ":" or (ch == "!" and source[i + 1:i + 2] != "=")):
            return i
    return -1


def _fstring_expr(source: str, token: Token, column: int, path: str) -> Tree[Token]:
    # Padded so that lark counts lines and columns as they are in the file.
    padded = "\n" * ((token.line or 1) - 1) + " " * (column - 1) + source
    return _parse(padded, path, "expr")


def _fstring_error(message: str, token: Token, column: int, path: str) -> None:
    line = token.line or 1
    raise NetDSLError(f"syntax error in f-string: {message}",
                      Span(path=path, line=line, column=column, end_line=line,
                           end_column=column + 1))


# ---------------------------------------------------------------- messages


def _syntax_error(err: UnexpectedInput, parser: Lark, text: str, path: str) -> NetDSLError:
    line, column = max(err.line, 1), max(err.column, 1)
    width = 1
    if isinstance(err, UnexpectedToken) and err.token.type != "$END":
        token = _strip_break(err.token) if err.token.type in _SWAPS else err.token
        line, column = token.line or line, token.column or column
        width = max(len(str(token)), 1)
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
    shown = str(err.token).strip()
    return f"syntax error: unexpected {shown!r}; expected {_expected(err, parser)}"


def _known_mistake(err: UnexpectedInput, parser: Lark) -> str | None:
    if not isinstance(err, UnexpectedToken) or err.state is None:
        return None
    return _mistake_states().get((err.state.position, err.token.type))


# lark's match_examples compares the whole parser stack, so an example matches only a mistake
# at the same nesting depth after the same number of items; the state alone says enough.
@functools.lru_cache(maxsize=1)
def _mistake_states() -> dict[tuple[Any, str], str]:
    """The parser state and token at which each known mistake's examples fail."""
    states: dict[tuple[Any, str], str] = {}
    for message, examples in _KNOWN_MISTAKES.items():
        for example in examples:
            try:
                get_parser().parse(example, start="start")
            except UnexpectedToken as err:
                if err.state is not None:
                    states.setdefault((err.state.position, err.token.type), message)
            except UnexpectedInput:
                continue
    return states


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
    if name in {"NAME", "INT", "FLOAT", "STRING", "FSTRING"}:
        return True
    try:
        pattern = parser.get_terminal(name).pattern
    except KeyError:
        return False
    return pattern.type == "str" and pattern.value in {
        "(", "[", "-", "+", "true", "false", "True", "False", "none", "None", "not", "..."}


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
