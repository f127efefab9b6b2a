"""Limits: bounds on what a spec may ask for, checked before anything is allocated.

Specs are data from pull requests and model hubs, so every resource a spec controls is bounded:
its size (checked before parsing), its nesting depth (checked by a linear scan before parsing,
so deep nesting is a clean error and never a RecursionError), the number of modules it builds
(checked before a repeat runs), the work its build-time logic does (loops, functions and
expressions spend steps; a loop longer than the steps left is refused before it starts), and
the parameters it allocates (counted on the meta device before a real build). All are
configurable: ``netdsl.load(..., limits=Limits(max_params=...))`` and
``netdsl check --max-params ...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import codes

if TYPE_CHECKING:
    from .errors import Span

MAX_ELEMENTS = 2**48  # torch's sizes are 64-bit; a shape this wide is a mistake anyway


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 1 << 20  # 1 MiB of spec text
    max_depth: int = 100  # nested brackets and blocks
    max_tokens: int = 400_000  # what the parser reads: its time and memory grow with it
    max_modules: int = 100_000  # layers and containers built
    max_params: int = 10**9  # parameters allocated on a real device
    max_meta_params: int = 10**13  # parameters described, for checks on the meta device
    max_activation_bytes: int = 1 << 32  # what probe's real forward may make (4 GiB)
    max_steps: int = 1_000_000  # work: expressions, iterations, calls, bits, forward ops, rules
    max_errors: int = 100  # errors one check of a file reports before it stops
    max_seconds: float = 60.0  # wall time of one check or load, from opening the spec


DEFAULT_LIMITS = Limits()

# What the scan needs to see: brackets, what can hide brackets (comments, strings), and every
# other token, roughly as the lexer splits them (words and numbers, two-character operators).
_TOKENS = re.compile(r"""#[^\n]*|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[(\[{]|[)\]}]|\n"""
                     r"""|[\w.]+|->|\*\*|//|[=!<>]=|[^\s\w]""")


# netdsl.errors (and pydantic, ~0.1 s) is imported only to report a limit: the CLI reads Limits
# for its flags, and `netdsl --help` should not wait for it.


def check_size(size: int, limits: Limits, path: str) -> None:
    if size > limits.max_bytes:
        from .errors import fail
        fail(f"spec is {size:,} bytes, over the limit of {limits.max_bytes:,} "
             f"(Limits.max_bytes, netdsl check --max-bytes)", _start(path), codes.LIMIT)


def check_depth(text: str, limits: Limits, path: str) -> None:
    """Fail at the first bracket that nests deeper than the limit, or at the token past
    Limits.max_tokens; linear in the text. The parser's time and memory grow with the tokens
    (about 40 us and 2.8 KB each): this bounds them before it starts."""
    depth, line, line_start, tokens = 0, 1, 0, 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token == "\n":
            line, line_start = line + 1, match.end()
            continue
        tokens += 1
        if tokens > limits.max_tokens:
            _fail_at(f"spec has more than {limits.max_tokens:,} tokens (Limits.max_tokens, "
                     f"netdsl check --max-tokens)", path, line, match.start() - line_start + 1)
        if token in "([{":
            depth += 1
            if depth > limits.max_depth:
                _fail_at(f"nesting deeper than {limits.max_depth} levels (Limits.max_depth, "
                         f"netdsl check --max-depth)", path, line, match.start() - line_start + 1)
        elif token in ")]}":
            depth = max(depth - 1, 0)


def _fail_at(message: str, path: str, line: int, column: int) -> None:
    from .errors import Span, fail
    fail(message, Span(path=path, line=line, column=column, end_line=line,
                       end_column=column + 1), codes.LIMIT)


def _start(path: str) -> Span:
    from .errors import Span
    return Span(path=path, line=1, column=1, end_line=1, end_column=2)
