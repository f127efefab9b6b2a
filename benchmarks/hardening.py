"""netdsl hardening: wall time, CPU time and peak memory of ``netdsl check`` on specs at the limits.

The counterpart of ``scale.py`` for hostile input, and built from its helpers (imported from it):
every measurement is a fresh ``python`` process started by a launcher that imports neither torch
nor netdsl, reaped with ``os.wait4`` for that child's own ``rusage``; cases run interleaved, round
by round, and the table shows medians. Here a run is right when its exit code and the first line
of its stderr are the expected ones, so ``check`` runs with the default text output.

Rows (the specs are generated into a temporary directory; the CLI runs as ``python -m netdsl``,
with the default limits, ``Limits.max_bytes`` = 1,048,576 and ``Limits.max_depth`` = 100, unless
the row says otherwise):

1. baseline: ``python -c "import torch, netdsl"``; the interpreter and the imports, nothing else.
2. a valid spec of just under 1 MiB (1,048,575 bytes, one under ``max_bytes``): one model whose
   ``sequential`` is 45,583 lines ``Linear(64, 64)`` written out (the lines of scale.py's deep
   spec), with ``expect output`` and ``expect params``, padded with a comment to the byte. It
   builds 45,584 modules (the layers and their sequential), under ``Limits.max_modules``
   (100,000). Expected: exit 0,
   ``netdsl: 1 valid``.
3. junk of just under 1 MiB (1,048,575 bytes): random printable ASCII (0x20-0x7e, fixed seed),
   one line, no newline. Expected: exit 1 with a located syntax error (``junk.net:1:COL: error:
   syntax error ...``) and a short stderr (long lines are shown as a window).
4. 100,000-deep nesting, three ways; expected: exit 1 at once, from the limit named:
   - ``model M { a = sequential { a: sequential { ... ReLU() ... } } }`` with 100,000 levels of
     ``sequential``: 1,800,024 bytes, so the size limit fires, before a byte is read;
   - the same file with ``--max-bytes 2000000``: the size limit passes, the depth scan fires;
   - 100,000 parentheses around an argument, ``Linear(64, ((( ... 64 ... ))))``: 200,080
     bytes, under the size limit with the default limits, so the depth scan fires.
   (At a depth of a few levels both texts are valid specs.)

5. the denial-of-service lines of issue 10 (``dos_specs.py``: forward arithmetic on sizes, forward
   loops, ``round``, string inputs, recurrent layers on a symbolic sequence, module, error, rule,
   literal, token, buffer, activation and init-loop budgets): each must end within the default
   work budget with its expected located error, or be valid; their stderr may hold up to 100
   errors (64 KiB).

Each row is also shown net of the baseline (its median minus the baseline's median), with the
limit that fired as read from the first line of stderr (size, depth, syntax; valid for exit 0).
A run that exceeds ``--timeout`` seconds or ``--max-rss-mb`` of RSS is killed and reported.

Usage::

    .venv/bin/python benchmarks/hardening.py            # full run (3 rounds), readable table
    .venv/bin/python benchmarks/hardening.py --quick    # smoke run: 1 round
    .venv/bin/python benchmarks/hardening.py --json     # the same results as one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dos_specs import DOS
from scale import (
    DEEP_FEATURES,
    Run,
    deep_params,
    finish,
    fmt,
    launcher_rss_mb,
    model_text,
    spread,
    version_of,
    wait,
)
from scale import Limits as RunLimits  # timeout and RSS of a run, not netdsl's Limits
from scale import Row as ScaleRow

MAX_BYTES = 1 << 20  # netdsl.limits.Limits.max_bytes (not imported: that would import torch)
MAX_DEPTH = 100  # netdsl.limits.Limits.max_depth
NEAR_LIMIT = MAX_BYTES - 1  # "just under the limit": the size check fails only above max_bytes
NEST_LEVELS = 100_000
RAISED_MAX_BYTES = 2_000_000  # past the deep-blocks file, so that its depth scan is reached
JUNK_SEED = 0
MAX_DOS_STDERR = 64 * 1024  # 100 errors of three lines each, at most (Limits.max_errors)


# ------------------------------------------------------------------ the specs


def big_layers() -> int:
    """How many ``Linear(64, 64)`` lines fit in a spec of NEAR_LIMIT bytes."""
    per_line = len(f"        Linear({DEEP_FEATURES}, {DEEP_FEATURES})\n")
    room = NEAR_LIMIT - len(big_body(0).encode()) - 16  # 16: the digits of expect params grow
    return room // per_line


def big_body(layers: int) -> str:
    line = f"        Linear({DEEP_FEATURES}, {DEEP_FEATURES})"
    block = ["    layers = sequential {", *([line] * layers), "    }"]
    return model_text("Big", DEEP_FEATURES, block, deep_params(layers))


def big_spec() -> str:
    """A valid spec of exactly NEAR_LIMIT bytes: the model, then a comment as padding."""
    body = big_body(big_layers())
    pad = NEAR_LIMIT - len(body.encode())
    assert 0 < pad < 100, pad
    return body + ("#" * (pad - 1) + "\n" if pad > 1 else "\n")


def junk_spec() -> str:
    """NEAR_LIMIT random printable ASCII characters, no newline."""
    alphabet = [chr(c) for c in range(0x20, 0x7F)]
    return "".join(random.Random(JUNK_SEED).choices(alphabet, k=NEAR_LIMIT))


def nest_blocks_spec(levels: int = NEST_LEVELS) -> str:
    inner = " a: sequential {" * (levels - 1)
    return f"model M {{\n    a = sequential {{{inner} ReLU(){' }' * levels}\n}}\n"


def nest_parens_spec(levels: int = NEST_LEVELS) -> str:
    return "\n".join([
        "model M {",
        f"    input x: [N, {DEEP_FEATURES}]",
        f"    a = Linear({DEEP_FEATURES}, {'(' * levels}{DEEP_FEATURES}{')' * levels})",
        "    forward(x) = x -> a",
        "}",
        "",
    ])


SPECS = {"big.net": big_spec, "junk.net": junk_spec, "nest_blocks.net": nest_blocks_spec,
         "nest_parens.net": nest_parens_spec}


def write_specs(directory: Path) -> dict[str, int]:
    """Write every spec; returns each one's size in bytes."""
    sizes = {}
    makers = {**SPECS, **{dos.spec: dos.text for dos in DOS}}
    for name, make in makers.items():
        data = make().encode()
        (directory / name).write_bytes(data)
        sizes[name] = len(data)
    assert sizes["big.net"] == sizes["junk.net"] == NEAR_LIMIT, sizes
    assert sizes["nest_blocks.net"] > MAX_BYTES >= sizes["nest_parens.net"], sizes
    return sizes


# ------------------------------------------------------------------ cases, runs and results


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]  # after the interpreter
    spec: str | None  # the spec file's name, None for the baseline
    code: int  # the expected exit code
    stderr: str | None  # a regex the first line of stderr must match, None: anything
    baseline: bool = False
    max_stderr: int = 4096  # bytes: an error on a 1 MiB line must not echo the line


@dataclass(frozen=True)
class CheckRun(Run):
    code: int | None  # None if killed
    stderr_head: str  # the first line of stderr
    stderr_bytes: int


@dataclass
class Row(ScaleRow):
    code: int | None = None  # the last run's
    stderr_head: str = ""
    stderr_bytes: int = 0
    fired: str = "-"  # the limit that stopped the check, read from stderr_head


def depth_error(spec: str) -> str:
    return rf"{re.escape(spec)}:\d+:\d+: error: nesting deeper than {MAX_DEPTH} levels "


def cases() -> list[Case]:
    def check(spec: str, *flags: str) -> list[str]:
        return ["-m", "netdsl", "check", spec, *flags]

    levels = f"{NEST_LEVELS:,}"
    return [
        Case("baseline: import torch, netdsl", ["-c", "import torch, netdsl"], None, 0, None,
             baseline=True),
        Case("valid, 1 MiB (Linear lines)", check("big.net"), "big.net", 0,
             r"netdsl: 1 valid$"),
        Case("junk, 1 MiB, one line", check("junk.net"), "junk.net", 1,
             r"junk\.net:1:\d+: error: syntax error"),
        Case(f"nest {levels} blocks", check("nest_blocks.net"), "nest_blocks.net", 1,
             rf"nest_blocks\.net:1:1: error: spec is [\d,]+ bytes, over the limit of "
             rf"{MAX_BYTES:,} "),
        Case(f"nest {levels} blocks, --max-bytes", check(
            "nest_blocks.net", "--max-bytes", str(RAISED_MAX_BYTES)), "nest_blocks.net", 1,
             depth_error("nest_blocks.net")),
        Case(f"nest {levels} parens in an argument", check("nest_parens.net"),
             "nest_parens.net", 1, depth_error("nest_parens.net")),
        *(Case(dos.name, ["-m", "netdsl", *dos.command, dos.spec, *dos.after], dos.spec,
               dos.code, dos.stderr, max_stderr=MAX_DOS_STDERR) for dos in DOS),
    ]


def run_once(case: Case, directory: Path, limits: RunLimits) -> CheckRun:
    """One fresh ``python`` process; stdout and stderr go to files, read once it has exited."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, *case.argv], cwd=directory, stdout=out,
                                 stderr=err, stdin=subprocess.DEVNULL)
        code, usage, killed = wait(child, start, limits)
        wall = time.perf_counter() - start
        err.seek(0)
        stderr = err.read()
    text = stderr.decode(errors="replace")
    head = next((line for line in text.splitlines() if _netdsl_line(line)), "")
    rss = usage.ru_maxrss / 1024  # Linux: KiB
    failure = killed or outcome(case, code, head, text, len(stderr))
    if failure is None and rss > limits.max_rss_mb:
        failure = f"peak RSS {rss:.0f} MB is over the {limits.max_rss_mb:.0f} MB limit"
    return CheckRun(wall, usage.ru_utime + usage.ru_stime, rss, failure,
                    None if killed else code, head, len(stderr))


def _netdsl_line(line: str) -> bool:
    """Not a line of a torch warning (``/.../x.py:1: UserWarning: ...`` and its source line)."""
    return bool(line.strip()) and not line.startswith(" ") and "Warning: " not in line


def outcome(case: Case, code: int, head: str, stderr: str, size: int) -> str | None:
    if code != case.code:
        return f"exit code {code}, expected {case.code}; stderr: {stderr.strip()[-1000:]}"
    if case.stderr is not None and not re.match(case.stderr, head):
        return f"first line of stderr {head[:300]!r} does not match {case.stderr!r}"
    if not case.baseline and size > case.max_stderr:
        return f"stderr is {size:,} bytes, over {case.max_stderr:,}"
    return None


def fired(row: Row) -> str:
    if row.code is None:  # killed
        return "-"
    if row.code == 0:
        return "valid" if row.spec else "-"
    for needle, name in (("bytes, over the limit of", "size"), ("nesting deeper than", "depth"),
                         ("syntax error", "syntax"), ("steps to evaluate", "steps"),
                         ("seconds to check", "time"), ("modules (Limits", "modules"),
                         ("too large", "bits"), ("ndigits", "bits"), ("tokens (Limits", "tokens"),
                         ("buffer elements", "params"), ("of activations", "bytes"),
                         ("unknown layer", "errors"), ("more characters)", "clipped")):
        if needle in row.stderr_head:
            return name
    return "?"


def measure(all_cases: list[Case], directory: Path, rounds: int, limits: RunLimits,
            progress: bool) -> list[Row]:
    """Rounds of every case in turn; a case that fails once is not run again."""
    rows = {c.name: Row(c.name, command_text(c), c.spec) for c in all_cases}
    for number in range(1, rounds + 1):
        for case in all_cases:
            row = rows[case.name]
            if row.failure is not None:
                continue
            run = run_once(case, directory, limits)
            row.runs.append(run)
            row.failure = run.failure
            row.code, row.stderr_head, row.stderr_bytes = (run.code, run.stderr_head,
                                                           run.stderr_bytes)
            if progress:
                note = f"  FAILED: {run.failure}" if run.failure else ""
                print(f"  round {number}/{rounds}  {case.name:<38} {run.wall_s:7.2f} s "
                      f"{run.rss_mb:8.0f} MB  exit {run.code}{note}", file=sys.stderr,
                      flush=True)
    done = list(rows.values())
    finish(list(done), next(c.name for c in all_cases if c.baseline))  # medians, in place
    for row in done:
        row.fired = fired(row)
    return done


def command_text(case: Case) -> str:
    if case.argv[0] == "-c":
        return f'python -c "{case.argv[1]}"'
    return "python " + " ".join(case.argv)


# ------------------------------------------------------------------ output


def environment(rounds: int, sizes: dict[str, int], limits: RunLimits) -> dict[str, Any]:
    layers = big_layers()
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": version_of("torch"),  # from the metadata: the launcher does not import torch
        "netdsl": version_of("netdsl"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "max_bytes": MAX_BYTES,
        "max_depth": MAX_DEPTH,
        "spec_bytes": sizes,
        "big": {"layers": layers, "features": DEEP_FEATURES, "params": deep_params(layers),
                "modules": layers + 1},
        "junk_seed": JUNK_SEED,
        "nest_levels": NEST_LEVELS,
        "timeout_s": limits.timeout_s,
        "max_rss_mb": limits.max_rss_mb,
        "launcher_rss_mb": launcher_rss_mb(),
    }


def table_rows(rows: list[Row]) -> list[str]:
    head = (f"  {'run':<38} {'n':>2} {'wall s':>7} {'min-max':>11} {'cpu s':>7} {'peak MB':>8}"
            f"   {'net wall s':>10} {'net cpu s':>9} {'net MB':>7}  {'exit':>4}  {'fired':<6}"
            f"  status")
    lines = [head]
    for row in rows:
        lines.append(f"  {row.name:<38} {len(row.runs):>2} {fmt(row.wall_s, 7, 2)} "
                     f"{spread(row):>11} {fmt(row.cpu_s, 7, 2)} {fmt(row.rss_mb, 8, 0)}   "
                     f"{fmt(row.net_wall_s, 10, 2, True)} {fmt(row.net_cpu_s, 9, 2, True)} "
                     f"{fmt(row.net_rss_mb, 7, 0, True)}  {row.code!s:>4}  {row.fired:<6}"
                     f"  {'FAILED' if row.failure else 'ok'}")
    lines.insert(1, "  " + "-" * (max(map(len, lines)) - 2))
    return lines


def print_table(env: dict[str, Any], rows: list[Row]) -> None:
    sizes, big = env["spec_bytes"], env["big"]
    print(f"netdsl hardening: Python {env['python']}, torch {env['torch']}, netdsl "
          f"{env['netdsl']}, {env['machine']}, {env['cpus']} cpu(s); {env['rounds']} round(s), "
          f"each run a fresh process")
    print(f"limits: max_bytes {MAX_BYTES:,}, max_depth {MAX_DEPTH} (the defaults)")
    print(f"big.net {sizes['big.net']:,} bytes: {big['layers']:,} x Linear({DEEP_FEATURES}, "
          f"{DEEP_FEATURES}) = {big['params']:,} params, {big['modules']:,} modules "
          f"(the layers and their sequential)")
    print(f"junk.net {sizes['junk.net']:,} bytes: random printable ASCII, seed {JUNK_SEED}, "
          f"no newline")
    print(f"nest_blocks.net {sizes['nest_blocks.net']:,} bytes, nest_parens.net "
          f"{sizes['nest_parens.net']:,} bytes: {NEST_LEVELS:,} levels each")
    print("wall/cpu/peak = medians over the rounds (cpu = user + sys; peak = the child's own "
          "ru_maxrss); net = minus the baseline's median")
    print("on a shared machine cpu s is the steadier time: wall s also counts waiting for a core")
    print(f"launcher peak RSS {env['launcher_rss_mb']:.0f} MB (a child's ru_maxrss cannot be "
          f"below it)\n")
    print("\n".join(table_rows(rows)))
    print("\nFirst line of stderr (the last run's; stderr size in bytes):")
    for row in rows:
        print(f"  {row.name:<38} [{row.stderr_bytes:,} B] {row.stderr_head or '(empty)'}")
    print("\nCommands (cwd = the spec directory):")
    for row in rows:
        print(f"  {row.name:<38} {row.command}")
    failed = [row for row in rows if row.failure is not None]
    print("\nVerified: every run's exit code and first line of stderr as expected; every "
          "check's stderr under 4,096 bytes (64 KiB for the issue-10 rows)"
          if not failed else "\nFAILED:")
    for row in failed:
        print(f"  {row.name}: {row.failure}")


def print_json(env: dict[str, Any], rows: list[Row]) -> None:
    print(json.dumps({"environment": env, "rows": [asdict(r) for r in rows]}, indent=2))


# ------------------------------------------------------------------ command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None,
                        help="runs of each case, interleaved (default 3; 1 with --quick)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds after which a run is killed and reported (default 300)")
    parser.add_argument("--max-rss-mb", type=float, default=4096.0,
                        help="RSS above which a run is killed and reported (default 4096)")
    parser.add_argument("--spec-dir", type=Path, default=None,
                        help="write the specs here and keep them (default: a temporary directory)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one round")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object instead of a table")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, directory: Path) -> int:
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if rounds < 1:
        sys.exit("hardening.py: --rounds must be at least 1")
    limits = RunLimits(args.timeout, args.max_rss_mb)
    sizes = write_specs(directory)
    rows = measure(cases(), directory, rounds, limits, progress=not args.json)
    env = environment(rounds, sizes, limits)
    if args.json:
        print_json(env, rows)
    else:
        print_table(env, rows)
    return 1 if any(row.failure is not None for row in rows) else 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.spec_dir is not None:
        args.spec_dir.mkdir(parents=True, exist_ok=True)
        sys.exit(run(args, args.spec_dir.resolve()))
    with tempfile.TemporaryDirectory(prefix="netdsl-hardening-") as directory:
        sys.exit(run(args, Path(directory)))


if __name__ == "__main__":
    main()
