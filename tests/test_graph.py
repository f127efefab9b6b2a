"""netdsl graph against the truth: the layer calls and shapes that forward hooks see on the model
netdsl.load builds (a real input, or meta), the residual adds and concatenations of an fx trace
(of torchvision's model where there is one), graphviz's own parse of the DOT text, and a checker
of the Mermaid subset the writer emits.

Symbolic dimensions run as SIZES in the real forwards; the graph shows them by name, so shapes
are compared after substituting each name with its size.
"""

from __future__ import annotations

import operator
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

import netdsl
from netdsl.cli import main
from netdsl.fromtorch_write import MIN_REPEAT
from netdsl.graph import graph
from netdsl.graph_model import Graph, Group, Node
from netdsl.graph_render import FORMATS, REPEAT_MARK, lines_of, to_dot, to_mermaid

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SIZES = {"N": 2, "B": 2, "T": 16}
GPT_SMALL = {"n_layer": 3, "n_embd": 32, "n_head": 2, "vocab_size": 50, "block_size": 16}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# (spec, model, parameters, input shape given to the graph or None for the declared one)
MODELS = {
    "lenet": ("lenet.net", None, {}, None),
    "resnet18-zoo": ("zoo/resnet.net", "resnet18", {"num_classes": 10}, ["N", 3, 64, 64]),
    "resnet18-example": ("resnet18.net", None, {"num_classes": 10}, ["N", 3, 64, 64]),
    "densenet121": ("zoo/densenet.net", "densenet121", {"num_classes": 10}, ["N", 3, 64, 64]),
    "gpt": ("zoo/gpt.net", None, GPT_SMALL, None),
}


# ---------------------------------------------------------------- helpers


def drawn(name: str, depth: int | None = None) -> Graph:
    file, model, params, shape = MODELS[name]
    return graph(EXAMPLES / file, model=model, params=params, depth=depth,
                 inputs=[shape] if shape is not None else None)


def built(name: str, device: str = "cpu") -> nn.Module:
    file, model, params, _ = MODELS[name]
    return netdsl.load(EXAMPLES / file, model=model, device=device, **params)


def real_input(name: str, device: str = "cpu") -> torch.Tensor:
    file, model, params, shape = MODELS[name]
    declared = shape or netdsl.load_plan(EXAMPLES / file, model=model, **params).inputs[0].shape
    assert declared is not None
    dims = [SIZES[d] if isinstance(d, str) else d for d in declared]
    if name == "gpt":
        return torch.zeros(dims, dtype=torch.long, device=device)
    return torch.randn(dims, generator=torch.Generator().manual_seed(0)).to(device)


def is_layer(module: nn.Module) -> bool:
    """A layer of torch or torchvision, as opposed to a container or a spec's block."""
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)  # not their subclasses (MLP)
    return type(module).__module__.startswith(("torch.", "torchvision.")) and \
        type(module) not in containers


def hooked_calls(model: nn.Module, *args: Any) -> list[tuple[str, list[tuple[int, ...]],
                                                               tuple[int, ...]]]:
    """(path, input shapes, output shape) of every layer call, in the order the forward runs."""
    calls: list[tuple[str, list[tuple[int, ...]], tuple[int, ...]]] = []
    layers = {path: m for path, m in model.named_modules() if is_layer(m)}
    inner = {path for path in layers for outer in layers if path.startswith(outer + ".")}

    def hook(path: str) -> Any:
        def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            shapes = [tuple(t.shape) for t in inputs if isinstance(t, torch.Tensor)]
            out = output[0] if isinstance(output, tuple) else output
            calls.append((path, shapes, tuple(out.shape)))
        return record

    handles = [m.register_forward_hook(hook(p)) for p, m in layers.items() if p not in inner]
    with torch.no_grad():
        model(*args)
    for handle in handles:
        handle.remove()
    return calls


def layer_calls(group: Group) -> list[Node]:
    """The layer nodes in forward order, a folded loop's body or run of a sequential's alike
    children once per iteration (folds inside folds too)."""
    found: list[Node] = []
    for item in group.items:
        if isinstance(item, Node):
            found += [item] * item.repeat if item.kind == "layer" else []
        else:
            found += layer_calls(item) * item.repeat
    return found


def layer_paths(group: Group) -> list[str]:
    """The paths of the layer calls, in forward order: each iteration's own."""
    paths: list[str] = []
    seen: dict[str, int] = {}
    for node in layer_calls(group):
        turn = seen.get(node.id, 0)
        seen[node.id] = turn + 1
        paths.append(node.paths[turn % len(node.paths)])
    return paths


def check_layer_edges(result: Graph, calls: list[tuple[str, list[tuple[int, ...]],
                                                         tuple[int, ...]]]) -> None:
    """Each layer node's edges carry the shapes that every call it stands for takes and
    gives."""
    seen = {path: (ins, out) for path, ins, out in calls}
    for node in result.nodes():
        if node.kind != "layer":
            continue
        incoming = {sizes(e.dims) for e in result.edges if e.target == node.id}
        outgoing = {sizes(e.dims) for e in result.edges if e.source == node.id}
        for path in node.paths:
            assert incoming == set(seen[path][0]) and outgoing == {seen[path][1]}, path


def alike_runs(keys: list[Any]) -> list[list[int]]:
    """The indices of the runs of equal consecutive keys."""
    runs: list[list[int]] = []
    for index, key in enumerate(keys):
        if runs and keys[runs[-1][0]] == key:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def sizes(dims: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(SIZES[d] if d in SIZES else int(d) for d in dims)


def ops_named(drawn_graph: Graph, name: str) -> int:
    """How many times an op runs: a node in a folded loop counts once per iteration."""
    def count(group: Group, times: int) -> int:
        total = 0
        for item in group.items:
            if isinstance(item, Node):
                total += times * item.repeat * (item.kind == "op" and item.name == name)
            else:
                total += count(item, times * item.repeat)
        return total
    return count(drawn_graph.root, 1)


def fx_ops(module: nn.Module, example: torch.Tensor, targets: set[Any]) -> int:
    """Calls of ``targets`` on tensors in an fx trace of a module."""
    traced = fx.symbolic_trace(module)
    ShapeProp(traced).propagate(example)
    return sum(node.op == "call_function" and node.target in targets
               and "tensor_meta" in node.meta for node in traced.graph.nodes)


# A checker of the Mermaid subset the writer emits: a flowchart header, nodes with a quoted label
# in one of six bracket pairs, balanced subgraphs, edges between declared ids with an optional
# quoted label. A label holds no raw quote, angle bracket or pipe (entity codes instead).
_MERMAID_NODE = re.compile(r'(?P<id>[A-Za-z]\w*)(?P<open>\(\[|\[\[|\[\(|\{\{|\[|\()'
                           r'"(?P<label>[^"<>|]*(?:<br/>[^"<>|]*)*)"(?P<close>\]\)|\]\]|\)\]|\}\}|\]|\))')
_MERMAID_PAIRS = {"([": "])", "[[": "]]", "[(": ")]", "{{": "}}", "[": "]", "(": ")"}
_MERMAID_SUBGRAPH = re.compile(r'subgraph (?P<id>[A-Za-z]\w*)\["(?P<label>[^"<>|]*'
                               r'(?:<br/>[^"<>|]*)*)"\]')
_MERMAID_EDGE = re.compile(r'(?P<a>[A-Za-z]\w*) -->(?:\|"[^"<>|]*"\|)? (?P<b>[A-Za-z]\w*)')


def check_mermaid(text: str) -> dict[str, str]:
    """The node labels of a Mermaid flowchart, by id, entity codes decoded; fails on anything
    outside the subset."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    labels: dict[str, str] = {}
    open_subgraphs = 0
    for line in lines[1:]:
        body = line.strip()
        if (node := _MERMAID_NODE.fullmatch(body)) is not None:
            assert _MERMAID_PAIRS[node["open"]] == node["close"], line
            assert node["id"] not in labels, f"duplicate id: {line}"
            labels[node["id"]] = node["label"]
        elif _MERMAID_SUBGRAPH.fullmatch(body) is not None:
            open_subgraphs += 1
        elif body == "end":
            open_subgraphs -= 1
            assert open_subgraphs >= 0, "end without subgraph"
        elif (edge := _MERMAID_EDGE.fullmatch(body)) is not None:
            assert edge["a"] in labels and edge["b"] in labels, line
        else:
            pytest.fail(f"not in the Mermaid subset: {line!r}")
    assert open_subgraphs == 0
    return {key: _decoded(label) for key, label in labels.items()}


def _decoded(label: str) -> str:
    lines = label.split("<br/>")
    for code, char in (("#quot;", '"'), ("#lt;", "<"), ("#gt;", ">"), ("#96;", "`"),
                       ("#124;", "|"), ("#35;", "#"), ("#amp;", "&")):
        lines = [line.replace(code, char) for line in lines]
    return "\n".join(lines)


def svg_texts(svg: bytes) -> list[str]:
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]


def svg_nodes(svg: bytes) -> int:
    root = ET.fromstring(svg)
    return sum(g.get("class") == "node" for g in root.iter("{http://www.w3.org/2000/svg}g"))


# ---------------------------------------------------------------- the data flow


@pytest.mark.parametrize("name", list(MODELS))
def test_layer_nodes_and_edge_shapes_are_what_a_real_forward_sees(name: str) -> None:
    """The layer nodes are the layer calls, in order; each one's edges carry the shapes its
    call takes and gives."""
    result = drawn(name)
    calls = hooked_calls(built(name), real_input(name))
    assert layer_paths(result.root) == [path for path, _, _ in calls]
    check_layer_edges(result, calls)


def test_edge_shapes_name_the_symbols() -> None:
    shapes = {e.shape for e in drawn("resnet18-example").edges}
    assert "[N, 64, 16, 16]" in shapes and "[N, 512]" in shapes
    assert "[B, T, 32]" in {e.shape for e in drawn("gpt").edges}


@pytest.mark.parametrize(("name", "reference"), [
    ("resnet18-zoo", torchvision.models.resnet18),
    ("resnet18-example", torchvision.models.resnet18),
])
def test_residual_adds_match_torchvision(name: str, reference: Any) -> None:
    adds = fx_ops(reference(num_classes=10), real_input(name), {operator.add, operator.iadd})
    assert adds == 8  # two per stage, as the paper draws it
    assert ops_named(drawn(name), "add") == adds


def test_concatenations_match_torchvision_densenet() -> None:
    cats = fx_ops(torchvision.models.densenet121(num_classes=10), real_input("densenet121"),
                  {torch.cat})
    assert cats == 58 + 4  # one per dense layer, one per dense block
    assert ops_named(drawn("densenet121"), "cat") == cats


def test_gpt_adds_match_an_fx_trace_and_its_loop_is_folded() -> None:
    adds = fx_ops(built("gpt"), real_input("gpt"), {operator.add, operator.iadd})
    result = drawn("gpt")
    assert ops_named(result, "add") == adds == 1 + 2 * GPT_SMALL["n_layer"]
    blocks = [g for g in _groups(result.root) if g.kind == "block" and g.repeat > 1]
    assert [g.paths for g in blocks] == [[f"transformer.h.{i}"
                                          for i in range(GPT_SMALL["n_layer"])]]
    assert f"{REPEAT_MARK} {GPT_SMALL['n_layer']}" in to_mermaid(result)


def _groups(group: Group) -> Iterator[Group]:
    for item in group.items:
        if isinstance(item, Group):
            yield item
            yield from _groups(item)


def test_a_loop_over_a_list_is_one_node_with_its_count() -> None:
    result = graph(EXAMPLES / "module_list.net")
    (layer,) = [n for n in result.nodes() if n.kind == "layer"]
    assert layer.repeat == 20 and layer.paths == [f"linears.{i}" for i in range(20)]
    assert f'n2["linears.0 … linears.19 {REPEAT_MARK} 20<br/>Linear(10, 10)"]' in \
        to_mermaid(result)


LOOP_WITH_PARAM = """model Scaled {
    input x: [N, 8]
    param scale = ones(8)
    layers = list [ Linear(8, 8) for i in range(4) ]
    forward(x) {
        for layer in layers {
            x = relu(layer(x)) * scale
        }
        return x
    }
}
"""


def test_a_loop_reading_a_parameter_folds_whole(tmp_path: Path) -> None:
    spec = tmp_path / "scaled.net"
    spec.write_text(LOOP_WITH_PARAM)
    model = netdsl.load(spec)
    x = torch.randn(2, 8)
    result = graph(spec)
    (loop,) = [g for g in _groups(result.root) if g.kind == "loop"]
    assert loop.repeat == len(model.layers)
    assert [n.kind for n in loop.items] == ["layer", "op", "op"]  # Linear, relu, mul
    assert layer_paths(result.root) == [p for p, _, _ in hooked_calls(model, x)]
    assert ops_named(result, "mul") == fx_ops(model, x, {operator.mul}) == 4
    (scale,) = [n for n in result.nodes() if n.kind == "tensor"]
    assert scale.name == "scale" and scale in result.root.items
    assert {e.shape for e in result.edges if e.source == scale.id} == \
        {f"[{model.scale.shape[0]}]"}


def test_a_loop_whose_iterations_differ_stays_unrolled() -> None:
    # DenseNet's dense layers each take one more feature map: no two iterations are alike.
    assert all(n.repeat == 1 for n in drawn("densenet121").nodes())


# ---------------------------------------------------------------- alike children of a sequential

SEQUENTIAL_RUNS = """model Stack {
    input x: [N, 64]
    body = sequential {
        Linear(64, 32)
        for i in range(5) { Linear(32, 32) }
        for i in range(3) { ReLU() }
        Linear(32, 32)
        Linear(32, 32)
    }
    forward(x) = body(x)
}
"""


def test_alike_consecutive_children_of_a_sequential_fold_into_one(tmp_path: Path) -> None:
    spec = tmp_path / "stack.net"
    spec.write_text(SEQUENTIAL_RUNS)
    model = netdsl.load(spec)
    calls = hooked_calls(model, torch.randn(2, 64))
    result = graph(spec)
    layers = [n for n in result.nodes() if n.kind == "layer"]
    # Linear(64, 32) differs from the five after it; the ReLUs are a run of their own, right
    # after theirs (the edge between the two runs stays); a run of two stays two.
    assert [n.paths for n in layers] == [["body.0"], [f"body.{i}" for i in range(1, 6)],
                                         ["body.6", "body.7", "body.8"], ["body.9"], ["body.10"]]
    assert [n.repeat for n in layers] == [1, 5, 3, 1, 1]
    assert lines_of(layers[1]) == [f"1 … 5 {REPEAT_MARK} 5", "Linear(32, 32)"]
    assert lines_of(layers[2]) == [f"6 … 8 {REPEAT_MARK} 3", "ReLU()"]
    assert layer_paths(result.root) == [p for p, _, _ in calls]
    check_layer_edges(result, calls)


NESTED_SEQUENTIALS = """model Nested {
    input x: [N, 8]
    body = sequential {
        for i in range(3) { sequential { Linear(8, 8)  ReLU() } }
        sequential { Linear(8, 8)  Tanh() }
        sequential { Linear(8, 8)  Sigmoid() }
        sequential { Linear(8, 8)  Tanh() }
    }
    forward(x) = body(x)
}
"""


def test_folded_sequentials_fold_only_when_their_contents_are_alike(tmp_path: Path) -> None:
    """At --depth 2 each inner sequential is one node labelled `sequential`: what it holds
    decides whether it is alike its neighbours."""
    spec = tmp_path / "nested.net"
    spec.write_text(NESTED_SEQUENTIALS)
    children = list(netdsl.load(spec).body.named_children())
    runs = alike_runs([tuple(type(m) for m in child) for _, child in children])
    expected = [[f"body.{children[i][0]}" for i in run] for run in runs]
    assert [len(paths) for paths in expected] == [MIN_REPEAT, 1, 1, 1]
    folded = [n for n in graph(spec, depth=2).nodes() if n.kind == "block"]
    assert [n.paths for n in folded] == expected


def test_vit_encoder_layers_fold_into_one_cluster() -> None:
    params = {"image_size": 32, "num_classes": 10}
    with torch.device("meta"):
        reference = torchvision.models.vit_b_16(**params)
    # The hooks watch netdsl's build (torchvision's Encoder would count as one layer).
    model = netdsl.load(EXAMPLES / "zoo" / "vit.net", model="vit_b_16", device="meta", **params)
    calls = hooked_calls(model, torch.zeros(2, 3, 32, 32, device="meta"))
    result = graph(EXAMPLES / "zoo" / "vit.net", model="vit_b_16", params=params)
    (encoder,) = [g for g in _groups(result.root) if g.repeat > 1]
    names = [name for name, _ in reference.encoder.layers.named_children()]
    assert encoder.kind == "block" and encoder.repeat == len(names) == 12
    assert encoder.paths == [f"encoder.layers.{name}" for name in names]
    assert lines_of(encoder)[0] == f"{names[0]} … {names[-1]} {REPEAT_MARK} {len(names)}"
    assert layer_paths(result.root) == [p for p, _, _ in calls]
    check_layer_edges(result, calls)


def test_depth_2_folds_the_alike_blocks_of_a_resnet_stage() -> None:
    """A stage's stride-2 first block stays apart; the identical ones after it fold when there
    are MIN_REPEAT of them (resnet34: 3, 4, 6, 3 blocks)."""
    reference = torchvision.models.resnet34(num_classes=10)
    expected: list[list[str]] = []
    for stage_name, stage in reference.named_children():
        if not isinstance(stage, nn.Sequential):
            continue
        blocks = list(stage.named_children())
        keys = [(b.conv1.in_channels, b.conv1.out_channels, b.conv1.stride, b.downsample is None)
                for _, b in blocks]
        for run in alike_runs(keys):
            paths = [f"{stage_name}.{blocks[i][0]}" for i in run]
            expected += [paths] if len(run) >= MIN_REPEAT else [[path] for path in paths]
    result = graph(EXAMPLES / "zoo" / "resnet.net", model="resnet34",
                   params={"num_classes": 10}, inputs=[["N", 3, 64, 64]], depth=2)
    folded = [n for n in result.nodes() if n.kind == "block"]
    assert [n.paths for n in folded] == expected
    assert [n.repeat for n in folded] == [len(paths) for paths in expected]
    assert lines_of(folded[2]) == [f"1 … 3 {REPEAT_MARK} 3", "BasicBlock(128, 128)"]
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for path, block in reference.named_modules():
        if path.count(".") == 1 and path.startswith("layer"):
            block.register_forward_hook(lambda m, ins, out, p=path: shapes.update(
                {p: (tuple(ins[0].shape), tuple(out.shape))}))
    with torch.no_grad():
        reference(torch.zeros(2, 3, 64, 64))
    for node in folded:
        assert {sizes(e.dims) for e in result.edges if e.target == node.id} == \
            {shapes[node.paths[0]][0]}
        assert {sizes(e.dims) for e in result.edges if e.source == node.id} == \
            {shapes[node.paths[-1]][1]}


def test_dict_choices_list_their_keys_and_every_keys_shape() -> None:
    result = graph(EXAMPLES / "module_dict.net")
    choices = [n for n in result.nodes() if n.kind == "choice"]
    model = netdsl.load(EXAMPLES / "module_dict.net")
    assert [n.name for n in choices] == ["choices[choice]", "activations[act]"]
    for node, options in zip(choices, (model.choices, model.activations), strict=True):
        lines = node.detail.split("\n")
        assert [line.split(": ")[0] for line in lines] == list(options.keys())
        assert all(line.split(": ")[1].startswith(type(m).__name__ + "(")
                   for line, m in zip(lines, options.values(), strict=True))
    x = torch.randn(2, 10, 32, 32)
    shapes = [model(x, key, "relu").shape[1:] for key in ("conv", "pool")]
    out = {e.shape for e in result.edges if e.target == choices[1].id}
    assert out == {" or ".join(f"[N, {', '.join(map(str, s))}]" for s in shapes)}


# ---------------------------------------------------------------- alike groups of children

# Layers that keep an [N, 8] tensor [N, 8], so that any sequence of them runs.
ALPHABET = ("Linear(8, 8)", "ReLU()", "Tanh()", "Linear(8, 8, bias=false)")


def sequential_spec(children: list[str]) -> str:
    body = "\n".join(f"        {child}" for child in children)
    return (f"model Seq {{\n    input x: [N, 8]\n    body = sequential {{\n{body}\n    }}\n"
            f"    forward(x) = body(x)\n}}\n")


def child_keys(model: nn.Module, calls: list[tuple[str, list[tuple[int, ...]],
                                                    tuple[int, ...]]]) -> list[Any]:
    """What makes two children alike in the truth: the module as torch prints it, and the
    shapes it takes."""
    return [(repr(model.get_submodule(path)), tuple(ins)) for path, ins, _ in calls]


def most_covered(keys: list[Any]) -> int:
    """The most children a folding covers, every period and count tried: MIN_REPEAT or more
    alike children, or two or more alike groups of two or more."""
    best = [0] * (len(keys) + 1)
    for start in range(len(keys) - 1, -1, -1):
        best[start] = best[start + 1]
        for period in range(1, (len(keys) - start) // 2 + 1):
            first = keys[start:start + period]
            count = 1
            while keys[start + count * period:start + (count + 1) * period] == first:
                count += 1
                if count >= (MIN_REPEAT if period == 1 else 2):
                    best[start] = max(best[start], period * count + best[start + period * count])
    return best[0]


def calls_in(item: Node | Group) -> int:
    """How many layer calls a top-level item of the sequential stands for."""
    return item.repeat * (1 if isinstance(item, Node) else len(layer_calls(item)))


def check_folds_are_alike(items: list[Node | Group], keys: list[Any]) -> int:
    """Each folded item's iterations are alike children in the truth, a single child repeated
    MIN_REPEAT times at least, a group twice; the children covered."""
    start = covered = 0
    for item in items:
        size = calls_in(item)
        period = size // item.repeat
        if item.repeat > 1:
            assert item.repeat >= (MIN_REPEAT if period == 1 else 2)
            iterations = {tuple(keys[i:i + period]) for i in range(start, start + size, period)}
            assert len(iterations) == 1, item
            covered += size
        start += size
    assert start == len(keys)
    return covered


def body_items(result: Graph) -> list[Node | Group]:
    (body,) = [g for g in _groups(result.root) if g.kind == "sequential" and g.path == "body"]
    return body.items


def folds_of(tmp_path: Path, children: list[str]) -> tuple[Graph, list[Any]]:
    """The graph of a sequential of these children, checked against the layer calls hooks
    see; the children's keys in the truth."""
    spec = tmp_path / "seq.net"
    spec.write_text(sequential_spec(children))
    model = netdsl.load(spec)
    calls = hooked_calls(model, torch.randn(2, 8))
    result = graph(spec)
    assert layer_paths(result.root) == [path for path, _, _ in calls]
    check_layer_edges(result, calls)
    return result, child_keys(model, calls)


@st.composite
def repeating_children(draw: st.DrawFn) -> list[str]:
    """Up to 14 children, made of runs of short groups so that repeats are common."""
    letters = st.sampled_from(ALPHABET)
    runs = draw(st.lists(st.tuples(st.lists(letters, min_size=1, max_size=3),
                                   st.integers(1, 4)), min_size=1, max_size=5))
    children = [child for group, count in runs for child in group * count][:14]
    return children if len(children) > 1 else [*children, "ReLU()"]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(children=repeating_children())
def test_a_sequentials_folds_cover_the_most_children(tmp_path: Path,
                                                     children: list[str]) -> None:
    """Expanded, the folds give the layer calls; each fold's iterations are alike; no folding
    covers more children."""
    result, keys = folds_of(tmp_path, children)
    assert check_folds_are_alike(body_items(result), keys) == most_covered(keys)


def test_a_run_gives_its_last_iterations_to_a_longer_group_after_it(tmp_path: Path) -> None:
    relu, tanh, linear = "ReLU()", "Tanh()", "Linear(8, 8)"
    # (ReLU Tanh) x 2, then (ReLU Tanh ReLU Tanh Linear) x 2: all 14, not the first 8.
    children = [relu, tanh] * 2 + [relu, tanh, relu, tanh, linear] * 2
    result, keys = folds_of(tmp_path, children)
    items = body_items(result)
    assert check_folds_are_alike(items, keys) == len(children) == most_covered(keys)
    assert [(calls_in(i) // i.repeat, i.repeat) for i in items] == [(2, 2), (5, 2)]
    # Inside the second group, its own two pairs fold again.
    assert isinstance(items[1], Group)
    (inner,) = [g for g in _groups(items[1]) if g.kind == "loop"]
    assert inner.repeat == 2 and [n.detail for n in inner.items] == [relu, tanh]


def test_a_group_of_children_is_a_cluster_named_by_the_children_it_covers(
        tmp_path: Path) -> None:
    children = ["Linear(8, 8, bias=false)", *["Linear(8, 8)", "ReLU()", "Tanh()"] * 4]
    result, _ = folds_of(tmp_path, children)
    _, cluster = body_items(result)
    assert isinstance(cluster, Group) and cluster.kind == "loop" and cluster.repeat == 4
    assert cluster.paths == [f"body.{i}" for i in range(1, len(children))]
    assert lines_of(cluster) == [f"1 … 12 {REPEAT_MARK} 4"]
    assert [lines_of(node) for node in cluster.items] == [
        ["1 … 10", "Linear(8, 8)"], ["2 … 11", "ReLU()"], ["3 … 12", "Tanh()"]]
    mermaid = to_mermaid(result)
    check_mermaid(mermaid)
    assert f'subgraph {cluster.id}["1 … 12 {REPEAT_MARK} 4"]' in mermaid
    # Into the cluster once and out of it once: the edges between iterations are the loop.
    inside = {node.id for node in cluster.items}
    assert [(e.source in inside, e.target in inside) for e in result.edges
            if e.source in inside or e.target in inside] == [
        (False, True), (True, True), (True, True), (True, False)]


def vgg_conv_groups(features: nn.Sequential, x: torch.Tensor) -> list[list[str]]:
    """The runs of two or more alike convolutions in torchvision's VGG features, each with its
    batch norm and ReLU (a group of children starts at a Conv2d), alike as modules and in the
    shape each takes: the children each run covers."""
    inputs: dict[str, tuple[int, ...]] = {}
    handles = [m.register_forward_hook(lambda m, ins, out, p=p: inputs.update(
        {p: tuple(ins[0].shape)})) for p, m in features.named_children()]
    with torch.no_grad():
        features(x)
    for handle in handles:
        handle.remove()
    units: list[list[str]] = []
    for name, module in features.named_children():
        if isinstance(module, nn.Conv2d) or not units or isinstance(module, nn.MaxPool2d):
            units.append([])
        units[-1].append(name)
    keys = [tuple((repr(features.get_submodule(n)), inputs[n]) for n in unit) for unit in units]
    return [[f"features.{name}" for i in run for name in units[i]]
            for run in alike_runs(keys) if len(run) > 1]


@pytest.mark.parametrize("name", ["vgg11", "vgg16", "vgg19_bn"])
def test_vgg_features_fold_into_their_alike_convolution_groups(name: str) -> None:
    """A stage's first convolution changes the width and stays apart with its ReLU; the alike
    convolutions after it fold, each with its batch norm and ReLU (torchvision's layout)."""
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)(num_classes=10)
    x = torch.zeros(2, 3, 224, 224, device="meta")
    expected = vgg_conv_groups(reference.features, x)
    assert expected  # every VGG has one: the last stage's two or more 512-wide convolutions
    result = graph(EXAMPLES / "zoo" / "vgg.net", model=name, params={"num_classes": 10})
    clusters = [g for g in _groups(result.root) if g.kind == "loop"]
    assert [g.paths for g in clusters] == expected
    model = netdsl.load(EXAMPLES / "zoo" / "vgg.net", model=name, device="meta", num_classes=10)
    assert layer_paths(result.root) == [p for p, _, _ in hooked_calls(model, x)]


def test_three_thousand_children_fold_at_once(tmp_path: Path) -> None:
    """A sequential of 3,000 children folds in one pass per period, not one per pair."""
    spec = tmp_path / "deep.net"
    spec.write_text(sequential_spec(["for i in range(1000) { Linear(8, 8)  ReLU()  Tanh() }"]))
    started = time.perf_counter()
    result = graph(spec)
    assert time.perf_counter() - started < 10  # about half a second; quadratic takes minutes
    (cluster,) = body_items(result)
    assert isinstance(cluster, Group) and cluster.repeat == 1000
    assert [n.paths[::999] for n in cluster.items] == [
        [f"body.{i}", f"body.{i + 2997}"] for i in range(3)]


# ---------------------------------------------------------------- depth


def test_depth_1_folds_resnet_stages_into_nodes() -> None:
    model = built("resnet18-zoo")
    result = drawn("resnet18-zoo", depth=1)
    assert [n.kind for n in result.nodes()].count("layer") == 6  # conv1 bn1 relu maxpool avgpool fc
    folded = [n for n in result.nodes() if n.kind == "block"]
    assert [n.paths for n in folded] == [[name] for name, m in model.named_children()
                                         if isinstance(m, nn.Sequential)]
    assert not list(_groups(result.root))
    stage = {path: (ins, out) for path, ins, out in _module_calls(model, "resnet18-zoo")}
    for node in folded:
        incoming = {sizes(e.dims) for e in result.edges if e.target == node.id}
        assert incoming == set(stage[node.paths[0]][0])


def test_depth_2_folds_resnet_blocks_labelled_with_their_call() -> None:
    model = built("resnet18-zoo")
    folded = [n for n in drawn("resnet18-zoo", depth=2).nodes() if n.kind == "block"]
    blocks = [(name, m) for name, m in model.named_modules() if name.count(".") == 1
              and name.startswith("layer")]
    assert [n.paths[0] for n in folded] == [name for name, _ in blocks]
    # The trailing arguments left at their defaults are not shown: `BasicBlock(64, 128, 2)`.
    for node, (_, block) in zip(folded, blocks, strict=True):
        conv = block.conv1
        stride = f", {conv.stride[0]}" if conv.stride != (1, 1) else ""
        assert node.detail == f"{type(block).__name__}({conv.in_channels}, " \
            f"{conv.out_channels}{stride})"


BLOCK_DEFAULTS = """block Widen(c: int, wide: int = c * 2, act: layer = ReLU) {
    fc = Linear(c, wide)
    a = act()
    forward(x) = x -> fc -> a
}

model Net {
    input x: [N, 4]
    a = Widen(4)
    b = Widen(8, 8)
    c = Widen(8, 16, Tanh)
    d = Widen(16, 32, ReLU)
    forward(x) = x -> a -> b -> c -> d
}
"""


def test_a_block_label_drops_the_trailing_arguments_at_their_defaults(tmp_path: Path) -> None:
    """A default is evaluated as the call binds it, over the parameters before it: d's 32 is
    16 * 2, so it goes, with the ReLU after it; c's Tanh keeps 16 before it."""
    spec = tmp_path / "widen.net"
    spec.write_text(BLOCK_DEFAULTS)
    model = netdsl.load(spec)
    blocks = [g for g in _groups(graph(spec).root) if g.kind == "block"]
    assert [(g.path, g.detail) for g in blocks] == [
        ("a", "Widen(4)"), ("b", "Widen(8, 8)"), ("c", "Widen(8, 16, Tanh)"), ("d", "Widen(16)")]
    assert [(m.fc.out_features, type(m.a)) for m in model.children()] == [
        (8, nn.ReLU), (8, nn.ReLU), (16, nn.Tanh), (32, nn.ReLU)]


def test_depth_is_at_least_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["graph", str(EXAMPLES / "lenet.net"), "--depth", "0"])
    assert exited.value.code == 2
    assert "argument --depth: must be at least 1: '0'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"depth takes an int of at least 1 \(or None\), got 0"):
        graph(EXAMPLES / "lenet.net", depth=0)


def test_depth_1_folds_the_gpt_blocks_into_one_repeated_node() -> None:
    result = drawn("gpt", depth=1)
    (blocks,) = [n for n in result.nodes() if n.kind == "block"]
    assert blocks.repeat == GPT_SMALL["n_layer"]
    assert blocks.paths == [f"transformer.h.{i}" for i in range(GPT_SMALL["n_layer"])]


def _module_calls(model: nn.Module, name: str) -> list[tuple[str, list[tuple[int, ...]],
                                                             tuple[int, ...]]]:
    calls = []
    handles = [m.register_forward_hook(
        lambda mod, ins, out, p=p: calls.append((p, [tuple(i.shape) for i in ins],
                                                 tuple(out.shape))))
        for p, m in model.named_children()]
    with torch.no_grad():
        model(real_input(name))
    for handle in handles:
        handle.remove()
    return calls


def test_a_model_too_large_to_build_is_drawn_on_meta(tmp_path: Path) -> None:
    spec = tmp_path / "huge.net"
    spec.write_text("model Huge {\n    input x: [N, 1000000]\n    fc = Linear(1000000)\n}\n")
    with pytest.raises(netdsl.NetDSLError, match="over the limit"):
        netdsl.load(spec)  # 10**12 parameters: refused on a real device
    assert [e.shape for e in graph(spec).edges] == ["[N, 1000000]"] * 2  # into and out of fc


# ---------------------------------------------------------------- writers and rendering


@pytest.mark.parametrize("name", list(MODELS))
def test_mermaid_is_in_the_subset_and_labels_every_node(name: str) -> None:
    result = drawn(name)
    labels = check_mermaid(to_mermaid(result))
    assert set(labels) == {n.id for n in result.nodes()}


@pytest.mark.parametrize("suffix", [".svg", ".png", ".dot", ".mmd"])
def test_cli_writes_each_format(tmp_path: Path, suffix: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"lenet{suffix}"
    assert main(["graph", str(EXAMPLES / "lenet.net"), "-o", str(out)]) == 0
    assert capsys.readouterr().err == f"netdsl: wrote {out}\n"
    data = out.read_bytes()
    nodes = len(graph(EXAMPLES / "lenet.net").nodes())
    if suffix == ".svg":
        assert svg_nodes(data) == nodes
        assert "Conv2d(3, 6, 5)" in svg_texts(data)
    elif suffix == ".png":
        assert data.startswith(PNG_SIGNATURE)
    elif suffix == ".dot":  # graphviz's own parser reads it back, every node there
        svg = subprocess.run([shutil.which("dot") or "dot", "-Tsvg"], input=data,
                             capture_output=True, check=True).stdout
        assert svg_nodes(svg) == nodes
    else:
        assert len(check_mermaid(data.decode())) == nodes


def test_stdout_is_mermaid_and_format_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(EXAMPLES / "lenet.net")]) == 0
    assert capsys.readouterr().out == to_mermaid(graph(EXAMPLES / "lenet.net"))
    assert main(["graph", str(EXAMPLES / "lenet.net"), "-o", "-", "--format", "dot"]) == 0
    assert capsys.readouterr().out == to_dot(graph(EXAMPLES / "lenet.net"))


def test_densenet_and_gpt_render_to_svg(tmp_path: Path) -> None:
    for name in ("densenet121", "gpt"):
        out = tmp_path / f"{name}.svg"
        file, model, params, shape = MODELS[name]
        argv = ["graph", str(EXAMPLES / file), "-o", str(out), "--depth", "2",
                *(["--model", model] if model else []),
                *(f"-p{k}={v}" for k, v in params.items()),
                *(["--input", ",".join(map(str, shape))] if shape else [])]
        assert main(argv) == 0
        assert svg_nodes(out.read_bytes()) == len(drawn(name, depth=2).nodes())


def test_missing_dot_is_a_usage_error_that_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    out = tmp_path / "lenet.svg"
    assert main(["graph", str(EXAMPLES / "lenet.net"), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        "netdsl: error: writing SVG needs graphviz's dot program, which is not on PATH: install "
        "graphviz (apt-get install graphviz, brew install graphviz or conda install graphviz); "
        ".dot and .mmd output needs nothing\n")
    assert not out.exists()
    assert main(["graph", str(EXAMPLES / "lenet.net"), "-o", str(tmp_path / "lenet.dot")]) == 0


def test_an_unknown_suffix_is_a_usage_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(EXAMPLES / "lenet.net"), "-o", str(tmp_path / "g.txt")]) == 2
    assert capsys.readouterr().err == (
        f"netdsl: error: cannot tell the format of {tmp_path / 'g.txt'} from its suffix: use "
        f".mmd, .dot, .svg or .png, or --format\n")
    assert sorted(set(FORMATS.values())) == ["dot", "mermaid", "png", "svg"]


HOSTILE = '''model Hostile {
    input x: [N, 4]
    d = dict { "a<b>\\"c]|#`&": Identity("x\\"]<br/>\\n#quot;&`{}", k="<i>") }
    forward(x) = x -> d["a<b>\\"c]|#`&"]
}
'''


def test_hostile_names_stay_text_in_both_formats(tmp_path: Path) -> None:
    spec = tmp_path / "hostile.net"
    spec.write_text(HOSTILE)
    model = netdsl.load(spec)
    (path,) = [p for p, m in model.named_modules() if isinstance(m, nn.Identity)]
    call = "Identity('x\"]<br/>\\n#quot;&`{}', k='<i>')"
    result = graph(spec)
    (layer,) = [n for n in result.nodes() if n.kind == "layer"]
    assert check_mermaid(to_mermaid(result))[layer.id] == f"{path}\n{call}"
    out = tmp_path / "hostile.svg"
    assert main(["graph", str(spec), "-o", str(out)]) == 0
    texts = svg_texts(out.read_bytes())
    assert path in texts and call in texts


def test_a_newline_in_a_key_is_a_line_break_not_a_broken_label(tmp_path: Path) -> None:
    spec = tmp_path / "newline.net"
    spec.write_text(HOSTILE.replace('c]|#`&', 'c\\nd'))
    result = graph(spec)
    (layer,) = [n for n in result.nodes() if n.kind == "layer"]
    assert check_mermaid(to_mermaid(result))[layer.id].startswith('d.a<b>"c\nd\n')
    assert '\\n' in to_dot(result) and "\n" not in to_dot(result).split("label=")[3][:20]


# ---------------------------------------------------------------- errors


def test_a_spec_error_is_reported_located(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.net"
    spec.write_text("model Bad {\n    input x: [N, 4]\n    fc = Linear(4, 2)\n"
                    "    forward(x) = x -> fcc\n}\n")
    assert main(["graph", str(spec), "-o", str(tmp_path / "bad.svg")]) == 1
    assert capsys.readouterr().err == (
        f"{spec}:4:23: error[NDL002]: undefined name 'fcc' in forward; did you mean 'fc'?\n"
        f"        forward(x) = x -> fcc\n"
        f"                          ^^^\n")
    assert not (tmp_path / "bad.svg").exists()


def test_a_model_without_input_shape_needs_input(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "noinput.net"
    spec.write_text("model NoInput {\n    fc = Linear(4, 2)\n}\n")
    assert main(["graph", str(spec)]) == 1
    assert capsys.readouterr().err == (
        f"{spec}:1:1: error[NDL007]: NoInput declares no input shape, and a graph follows the "
        f"tensors: declare one (input x: [N, ...]) or give --input\n"
        f"    model NoInput {{\n"
        f"    ^^^^^^^^^^^^^^^\n")
    assert main(["graph", str(spec), "--input", "N,4"]) == 0
    assert '"[N, 2]"' in capsys.readouterr().out


# ---------------------------------------------------------------- every example


def _every_model() -> list[Any]:
    cases = []
    for path in sorted(EXAMPLES.rglob("*.net")):
        for decl in netdsl.parse_file(path).models:
            params = [p.name.name for p in decl.params or []]
            if decl.kind == "model" and all(p.default is not None for p in decl.params or []):
                given = {"num_classes": 10} if "num_classes" in params else {}
                cases.append(pytest.param(path, decl.name.name, given,
                                          id=f"{path.relative_to(EXAMPLES)}:{decl.name.name}"))
    return cases


@pytest.mark.parametrize(("path", "model", "params"), _every_model())
def test_every_example_draws_its_layer_calls(path: Path, model: str,
                                             params: dict[str, Any]) -> None:
    result = graph(path, model=model, params=params)
    check_mermaid(to_mermaid(result))
    assert to_dot(result).startswith("digraph")
    inputs = netdsl.load_plan(path, model=model, **params).inputs
    if any(i.shape is None for i in inputs):  # dict keys: the choices are drawn as such
        assert any(n.kind == "choice" for n in result.nodes())
        return
    built_model = netdsl.load(path, model=model, device="meta", **params)
    tensors = [torch.zeros([SIZES.get(d, 64) if isinstance(d, str) else d for d in i.shape or []],
                           dtype=i.dtype, device="meta") for i in inputs]
    calls = hooked_calls(built_model, *tensors)
    assert layer_paths(result.root) == [p for p, _, _ in calls]


def test_the_docs_mermaid_block_is_what_the_command_prints() -> None:
    doc = (EXAMPLES.parent / "docs" / "graph.md").read_text()
    block = doc.split("```mermaid\n")[1].split("```")[0]
    assert block == to_mermaid(graph(EXAMPLES / "residual.net"))
    check_mermaid(block)


def test_the_docs_vgg_excerpt_is_what_the_command_prints() -> None:
    doc = (EXAMPLES.parent / "docs" / "graph.md").read_text()
    excerpt = doc.split("```text\n")[1].split("```")[0]
    printed = to_mermaid(graph(EXAMPLES / "zoo" / "vgg.net", model="vgg16",
                               params={"num_classes": 10}))
    assert printed.splitlines()[13:20] == excerpt.splitlines()
