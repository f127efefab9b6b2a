"""netdsl at scale: wall time and peak memory of the CLI on huge and deep specs, one process each.

Every measurement is a fresh ``python`` process started by this script, so its peak RSS is that
run's own. The launcher itself imports neither torch nor netdsl and stays at ~10-20 MB: on Linux a
child's ``ru_maxrss`` starts from the RSS of the process that spawned it (the address space it is
exec'ed from counts towards its high-water mark), so a launcher holding torch would put a floor of
~700 MB under every row. Each child is reaped with ``os.wait4``, which gives that child's own
``rusage`` (``RUSAGE_CHILDREN`` would be the maximum over every child reaped so far).

Rows (the specs are generated into a temporary directory; the CLI runs as ``python -m netdsl``):

1. baseline: ``python -c "import torch, netdsl"``; the interpreter and the imports, nothing else.
   For reference, ``netdsl check`` on a tiny spec (one ``Linear(64)``): netdsl's fixed cost per
   run (the CLI, building the parser, ...), which the rows below pay too.
2. ``netdsl check`` and ``netdsl summary`` on a wide spec of ~10^11 parameters: 10 layers of
   ``Linear(100000)`` (in_features inferred from ``input x: [N, 100000]``), i.e. 10 x
   Linear(100000, 100000), 100,001,000,000 parameters. The check must report the spec valid (its
   ``expect params`` included) and the summary's total must equal that count exactly.
3. ``netdsl check`` on a deep spec of 10,000 layers, twice: as one repeat
   (``sequential { Linear(64) for i in range(10000) }``) and as 10,000 lines ``Linear(64, 64)``
   written out one per line (so that parsing a long file is included).

Each spec row is also shown net of the baseline (its median minus the baseline's median). Cases
run interleaved, round by round (baseline, wide check, ..., baseline, wide check, ...), so that a
slow patch of a shared machine hits every row alike. A run that exceeds ``--timeout`` seconds or
``--max-rss-mb`` of RSS is killed and reported as a failure, with the spec it was running.

Usage::

    .venv/bin/python benchmarks/scale.py            # full run (3 rounds), readable table
    .venv/bin/python benchmarks/scale.py --quick    # smoke run: 1 round, 1,000-layer deep specs
    .venv/bin/python benchmarks/scale.py --json     # the same results as one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

WIDE_FEATURES = 100_000
WIDE_LAYERS = 10
DEEP_FEATURES = 64
DEEP_LAYERS = 10_000
QUICK_DEEP_LAYERS = 1_000
POLL_S = 0.02  # how often a running child's RSS and elapsed time are looked at


# ------------------------------------------------------------------ the specs


def linear_params(in_features: int, out_features: int) -> int:
    return in_features * out_features + out_features  # weight and bias


def wide_params() -> int:
    return WIDE_LAYERS * linear_params(WIDE_FEATURES, WIDE_FEATURES)


def deep_params(layers: int) -> int:
    return layers * linear_params(DEEP_FEATURES, DEEP_FEATURES)


def model_text(name: str, features: int, layers_block: list[str], params: int) -> str:
    return "\n".join([
        f"model {name} {{",
        f"    input x: [N, {features}]",
        *layers_block,
        "    forward(x) = x -> layers",
        f"    expect output: [N, {features}]",
        f"    expect params: {params}",
        "}",
        "",
    ])


def wide_spec() -> str:
    block = [f"    layers = sequential {{ Linear({WIDE_FEATURES}) for i in range({WIDE_LAYERS}) }}"]
    return model_text("Wide", WIDE_FEATURES, block, wide_params())


def deep_repeat_spec(layers: int, name: str = "DeepRepeat") -> str:
    block = [f"    layers = sequential {{ Linear({DEEP_FEATURES}) for i in range({layers}) }}"]
    return model_text(name, DEEP_FEATURES, block, deep_params(layers))


def deep_lines_spec(layers: int) -> str:
    line = f"        Linear({DEEP_FEATURES}, {DEEP_FEATURES})"
    block = ["    layers = sequential {", *([line] * layers), "    }"]
    return model_text("DeepLines", DEEP_FEATURES, block, deep_params(layers))


# ------------------------------------------------------------------ cases, runs and results


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]  # after the interpreter
    spec: str | None  # the spec file's name, None for the baseline
    verify: Callable[[str], str | None]  # the run's stdout -> None if right, else what is wrong
    baseline: bool = False


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    max_rss_mb: float


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float  # user + system
    rss_mb: float  # the child's own ru_maxrss
    failure: str | None  # None: exited 0 with the right output


@dataclass
class Row:
    name: str
    command: str
    spec: str | None
    runs: list[Run] = field(default_factory=list)
    wall_s: float | None = None  # medians over the runs
    cpu_s: float | None = None
    rss_mb: float | None = None
    net_wall_s: float | None = None  # the median minus the baseline's median
    net_cpu_s: float | None = None
    net_rss_mb: float | None = None
    failure: str | None = None  # the first run's failure, if any


def verify_check(stdout: str) -> str | None:
    """``netdsl check --format json`` on one file: it must be checked and have no errors."""
    result = json.loads(stdout)
    if result.get("checked") != 1 or result.get("errors"):
        return f"check did not report the spec valid: {json.dumps(result)[:500]}"
    return None


def verify_summary(expected: int) -> Callable[[str], str | None]:
    def verify(stdout: str) -> str | None:
        total = json.loads(stdout).get("total_params")
        if total != expected:
            return f"summary total_params {total!r} != expected {expected:,}"
        return None
    return verify


def verify_nothing(stdout: str) -> str | None:
    return None


def cases(deep_layers: int) -> list[Case]:
    def check(spec: str) -> list[str]:
        return ["-m", "netdsl", "check", spec, "--format", "json"]

    summary = ["-m", "netdsl", "summary", "wide.net", "--format", "json"]
    deep = f"{deep_layers:,}"
    return [
        Case("baseline: import torch, netdsl", ["-c", "import torch, netdsl"], None,
             verify_nothing, baseline=True),
        Case("check tiny (1 layer)", check("tiny.net"), "tiny.net", verify_check),
        Case("check wide (1e11 params)", check("wide.net"), "wide.net", verify_check),
        Case("summary wide (1e11 params)", summary, "wide.net", verify_summary(wide_params())),
        Case(f"check deep, repeat ({deep} layers)", check("deep_repeat.net"), "deep_repeat.net",
             verify_check),
        Case(f"check deep, lines ({deep} layers)", check("deep_lines.net"), "deep_lines.net",
             verify_check),
    ]


def write_specs(directory: Path, deep_layers: int) -> None:
    (directory / "tiny.net").write_text(deep_repeat_spec(1, "Tiny"))
    (directory / "wide.net").write_text(wide_spec())
    (directory / "deep_repeat.net").write_text(deep_repeat_spec(deep_layers))
    (directory / "deep_lines.net").write_text(deep_lines_spec(deep_layers))


# ------------------------------------------------------------------ running one child


def current_rss_mb(pid: int) -> float:
    """The running child's resident set (VmRSS), 0 if it cannot be read (e.g. it just exited)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait(child: subprocess.Popen[bytes], start: float, limits: Limits
         ) -> tuple[int, resource.struct_rusage, str | None]:
    """Reap the child with ``os.wait4`` (its own rusage), killing it if it goes over a limit.

    Returns its exit code, its rusage and, if it was killed, why.
    """
    killed: str | None = None
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            return child.returncode, usage, killed
        if killed is None:
            elapsed, rss = time.perf_counter() - start, current_rss_mb(child.pid)
            if elapsed > limits.timeout_s:
                killed = f"killed: still running after {elapsed:.1f} s"
            elif rss > limits.max_rss_mb:
                killed = f"killed: RSS {rss:.0f} MB after {elapsed:.1f} s"
            if killed is not None:
                child.kill()
                continue
        time.sleep(POLL_S)


def run_once(case: Case, directory: Path, limits: Limits) -> Run:
    """One fresh ``python`` process; stdout and stderr go to files, read once it has exited."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, *case.argv], cwd=directory, stdout=out,
                                 stderr=err, stdin=subprocess.DEVNULL)
        code, usage, killed = wait(child, start, limits)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    rss = usage.ru_maxrss / 1024  # Linux: KiB
    failure = killed or outcome(case, code, stdout, stderr)
    if failure is None and rss > limits.max_rss_mb:
        failure = f"peak RSS {rss:.0f} MB is over the {limits.max_rss_mb:.0f} MB limit"
    return Run(wall, usage.ru_utime + usage.ru_stime, rss, failure)


def outcome(case: Case, code: int, stdout: str, stderr: str) -> str | None:
    if code != 0:
        return f"exit code {code}; stderr: {stderr.strip()[-1000:]}"
    try:
        return case.verify(stdout)
    except (ValueError, AttributeError) as exc:
        return f"unreadable output ({exc}): {stdout[:500]!r}"


# ------------------------------------------------------------------ rounds and rows


def measure(all_cases: list[Case], directory: Path, rounds: int, limits: Limits,
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
            if progress:
                note = f"  FAILED: {run.failure}" if run.failure else ""
                print(f"  round {number}/{rounds}  {case.name:<36} {run.wall_s:7.2f} s "
                      f"{run.rss_mb:8.0f} MB{note}", file=sys.stderr, flush=True)
    return finish(list(rows.values()), next(c.name for c in all_cases if c.baseline))


def finish(rows: list[Row], baseline_name: str) -> list[Row]:
    """Medians over the successful runs (a failed row: its failed run, to show what was seen),
    and each spec row net of the baseline's medians."""
    for row in rows:
        good = [r for r in row.runs if r.failure is None] or row.runs[-1:]
        if good:
            row.wall_s = statistics.median(r.wall_s for r in good)
            row.cpu_s = statistics.median(r.cpu_s for r in good)
            row.rss_mb = statistics.median(r.rss_mb for r in good)
    base = next(r for r in rows if r.name == baseline_name)
    for row in rows:
        if row is base or row.failure or base.failure or row.wall_s is None or base.wall_s is None:
            continue
        assert row.cpu_s is not None and row.rss_mb is not None
        assert base.cpu_s is not None and base.rss_mb is not None
        row.net_wall_s = row.wall_s - base.wall_s
        row.net_cpu_s = row.cpu_s - base.cpu_s
        row.net_rss_mb = row.rss_mb - base.rss_mb
    return rows


def command_text(case: Case) -> str:
    if case.argv[0] == "-c":
        return f'python -c "{case.argv[1]}"'
    return "python " + " ".join(case.argv)


# ------------------------------------------------------------------ output


def launcher_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def environment(rounds: int, deep_layers: int, limits: Limits) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": version_of("torch"),  # from the metadata: the launcher does not import torch
        "netdsl": version_of("netdsl"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "wide": {"layers": WIDE_LAYERS, "features": WIDE_FEATURES, "params": wide_params()},
        "deep": {"layers": deep_layers, "features": DEEP_FEATURES,
                 "params": deep_params(deep_layers)},
        "timeout_s": limits.timeout_s,
        "max_rss_mb": limits.max_rss_mb,
        "launcher_rss_mb": launcher_rss_mb(),
    }


def fmt(value: float | None, width: int, decimals: int, signed: bool = False) -> str:
    if value is None:
        return "-".rjust(width)
    return format(value, f"{'+' if signed else ''}{width}.{decimals}f")


def spread(row: Row) -> str:
    walls = [r.wall_s for r in row.runs if r.failure is None]
    return f"{min(walls):.2f}-{max(walls):.2f}" if len(walls) > 1 else "-"


def table_rows(rows: list[Row]) -> list[str]:
    head = (f"  {'run':<36} {'n':>2} {'wall s':>7} {'min-max':>11} {'cpu s':>7} {'peak MB':>8}"
            f"   {'net wall s':>10} {'net cpu s':>9} {'net MB':>7}  status")
    lines = [head]
    for row in rows:
        lines.append(f"  {row.name:<36} {len(row.runs):>2} {fmt(row.wall_s, 7, 2)} "
                     f"{spread(row):>11} {fmt(row.cpu_s, 7, 2)} {fmt(row.rss_mb, 8, 0)}   "
                     f"{fmt(row.net_wall_s, 10, 2, True)} {fmt(row.net_cpu_s, 9, 2, True)} "
                     f"{fmt(row.net_rss_mb, 7, 0, True)}  {'FAILED' if row.failure else 'ok'}")
    lines.insert(1, "  " + "-" * (max(map(len, lines)) - 2))
    return lines


def print_table(env: dict[str, Any], rows: list[Row]) -> None:
    print(f"netdsl scale: Python {env['python']}, torch {env['torch']}, netdsl {env['netdsl']}, "
          f"{env['machine']}, {env['cpus']} cpu(s); {env['rounds']} round(s), each run a fresh "
          f"process")
    print(f"wide = {WIDE_LAYERS} x Linear({WIDE_FEATURES:,}, {WIDE_FEATURES:,}) = "
          f"{env['wide']['params']:,} params; deep = {env['deep']['layers']:,} x "
          f"Linear({DEEP_FEATURES}, {DEEP_FEATURES}) = {env['deep']['params']:,} params")
    print("wall/cpu/peak = medians over the rounds (cpu = user + sys; peak = the child's own "
          "ru_maxrss); net = minus the baseline's median")
    print("on a shared machine cpu s is the steadier time: wall s also counts waiting for a core")
    print(f"launcher peak RSS {env['launcher_rss_mb']:.0f} MB (a child's ru_maxrss cannot be "
          f"below it)\n")
    print("\n".join(table_rows(rows)))
    print("\nCommands (cwd = the spec directory):")
    for row in rows:
        print(f"  {row.name:<36} {row.command}")
    failed = [row for row in rows if row.failure is not None]
    print("\nVerified: check reported each spec valid (expect params/output included); summary "
          "total_params exact" if not failed else "\nFAILED:")
    for row in failed:
        print(f"  {row.name}: {row.failure}")


def print_json(env: dict[str, Any], rows: list[Row]) -> None:
    print(json.dumps({"environment": env, "rows": [asdict(r) for r in rows]}, indent=2))


def print_specs(directory: Path, rows: list[Row]) -> None:
    """The text of every spec whose run failed, so that the failure can be reproduced."""
    for spec in sorted({row.spec for row in rows if row.failure is not None and row.spec}):
        text = (directory / spec).read_text()
        shown = text if len(text) < 2000 else text[:1000] + "\n...\n" + text[-500:]
        print(f"\n--- {spec} ---\n{shown}", file=sys.stderr)


# ------------------------------------------------------------------ command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None,
                        help="runs of each case, interleaved (default 3; 1 with --quick)")
    parser.add_argument("--layers", type=int, default=None,
                        help=f"layers of the deep specs (default {DEEP_LAYERS:,}; "
                             f"{QUICK_DEEP_LAYERS:,} with --quick)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds after which a run is killed and reported (default 60)")
    parser.add_argument("--max-rss-mb", type=float, default=2048.0,
                        help="RSS above which a run is killed and reported (default 2048)")
    parser.add_argument("--spec-dir", type=Path, default=None,
                        help="write the specs here and keep them (default: a temporary directory)")
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke run: one round, 1,000-layer deep specs")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object instead of a table")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, directory: Path) -> int:
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    layers = args.layers if args.layers is not None else (
        QUICK_DEEP_LAYERS if args.quick else DEEP_LAYERS)
    if rounds < 1 or layers < 1:
        sys.exit("scale.py: --rounds and --layers must be at least 1")
    limits = Limits(args.timeout, args.max_rss_mb)
    write_specs(directory, layers)
    rows = measure(cases(layers), directory, rounds, limits, progress=not args.json)
    env = environment(rounds, layers, limits)
    if args.json:
        print_json(env, rows)
    else:
        print_table(env, rows)
    print_specs(directory, rows)
    return 1 if any(row.failure is not None for row in rows) else 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.spec_dir is not None:
        args.spec_dir.mkdir(parents=True, exist_ok=True)
        sys.exit(run(args, args.spec_dir.resolve()))
    with tempfile.TemporaryDirectory(prefix="netdsl-scale-") as directory:
        sys.exit(run(args, Path(directory)))


if __name__ == "__main__":
    main()
