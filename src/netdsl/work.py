"""The work budget: one step counter and one deadline for everything a spec makes netdsl do.

The size limits bound a spec's text; this bounds its work. A spec's loops and functions, its
forward's arithmetic on sizes, the modules it builds, the init rules it applies, all spend from
one :class:`Budget` per file (per :func:`netdsl.check` of a file, per :func:`netdsl.load`), so a
small file cannot make a check run for hours: going over is a located :class:`LimitError` at the
construct that spent the step that was too many. The steps bound the work deterministically; the
deadline is the safety net for work a step does not measure (a torch kernel on meta).
"""

from __future__ import annotations

import contextvars
import gc
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .errors import LimitError, Span
from .limits import DEFAULT_LIMITS, Limits

# Reading the clock costs more than a step: look at it once per this many steps.
_CLOCK_EVERY = 1024


@dataclass
class Budget:
    """Steps of work and modules left to one check, and when its time is up."""

    limit: int
    seconds: float = DEFAULT_LIMITS.max_seconds
    modules_limit: int = DEFAULT_LIMITS.max_modules
    steps: int = 0
    modules: int = 0  # modules planned so far, against Limits.max_modules
    errors_limit: int = DEFAULT_LIMITS.max_errors
    errors: int = 0  # errors collected so far, against Limits.max_errors
    active: list[str] = field(default_factory=list)  # functions being called, innermost last
    started: float = field(default_factory=time.monotonic)
    _next_clock: int = _CLOCK_EVERY

    @classmethod
    def of(cls, limits: Limits) -> Budget:
        return cls(limits.max_steps, limits.max_seconds, limits.max_modules,
                   errors_limit=limits.max_errors)

    def spend(self, steps: int, span: Span | None) -> None:
        self.steps += steps
        if self.steps > self.limit:
            raise LimitError(f"this spec takes more than {self.limit:,} steps to evaluate "
                             f"(Limits.max_steps, netdsl check --max-steps)", span)
        if self.steps >= self._next_clock:
            self._next_clock = self.steps + _CLOCK_EVERY
            self.check_clock(span)

    def check_clock(self, span: Span | None) -> None:
        if time.monotonic() - self.started > self.seconds:
            raise LimitError(f"this spec takes more than {self.seconds:g} seconds to check "
                             f"(Limits.max_seconds, netdsl check --max-seconds)", span)

    def count_error(self, span: Span | None) -> None:
        """One more error to collect; past the limit the check of the file stops instead."""
        self.errors += 1
        if self.errors > self.errors_limit:
            raise LimitError(f"... and more: the check stops after {self.errors_limit:,} errors "
                             f"(Limits.max_errors, netdsl check --max-errors)", span)

    def stop_clock(self) -> None:
        """The build on a real device is torch's work on sizes already checked (max_params): a
        large model's initialisation may take long, and is not a reason to fail."""
        self.seconds = math.inf

    def left(self) -> int:
        return self.limit - self.steps

    def count_modules(self, n_modules: int, span: Span, *, reserve: bool = True) -> None:
        """Count modules as they are planned; a repeat asks first, so a huge one fails at once."""
        if reserve:
            self.modules += n_modules
        if self.modules + (0 if reserve else n_modules) > self.modules_limit:
            raise LimitError(f"this builds more than {self.modules_limit:,} modules "
                             f"(Limits.max_modules, netdsl check --max-modules)", span)


_CURRENT: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("netdsl_budget",
                                                                        default=None)


def current() -> Budget | None:
    """The budget of the check or load under way, if any."""
    return _CURRENT.get()


@contextmanager
def session(limits: Limits) -> Iterator[Budget]:
    """One budget for one file's check or one load; nested sessions share the outer one."""
    outer = _CURRENT.get()
    if outer is not None:
        yield outer
        return
    budget = Budget.of(limits)
    token = _CURRENT.set(budget)
    try:
        with _collector_paused():
            yield budget
    finally:
        _CURRENT.reset(token)


# A check makes ~40 objects per line of spec that live until it ends (lark's tree, nodes, plans):
# the cyclic collector, run every 700 new objects, walks them all again and again (at Python's
# default setting it was half the time of a check of a 1 MiB spec, and at a gen-0 threshold of
# 100,000 still a third). A session makes next to no cyclic garbage (its peak memory on that spec
# is the same with the collector off), so the collector is paused while it runs and put back as
# it was after.
@contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def spend(steps: int, span: Span | None) -> None:
    """Spend from the current budget; outside a session (a tool's own build) nothing counts."""
    budget = _CURRENT.get()
    if budget is not None:
        budget.spend(steps, span)


def count_modules(n_modules: int, span: Span) -> None:
    budget = _CURRENT.get()
    if budget is not None:
        budget.count_modules(n_modules, span)


__all__ = ["Budget", "count_modules", "current", "session", "spend"]
