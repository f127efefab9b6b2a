"""The ``netdsl`` command: thin argument handling over :mod:`netdsl.api`.

Exit codes: 0 every spec is valid, 1 some spec is invalid, 2 usage error (bad flag, missing
file). Diagnostics go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .api import check, summary
from .errors import NetDSLError
from .summary import render

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


@dataclass
class Report:
    """What a run found; owns the exit code."""

    checked: int = 0
    errors: list[NetDSLError] = field(default_factory=list)
    usage_errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.usage_errors:
            return EXIT_USAGE
        return EXIT_INVALID if self.errors else EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netdsl", description="netdsl: PyTorch models as specs")
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check_cmd = commands.add_parser(
        "check", help="parse, check and build specs on the meta device; report every error")
    check_cmd.add_argument("files", nargs="+", metavar="FILE", type=Path)
    check_cmd.add_argument("--format", choices=["text", "json"], default="text",
                           help="json prints one object with every diagnostic to stdout")
    summary_cmd = commands.add_parser(
        "summary", help="a table of layers, output shapes and parameter counts (on meta)")
    summary_cmd.add_argument("file", metavar="FILE", type=Path)
    summary_cmd.add_argument("--model", help="the model to summarise, when the file has several")
    summary_cmd.add_argument("--input", action="append", type=_shape, metavar="SHAPE",
                             help="a tensor input's shape, e.g. N,3,224,224 (once per tensor "
                                  "argument; replaces the spec's input declarations)")
    summary_cmd.add_argument("-p", "--param", action="append", type=_param, default=[],
                             metavar="NAME=VALUE", help="override a model parameter")
    summary_cmd.add_argument("--format", choices=["text", "json"], default="text")
    return parser


def _shape(text: str) -> list[int | str]:
    dims: list[int | str] = []
    for part in text.split(","):
        part = part.strip()
        if part.isdigit():
            dims.append(int(part))
        elif part.isidentifier():
            dims.append(part)
        else:
            raise argparse.ArgumentTypeError(f"bad shape {text!r}: use e.g. N,3,224,224")
    return dims


def _param(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"bad parameter {text!r}: use NAME=VALUE")
    value: object = raw
    for convert in (int, float):
        try:
            value = convert(raw)
            break
        except ValueError:
            continue
    if raw in ("true", "false"):
        value = raw == "true"
    return name, value


def run_summary(args: argparse.Namespace) -> int:
    if not args.file.exists():
        print(f"netdsl: error: {args.file}: no such file", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = summary(args.file, model=args.model, inputs=args.input, **dict(args.param))
    except NetDSLError as err:
        for each in err.errors:
            print(_safe(each.render("error")), file=sys.stderr)
        return EXIT_INVALID
    if args.format == "json":
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(render(result))
    return EXIT_OK


def run_check(files: Sequence[Path], fmt: str) -> Report:
    report = Report()
    for path in files:
        if not path.exists():
            report.usage_errors.append(f"netdsl: error: {path}: no such file")
            continue
        report.checked += 1
        report.errors += check(path)
    for message in report.usage_errors:
        print(message, file=sys.stderr)
    if fmt == "json":
        print(json.dumps(_as_json(report), indent=2))
    else:
        for err in report.errors:
            print(_safe(err.render("error")), file=sys.stderr)
        if not report.usage_errors:
            bad = len({e.path for e in report.errors})
            summary = f"{report.checked - bad} valid, {bad} invalid" if bad else \
                f"{report.checked} valid"
            print(f"netdsl: {summary}", file=sys.stderr)
    return report


def _as_json(report: Report) -> dict[str, object]:
    return {
        "checked": report.checked,
        "errors": [{"path": e.path, "line": e.line, "column": e.column, "message": e.message}
                   for e in report.errors],
    }


def _safe(text: str) -> str:
    """Escape control characters from spec text so that terminals and CI logs show them inert."""
    return "".join(c if c in "\n" or c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "summary":
            return run_summary(args)
        return run_check(args.files, args.format).exit_code
    except KeyboardInterrupt:
        return 130
