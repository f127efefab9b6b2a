"""The ``netdsl fmt`` command (the formatter itself is netdsl.fmt). It imports no torch: a
formatter runs in editors and pre-commit hooks, on every save."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .fmt import format_text, unified_diff, write_spec
from .imports import read_spec
from .outcome import EXIT_INVALID, EXIT_OK, Report, attempt, present


def run_fmt(args: argparse.Namespace) -> int:
    """Format each file in place (or check, or show the diff); 1 when --check finds a file to
    reformat or a file does not parse (it is left as it was)."""
    report = Report()
    if not present(report, args.files):
        return report.emit()
    files = [found for path in args.files for found in _specs(path)]
    changed = [attempt(report, path, lambda p=path: _fmt_file(p, args)) for path in files]
    report.emit()
    if report.exit_code == EXIT_OK and args.check and any(changed):
        return EXIT_INVALID
    return report.exit_code


def _specs(path: Path) -> list[Path]:
    """A file as named; a directory as the ``.net`` files under it, in sorted order, skipping
    hidden directories (``.git``, ``.venv``), as black and gofmt walk a tree."""
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.rglob("*.net")
                  if p.is_file() and not any(part.startswith(".")
                                             for part in p.relative_to(path).parts))


def _fmt_file(path: Path, args: argparse.Namespace) -> bool:
    """Format one file (``-``: stdin to stdout); whether formatting changes it."""
    stdin = str(path) == "-"
    name = "<stdin>" if stdin else str(path)
    text = sys.stdin.read() if stdin else read_spec(path)
    formatted = format_text(text, name)
    if args.diff:
        sys.stdout.write(unified_diff(name, text, formatted))
    elif stdin and not args.check:
        sys.stdout.write(formatted)
    elif formatted != text:
        if not args.check:
            write_spec(path, formatted)
        print(f"{'would reformat' if args.check else 'reformatted'} {name}")
    return formatted != text
