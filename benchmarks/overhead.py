"""netdsl's overhead against hand-written PyTorch, as ratios measured interleaved in one run.

Machines are shared and noisy, so absolute times mean little; what this reports is how netdsl
compares with the equivalent hand-written model *measured at the same moment*. Every comparison
alternates rounds A, B, A, B, ... (A = netdsl, B = reference); each round times many calls with
``time.perf_counter_ns``. Reported per comparison: the median per-call time of each side, and the
median of the per-round ratios A_i / B_i (B_i being the round right after A_i) with their
interquartile range as the spread.

1. Forward, batch 1, ``torch.set_num_threads(1)``, ``torch.inference_mode()``, ``eval()``:
   LeNet (``examples/lenet.net`` vs the hand-written ``LeNetSequential`` below) and AlexNet
   (``examples/alexnet.net`` vs ``torchvision.models.alexnet()``), ResNet-50 and MobileNetV2
   (``examples/zoo/``, their forwards full of compile-time-decided ``if``s, vs torchvision's
   ``resnet50()`` and ``mobilenet_v2()``), and nanoGPT (``examples/zoo/gpt.net`` vs the
   hand-written ``tests/ref_nanogpt.py``, T = 64, both attention paths). Both sides get the same
   weights and their outputs are checked to agree, so both compute the same thing. A control
   row times two instances of the reference against each other the same way: its distance from
   1.000 is what noise and memory placement alone produce on this machine.
2. Build: ``netdsl.load("examples/alexnet.net")`` vs ``torchvision.models.alexnet()`` on the CPU,
   and both on the meta device. The first ``netdsl.load`` in a process also builds the LALR
   parser (cached in-process afterwards); that cold load is timed once, separately, before
   anything else touches netdsl.

Usage::

    .venv/bin/python benchmarks/overhead.py            # full run, readable table
    .venv/bin/python benchmarks/overhead.py --quick    # smoke run (3 rounds; mostly imports)
    .venv/bin/python benchmarks/overhead.py --json     # the same results as one JSON object
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

import netdsl

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LENET = EXAMPLES / "lenet.net"
ALEXNET = EXAMPLES / "alexnet.net"
ZOO = EXAMPLES / "zoo"


class LeNetSequential(nn.Module):
    """The hand-written LeNet that ``examples/lenet.net`` describes: same modules, same keys."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# ------------------------------------------------------------------ settings and results


@dataclass(frozen=True)
class Settings:
    rounds: int  # rounds per side, per comparison
    build_rounds: int  # rounds per side for the (slow) CPU build comparison
    forward_round_ms: float  # target duration of one forward round
    build_round_ms: float  # target duration of one meta-build round
    warmup: int  # untimed calls per side before a comparison starts


@dataclass(frozen=True)
class Comparison:
    name: str
    reference: str
    calls_per_round: int
    rounds: int
    netdsl_ns: float  # median per-call time, netdsl
    reference_ns: float  # median per-call time, reference
    ratio: float  # median of the per-round ratios netdsl / reference
    ratio_q1: float
    ratio_q3: float
    max_abs_diff: float | None = None  # forward only: netdsl output vs reference output
    control: bool = False  # reference vs another instance of itself, not netdsl


@dataclass(frozen=True)
class Cold:
    first_load_ms: float  # the first netdsl.load in this process (alexnet.net, meta device)
    parser_build_ms: float | None  # one fresh LALR parser build, timed after the cold load


# ------------------------------------------------------------------ timing


@contextmanager
def gc_disabled(disabled: bool) -> Iterator[None]:
    """Like timeit: no cyclic GC pauses inside a timed round (when ``disabled``)."""
    was_enabled = gc.isenabled()
    if disabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def freeze_heap() -> None:
    """Move torch's (and everything else's) existing objects out of the cyclic GC's reach.

    A full ``gc.collect()`` over them takes ~0.4 s; frozen, the collection before each round
    only walks what the benchmark itself created since.
    """
    gc.collect()
    gc.freeze()


def time_round(fn: Callable[[], object], calls: int, *, no_gc: bool) -> float:
    """Per-call nanoseconds over ``calls`` back-to-back calls of ``fn``."""
    gc.collect()
    with gc_disabled(no_gc):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        stop = time.perf_counter_ns()
    return (stop - start) / calls


def warm_up(fns: tuple[Callable[[], object], ...], calls: int) -> None:
    for fn in fns:
        for _ in range(calls):
            fn()


def calls_for(fns: tuple[Callable[[], object], ...], target_ms: float, warmup: int) -> int:
    """Warm both sides up, then pick how many calls make one round last about ``target_ms``."""
    warm_up(fns, warmup)
    slowest = max(statistics.median(time_round(fn, 1, no_gc=True) for _ in range(3))
                  for fn in fns)
    return max(1, math.ceil(target_ms * 1e6 / slowest))


def interleave(a: Callable[[], object], b: Callable[[], object], calls: int, rounds: int,
               *, no_gc: bool) -> tuple[list[float], list[float]]:
    """Rounds A, B, A, B, ...: per-call nanoseconds of every round of each side."""
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(rounds):
        times_a.append(time_round(a, calls, no_gc=no_gc))
        times_b.append(time_round(b, calls, no_gc=no_gc))
    return times_a, times_b


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def compare(name: str, reference: str, a: Callable[[], object], b: Callable[[], object], *,
            calls: int, rounds: int, no_gc: bool) -> Comparison:
    times_a, times_b = interleave(a, b, calls, rounds, no_gc=no_gc)
    q1, ratio, q3 = quartiles([ta / tb for ta, tb in zip(times_a, times_b, strict=True)])
    return Comparison(name, reference, calls, rounds, statistics.median(times_a),
                      statistics.median(times_b), ratio, q1, q3)


# ------------------------------------------------------------------ the comparisons


def cold_load() -> Cold:
    """The first netdsl.load in the process, on the meta device so that it is all netdsl's work.

    torch is warmed up first (one torchvision build on the meta device), so torch's own lazy
    one-time setup is not charged to netdsl.
    """
    with torch.device("meta"):
        torchvision.models.alexnet()
    start = time.perf_counter_ns()
    netdsl.load(ALEXNET, device="meta")
    first = (time.perf_counter_ns() - start) / 1e6
    return Cold(first, parser_build_ms())


def parser_build_ms() -> float | None:
    """One more LALR parser build (uncached); None if netdsl's internals have moved."""
    try:
        from netdsl.parser import build_parser
    except ImportError:
        return None
    start = time.perf_counter_ns()
    build_parser()
    return (time.perf_counter_ns() - start) / 1e6


def same_weights(ours: nn.Module, reference: nn.Module) -> None:
    """Give the reference netdsl's weights (same keys), so both compute the same outputs."""
    reference.load_state_dict(ours.state_dict())
    ours.eval()
    reference.eval()


def max_abs_diff(ours: nn.Module, reference: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        return (ours(x) - reference(x)).abs().max().item()


def forward(name: str, reference_name: str, ours: nn.Module, reference: nn.Module,
            x: torch.Tensor, settings: Settings) -> Comparison:
    same_weights(ours, reference)
    diff = max_abs_diff(ours, reference, x)
    def run_ours() -> object:
        return ours(x)

    def run_reference() -> object:
        return reference(x)

    with torch.inference_mode():
        calls = calls_for((run_ours, run_reference), settings.forward_round_ms, settings.warmup)
        result = compare(name, reference_name, run_ours, run_reference,
                         calls=calls, rounds=settings.rounds, no_gc=True)
    return replace(result, max_abs_diff=diff)


def forward_pair(name: str, reference_name: str, spec: Path,
                 make_reference: Callable[[], nn.Module], x: torch.Tensor,
                 settings: Settings) -> list[Comparison]:
    """netdsl vs the reference, then the control: the reference vs a second instance of it."""
    ours = forward(f"{name} forward", reference_name, netdsl.load(spec), make_reference(), x,
                   settings)
    control = forward(f"{name} control", f"{reference_name}, twice", make_reference(),
                      make_reference(), x, settings)
    return [ours, replace(control, control=True)]


def forward_lenet(settings: Settings) -> list[Comparison]:
    return forward_pair("LeNet", "hand-written LeNetSequential", LENET, LeNetSequential,
                        torch.randn(1, 3, 32, 32), settings)


def forward_alexnet(settings: Settings) -> list[Comparison]:
    return forward_pair("AlexNet", "torchvision.models.alexnet()", ALEXNET,
                        torchvision.models.alexnet, torch.randn(1, 3, 224, 224), settings)


def forward_zoo(builder: str, spec: str, settings: Settings) -> list[Comparison]:
    def ours() -> nn.Module:
        return netdsl.load(ZOO / spec, model=builder)

    reference = getattr(torchvision.models, builder)
    x = torch.randn(1, 3, 224, 224)
    same = forward(f"{builder} forward", f"torchvision.models.{builder}()", ours(), reference(),
                   x, settings)
    control = forward(f"{builder} control", f"torchvision {builder}, twice", reference(),
                      reference(), x, settings)
    return [same, replace(control, control=True)]


def forward_gpt(settings: Settings) -> list[Comparison]:
    """``examples/zoo/gpt.net`` vs the hand-written nanoGPT of tests/ref_nanogpt.py: GPT-2
    small's shape (12 layers, 12 heads, 768 wide), T = 64, both attention paths."""
    sys.path.insert(0, str(EXAMPLES.parent / "tests"))
    from ref_nanogpt import GPT, GPTConfig  # the test suite's reference: nanoGPT's model.py

    idx = torch.randint(0, 50304, (1, 64))
    results = []
    for flash in (True, False):
        def reference(flash: bool = flash) -> nn.Module:
            return GPT(GPTConfig(block_size=64, flash=flash))

        ours = netdsl.load(ZOO / "gpt.net", block_size=64, flash=flash)
        name = f"GPT (T=64, {'flash' if flash else 'masked'})"
        results.append(forward(f"{name} forward", "nanoGPT (tests/ref_nanogpt.py)", ours,
                               reference(), idx, settings))
    control = forward("GPT control", "nanoGPT, twice", GPT(GPTConfig(block_size=64)),
                      GPT(GPTConfig(block_size=64)), idx, settings)
    return [*results, replace(control, control=True)]


def cpu_netdsl() -> nn.Module:
    return netdsl.load(ALEXNET)


def meta_netdsl() -> nn.Module:
    return netdsl.load(ALEXNET, device="meta")


def meta_torchvision() -> nn.Module:
    with torch.device("meta"):
        return torchvision.models.alexnet()


def build_cpu(settings: Settings) -> Comparison:
    """One build per round (each allocates and initialises ~61M parameters).

    Builds run with the cyclic GC on (as in a real program); what a build leaves for it
    (netdsl: ~1k cyclic objects, well under 1 ms to collect) is collected between rounds,
    untimed, so neither side pays for the other's garbage.
    """
    warm_up((cpu_netdsl, torchvision.models.alexnet), settings.warmup)
    return compare("AlexNet build, cpu", "torchvision.models.alexnet()", cpu_netdsl,
                   torchvision.models.alexnet,
                   calls=1, rounds=settings.build_rounds, no_gc=False)


def build_meta(settings: Settings) -> Comparison:
    calls = calls_for((meta_netdsl, meta_torchvision), settings.build_round_ms, settings.warmup)
    return compare("AlexNet build, meta", "alexnet() in torch.device('meta')",
                   meta_netdsl, meta_torchvision, calls=calls, rounds=settings.rounds, no_gc=False)


# ------------------------------------------------------------------ output


def environment(settings: Settings) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "netdsl": getattr(netdsl, "__version__", "?"),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        **asdict(settings),
    }


def fmt_time(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:7.2f} {unit:<2}"
    return f"{ns:7.0f} ns"


def table_rows(results: list[Comparison]) -> list[str]:
    head = (f"  {'comparison':<22} {'calls x rounds':>14} {'netdsl':>11} {'reference':>11}"
            f"   {'ratio':>5}  {'IQR of ratios':<13}  reference")
    rows = [head]
    for r in results:
        runs = f"{r.calls_per_round} x {r.rounds}"
        rows.append(f"  {r.name:<22} {runs:>14} {fmt_time(r.netdsl_ns):>11} "
                    f"{fmt_time(r.reference_ns):>11}   {r.ratio:5.3f}  "
                    f"[{r.ratio_q1:5.3f}, {r.ratio_q3:5.3f}]  {r.reference}")
    rows.insert(1, "  " + "-" * (max(map(len, rows)) - 2))
    return rows


def check_rows(results: list[Comparison]) -> list[str]:
    return [f"  {r.name}: max |netdsl - reference| over the output = {r.max_abs_diff:.3g}"
            for r in results if r.max_abs_diff is not None and not r.control]


def cold_rows(cold: Cold, meta: Comparison) -> list[str]:
    rows = [f"  first netdsl.load in the process (alexnet.net, meta): {cold.first_load_ms:8.1f} ms",
            f"  warm netdsl.load (median above, same call):            "
            f"{meta.netdsl_ns / 1e6:8.1f} ms"]
    if cold.parser_build_ms is not None:
        rows.append(f"  one LALR parser build (netdsl.parser.build_parser()):  "
                    f"{cold.parser_build_ms:8.1f} ms")
    return rows


def print_table(env: dict[str, Any], results: list[Comparison], cold: Cold) -> None:
    print(f"netdsl overhead: Python {env['python']}, torch {env['torch']}, torchvision "
          f"{env['torchvision']}, {env['machine']}, {env['threads']} thread(s)")
    print("ratio = median over rounds of netdsl/reference per-call time, rounds interleaved "
          "A,B,A,B; 1.000 = same speed, < 1 = netdsl faster")
    print("control = the reference against a second instance of itself (netdsl column = the "
          "first instance): the noise floor\n")
    print("Forward, batch 1, torch.inference_mode(), eval(); build of AlexNet (lower is better)")
    print("\n".join(table_rows(results)))
    print("\nSame weights, same outputs (forward):")
    print("\n".join(check_rows(results)))
    print("\nOne-time cost (parser built on the first load, cached in-process afterwards):")
    print("\n".join(cold_rows(cold, results[-1])))  # results[-1]: the meta build


def print_json(env: dict[str, Any], results: list[Comparison], cold: Cold) -> None:
    print(json.dumps({"environment": env, "comparisons": [asdict(r) for r in results],
                      "cold": asdict(cold)}, indent=2))


# ------------------------------------------------------------------ command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds per side for each comparison (default 51; 3 with --quick)")
    parser.add_argument("--build-rounds", type=int, default=None,
                        help="rounds per side for the CPU build, one build each "
                             "(default: --rounds, at most 31)")
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke run: few, short rounds")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object instead of a table")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 51)
    if rounds < 1 or (args.build_rounds is not None and args.build_rounds < 1):
        sys.exit("overhead.py: rounds must be at least 1")
    build_rounds = args.build_rounds if args.build_rounds is not None else min(rounds, 31)
    if args.quick:
        return Settings(rounds, build_rounds, forward_round_ms=10, build_round_ms=10, warmup=1)
    return Settings(rounds, build_rounds, forward_round_ms=50, build_round_ms=100, warmup=3)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_from(args)
    torch.set_num_threads(1)
    cold = cold_load()  # first: nothing may have loaded a spec before it
    freeze_heap()
    results = [*forward_lenet(settings), *forward_alexnet(settings),
               *forward_zoo("resnet50", "resnet.net", settings),
               *forward_zoo("mobilenet_v2", "mobilenet_v2.net", settings),
               *forward_gpt(settings), build_cpu(settings), build_meta(settings)]
    env = environment(settings)
    if args.json:
        print_json(env, results, cold)
    else:
        print_table(env, results, cold)


if __name__ == "__main__":
    main()
