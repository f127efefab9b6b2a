"""Plot: activation std per layer on a log scale, one labelled curve per probed spec.

matplotlib is an optional dependency (``pip install "netdsl[plot]"``); it is imported only here,
only when a plot is asked for.
"""

from __future__ import annotations

import math
from pathlib import Path

from .probe import ProbeResult

INSTALL_HINT = 'plotting needs matplotlib: pip install "netdsl[plot]"'


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def plot_stds(curves: list[tuple[str, ProbeResult]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: write files only
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(INSTALL_HINT) from None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, result in curves:
        stds = result.stds()
        finite = [s if math.isfinite(s) and s > 0 else math.nan for s in stds]
        (line,) = ax.semilogy(range(len(finite)), finite, label=label, linewidth=1.5)
        last = max((i for i, s in enumerate(finite) if not math.isnan(s)), default=None)
        if last is not None and last < len(finite) - 1:  # the curve ends where values overflow
            ax.plot([last], [finite[last]], marker="x", markersize=9, color=line.get_color())
    ax.set_xlabel("layer")
    ax.set_ylabel("activation std (log scale)")
    ax.set_title("activation std per layer")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
