"""Errors: one exception type for every user mistake, located in the spec.

Every stage fails through :func:`fail`; ``str(error)`` renders ``path:line:col: message`` followed
by the source line and a caret under the offending span, the way compilers do.
"""

from __future__ import annotations

import difflib
import functools
import itertools
from collections.abc import Iterable, Mapping
from typing import NoReturn, Self

from pydantic import BaseModel, ConfigDict

from . import codes
from .codes import Severity, severity


class Span(BaseModel):
    """Where a node came from: 1-based line and column, end exclusive."""

    model_config = ConfigDict(frozen=True)

    path: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class Diagnostic(Exception):
    """What a check reports about a spec: a message, where, and a code (see netdsl.codes).

    ``path``, ``line`` and ``column`` locate it; ``source_line`` is the text of that line when
    known. ``str()`` gives ``path:line:col: message``, the line and a caret.
    """

    code: str | None = None  # a subclass's code, when every instance has the same one

    def __init__(self, message: str, span: Span | None = None, source_line: str | None = None,
                 *, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.source_line = source_line
        if code is not None:
            self.code = code
        # All the mistakes found in one check, this one first (a check reports them together).
        self.errors: list[NetDSLError] = [self] if isinstance(self, NetDSLError) else []

    @property
    def severity(self) -> Severity:
        return severity(self.code) if self.code else "error"

    @property
    def path(self) -> str | None:
        return self.span.path if self.span else None

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    @property
    def column(self) -> int | None:
        return self.span.column if self.span else None

    def with_source(self, sources: Mapping[str, str]) -> Self:
        """Fill in the source line from the texts of the files involved (keyed by path)."""
        if self.span is not None and self.source_line is None and self.span.path in sources:
            lines = _lines(sources[self.span.path])
            if 0 < self.span.line <= len(lines):
                self.source_line = lines[self.span.line - 1]
        return self

    def render(self, severity: str | None = None) -> str:
        """``path:line:col: [severity[code]: ]message`` plus the source line and a caret."""
        code = f"[{self.code}]" if self.code else ""
        label = f"{severity}{code}: " if severity else ""
        message = _clip(printable(self.message))
        if self.span is None:
            return _no_command(f"{label}{message}")
        head = _no_command(f"{printable(str(self.span))}: {label}{message}")
        if self.source_line is None:
            return head
        return f"{head}\n{_caret_block(printable(self.source_line), self.span)}"

    def __str__(self) -> str:
        return self.render()


class NetDSLError(Diagnostic):
    """A mistake in a spec (or in the parameters given to it), with its location."""


class NetDSLWarning(Diagnostic):
    """A spec that builds but probably not as meant, or a note on what a check could not
    cover: reported by ``check``, never raised (``--strict`` makes it fail the check)."""


class LimitError(NetDSLError):
    """A spec asks for more than a limit allows (see netdsl.limits): it ends the check."""

    code = codes.LIMIT


class InternalError(NetDSLError):
    """A bug in netdsl met while compiling a spec: reported like a spec error, never a traceback."""

    code = codes.INTERNAL


class Usage(Exception):
    """A mistake in how netdsl's Python API was called (not in a spec): a plain TypeError or
    ValueError for the caller, passed through untouched."""


class UsageTypeError(Usage, TypeError):
    pass


class UsageValueError(Usage, ValueError):
    pass


class UnknownKeyError(NetDSLError, KeyError):
    """A forward indexed a ``dict`` block with a key it does not hold (raised at call time)."""

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return self.render()


# Long lines (minified or hostile specs) are shown as a window around the error.
_WINDOW = 120
# A message quoting a huge literal is cut: the check's output stays proportional to its errors.
MAX_MESSAGE = 1000


@functools.lru_cache(maxsize=16)
def _lines(text: str) -> list[str]:
    """A file's lines as the parser counts them, split once for all its errors (a str caches
    its hash, so the lookup does not rescan the text)."""
    return text.split("\n")


def printable(text: str) -> str:
    """Control characters (line breaks, ESC, U+2028) escaped: one printed line stays one line, so
    a spec cannot fake a line of the log. Tabs stay: the caret line expands them."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in text)


def _no_command(line: str) -> str:
    """A line starting with "::" is a GitHub Actions workflow command."""
    return ":\\:" + line[2:] if line.startswith("::") else line


def _clip(text: str) -> str:
    if len(text) <= MAX_MESSAGE:
        return text
    return f"{text[:MAX_MESSAGE]}... ({len(text) - MAX_MESSAGE:,} more characters)"


def _caret_block(source_line: str, span: Span) -> str:
    text = source_line.expandtabs(1).rstrip("\r")
    start = max(span.column - 1, 0)
    if span.end_line == span.line:
        width = max(span.end_column - span.column, 1)
    else:
        width = max(len(text) - start, 1)
    if len(text) > _WINDOW:
        left = max(start - _WINDOW // 3, 0)
        shown = text[left:left + _WINDOW]
        prefix = "..." if left else ""
        suffix = "..." if left + _WINDOW < len(text) else ""
        text = prefix + shown + suffix
        start = start - left + len(prefix)
        width = min(width, len(shown) - (start - len(prefix)))
    return f"    {text}\n    {' ' * start}{'^' * max(width, 1)}"


def fail(message: str, span: Span | None, code: str | None = None) -> NoReturn:
    """Raise a located :class:`NetDSLError` with its code (netdsl.codes): the one way every
    stage reports a mistake."""
    raise NetDSLError(message, span, code=code)


def inert(text: str) -> str:
    """One line of spec text made inert for terminals and CI logs: control characters (line
    breaks too) are escaped, and so is "::", which GitHub Actions reads as a workflow command.
    For names and keys printed in tables (summary, init-report, probe)."""
    return printable(text).replace("::", ":\\:")


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (torch's can run to a C++ stack trace)."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


MAX_CANDIDATES = 500


def _comparable(a: int, b: int) -> bool:
    return 10 * min(a, b) >= 3 * (a + b)


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ``"; did you mean 'x'?"`` suffix naming the closest candidate, or ``""``."""
    # Only names of about the same length can be close (a ratio of 0.6 needs the shorter to be
    # 3/7 of the longer), and at most a few hundred are compared: many errors stay linear.
    pool = list(itertools.islice((c for c in candidates if _comparable(len(c), len(name))),
                                 MAX_CANDIDATES))
    matches = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in pool}
        if name.lower() in lowered:
            matches = [lowered[name.lower()]]
    return f"; did you mean '{matches[0]}'?" if matches else ""
