"""Rendering: a Graph (netdsl.graph) -> Mermaid or DOT text, or SVG/PNG through graphviz.

Both writers walk the same clusters and nodes; every label is escaped for its format, so a dict
key or a string argument holding quotes, brackets or ``<br>`` stays text. SVG and PNG come from
graphviz's ``dot`` program, run without a shell on the DOT text.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import PurePath

from .graph_model import Edge, Graph, Group, Node

FORMATS = {".mmd": "mermaid", ".mermaid": "mermaid", ".dot": "dot", ".gv": "dot",
           ".svg": "svg", ".png": "png"}
DOT_SECONDS = 120  # a 10,000-node graph lays out in well under a minute
INSTALL_HINT = ("install graphviz (apt-get install graphviz, brew install graphviz or conda "
                "install graphviz); .dot and .mmd output needs nothing")
INDENT = "    "
REPEAT_MARK = "\N{MULTIPLICATION SIGN}"  # before a folded loop's count
FAN_OUT = 3  # a residual's skip and q, k, v keep their labels; DenseNet's features do not


class RenderError(Exception):
    """graphviz is missing or failed: a usage error, not a mistake in the spec."""


def lines_of(item: Node | Group) -> list[str]:
    """A node's or cluster's label, line by line: name (and repeat count), detail."""
    name = item.name
    if item.paths:
        name = _relative(item.paths[0], item)
    inside = all(p.startswith(item.scope + ".") for p in item.paths) if item.scope else True
    if len(item.paths) > 1 and inside:  # a folded loop: the first and last iteration's paths
        name = f"{name} … {_relative(item.paths[-1], item)}"
    if item.repeat > 1:
        name = f"{name} {REPEAT_MARK} {item.repeat}"
    return [name, *item.detail.split("\n")] if item.detail else [name]


def _relative(path: str, item: Node | Group) -> str:
    """A layer's path inside its block, shown in the block's cluster: ``conv1``."""
    return path[len(item.scope) + 1:] if item.scope and path.startswith(item.scope + ".") \
        else path


def edge_labels(edges: list[Edge]) -> list[str]:
    """Each edge's label; a tensor taken by more than FAN_OUT nodes (DenseNet's features) is
    labelled on its first edge only."""
    fan_out = Counter((edge.source, edge.shape) for edge in edges)
    seen: set[tuple[str, str]] = set()
    labels = []
    for edge in edges:
        key = (edge.source, edge.shape)
        labels.append("" if key in seen and fan_out[key] > FAN_OUT else edge.shape)
        seen.add(key)
    return labels


# ---------------------------------------------------------------- Mermaid

_MERMAID_SHAPES = {"input": ('(["', '"])'), "output": ('(["', '"])'), "layer": ('["', '"]'),
                   "op": ('("', '")'), "block": ('[["', '"]]'), "choice": ('{{"', '"}}'),
                   "tensor": ('[("', '")]')}
_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;",
                    "`": "#96;", "|": "#124;", "\n": "<br/>", "\r": "<br/>"}


def mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label: entity codes for what Mermaid would read, a
    line break (a dict key may hold one) as Mermaid's."""
    return "".join(_MERMAID_ESCAPES.get(c, c) for c in text)


def to_mermaid(drawn: Graph) -> str:
    lines = ["flowchart TD"]
    lines += _mermaid_items(drawn.root.items, 1)
    lines += [f"{INDENT}{e.source} -->|\"{mermaid_text(label)}\"| {e.target}"
              if label else f"{INDENT}{e.source} --> {e.target}"
              for e, label in zip(drawn.edges, edge_labels(drawn.edges), strict=True)]
    return "\n".join(lines) + "\n"


def _mermaid_items(items: list[Node | Group], level: int) -> Iterator[str]:
    pad = INDENT * level
    for item in items:
        label = "<br/>".join(mermaid_text(line) for line in lines_of(item))
        if isinstance(item, Node):
            opening, closing = _MERMAID_SHAPES[item.kind]
            yield f"{pad}{item.id}{opening}{label}{closing}"
        else:
            yield f'{pad}subgraph {item.id}["{label}"]'
            yield from _mermaid_items(item.items, level + 1)
            yield f"{pad}end"


# ---------------------------------------------------------------- DOT

_DOT_SHAPES = {"input": "oval", "output": "oval", "layer": "box", "op": "box",
               "block": "box3d", "choice": "hexagon", "tensor": "cylinder"}
_DOT_FILLS = {"input": "#e8f1fb", "output": "#e8f1fb", "layer": "#fff8e6", "op": "#f2f2f2",
              "block": "#fff8e6", "choice": "#f3ecfa", "tensor": "#eef7ee"}


def dot_text(text: str) -> str:
    """Text inside a quoted DOT string: ``\\`` and ``"`` escaped, lines as ``\\n``."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(drawn: Graph) -> str:
    lines = [f'digraph "{dot_text(drawn.model)}" {{',
             f'{INDENT}graph [fontname="Helvetica", fontsize=11, labeljust=l, nodesep=0.3, '
             f'ranksep=0.35, label="{dot_text(drawn.model)}", labelloc=t]',
             f'{INDENT}node [fontname="Helvetica", fontsize=10, style="filled,rounded", '
             f'color="#666666", margin="0.12,0.04", height=0.3]',
             f'{INDENT}edge [fontname="Helvetica", fontsize=9, color="#555555", '
             f'fontcolor="#1f4e8c", arrowsize=0.6]']
    lines += _dot_items(drawn.root.items, 1)
    lines += [f"{INDENT}{e.source} -> {e.target}" + (f' [label="{dot_text(label)}"]'
                                                     if label else "")
              for e, label in zip(drawn.edges, edge_labels(drawn.edges), strict=True)]
    return "\n".join([*lines, "}"]) + "\n"


def _dot_items(items: list[Node | Group], level: int) -> Iterator[str]:
    pad = INDENT * level
    for item in items:
        label = dot_text("\n".join(lines_of(item)))
        if isinstance(item, Node):
            style = ', style="filled"' if item.kind == "op" else ""
            yield (f'{pad}{item.id} [label="{label}", shape={_DOT_SHAPES[item.kind]}, '
                   f'fillcolor="{_DOT_FILLS[item.kind]}"{style}]')
        else:
            dashed = "dashed" if item.kind in ("call", "loop") else "solid"
            yield f"{pad}subgraph cluster_{item.id} {{"
            yield (f'{pad}{INDENT}label="{label}"; style="rounded,{dashed}"; color="#999999"; '
                   f'fontsize=10')
            yield from _dot_items(item.items, level + 1)
            yield f"{pad}}}"


def render_with_dot(dot: str, fmt: str) -> bytes:
    """SVG or PNG from graphviz's ``dot``; RenderError when it is missing or fails."""
    program = shutil.which("dot")
    if program is None:
        raise RenderError(f"writing {fmt.upper()} needs graphviz's dot program, which is not on "
                          f"PATH: {INSTALL_HINT}")
    try:
        done = subprocess.run([program, f"-T{fmt}"], input=dot.encode(), capture_output=True,
                              timeout=DOT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"graphviz's dot took longer than {DOT_SECONDS} s; write .dot or .mmd "
                          f"instead, or fold blocks with --depth") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise RenderError(f"graphviz's dot failed: {reason[0] if reason else done.returncode}")
    return done.stdout


def format_for(output: str, given: str | None) -> str:
    """The format to write: ``given``, else the output's suffix (Mermaid for stdout)."""
    if given is not None:
        return given
    if output == "-":
        return "mermaid"
    suffix = PurePath(output).suffix.lower()
    if suffix not in FORMATS:
        raise RenderError(f"cannot tell the format of {output} from its suffix: use .mmd, .dot, "
                          f".svg or .png, or --format")
    return FORMATS[suffix]


def render(drawn: Graph, fmt: str) -> bytes:
    """The graph in a format of FORMATS' values."""
    if fmt == "mermaid":
        return to_mermaid(drawn).encode()
    dot = to_dot(drawn)
    return dot.encode() if fmt == "dot" else render_with_dot(dot, fmt)


__all__ = ["FORMATS", "RenderError", "dot_text", "format_for", "mermaid_text", "render",
           "to_dot", "to_mermaid"]
