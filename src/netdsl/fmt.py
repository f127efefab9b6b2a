"""``netdsl fmt``: spec text -> the same spec in the canonical layout.

A token-stream formatter: the tokens the parser read are written out again unchanged, with the
canonical spaces and indents between them (netdsl/fmt_layout.py) and the comments where they
were (netdsl/fmt_tokens.py); lines past 100 columns are wrapped here. So formatting cannot
change what a spec means, and a spec that does not parse is refused with the parse error.

Wrapping a long line breaks it at the shallowest place that can take a break, as far to the
right as still fits: a ``{ ... }`` body written on one line is opened up, one item per line;
before a ``->``; after a comma (an assert's message, an argument or parameter list; the deeper
in brackets, the later tried). Continuation lines follow the layout's rules (aligned after the
opening bracket, or with the item's value outside brackets).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from . import codes, imports
from .errors import NetDSLError
from .fmt_layout import CLOSERS, OPENERS, WIDTH, Line, is_block_open, lay_out
from .fmt_tokens import Piece, read_pieces

# A spec block of the docs (tests/test_docs.py finds them with this too).
SPEC_BLOCK = re.compile(r"```netdsl\n(.*?)```", re.S)


def format_text(text: str, path: str = "<string>") -> str:
    """The formatted text of a spec; a spec that does not parse raises its NetDSLError."""
    try:
        imports.parse(text, path)
    except NetDSLError as err:
        for each in (err, *err.errors):
            each.with_source({path: text})
        raise
    pieces, end = read_pieces(text)
    nesting = _nesting(pieces)
    breaks: set[int] = set()
    while True:
        lines = lay_out(pieces, end, breaks)
        added = {b for line in lines if line.width > WIDTH
                 for b in _wrap(line, pieces, nesting)}
        if not added:
            return "".join(line.render().rstrip() + "\n" for line in lines)
        breaks |= added


def is_excerpt(block: str) -> bool:
    """A docs block that is part of a spec ("(excerpt)" on its first line, or a "..." line)."""
    lines = block.splitlines()
    return bool(lines) and ("(excerpt)" in lines[0] or any(x.strip() == "..." for x in lines))


def format_markdown(text: str, path: str = "<string>") -> str:
    """A markdown text with its complete ```netdsl spec blocks formatted (excerpts kept)."""
    def formatted(match: re.Match[str]) -> str:
        block = match.group(1)
        if is_excerpt(block):
            return match.group(0)
        # Padded so that an error points at the line of the markdown file; the blank lines at
        # the top are not kept.
        padding = "\n" * (text.count("\n", 0, match.start()) + 1)
        return f"```netdsl\n{format_text(padding + block, path)}```"
    return SPEC_BLOCK.sub(formatted, text)


# ---------------------------------------------------------------- wrapping


@dataclass(frozen=True)
class _Nesting:
    """Where brackets are: fixed by the tokens, whatever the layout."""

    depth: list[int]  # open ( ) and [ ] around each token
    closer: dict[int, int]  # block opener -> its closer
    block: list[int]  # the innermost block opener around each token (-1: the file)
    bracket: list[int]  # the innermost opener of any kind around each token (-1: the file)


def _nesting(pieces: list[Piece]) -> _Nesting:
    depth: list[int] = []
    closer: dict[int, int] = {}
    block: list[int] = []
    bracket: list[int] = []
    stack: list[int] = []
    for i, piece in enumerate(pieces):
        if piece.text in OPENERS.values() and stack:
            opener = stack.pop()
            if is_block_open(pieces, opener):
                closer[opener] = i
        blocks = [o for o in stack if is_block_open(pieces, o)]
        block.append(blocks[-1] if blocks else -1)
        bracket.append(stack[-1] if stack else -1)
        depth.append(len(stack) - len(blocks))
        if piece.text in OPENERS:
            stack.append(i)
    return _Nesting(depth, closer, block, bracket)


@dataclass(frozen=True)
class _Candidate:
    depth: int
    column: int  # where the line is cut
    breaks: frozenset[int]


def _wrap(line: Line, pieces: list[Piece], nesting: _Nesting) -> frozenset[int]:
    """The breaks that wrap a long line: the shallowest candidate that fits, the last of those;
    when none fits, the first (the line gets shorter, and its rest is wrapped next)."""
    candidates = _candidates(line, pieces, nesting)
    if not candidates:
        return _hanging(line, pieces) or frozenset()
    fitting = [c for c in candidates if c.column <= WIDTH]
    if fitting:
        best = min(fitting, key=lambda c: (c.depth, -c.column))
    else:
        hanging = _hanging(line, pieces)
        if hanging is not None:
            return hanging
        best = min(candidates, key=lambda c: (c.depth, c.column))
    if len(best.breaks) == 1:
        return _filled(line, pieces, nesting, min(best.breaks))
    return best.breaks


def _hanging(line: Line, pieces: list[Piece]) -> frozenset[int] | None:
    """When no break fits, a break just after the first bracket opened on the line, whose
    contents then go on the next lines indented 4 more than the bracket's line (black's
    hanging indent): aligned after a bracket opened far right, they could not fit."""
    for i in sorted(line.columns):
        opens = pieces[i].text in ("(", "[") and not is_block_open(pieces, i)
        if opens and i + 1 in line.columns and pieces[i + 1].text not in CLOSERS \
                and line.columns[i] + 1 <= WIDTH:
            return frozenset({i + 1})
    return None


def _filled(line: Line, pieces: list[Piece], nesting: _Nesting, first: int) -> frozenset[int]:
    """A break after a comma in a bracket opened on this line, and the breaks that fill the
    bracket's next lines in the same way. Its lines are aligned just after the bracket, so
    where they go is known now: a long list wraps in one pass, rather than in one pass (over
    the whole file) per line. Other breaks are left to the next pass."""
    opener = nesting.bracket[first - 1]
    if (pieces[first - 1].text != "," or opener not in line.columns
            or is_block_open(pieces, opener)):
        return frozenset({first})
    indent = line.columns[opener] + 1
    breaks = [first]
    shift = line.columns[first] - indent  # how far left the tokens of the current line move
    last_fit = None  # the last break that keeps the current line within the width
    for i in sorted(j for j in line.columns if j > first):
        if pieces[i - 1].text != "," or nesting.bracket[i - 1] != opener:
            continue
        if line.columns[i - 1] + 1 - shift > WIDTH and last_fit is not None:
            breaks.append(last_fit)
            shift = line.columns[last_fit] - indent
        last_fit = i if line.columns[i - 1] + 1 - shift <= WIDTH else None
        if last_fit is None:  # an argument too long for a line aligned after the bracket
            return _hanging(line, pieces) or frozenset(breaks)
    if last_fit is not None and line.width - shift > WIDTH:
        breaks.append(last_fit)
    return frozenset(breaks)


def _candidates(line: Line, pieces: list[Piece], nesting: _Nesting) -> list[_Candidate]:
    found = []
    on_line = sorted(line.columns)
    for i in on_line[1:]:
        cut = line.columns[i - 1] + len(pieces[i - 1].text)
        # Commas between items are the opened body's; other commas outside brackets (an
        # assert's message, a return's values) may take a break too.
        comma = pieces[i - 1].text == "," and not pieces[i].item
        if comma or pieces[i].text == "->":
            found.append(_Candidate(nesting.depth[i], cut, frozenset({i})))
        closer = nesting.closer.get(i)
        if closer is not None and closer in line.columns and closer > i + 1:
            found.append(_Candidate(nesting.depth[i], line.columns[i] + 1,
                                    _opened_body(i, closer, pieces, nesting)))
    return found


def _opened_body(opener: int, closer: int, pieces: list[Piece], nesting: _Nesting
                 ) -> frozenset[int]:
    """The breaks that put each item of a one-line body on a line of its own."""
    items = {j for j in range(opener + 2, closer)
             if pieces[j].item and nesting.block[j] == opener}
    return frozenset({opener + 1, closer} | items)


def write_spec(path: Path, text: str) -> None:
    """Write a formatted spec back; a file that cannot be written is an error, not a traceback."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise NetDSLError(f"{path}: cannot write: {err.strerror or err}",
                          code=codes.FILE) from None


def unified_diff(name: str, before: str, after: str) -> str:
    """The change formatting makes, as ``diff -u`` (and ``git apply``) read it."""
    return "".join(difflib.unified_diff(before.splitlines(keepends=True),
                                        after.splitlines(keepends=True),
                                        f"a/{name}", f"b/{name}"))
