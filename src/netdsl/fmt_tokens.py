"""Format's input: spec text -> the tokens the parser read, each with what lies before it.

The formatter works on the token stream (see netdsl/fmt.py): the tokens are written out again
as they were, so the formatted text parses to the same nodes, and only the spaces, line breaks
and indentation between them change. The parser drops whitespace and comments (``%ignore`` in
the grammar); they are read back from the gaps between the tokens, which hold nothing else.
Each token also says whether it begins an item or a statement of a body (from the parse tree),
which decides its indentation when it begins a line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lark import Token, Tree

from .parser import get_parser

COMMENT = re.compile(r"#[^\n]*")

# The trees whose children are the items or statements of a body (or of the file).
_BODIES = frozenset({"start", "body", "stmt_body", "list_block"})
# The trees that continue an if after its closing brace: they begin a line at the body's level.
_BRANCHES = frozenset({"elif_item", "else_item", "elif_stmt", "else_stmt"})


@dataclass(frozen=True)
class Gap:
    """The text between two tokens: line breaks and comments.

    ``trailing`` is a comment on the line of the token before, ``column`` its 0-based column;
    ``lines`` are the whole lines in between, each a comment or None for a blank line.
    """

    breaks: int
    trailing: str | None = None
    column: int = 0
    lines: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class Piece:
    """A token as the formatter writes it."""

    text: str
    type: str
    gap: Gap  # what comes before it
    item: bool = False  # begins an item or a statement
    branch: bool = False  # begins an elif or else


def read_gap(text: str, column: int = 0) -> Gap:
    """What lies between two tokens (only whitespace and comments can); ``column`` is where it
    starts on its line."""
    first, *rest = text.split("\n")
    trailing = COMMENT.search(first)
    lines = [_comment_or_blank(line) for line in rest[:-1]]
    return Gap(breaks=len(rest), trailing=trailing.group().rstrip() if trailing else None,
               column=column + trailing.start() if trailing else 0, lines=tuple(lines))


def _comment_or_blank(line: str) -> str | None:
    found = COMMENT.search(line)
    return found.group().rstrip() if found else None


def read_pieces(text: str) -> tuple[list[Piece], Gap]:
    """The tokens of a spec that parses, and the gap after the last one."""
    parser = get_parser().parse_interactive(text, start="start")
    tokens: list[Token] = parser.exhaust_lexer()
    tree = parser.feed_eof(tokens[-1] if tokens else None)
    items, branches = _starts(tree)
    pieces = []
    end = column = 0
    for token in tokens:
        start = token.start_pos or 0
        # A comment on the first line is a comment line, not one trailing a token.
        before = text[end:start] if pieces else "\n" + text[:start]
        pieces.append(Piece(text=str(token), type=token.type, gap=read_gap(before, column),
                            item=start in items, branch=start in branches))
        end = token.end_pos or start + len(token)
        column = (token.end_column or 1) - 1
    # Likewise a comment on the last line, ended by the end of the file rather than a newline.
    return pieces, read_gap((text[end:] if pieces else "\n" + text) + "\n", column)


def _starts(tree: Tree[Token]) -> tuple[set[int], set[int]]:
    """Where the items and statements of bodies begin, and where elif and else branches do."""
    items: set[int] = set()
    branches: set[int] = set()
    for sub in tree.iter_subtrees():
        if sub.data in _BODIES:
            items |= {child.meta.start_pos for child in sub.children if isinstance(child, Tree)}
        elif sub.data in _BRANCHES:
            branches.add(sub.meta.start_pos)
    return items, branches
