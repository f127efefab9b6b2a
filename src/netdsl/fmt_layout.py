"""Format's layout: tokens (netdsl/fmt_tokens.py) -> lines, with the canonical spacing and indents.

Line breaks are the author's, as gofmt keeps them: a token begins a line where it began one in
the source (runs of blank lines become one), and where a line past :data:`WIDTH` columns is
wrapped (netdsl/fmt.py chooses those breaks). Keeping the breaks is also what keeps the meaning:
``if`` and ``for`` at the start of a line begin a statement, after a value they continue it (see
the grammar), so no break is added before one, nor removed before a statement's.

Indentation: 4 spaces per block (``{ }``, and ``list [ ]``); a line that continues an item lines
up with the item's value (after its ``=``), or is indented 4 more when it has none (8 for an
``if`` or a ``for``, whose body follows at 4); inside
brackets a line is aligned just after the opening bracket, or indented 4 more than the
bracket's line when the bracket ends its line.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from .fmt_tokens import Gap, Piece

WIDTH = 100
INDENT = 4
MIN_COMMENT_SPACES = 2

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = frozenset(OPENERS.values())
# Tokens after which "-" and "+" are binary (a value ends there), and before "(" or "[" a call
# or an index (no space between).
_VALUE_TYPES = frozenset({"NAME", "INT", "FLOAT", "STRING", "FSTRING"})
_VALUE_WORDS = frozenset({")", "]", "true", "false", "True", "False", "none", "None", "..."})
_STATEMENT_KEYWORDS = frozenset({"IF_STMT", "FOR_STMT"})
_CALLEE_TYPES = frozenset({"NAME", "MODEL", "BLOCK", "INPUT", "INIT", "EXPECT", "FORWARD",
                           "SEQUENTIAL", "LIST", "DICT", "PARAM", "BUFFER"})


@dataclass
class Open:
    """An open bracket while laying out: where the lines inside it and its closer go."""

    block: bool  # { } or list [ ]: items inside
    inner: int  # the indent of a line inside
    outer: int  # the indent of the closer when it begins a line
    annotated: bool = False  # inside ( ): the current parameter has a type, so its "=" is spaced
    subscript: bool = False  # x[ ]: its ":" are slices
    value: int | None = None  # in a block: the column of the current item's value (after "=")
    header: bool = False  # in a block: the current item is an if, elif or for (a body follows)


@dataclass
class Line:
    """A line of output: its indent, code and trailing comment, and where its tokens start."""

    indent: int
    code: str = ""
    comment: str | None = None
    spaces: int = MIN_COMMENT_SPACES
    columns: dict[int, int] = field(default_factory=dict)  # piece index -> column of its start

    @property
    def width(self) -> int:
        """The columns of the code (a trailing comment is not wrapped, so it does not count)."""
        return self.indent + len(self.code)

    def render(self) -> str:
        indent = " " * self.indent
        if self.comment is None:
            return indent + self.code if self.code else ""
        if not self.code:
            return indent + self.comment
        return f"{indent}{self.code}{' ' * self.spaces}{self.comment}"


def is_block_open(pieces: list[Piece], i: int) -> bool:
    """``{``, or the ``[`` of ``list [ ]`` (whose items are laid out like a block's)."""
    text = pieces[i].text
    return text == "{" or (text == "[" and i > 0 and pieces[i - 1].type == "LIST")


@dataclass
class _Layout:
    pieces: list[Piece]
    breaks: Collection[int]  # where a line break is added (wrapping)
    lines: list[Line] = field(default_factory=list)
    stack: list[Open] = field(default_factory=lambda: [Open(block=True, inner=0, outer=0)])
    eq_spaced: bool = True  # the last "=": the token after it is spaced like it

    def run(self, end: Gap) -> list[Line]:
        for i, piece in enumerate(self.pieces):
            self._before(i, piece.gap)
            self._place(i)
        self._trailing(end)
        self._comments(end, 0, closing=False)
        return self.lines

    # ------------------------------------------------------------ line breaks and comments
    def _before(self, i: int, gap: Gap) -> None:
        self._trailing(gap)
        if gap.breaks or i in self.breaks or not self.lines:
            piece = self.pieces[i]
            indent = self._indent(piece)
            if self._comments(gap, self._comment_indent(piece, indent),
                              closing=piece.text in CLOSERS):
                self._blank()
            self.lines.append(Line(indent))

    def _trailing(self, gap: Gap) -> None:
        """A comment at the end of a line stays in its column (comments aligned in a column
        stay so), or moves right to stay two spaces clear of the code."""
        if gap.trailing is not None:
            line = self.lines[-1]
            line.comment = gap.trailing
            line.spaces = max(gap.column - line.width, MIN_COMMENT_SPACES)

    def _comments(self, gap: Gap, indent: int, *, closing: bool) -> bool:
        """The comment lines of a gap; whether a blank line came after the last of them."""
        blank = False
        for entry in gap.lines:
            if entry is None:
                blank = True
                continue
            if blank:
                self._blank()
            blank = False
            self.lines.append(Line(indent, comment=entry))
        return blank and not closing

    def _blank(self) -> None:
        """One blank line, where one may go: not at the top, not after another (an empty
        line), nor just inside a bracket."""
        last = self.lines[-1] if self.lines else None
        if last is not None and (last.code or last.comment) and not last.code.endswith(
                tuple(OPENERS)):
            self.lines.append(Line(0))

    # ------------------------------------------------------------ indentation
    def _indent(self, piece: Piece) -> int:
        top = self.stack[-1]
        if piece.text in CLOSERS:
            return top.outer
        if not top.block:
            return top.inner
        if piece.item or piece.branch:
            return top.inner
        # An item's continuation lines line up with its value, as the zoo writes pipelines; an
        # if's or a for's are indented twice, to stand apart from the body that follows.
        if top.value is not None:
            return top.value
        return top.inner + INDENT * (2 if top.header else 1)

    def _comment_indent(self, piece: Piece, indent: int) -> int:
        """A comment line before a closer is inside the bracket; otherwise with its token."""
        return self.stack[-1].inner if piece.text in CLOSERS else indent

    def _block_base(self) -> int:
        return next(o.inner for o in reversed(self.stack) if o.block)

    # ------------------------------------------------------------ tokens
    def _place(self, i: int) -> None:
        line = self.lines[-1]
        piece = self.pieces[i]
        top = self.stack[-1]
        if (piece.item or piece.branch) and top.block:
            top.value = None
            top.header = piece.type in _STATEMENT_KEYWORDS or piece.branch
        if line.code:
            line.code += self._space(i)
        line.columns[i] = line.indent + len(line.code)
        if i > 0 and self.pieces[i - 1].text == "=" and top.block and top.value is None:
            top.value = line.columns[i]
        line.code += piece.text
        self._track(i, line)

    def _track(self, i: int, line: Line) -> None:
        """Open and close brackets; note what decides the spacing of later tokens."""
        piece = self.pieces[i]
        top = self.stack[-1]
        if piece.text in OPENERS:
            self.stack.append(self._open(i, line))
        elif piece.text in CLOSERS:
            self.stack.pop()
        elif not top.block and piece.text in (",", ":"):
            top.annotated = piece.text == ":"
        elif piece.text == "=":
            self.eq_spaced = top.block or top.annotated

    def _open(self, i: int, line: Line) -> Open:
        if is_block_open(self.pieces, i):
            base = self._block_base()
            return Open(block=True, inner=base + INDENT, outer=base)
        column = line.indent + len(line.code)
        following = i + 1 < len(self.pieces) and (self.pieces[i + 1].gap.breaks > 0
                                                   or i + 1 in self.breaks)
        subscript = self.pieces[i].text == "[" and i > 0 and _ends_value(self.pieces[i - 1])
        if following:  # a hanging bracket: its lines are indented, not aligned
            return Open(block=False, inner=line.indent + INDENT, outer=line.indent,
                        subscript=subscript)
        return Open(block=False, inner=column, outer=column - 1, subscript=subscript)

    def _space(self, i: int) -> str:
        prev, cur = self.pieces[i - 1], self.pieces[i]
        p, c = prev.text, cur.text
        top = self.stack[-1]
        if cur.item and p != "," and not is_block_open(self.pieces, i - 1):
            return "  "  # items side by side on one line: two spaces, as in the examples
        if c in CLOSERS and p in OPENERS:
            return ""  # (), [], {}
        if c == "." and prev.type in ("INT", "FLOAT"):
            return " "  # 1.real would read as the number 1. and a name
        if (p in ("(", "[") and not is_block_open(self.pieces, i - 1)) or c in (",", ".") \
                or p == ".":
            return ""
        if c in (")", "]") and not top.block:
            return ""
        if p == ",":
            return " "
        if c == ":" or (p == ":" and top.subscript):
            return ""
        if c == "=":
            return " " if top.block or top.annotated else ""
        if p == "=":
            return " " if self.eq_spaced else ""
        if c in ("(", "[") and not is_block_open(self.pieces, i) and _ends_value(prev, c == "("):
            return ""
        return "" if _unary(self.pieces, i - 1) else " "


def _ends_value(piece: Piece, call: bool = False) -> bool:
    """Whether a value ends with this token (so "(" calls it, "[" indexes it, "-" subtracts)."""
    if piece.text in (")", "]"):
        return True
    if call:
        return piece.type in _CALLEE_TYPES
    return piece.type in _VALUE_TYPES or piece.text in _VALUE_WORDS


def _unary(pieces: list[Piece], i: int) -> bool:
    """Whether the operator at ``i`` is a prefix one (``-x``, ``*args``): no space after it."""
    text = pieces[i].text
    if text in ("-", "+"):
        return i == 0 or not _ends_value(pieces[i - 1])
    return text == "*" and i > 0 and pieces[i - 1].text in ("(", ",")


def lay_out(pieces: list[Piece], end: Gap, breaks: Collection[int] = ()) -> list[Line]:
    """The lines of the formatted text, with line breaks added before ``breaks``."""
    return _Layout(pieces, breaks).run(end)
