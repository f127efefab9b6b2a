"""netdsl's speed goals, each measured interleaved against its reference in one run.

Machines are shared and noisy, so each row is a comparison made *at the same moment*: the
measured side and its reference alternate, A, B, A, B, ..., round by round, and a row reports
the median over the rounds with the interquartile range (IQR) of the same per-round values as
its spread. A ratio row (``x``) is the median of the per-round ratios A_i / B_i, B_i being the
round right after A_i; an in-process round times ``calls`` back-to-back calls with
``time.perf_counter_ns`` (``benchmarks/overhead.py``'s ``compare``). A process row (``s``) is
the median of the per-round differences A_i - B_i of wall times, each run a fresh ``python``
(this interpreter, ``sys.executable``) started from the repository (or, row 6, from the
generated specs' directory). An absolute row shows its plain wall times. Each row prints its goal
and ``ok`` (the median meets it) or ``over``; ``-`` marks a reference or control row (no goal).

1. ``python -m netdsl check examples/lenet.net`` minus ``python -c "import torch"``: what a
   ``netdsl check`` costs over the torch import it cannot avoid. [<= 0.3 s]
2. ``python -m netdsl --version`` and ``python -m netdsl --help``, absolute wall time; neither
   should import torch. ``python -c pass`` is run in the same rounds as the floor (no goal).
   [<= 0.2 s each]
3. In-process ``netdsl.check`` of a small recurrent spec (a GRU, then a two-layer LSTM, over
   ``input x: [N, T, 16]`` with a symbolic time dimension; the spec is RECURRENT_SPEC below,
   written to a temporary directory and checked to be valid first) vs ``netdsl.check(
   "examples/lenet.net")``: a symbolic sequence length must not make the shape pass expensive.
   [<= 1.5x]
4. ``netdsl.load(spec, device="meta")`` vs the torchvision builder under
   ``with torch.device("meta"):``, warm (repeated loads in one process): AlexNet
   (``examples/alexnet.net``, overhead.py's ``build_meta``) and ResNet-50
   (``examples/zoo/resnet.net``, ``model="resnet50"``). All of it is netdsl's work against
   torchvision's module construction: nothing is allocated. [<= 1.5x]
5. ``netdsl.load(spec)`` on the CPU vs the reference builder on the CPU, one row per file of
   ``examples/zoo/`` with one representative model each, as ``tests/test_zoo.py`` and
   ``tests/test_zoo_references.py`` build them: ``torchvision.models.<builder>(weights=None)``
   (convnext_tiny, densenet121, efficientnet_b0, googlenet, mobilenet_v2, resnet18,
   shufflenet_v2_x1_0, squeezenet1_1, vgg11, vit_b_16; GoogLeNet's warning that its default
   init will change is silenced, as the tests do: its default is ``init_weights=True``), and the
   hand-written references ``tests/ref_unet.py`` ``UNet(3, 2, bilinear=False)``,
   ``tests/ref_nanogpt.py`` ``GPT(GPTConfig())`` and ``tests/ref_seq2seq.py`` ``Seq2Seq()``.
   Real allocation and init: one build per round, one untimed warm-up build per side (it also
   parses the spec, cached in-process afterwards, and its parameter count must equal the
   reference's). The cyclic GC is on during a build, as in a real program; what a round leaves
   is collected between rounds, untimed. [<= 1.2x; <= 1.05x where init dominates: a model of
   at least 20M parameters (INIT_DOMINATES_PARAMS; the note says which). Measured when this file
   was written, each of those references spends about 90% or more of its CPU build allocating
   and initialising tensors (its build under ``torch.device("meta")`` takes a tenth of its CPU
   build or less), and each of the smaller ones 87% or less]
6. ``python -m netdsl check --format json`` of a 1 MiB valid spec (45,583 lines
   ``Linear(64, 64)``, scale.py's ``deep_lines_spec``; 1,048,567 bytes, under ``max_bytes``),
   minus ``python -c "import torch, netdsl"``; and the exponent k of check time ~ layers^k,
   fitted by least squares on log-log over 1,000, 4,000, 16,000 and 45,583 layers (each a fresh
   process minus the baseline of its round): the median of the per-round fits, their IQR as the
   spread (the fit of the median net times is in the notes). Every check must report its spec
   valid (``expect params`` included). A fixed per-run cost that the baseline does not pay
   (netdsl's CLI, the parser) pulls the exponent below the asymptotic one; the net times of every
   size are shown as rows too. ``--quick`` runs 250 to 2,000 layers instead, so its largest row
   and its exponent say ``n/a``: their goals are for the full sizes. [<= 3 s; exponent <= 1.1]
7. ``python -c "import torch, netdsl"`` minus ``python -c "import torch"``, and ``python -c
   "import torch, netdsl; netdsl.load"`` (the first use of a public name imports the modules
   that define it) minus ``python -c "import torch"``. [<= 0.1 s]
8. Compiled forward / hand-written, batch 1, one thread, ``torch.inference_mode()``, ``eval()``,
   same weights on both sides (overhead.py's ``forward_lenet``, ``forward_zoo`` and
   ``forward_gpt``): LeNet (vs ``LeNetSequential``), ResNet-50 (vs torchvision's ``resnet50()``)
   and nanoGPT, GPT-2 small's shape at T = 64, both attention paths (vs
   ``tests/ref_nanogpt.py``). Each is followed by its control row, the reference against a
   second instance of itself: its distance from 1.000 is the noise floor. [<= 1.02]

netdsl's own modules are byte-compiled before the process rows (``compile_package``), as ``pip
install`` does for every package it installs from a wheel (torch's bytecode is there from its
install): under ``PYTHONDONTWRITEBYTECODE=1`` (set on some machines) a checkout's ~50 modules would
otherwise be compiled from source in every fresh process, ~0.13 s that an installed netdsl never
pays. The environment printed with the results says whether the variable was set.

Process runs are timed with a blocking ``os.wait4`` (scale.py's runner polls every 20 ms, too
coarse for 0.1 s goals), killed after ``--timeout`` seconds. Each process row runs one untimed
warm-up round first (none with ``--quick``, none for row 6). They run before the in-process rows,
while the launcher is idle; it has imported torch (overhead.py does), but children are started
with ``vfork``, so its size does not slow their start (peak memory is scale.py's business, not
this file's). In-process rows run with ``torch.set_num_threads(1)`` and torch's existing objects
frozen out of the cyclic GC's reach (overhead.py's ``freeze_heap``).

Usage::

    .venv/bin/python benchmarks/speed.py              # full run (~10-20 min), readable table
    .venv/bin/python benchmarks/speed.py --quick      # smoke run: few rounds, small row-6 specs
    .venv/bin/python benchmarks/speed.py --only 4,5   # a subset of the rows
    .venv/bin/python benchmarks/speed.py --json       # the same results as one JSON object
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import overhead
import torch
import torchvision
from overhead import LENET, ZOO, Comparison
from scale import Case, Run, command_text, deep_lines_spec, outcome, verify_check, verify_nothing
from torch import nn

import netdsl

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
ROWS = range(1, 9)
PROCESS_ROWS = (2, 1, 7, 6)  # run first, in this order, while the launcher is idle
IN_PROCESS_ROWS = (3, 4, 5, 8)

SCALE_SIZES = (1_000, 4_000, 16_000, 45_583)  # 45,583 lines of Linear(64, 64): 1,048,567 bytes
QUICK_SCALE_SIZES = (250, 500, 1_000, 2_000)
INIT_DOMINATES_PARAMS = 20_000_000  # row 5: from here on, the goal is GOAL_INIT_BUILD
GOOGLENET_WARNING = "The default weight initialization of GoogleNet"

GOAL_CHECK_S = 0.3
GOAL_CLI_S = 0.2
GOAL_RECURRENT = 1.5
GOAL_META = 1.5
GOAL_BUILD = 1.2
GOAL_INIT_BUILD = 1.05
GOAL_BIG_CHECK_S = 3.0
GOAL_EXPONENT = 1.1
GOAL_IMPORT_S = 0.1
GOAL_FORWARD = 1.02

RECURRENT_SPEC = """\
# A small recurrent classifier: a GRU, then a two-layer LSTM, over a sequence of symbolic length.
model Recurrent(features: int = 16, hidden: int = 32, classes: int = 10) {
    input x: [N, T, features]
    gru = GRU(features, hidden, batch_first=true)
    lstm = LSTM(hidden, hidden, num_layers=2, batch_first=true)
    head = Linear(hidden, classes)

    forward(x) {
        y, h = gru(x)
        z, (h_n, c_n) = lstm(y)
        return head(z[:, -1])
    }

    expect output: [N, classes]
    expect params: 22026
}
"""


# ------------------------------------------------------------------ settings and results


@dataclass(frozen=True)
class Settings:
    quick: bool
    process_rounds: int  # rows 1, 2, 7: rounds of fresh processes
    process_warmup: int  # untimed rounds before them
    scale_rounds: int  # row 6
    scale_sizes: tuple[int, ...]
    rounds: int  # rows 3, 4, 8: rounds per side, many calls each
    build_rounds: int  # row 5: rounds per side, one build each
    round_ms: float  # rows 3, 4: target duration of one round
    forward_round_ms: float  # row 8
    warmup: int  # untimed calls per side before an in-process comparison
    timeout_s: float  # a process running longer is killed and its row fails

    def overhead(self) -> overhead.Settings:
        """The same settings in overhead.py's terms, for its comparisons."""
        return overhead.Settings(self.rounds, self.build_rounds, self.forward_round_ms,
                                 self.round_ms, self.warmup)


@dataclass
class Result:
    row: int
    name: str
    reference: str
    unit: str  # "x": a ratio; "s": seconds; "": a plain number (the exponent)
    value: float | None = None  # the median over the rounds
    q1: float | None = None  # the interquartile range of the same per-round values
    q3: float | None = None
    goal: float | None = None  # None: a reference or a control, nothing to meet
    status: str = "-"  # ok, over, - (no goal), n/a (a --quick stand-in), FAILED
    ours_s: float | None = None  # median seconds per call (or run) of the measured side
    reference_s: float | None = None  # the same for the reference
    calls: int = 1  # calls per round
    rounds: int = 0
    samples: list[float] = field(default_factory=list)  # per-round values (process rows)
    note: str = ""
    failure: str | None = None

    def judged(self, applicable: bool = True) -> Result:
        if self.failure is not None:
            self.status = "FAILED"
        elif self.goal is None or self.value is None:
            self.status = "-"
        elif not applicable:
            self.status = "n/a"
        else:
            self.status = "ok" if self.value <= self.goal else "over"
        return self


def failed(row: int, name: str, reference: str, unit: str, why: str,
           goal: float | None = None) -> Result:
    return Result(row, name, reference, unit, goal=goal, failure=why).judged()


def from_samples(row: int, name: str, reference: str, unit: str, samples: list[float],
                 goal: float | None, *, ours: list[float] | None = None,
                 theirs: list[float] | None = None, note: str = "") -> Result:
    q1, median, q3 = overhead.quartiles(samples)
    return Result(row, name, reference, unit, median, q1, q3, goal,
                  ours_s=statistics.median(ours) if ours else None,
                  reference_s=statistics.median(theirs) if theirs else None,
                  rounds=len(samples), samples=samples, note=note).judged()


def from_comparison(row: int, comparison: Comparison, goal: float | None,
                    note: str = "") -> Result:
    """overhead.py's Comparison as a row; a control row has no goal."""
    notes = [note] if note else []
    if comparison.control:
        notes.append("control: the reference against itself (the noise floor)")
    if comparison.max_abs_diff is not None and not comparison.control:
        notes.append(f"max |netdsl - reference| over the output {comparison.max_abs_diff:.3g}")
    return Result(row, comparison.name, comparison.reference, "x", comparison.ratio,
                  comparison.ratio_q1, comparison.ratio_q3,
                  None if comparison.control else goal,
                  ours_s=comparison.netdsl_ns / 1e9, reference_s=comparison.reference_ns / 1e9,
                  calls=comparison.calls_per_round, rounds=comparison.rounds,
                  note="; ".join(notes)).judged()


def guarded(row: int, name: str, reference: str, unit: str, goal: float | None,
            measure: Callable[[], list[Result]]) -> list[Result]:
    """The rows of ``measure``; one failed row (with the exception) if it raises."""
    try:
        return measure()
    except Exception as exc:  # netdsl's internals may be moving under this script
        return [failed(row, name, reference, unit, f"{type(exc).__name__}: {exc}", goal)]


# ------------------------------------------------------------------ fresh processes


def run_child(case: Case, cwd: Path, timeout_s: float) -> Run:
    """One fresh ``python``, its wall time from spawn to a blocking ``os.wait4``."""
    killed: list[str] = []
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, *case.argv], cwd=cwd, stdout=out, stderr=err,
                                 stdin=subprocess.DEVNULL)

        def kill() -> None:
            killed.append(f"killed: still running after {timeout_s:g} s")
            child.kill()

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    failure = killed[0] if killed else outcome(case, child.returncode, stdout, stderr)
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, failure)


def run_rounds(cases: Sequence[Case], cwd: Path, rounds: int, warmup: int, timeout_s: float,
               progress: bool) -> tuple[dict[str, list[Run]], str | None]:
    """``warmup`` untimed rounds, then ``rounds`` rounds of every case in turn.

    Returns the timed runs of each case and, if a run failed (which ends the rows), why.
    """
    runs: dict[str, list[Run]] = {case.name: [] for case in cases}
    for number in range(1 - warmup, rounds + 1):
        for case in cases:
            run = run_child(case, cwd, timeout_s)
            if progress:
                label = f"warm-up {number + warmup}/{warmup}" if number < 1 else \
                    f"round {number}/{rounds}"
                print(f"  {label:<12} {case.name:<44} {run.wall_s:7.3f} s"
                      + (f"  FAILED: {run.failure}" if run.failure else ""),
                      file=sys.stderr, flush=True)
            if run.failure is not None:
                return runs, f"{command_text(case)}: {run.failure}"
            if number >= 1:
                runs[case.name].append(run)
    return runs, None


def walls(runs: list[Run]) -> list[float]:
    return [run.wall_s for run in runs]


def differences(runs: dict[str, list[Run]], ours: Case, theirs: Case) -> list[float]:
    return [a - b for a, b in zip(walls(runs[ours.name]), walls(runs[theirs.name]), strict=True)]


def python_c(code: str) -> Case:
    return Case(f'python -c "{code}"', ["-c", code], None, verify_nothing)


def netdsl_cli(*argv: str, verify: Callable[[str], str | None] = verify_nothing) -> Case:
    return Case("netdsl " + " ".join(argv), ["-m", "netdsl", *argv], None, verify)


def verify_valid(stdout: str) -> str | None:
    """scale.py's verify_check, and the current format's count of valid specs."""
    problem = verify_check(stdout)
    if problem is None and json.loads(stdout).get("valid", 1) != 1:
        return f"check did not report the spec valid: {stdout[:500]}"
    return problem


def row_check_lenet(s: Settings, progress: bool) -> list[Result]:
    ours = netdsl_cli("check", "examples/lenet.net")
    torch_only = python_c("import torch")
    name, reference = "netdsl check examples/lenet.net, net", torch_only.name
    runs, failure = run_rounds([torch_only, ours], ROOT, s.process_rounds, s.process_warmup,
                               s.timeout_s, progress)
    if failure is not None:
        return [failed(1, name, reference, "s", failure, GOAL_CHECK_S)]
    return [from_samples(1, name, reference, "s", differences(runs, ours, torch_only),
                         GOAL_CHECK_S, ours=walls(runs[ours.name]),
                         theirs=walls(runs[torch_only.name]),
                         note="fresh processes: check minus import torch, per round")]


def row_cli(s: Settings, progress: bool) -> list[Result]:
    floor = python_c("pass")
    version, helps = netdsl_cli("--version"), netdsl_cli("--help")
    runs, failure = run_rounds([floor, version, helps], ROOT, s.process_rounds, s.process_warmup,
                               s.timeout_s, progress)
    if failure is not None:
        return [failed(2, "netdsl --version / --help", "absolute", "s", failure, GOAL_CLI_S)]
    results = [from_samples(2, floor.name, "absolute (the floor)", "s", walls(runs[floor.name]),
                            None, ours=walls(runs[floor.name]))]
    for case in (version, helps):
        net = statistics.median(differences(runs, case, floor))
        results.append(from_samples(2, case.name, "absolute", "s", walls(runs[case.name]),
                                    GOAL_CLI_S, ours=walls(runs[case.name]),
                                    theirs=walls(runs[floor.name]),
                                    note=f"fresh process; {net:+.3f} s over python -c pass "
                                         f"(median of the per-round differences)"))
    return results


def row_imports(s: Settings, progress: bool) -> list[Result]:
    torch_only = python_c("import torch")
    package = python_c("import torch, netdsl")
    first_use = python_c("import torch, netdsl; netdsl.load")
    runs, failure = run_rounds([torch_only, package, first_use], ROOT, s.process_rounds,
                               s.process_warmup, s.timeout_s, progress)
    if failure is not None:
        return [failed(7, "import netdsl, net", torch_only.name, "s", failure, GOAL_IMPORT_S)]
    return [from_samples(7, f"{case.name}, net", torch_only.name, "s",
                         differences(runs, case, torch_only), GOAL_IMPORT_S,
                         ours=walls(runs[case.name]), theirs=walls(runs[torch_only.name]),
                         note=note)
            for case, note in ((package, "import netdsl alone: the package, no modules"),
                               (first_use, "netdsl.load: imports netdsl.api and what it uses"))]


def log_log_slope(sizes: Sequence[int], times: Sequence[float]) -> float | None:
    """The least-squares slope of log(time) on log(size); None if a time is not positive."""
    if any(t <= 0 for t in times):
        return None
    fit = statistics.linear_regression([math.log(n) for n in sizes], [math.log(t) for t in times])
    return fit.slope


def row_scale(s: Settings, directory: Path, progress: bool) -> list[Result]:
    baseline = python_c("import torch, netdsl")
    checks: list[tuple[int, Case]] = []
    for layers in s.scale_sizes:
        spec = f"lines_{layers}.net"
        (directory / spec).write_text(deep_lines_spec(layers))
        size = (directory / spec).stat().st_size
        checks.append((layers, Case(f"netdsl check {spec} ({size:,} bytes)",
                                    ["-m", "netdsl", "check", spec, "--format", "json"], spec,
                                    verify_valid)))
    biggest, _ = checks[-1]
    big_name = f"netdsl check {biggest:,}-line spec, net"
    runs, failure = run_rounds([baseline, *(case for _, case in checks)], directory,
                               s.scale_rounds, 0, s.timeout_s, progress)
    if failure is not None:
        return [failed(6, big_name, baseline.name, "s", failure, GOAL_BIG_CHECK_S),
                failed(6, "check time ~ layers^k: k", "least squares, log-log", "", failure,
                       GOAL_EXPONENT)]
    nets = {layers: differences(runs, case, baseline) for layers, case in checks}
    results = []
    for layers, case in checks:
        big = layers == biggest
        size = (directory / (case.spec or "")).stat().st_size
        note = f"{size:,} bytes of Linear(64, 64) lines; must check valid"
        if big and s.quick:
            note += f"; the goal is for the 1 MiB spec ({SCALE_SIZES[-1]:,} lines)"
        result = from_samples(6, f"netdsl check {layers:,}-line spec, net", baseline.name, "s",
                              nets[layers], GOAL_BIG_CHECK_S if big else None,
                              ours=walls(runs[case.name]), theirs=walls(runs[baseline.name]),
                              note=note)
        results.append(result.judged(applicable=not s.quick))
    sizes = list(s.scale_sizes)
    per_round = [log_log_slope(sizes, [nets[n][i] for n in sizes]) for i in range(s.scale_rounds)]
    slopes = [k for k in per_round if k is not None]
    name = f"check time ~ layers^k: k ({sizes[0]:,} to {sizes[-1]:,})"
    if not slopes:
        results.append(failed(6, name, "least squares, log-log", "",
                              "no round with every net time positive", GOAL_EXPONENT))
        return results
    of_medians = log_log_slope(sizes, [statistics.median(nets[n]) for n in sizes])
    note = f"per-round fits of the net times; fit of their medians: {of_medians:.3f}" \
        if of_medians is not None else "per-round fits of the net times"
    if len(slopes) < len(per_round):
        note += f"; {len(per_round) - len(slopes)} round(s) dropped (a net time <= 0)"
    if s.quick:
        note += f"; the goal is for {SCALE_SIZES[0]:,} to {SCALE_SIZES[-1]:,} lines"
    results.append(from_samples(6, name, "least squares, log-log", "", slopes, GOAL_EXPONENT,
                                note=note).judged(applicable=not s.quick))
    return results


# ------------------------------------------------------------------ in process


def in_process_setup() -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=GOOGLENET_WARNING, category=FutureWarning)
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))  # the hand-written references: ref_unet, ref_nanogpt, ...
    overhead.freeze_heap()


def row_recurrent(s: Settings, directory: Path) -> list[Result]:
    spec = directory / "recurrent.net"
    spec.write_text(RECURRENT_SPEC)
    name, reference = "netdsl.check(recurrent: GRU + LSTM, [N, T, 16])", \
        "netdsl.check('examples/lenet.net')"
    for path in (spec, LENET):
        errors = netdsl.check(path)
        if errors:
            return [failed(3, name, reference, "x",
                           f"{path.name} is not valid: {errors[0].render()}", GOAL_RECURRENT)]

    def ours() -> object:
        return netdsl.check(spec)

    def theirs() -> object:
        return netdsl.check(LENET)

    calls = overhead.calls_for((ours, theirs), s.round_ms, s.warmup)
    comparison = overhead.compare(name, reference, ours, theirs, calls=calls, rounds=s.rounds,
                                  no_gc=False)
    return [from_comparison(3, comparison, GOAL_RECURRENT, "in-process, warm")]


def meta_resnet50(s: Settings) -> Comparison:
    def ours() -> nn.Module:
        return netdsl.load(ZOO / "resnet.net", model="resnet50", device="meta")

    def theirs() -> nn.Module:
        with torch.device("meta"):
            return torchvision.models.resnet50()

    calls = overhead.calls_for((ours, theirs), s.round_ms, s.warmup)
    return overhead.compare("ResNet-50 build, meta", "resnet50() in torch.device('meta')",
                            ours, theirs, calls=calls, rounds=s.rounds, no_gc=False)


def row_meta(s: Settings) -> list[Result]:
    alexnet = guarded(4, "AlexNet build, meta", "alexnet() in torch.device('meta')", "x",
                      GOAL_META, lambda: [from_comparison(4, overhead.build_meta(s.overhead()),
                                                          GOAL_META, "warm")])
    resnet = guarded(4, "ResNet-50 build, meta", "resnet50() in torch.device('meta')", "x",
                     GOAL_META, lambda: [from_comparison(4, meta_resnet50(s), GOAL_META,
                                                         "warm")])
    return [*alexnet, *resnet]


@dataclass(frozen=True)
class Build:
    """One row of row 5: a zoo file, its representative model and that model's reference."""

    spec: str  # in examples/zoo
    label: str
    reference: str
    ours: Callable[[], nn.Module]
    theirs: Callable[[], nn.Module]


TORCHVISION_BUILDERS = (
    ("convnext.net", "convnext_tiny"), ("densenet.net", "densenet121"),
    ("efficientnet.net", "efficientnet_b0"), ("googlenet.net", "googlenet"),
    ("mobilenet_v2.net", "mobilenet_v2"), ("resnet.net", "resnet18"),
    ("shufflenet.net", "shufflenet_v2_x1_0"), ("squeezenet.net", "squeezenet1_1"),
    ("vgg.net", "vgg11"), ("vit.net", "vit_b_16"),
)


def torchvision_build(spec: str, builder: str) -> Build:
    def ours() -> nn.Module:
        return netdsl.load(ZOO / spec, model=builder)

    def theirs() -> nn.Module:
        return getattr(torchvision.models, builder)(weights=None)

    return Build(spec, builder, f"torchvision.models.{builder}(weights=None)", ours, theirs)


def builds() -> list[Build]:
    """Every file of examples/zoo, alphabetically, with its reference."""
    import ref_nanogpt  # tests/: on sys.path from in_process_setup
    import ref_seq2seq
    import ref_unet

    def unet() -> nn.Module:
        return netdsl.load(ZOO / "unet.net", bilinear=False)

    def gpt() -> nn.Module:
        return netdsl.load(ZOO / "gpt.net")

    def seq2seq() -> nn.Module:
        return netdsl.load(ZOO / "transformer.net")

    hand_written = [
        Build("gpt.net", "GPT", "tests/ref_nanogpt.py GPT(GPTConfig())", gpt,
              lambda: ref_nanogpt.GPT(ref_nanogpt.GPTConfig())),
        Build("transformer.net", "Seq2Seq", "tests/ref_seq2seq.py Seq2Seq()", seq2seq,
              ref_seq2seq.Seq2Seq),
        Build("unet.net", "UNet", "tests/ref_unet.py UNet(3, 2, bilinear=False)", unet,
              lambda: ref_unet.UNet(3, 2, False)),
    ]
    all_builds = [torchvision_build(spec, builder) for spec, builder in TORCHVISION_BUILDERS]
    return sorted([*all_builds, *hand_written], key=lambda b: b.spec)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_cpu(build: Build, s: Settings) -> list[Result]:
    name = f"load {build.spec} ({build.label}), cpu"
    params, reference_params = parameter_count(build.ours()), parameter_count(build.theirs())
    goal = GOAL_INIT_BUILD if reference_params >= INIT_DOMINATES_PARAMS else GOAL_BUILD
    if params != reference_params:
        return [failed(5, name, build.reference, "x",
                       f"netdsl builds {params:,} parameters, the reference {reference_params:,}",
                       goal)]
    comparison = overhead.compare(name, build.reference, build.ours, build.theirs, calls=1,
                                  rounds=s.build_rounds, no_gc=False)
    kind = "init dominates" if goal == GOAL_INIT_BUILD else "construction matters"
    return [from_comparison(5, comparison, goal, f"{params / 1e6:.1f}M params ({kind})")]


def row_builds(s: Settings) -> list[Result]:
    results = []
    for build in builds():
        results += guarded(5, f"load {build.spec} ({build.label}), cpu", build.reference, "x",
                           GOAL_BUILD, lambda build=build: build_cpu(build, s))
    return results


def row_forward(s: Settings) -> list[Result]:
    settings = s.overhead()
    measures: list[tuple[str, str, Callable[[], list[Comparison]]]] = [
        ("LeNet forward", "hand-written LeNetSequential",
         lambda: overhead.forward_lenet(settings)),
        ("resnet50 forward", "torchvision.models.resnet50()",
         lambda: overhead.forward_zoo("resnet50", "resnet.net", settings)),
        ("GPT (T=64) forward", "nanoGPT (tests/ref_nanogpt.py)",
         lambda: overhead.forward_gpt(settings)),
    ]
    results = []
    for name, reference, measure in measures:
        results += guarded(8, name, reference, "x", GOAL_FORWARD,
                           lambda measure=measure: [from_comparison(8, c, GOAL_FORWARD)
                                                    for c in measure()])
    return results


# ------------------------------------------------------------------ running the rows


def measure(rows: set[int], s: Settings, directory: Path, progress: bool) -> list[Result]:
    process: dict[int, Callable[[], list[Result]]] = {
        1: lambda: row_check_lenet(s, progress),
        2: lambda: row_cli(s, progress),
        6: lambda: row_scale(s, directory, progress),
        7: lambda: row_imports(s, progress),
    }
    in_process: dict[int, Callable[[], list[Result]]] = {
        3: lambda: row_recurrent(s, directory),
        4: lambda: row_meta(s),
        5: lambda: row_builds(s),
        8: lambda: row_forward(s),
    }
    results: list[Result] = []
    if rows & set(PROCESS_ROWS):
        compile_package()
    for row in (r for r in PROCESS_ROWS if r in rows):
        results += run_row(row, process[row], progress)
    if rows & set(IN_PROCESS_ROWS):
        in_process_setup()
    for row in (r for r in IN_PROCESS_ROWS if r in rows):
        results += run_row(row, in_process[row], progress)
    return sorted(results, key=lambda r: r.row)  # stable: each row's own order is kept


def compile_package() -> None:
    """Byte-compile netdsl's modules, as pip does at install (see the module's docstring)."""
    compileall.compile_dir(str(Path(netdsl.__file__).parent), quiet=1)


def run_row(row: int, measure_row: Callable[[], list[Result]], progress: bool) -> list[Result]:
    if progress:
        print(f"row {row} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    results = guarded(row, f"row {row}", "-", "", None, measure_row)
    if progress:
        for result in results:
            print(f"  {result.name}: {fmt_value(result.value, result.unit).strip()} "
                  f"{result.status}", file=sys.stderr, flush=True)
        print(f"row {row}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return results


# ------------------------------------------------------------------ output


def environment(s: Settings, rows: set[int], elapsed_s: float) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "netdsl": getattr(netdsl, "__version__", "?"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "in_process_threads": 1,
        "rows": sorted(rows),
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
        "elapsed_s": round(elapsed_s, 1),
        **asdict(s),
    }


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3f} {unit}" if unit == "s" else \
                f"{seconds / scale:.2f} {unit}"
    return f"{seconds * 1e9:.0f} ns"


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.3f}x"
    if unit == "s":
        return f"{value:+.3f} s" if value < 0 else f"{value:.3f} s"
    return f"{value:.3f}"


def fmt_goal(goal: float | None, unit: str) -> str:
    if goal is None:
        return "-"
    return f"<= {goal:g}{'x' if unit == 'x' else ' s' if unit == 's' else ''}"


def fmt_spread(result: Result) -> str:
    if result.q1 is None or result.q3 is None:
        return "-"
    return f"[{fmt_value(result.q1, result.unit)}, {fmt_value(result.q3, result.unit)}]"


def table_rows(results: list[Result]) -> list[str]:
    name_width = max([len("measurement"), *(len(r.name) for r in results)])
    spread_width = max([len("IQR"), *(len(fmt_spread(r)) for r in results)])
    head = (f"  {'#':>1} {'measurement':<{name_width}} {'value':>9} {'IQR':<{spread_width}} "
            f"{'goal':<9} {'':<6} {'measured':>10} {'reference':>10} {'calls x n':>9}  "
            f"reference")
    lines = [head]
    for r in results:
        runs = f"{r.calls} x {r.rounds}" if r.rounds else "-"
        lines.append(f"  {r.row:>1} {r.name:<{name_width}} {fmt_value(r.value, r.unit):>9} "
                     f"{fmt_spread(r):<{spread_width}} {fmt_goal(r.goal, r.unit):<9} "
                     f"{r.status:<6} {fmt_seconds(r.ours_s):>10} "
                     f"{fmt_seconds(r.reference_s):>10} {runs:>9}  {r.reference}")
    lines.insert(1, "  " + "-" * (max(map(len, lines)) - 2))
    return lines


def brief(failure: str) -> str:
    """A failure's first and last lines (a traceback's error); --json has all of it."""
    lines = [line for line in failure.strip().splitlines() if line.strip()]
    return lines[0] if len(lines) < 3 else f"{lines[0]} ... {lines[-1].strip()} (--json: all)"


def print_table(env: dict[str, Any], results: list[Result]) -> None:
    mode = "--quick" if env["quick"] else "full run"
    print(f"netdsl speed: Python {env['python']}, torch {env['torch']}, torchvision "
          f"{env['torchvision']}, netdsl {env['netdsl']}, {env['machine']}, {env['cpus']} "
          f"cpu(s); {mode}, {env['elapsed_s']:.0f} s")
    print("value = median over rounds interleaved A,B,A,B with its reference; IQR = the "
          "interquartile range of the per-round values")
    print("x rows: netdsl / reference per-call time (1.000 = same speed); s rows: wall seconds "
          "of fresh processes, 'net' = minus the reference, per round")
    print("measured / reference: median seconds per call (or per process) of each side\n")
    print("\n".join(table_rows(results)))
    noted = [r for r in results if r.note or r.failure]
    if noted:
        print("\nNotes:")
    for r in noted:
        text = f"FAILED: {brief(r.failure)}" if r.failure else r.note
        print(f"  {r.row} {r.name}: {text}")
    over = [r for r in results if r.status in ("over", "FAILED")]
    met = sum(r.status == "ok" for r in results)
    print(f"\n{met} goal(s) met, {len(over)} over or failed"
          + (f", {sum(r.status == 'n/a' for r in results)} n/a (--quick)" if env["quick"]
             else ""))


def print_json(env: dict[str, Any], results: list[Result]) -> None:
    print(json.dumps({"environment": env, "rows": [asdict(r) for r in results]}, indent=2))


# ------------------------------------------------------------------ command line


def parse_rows(text: str) -> set[int]:
    try:
        rows = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected row numbers like 4,5, got {text!r}") from None
    if not rows or not rows <= set(ROWS):
        raise argparse.ArgumentTypeError(f"rows are {ROWS.start} to {ROWS.stop - 1}, got {text!r}")
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke run: few rounds, small row-6 specs")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object instead of a table")
    parser.add_argument("--only", type=parse_rows, default=set(ROWS), metavar="ROW[,ROW]",
                        help="run only these rows (1-8), e.g. --only 4,5")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds after which a process is killed and its row fails "
                             "(default 300)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    if args.quick:
        return Settings(True, process_rounds=3, process_warmup=0, scale_rounds=2,
                        scale_sizes=QUICK_SCALE_SIZES, rounds=3, build_rounds=3, round_ms=20,
                        forward_round_ms=10, warmup=1, timeout_s=args.timeout)
    return Settings(False, process_rounds=15, process_warmup=1, scale_rounds=3,
                    scale_sizes=SCALE_SIZES, rounds=51, build_rounds=9, round_ms=100,
                    forward_round_ms=50, warmup=3, timeout_s=args.timeout)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_from(args)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="netdsl-speed-") as directory:
        results = measure(args.only, settings, Path(directory), progress=not args.json)
    env = environment(settings, args.only, time.perf_counter() - start)
    if args.json:
        print_json(env, results)
    else:
        print_table(env, results)


if __name__ == "__main__":
    main()
