"""The ``netdsl`` command: its arguments; the commands themselves are in netdsl.commands.

Exit codes: 0 every spec is valid, 1 some spec is invalid, 2 usage error (bad flag, missing
file). Diagnostics go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .gain import NONLINEARITIES
from .limits import DEFAULT_LIMITS, MAX_ELEMENTS, Limits

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
FORMATS = ("text", "json", "github", "sarif")  # see netdsl.report
STDIN_HELP = "the spec file; - reads it from stdin"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netdsl", description="netdsl: PyTorch models as specs")
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check_cmd = commands.add_parser(
        "check", help="parse, check and build specs on the meta device; report every error")
    check_cmd.add_argument("files", nargs="+", metavar="FILE", type=Path,
                           help="spec files; - reads one spec from stdin")
    check_cmd.add_argument("--model", help="check this model fully (with -p values)")
    _add_params(check_cmd)
    check_cmd.add_argument("--strict", action="store_true",
                           help="warnings and notes (skipped models, empty files, models "
                                "without input declarations) fail the check")
    _add_format(check_cmd)
    _add_limits(check_cmd)
    _add_modules(check_cmd)
    summary_cmd = commands.add_parser(
        "summary", help="a table of blocks and layers: shapes, parameters, MACs, FLOPs and "
                        "memory (on meta)")
    summary_cmd.add_argument("file", metavar="FILE", type=Path, help=STDIN_HELP)
    summary_cmd.add_argument("--model", help="the model to summarise, when the file has several")
    _add_input(summary_cmd, "replaces the spec's input declarations")
    # 3 is summary.DEFAULT_DEPTH, written out: importing summary would import torch.
    summary_cmd.add_argument("--depth", type=_depth, default=3, metavar="N",
                             help="rows for blocks and containers down to N levels, deeper ones "
                                  "counted in their ancestor's row (default 3, torchinfo's; "
                                  "'all' for every layer)")
    _add_params(summary_cmd)
    _add_format(summary_cmd)
    _add_limits(summary_cmd)
    _add_modules(summary_cmd)
    _add_lab_commands(commands)
    _add_fmt_command(commands)
    _add_graph_command(commands)
    _add_import_command(commands)
    _add_export_command(commands)
    return parser


def _add_export_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export_cmd = commands.add_parser(
        "export", help="write the model as a standalone PyTorch file (nn.Module classes)",
        description="Write the model, for the parameter values given, as a standalone PyTorch "
                    "file: one nn.Module class per model and block, the same children in the "
                    "same order (same state_dict, bitwise-equal weights under the same seed), "
                    "the init rules as loops over self.modules(), the forward as netdsl "
                    "compiles it. The file needs torch (and torchvision where the spec uses its "
                    "layers), not netdsl.")
    export_cmd.add_argument("file", metavar="FILE", type=Path, help=STDIN_HELP)
    export_cmd.add_argument("-o", "--output", default="-", metavar="OUT",
                            help="the Python file to write; - or none prints it to stdout")
    _add_model_flags(export_cmd, "export")


def _add_input(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument("--input", action="append", type=_shape, metavar="SHAPE",
                         help=f"a tensor argument's shape, e.g. N,3,224,224 (once per tensor "
                              f"argument of the forward, in order); {what}")


def _add_model_flags(command: argparse.ArgumentParser, verb: str) -> None:
    """What every command that builds one model of a file takes: which model, its parameters,
    the limits and custom layers."""
    command.add_argument("--model", help=f"the model to {verb}, when the file has several")
    _add_params(command)
    _add_limits(command)
    _add_modules(command)


def _add_fmt_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt_cmd = commands.add_parser(
        "fmt", help="rewrite specs in the canonical layout (comments and blank lines kept)",
        description="Rewrite specs in the canonical layout: 4-space indents, canonical spacing, "
                    "lines wrapped at 100 columns, comments and blank-line groups kept. A spec "
                    "that does not parse is reported and left as it is (exit 1).")
    fmt_cmd.add_argument("files", nargs="+", metavar="FILE", type=Path,
                         help="spec files or directories (their .net files), rewritten in "
                              "place; - formats stdin to stdout")
    fmt_cmd.add_argument("--check", action="store_true",
                         help="write nothing; name the files that would change and exit 1 if any")
    fmt_cmd.add_argument("--diff", action="store_true",
                         help="write nothing; print what would change as a unified diff")


def _add_graph_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    graph_cmd = commands.add_parser(
        "graph", help="a picture of the forward's data flow, shapes on the edges (on meta)",
        description="Draw the forward's data flow: inputs, layers, ops, block calls as clusters, "
                    "loops folded with their repeat count, each edge labelled with its shape. "
                    "Mermaid and DOT are written directly; SVG and PNG through graphviz's dot.")
    graph_cmd.add_argument("file", metavar="FILE", type=Path, help=STDIN_HELP)
    graph_cmd.add_argument("-o", "--output", default="-", metavar="OUT",
                           help="OUT.mmd, OUT.dot, OUT.svg or OUT.png (the format from the "
                                "suffix); - or none prints Mermaid (or --format) to stdout")
    graph_cmd.add_argument("--format", choices=("mermaid", "dot", "svg", "png"),
                           dest="picture", help="the output's format, whatever its suffix")
    _add_input(graph_cmd, "replaces the spec's input declarations")
    graph_cmd.add_argument("--depth", type=functools.partial(_depth, minimum=1), metavar="N",
                           help="draw the blocks and sequentials N levels down as one node "
                                "each (1: the model's children; default all: every level)")
    _add_model_flags(graph_cmd, "draw")


def _add_import_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    import_cmd = commands.add_parser(
        "import", help="write a spec for an nn.Module built by your own Python code",
        description="Build an nn.Module with MODULE:FACTORY (e.g. torchvision.models:resnet18) "
                    "and write a .net spec that builds the same module: containers kept, layers "
                    "with their non-default arguments, repeated structures as blocks with "
                    "parameters, the forward traced with torch.fx. MODULE is imported as "
                    "Python (your own code, named on your command line).")
    import_cmd.add_argument("factory", metavar="MODULE:FACTORY",
                            help="a callable returning the module, e.g. torchvision.models:vgg11")
    import_cmd.add_argument("--arg", action="append", type=_factory_arg, default=[],
                            metavar="NAME=VALUE",
                            help="a keyword argument of the factory, a Python literal or JSON "
                                 "(repeatable): --arg num_classes=10")
    import_cmd.add_argument("-o", "--output", type=Path, metavar="FILE",
                            help="the spec file to write (default: stdout)")
    import_cmd.add_argument("--name", help="the model's name (default: the module's class name)")
    _add_input(import_cmd, "written as the model's input declaration, so that netdsl check "
                           "checks the spec's shapes")


def _factory_arg(text: str) -> tuple[str, object]:
    from .fromtorch_factory import parse_arg  # light: ast and json, no torch

    try:
        return parse_arg(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_lab_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    probe_cmd = commands.add_parser(
        "probe", help="per-layer activation statistics for a standard-normal input")
    probe_cmd.add_argument("files", nargs="+", metavar="FILE", type=Path)
    probe_cmd.add_argument("--input", required=True, type=_int_shape, metavar="SHAPE",
                           help="the input's shape, e.g. 16,256")
    probe_cmd.add_argument("--seed", type=int, help="seed torch before building the model")
    probe_cmd.add_argument("--model")
    _add_params(probe_cmd)
    probe_cmd.add_argument("--backward", action="store_true",
                           help="also report gradient statistics of output.sum()")
    _add_format(probe_cmd)
    probe_cmd.add_argument("--json", action="store_const", const="json", dest="format",
                           help=argparse.SUPPRESS)  # before --format json: kept for scripts
    probe_cmd.add_argument("--plot", type=Path, metavar="PNG",
                           help="write the std per layer, one curve per file, to a PNG")
    _add_limits(probe_cmd)
    _add_modules(probe_cmd)
    gain_cmd = commands.add_parser(
        "gain", help="calculate_gain next to the gain measured on standard-normal samples")
    gain_cmd.add_argument("nonlinearity", choices=sorted(NONLINEARITIES))
    gain_cmd.add_argument("--param", type=float, help="the negative slope of leaky_relu")
    gain_cmd.add_argument("--samples", type=_samples, default=10_000)
    gain_cmd.add_argument("--seed", type=int)
    report_cmd = commands.add_parser(
        "init-report", help="which init rule (or torch default) set each parameter")
    report_cmd.add_argument("file", metavar="FILE", type=Path)
    report_cmd.add_argument("--model")
    _add_params(report_cmd)
    _add_format(report_cmd)
    _add_modules(report_cmd)


_LIMIT_FLAGS = {"max_bytes": "spec size in bytes", "max_depth": "nesting depth",
                "max_tokens": "tokens in one spec file",
                "max_modules": "modules built", "max_params": "parameters on a real device",
                "max_meta_params": "parameters described, on the meta device",
                "max_steps": "steps of work (evaluation, forward ops on sizes, init rules)",
                "max_activation_bytes": "bytes of activations a probe may make",
                "max_errors": "errors reported per file before the check stops",
                "max_seconds": "seconds of one check or load"}
MAX_SAMPLES = 10**8  # gain's samples: 400 MB of float32
# Flags and shapes past this are typing mistakes, not settings; refused as usage errors.
_MAX_FLAG = 2**62


def _add_limits(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group("limits (see docs/security.md)")
    for name, what in _LIMIT_FLAGS.items():
        default = getattr(DEFAULT_LIMITS, name)
        kind = _seconds if isinstance(default, float) else _positive
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind,
                           default=default, metavar="N", help=f"{what} (default {default:,})")


def _add_params(command: argparse.ArgumentParser) -> None:
    command.add_argument("-p", "--param", action="append", type=_param, default=[],
                         metavar="NAME=VALUE", help="a model parameter's value (repeatable)")


def _add_format(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--format", choices=FORMATS, default="text",
        help="text (stderr), json (one object on stdout), github (workflow annotations) or "
             "sarif (a SARIF 2.1.0 log on stdout); see docs/ci.md")


def _add_modules(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--modules", action="append", default=[], metavar="MODULE",
        help="a Python module whose nn.Module classes the specs may use as layers (repeatable; "
             "also read from [tool.netdsl] modules in pyproject.toml)")


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    if value > _MAX_FLAG:
        raise argparse.ArgumentTypeError(f"must be at most 2**62: {text!r}")
    return value


def _samples(text: str) -> int:
    value = _positive(text)
    if value > MAX_SAMPLES:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SAMPLES:,}: {text!r}")
    return value


def _depth(text: str, minimum: int = 0) -> int | None:
    """``--depth``: levels of rows (summary, from 0) or of nodes (graph, from 1); ``all`` for
    no limit."""
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer or 'all': {text!r}") from None
    if not minimum <= value <= _MAX_FLAG:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < _MAX_FLAG:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(**{name: getattr(args, name) for name in _LIMIT_FLAGS})


def _int_shape(text: str) -> list[int]:
    try:
        dims = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: use e.g. 16,256") from None
    if any(d < 0 for d in dims):
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: sizes are not negative")
    for d in dims:
        _size(d, text)
    return dims


def _size(dim: int, text: str) -> int:
    if dim > MAX_ELEMENTS:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: sizes are at most 2**48")
    return dim


def _shape(text: str) -> list[int | str]:
    dims: list[int | str] = []
    for part in text.split(","):
        part = part.strip()
        if part.isdigit():
            dims.append(_size(int(part), text))
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if hasattr(args, "max_bytes"):
        args.limits = _limits(args)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `netdsl init-report ... | head`: the reader has gone
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    if args.command == "fmt":  # without torch: a formatter runs in editors, on every save
        from .fmt_command import run_fmt

        return run_fmt(args)
    from . import commands  # only now: --help and --version stay without torch
    from .config import ConfigError, custom_layers
    from .outcome import Report

    try:
        args.layers = custom_layers(args.modules) if hasattr(args, "modules") else {}
    except ConfigError as err:
        report = Report(getattr(args, "format", "text"))
        report.add_usage(str(err))
        return report.emit()
    runs = {"summary": commands.run_summary, "probe": commands.run_probe,
            "gain": commands.run_gain, "init-report": commands.run_init_report,
            "graph": commands.run_graph, "import": commands.run_import,
            "export": commands.run_export}
    if args.command in runs:
        return runs[args.command](args)
    return commands.run_check(args).exit_code
