"""Outcome: what one run of a command found, in every format, and its exit code.

Shared by every command, and free of torch: ``netdsl fmt`` (run by editors and pre-commit
hooks) reports through it without importing what the model commands need.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .errors import Diagnostic, NetDSLError
from .report import Record, as_json, emit, record, usage

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")


@dataclass
class Report:
    """What a run found, in every format; owns the exit code."""

    fmt: str = "text"
    strict: bool = False
    checked: int = 0
    invalid: int = 0  # files with errors (a file that cannot be read has errors without a span)
    missing: int = 0
    records: list[Record] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # rendered, for the text format
    usage_errors: list[str] = field(default_factory=list)

    def add(self, found: Sequence[Diagnostic], path: str | None) -> bool:
        """Diagnostics of one file; whether any is an error (all are, under --strict)."""
        for item in found:
            self.records.append(record(item, path, self.strict))
            self.texts.append(item.render("error" if self.strict else item.severity))
        return any(self.strict or isinstance(item, NetDSLError) for item in found)

    def add_usage(self, message: str, path: str | None = None) -> None:
        self.usage_errors.append(message)
        self.records.append(usage(message, path))
        self.texts.append(f"netdsl: error: {message}")

    @property
    def tables(self) -> bool:
        """Whether a command prints its table: json and sarif are one log on stdout."""
        return self.fmt in ("text", "github")

    @property
    def exit_code(self) -> int:
        if self.usage_errors:
            return EXIT_USAGE
        return EXIT_INVALID if any(r.severity == "error" for r in self.records) else EXIT_OK

    def emit(self, result: dict[str, object] | None = None) -> int:
        """Print the diagnostics (and a command's result, for JSON) in the chosen format."""
        if self.fmt == "json":
            body = {**(result or {}), "diagnostics": as_json(self.records)}
            print(json.dumps(strict_json(body), indent=2, allow_nan=False))
        else:
            emit(self.records, self.fmt, self.texts)
        return self.exit_code

    def counts(self) -> str:
        valid = self.checked - self.invalid
        parts = [f"{valid} valid"] + [f"{n} {what}" for n, what in (
            (self.invalid, "invalid"), (self.missing, "missing")) if n]
        notes = [f"{n} {what}{'s' if n != 1 else ''}" for n, what in (
            (self._severity("warning"), "warning"), (self._severity("note"), "note")) if n]
        return ", ".join(parts) + (f" ({', '.join(notes)})" if notes else "")

    def _severity(self, level: str) -> int:
        return sum(r.severity == level for r in self.records)


def present(report: Report, files: Sequence[Path]) -> bool:
    """Whether every file exists; each missing one is a usage error of the report."""
    for path in files:
        if str(path) != "-" and not path.exists():
            report.add_usage(f"{path}: no such file", str(path))
            report.missing += 1
    return not report.missing


def attempt(report: Report, path: Path, call: Callable[[], T]) -> T | None:
    """Run one command on a file; its spec errors go to the report."""
    try:
        return call()
    except NetDSLError as err:
        report.add(err.errors, str(path))
        return None


def write_output(output: str, data: bytes) -> None:
    """Bytes to the file ``output``, or to stdout for ``-``."""
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(output).write_bytes(data)


def strict_json(value: object) -> object:
    """NaN and infinities as strings ("nan", "inf"): strict JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict_json(v) for v in value]
    return value
