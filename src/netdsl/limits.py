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

from .errors import Span, fail


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 1 << 20  # 1 MiB of spec text
    max_depth: int = 100  # nested brackets and blocks
    max_modules: int = 100_000  # layers and containers built
    max_params: int = 10**9  # parameters allocated on a real device
    max_meta_params: int = 10**13  # parameters described, for checks on the meta device
    max_steps: int = 1_000_000  # build-time evaluation: expressions, iterations, calls, bits


DEFAULT_LIMITS = Limits()

# What the depth scan needs to see: brackets, and what can hide brackets (comments, strings).
_TOKENS = re.compile(r"""#[^\n]*|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[(\[{]|[)\]}]|\n""")


def check_size(size: int, limits: Limits, path: str) -> None:
    if size > limits.max_bytes:
        fail(f"spec is {size:,} bytes, over the limit of {limits.max_bytes:,} "
             f"(Limits.max_bytes, netdsl check --max-bytes)", _start(path))


def check_depth(text: str, limits: Limits, path: str) -> None:
    """Fail at the first bracket that nests deeper than the limit; linear in the text."""
    depth, line, line_start = 0, 1, 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token == "\n":
            line, line_start = line + 1, match.end()
        elif token in "([{":
            depth += 1
            if depth > limits.max_depth:
                column = match.start() - line_start + 1
                fail(f"nesting deeper than {limits.max_depth} levels (Limits.max_depth, "
                     f"netdsl check --max-depth)",
                     Span(path=path, line=line, column=column, end_line=line,
                          end_column=column + 1))
        elif token in ")]}":
            depth = max(depth - 1, 0)


def _start(path: str) -> Span:
    return Span(path=path, line=1, column=1, end_line=1, end_column=2)
