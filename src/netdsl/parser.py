"""Parser: ``.net`` text -> lark tree, the one place where lark's exceptions become NetDSLErrors.

The grammar file is ``grammar/netdsl.lark`` at the top of the repository; wheels carry a copy
inside the package (``netdsl/grammar/netdsl.lark``, see pyproject.toml), and an editable install
reads the checkout's file. The LALR parser is made once per process, from tables shipped beside
the grammar (see build_parser).

Two jobs besides calling lark: the expressions inside f-strings are parsed here (so that a
mistake in one is located like any other), and of the two spellings of ``if`` and ``for`` (a
statement at the start of a line, a conditional expression or a repeat after a value) the one
the parse can go on with is chosen (see the note in the grammar). The messages for Python
habits and lost brackets, given a failed parse or a parsed tree, come from habits.py.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import lark
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.grammar import Rule
from lark.lexer import TerminalDef
from lark.parse_tree_builder import ExpandSingleChild, PropagatePositions

from . import codes, habits
from .errors import NetDSLError, Span

GRAMMAR_NAME = "netdsl.lark"
TABLES_NAME = "netdsl-tables.json"

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
    "AUG_OP": "'+='",
    "$END": "end of file",
}

# The statement and expression spellings of one keyword (see the grammar's note).
_SWAPS = {"IF_STMT": "IF_EXPR", "IF_EXPR": "IF_STMT", "FOR_STMT": "FOR_EXPR",
          "FOR_EXPR": "FOR_STMT",
          # A dtype word where a dtype cannot go is a name (a child named `half`).
          "DTYPE": "NAME"}


def grammar_text() -> str:
    """The grammar, from the installed package or, in a checkout, from ``grammar/``."""
    return _grammar_file(GRAMMAR_NAME).read_text(encoding="utf-8")


def _grammar_file(name: str) -> Traversable:
    packaged = resources.files("netdsl").joinpath("grammar").joinpath(name)
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "grammar" / name


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


# Building the LALR tables from the grammar takes ~0.4 s, in every process; the tables are
# shipped instead (grammar/netdsl-tables.json, made by `python -m netdsl.parser`, and kept current
# by a test) and read in ~25 ms. They are used only when made from this very grammar by this
# lark version; otherwise (an edited grammar in a checkout, another lark) the parser is built.
_OPTIONS: dict[str, Any] = {"parser": "lalr", "propagate_positions": True,
                            "maybe_placeholders": True, "start": ["start", "expr"]}
_CALLBACKS = {"IF_STMT": _strip_break, "FOR_STMT": _strip_break}


def build_parser(*, strict: bool = False) -> Lark:
    """The parser; from the shipped tables when they match the grammar (``strict`` builds)."""
    grammar = grammar_text()
    tables = None if strict else _shipped_tables(grammar)
    if tables is not None:
        parser = Lark._load_from_dict(tables["data"], tables["memo"],
                                      lexer_callbacks=_CALLBACKS)
    else:
        parser = Lark(grammar, strict=strict, lexer_callbacks=_CALLBACKS, **_OPTIONS)
    frontend: Any = parser.parser
    frontend.lexer = _KeywordLexer(frontend.lexer)
    _pass_unit_rules_through(frontend.parser.parser.callbacks)
    return parser


def _pass_unit_rules_through(callbacks: dict[Rule, Any]) -> None:
    """``?arith: term`` and the rest of the expression chain hand their one child up unchanged:
    each argument of ``Linear(64, 64)`` is reduced through a dozen of them. lark's position
    wrapper still recomputes the child's container positions from the child itself at each
    (setting them to what they are), which was a third of the parse of a long file; these
    rules' callbacks become the identity they are."""
    for rule, callback in callbacks.items():
        if (len(rule.expansion) == 1 and isinstance(callback, PropagatePositions)
                and isinstance(callback.node_builder, ExpandSingleChild)):
            callbacks[rule] = _only_child


def _only_child(children: list[Any]) -> Any:
    return children[0]


def _fingerprint(grammar: str) -> dict[str, str]:
    return {"grammar_sha256": hashlib.sha256(grammar.encode("utf-8")).hexdigest(),
            "lark": lark.__version__}


def tables_text(grammar: str) -> str:
    """The LALR tables of ``grammar`` as JSON, with what they were made from."""
    built = Lark(grammar, **_OPTIONS)
    data, memo = built.memo_serialize([TerminalDef, Rule])
    tables = {**_fingerprint(grammar), "data": data, "memo": memo}
    return json.dumps(tables, separators=(",", ":"), sort_keys=True) + "\n"


def read_tables(text: str) -> dict[str, Any]:
    """Tables from their JSON text: JSON's object keys are strings, lark's state and memo keys
    ints (a test parses every example with these and with a parser built afresh)."""
    def keys(pairs: list[tuple[str, Any]]) -> dict[Any, Any]:
        return {int(k) if k.isdigit() else k: v for k, v in pairs}
    found: dict[str, Any] = json.loads(text, object_pairs_hook=keys)
    return found


def _shipped_tables(grammar: str) -> dict[str, Any] | None:
    shipped = _grammar_file(TABLES_NAME)
    if not shipped.is_file():
        return None
    tables = read_tables(shipped.read_text(encoding="utf-8"))
    fingerprint = _fingerprint(grammar)
    if any(tables.get(key) != value for key, value in fingerprint.items()):
        return None
    return tables


def write_tables() -> Path:
    """Make grammar/netdsl-tables.json from grammar/netdsl.lark (in a checkout)."""
    grammar = Path(__file__).resolve().parents[2] / "grammar"
    target = grammar / TABLES_NAME
    target.write_text(tables_text((grammar / GRAMMAR_NAME).read_text(encoding="utf-8")),
                      encoding="utf-8")
    return target


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
    _check_habits(tree, text, path)
    if "f'" in text or 'f"' in text:
        _parse_fstrings(tree, path)
    return tree


def _check_habits(tree: Tree[Token], text: str, path: str, *, start: int = 0,
                  prefixes: bool = True) -> None:
    """A Python spelling that parses is a syntax error too (see habits.hint_for_tree)."""
    hint = habits.hint_for_tree(tree, text, start=start, prefixes=prefixes)
    if hint is not None:
        raise _hint_error(hint, text, path)


def _parse(text: str, path: str, start: str) -> Tree[Token]:
    parser = get_parser()
    try:
        return parser.parse(text, start=start)
    except UnexpectedInput as err:
        raise _syntax_error(err, parser, text, path) from None
    except RecursionError:
        raise NetDSLError("spec is nested too deeply", Span(
            path=path, line=1, column=1, end_line=1, end_column=2), code=codes.SYNTAX) from None


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
    tree = _parse(padded, path, "expr")
    # `self.` only: whether a prefix is a name of the spec is known from the whole file.
    _check_habits(tree, padded, path, start=len(padded) - len(source), prefixes=False)
    return tree


def _fstring_error(message: str, token: Token, column: int, path: str) -> None:
    line = token.line or 1
    raise NetDSLError(f"syntax error in f-string: {message}",
                      Span(path=path, line=line, column=column, end_line=line,
                           end_column=column + 1), code=codes.SYNTAX)


# ---------------------------------------------------------------- messages


def _syntax_error(err: UnexpectedInput, parser: Lark, text: str, path: str) -> NetDSLError:
    hint = habits.hint_for_error(err, parser, text, _error_pos(err, text))
    if hint is not None:
        return _hint_error(hint, text, path)
    line, column = max(err.line, 1), max(err.column, 1)
    width = 1
    if isinstance(err, UnexpectedToken) and err.token.type != "$END":
        token = _strip_break(err.token) if err.token.type in _SWAPS else err.token
        line, column = token.line or line, token.column or column
        width = max(len(str(token)), 1)
    span = Span(path=path, line=line, column=column, end_line=line, end_column=column + width)
    return NetDSLError(_syntax_message(err, parser, text), span, code=codes.SYNTAX)


def _syntax_message(err: UnexpectedInput, parser: Lark, text: str) -> str:
    known = habits.known_mistake(err, parser)
    if known:
        return f"syntax error: {known}"
    if isinstance(err, UnexpectedCharacters):
        char = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        return f"syntax error: unexpected character {char!r}"
    if habits.at_end(err):
        return f"syntax error: unexpected end of file; expected {_expected(err, parser)}"
    assert isinstance(err, UnexpectedToken)
    shown = str(err.token).strip()
    message = f"syntax error: unexpected {shown!r}; expected {_expected(err, parser)}"
    best = habits.misspelt_keyword(err, parser)
    return message + (f"; did you mean '{best}'?" if best else "")


def _error_pos(err: UnexpectedInput, text: str) -> int:
    """Where in the text the parse failed (the end of the text for an unexpected end)."""
    if habits.at_end(err):
        return len(text)
    if isinstance(err, UnexpectedToken):
        token = _strip_break(err.token) if err.token.type in _SWAPS else err.token
        return token.start_pos or 0
    return min(max(getattr(err, "pos_in_stream", 0) or 0, 0), len(text))


def _hint_error(hint: habits.Hint, text: str, path: str) -> NetDSLError:
    message, start, end = hint
    return NetDSLError(f"syntax error: {message}", _span(text, path, start, end),
                       code=codes.SYNTAX)


def _span(text: str, path: str, start: int, end: int) -> Span:
    """The span of ``text[start:end]``, cut at the end of its first line."""
    line_start = text.rfind("\n", 0, start) + 1
    line = text.count("\n", 0, start) + 1
    newline = text.find("\n", start, end)
    end = max(newline if newline >= 0 else end, start + 1)
    column = start - line_start + 1
    return Span(path=path, line=line, column=column, end_line=line,
                end_column=column + end - start)


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


if __name__ == "__main__":  # python -m netdsl.parser: remake the shipped tables
    print(f"wrote {write_tables()}")
