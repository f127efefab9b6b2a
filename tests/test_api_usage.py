"""Wrong arguments to the public API: each is a TypeError or ValueError naming the argument
(never an "internal error", never blamed on a spec line), and nothing is built."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from torch import nn

import netdsl
from netdsl import api

LENET = str(Path(__file__).resolve().parent.parent / "examples" / "lenet.net")

CASES: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("reinitialize_other_module", lambda: netdsl.reinitialize(nn.Linear(2, 2), LENET),
     ValueError, f"module is not LeNet of {LENET}: it has no 'features.0.weight'"),
    ("reinitialize_not_a_module", lambda: netdsl.reinitialize("lenet", LENET),
     TypeError, "module takes an nn.Module, got str"),
    ("summary_inputs_dict", lambda: api.summary(LENET, inputs={"x": (1, 3, 64, 64)}),
     TypeError, "inputs takes a list of shapes, one per tensor argument of the forward "
                "(e.g. [(1, 3, 224, 224)]), got dict"),
    ("summary_inputs_flat", lambda: api.summary(LENET, inputs=[1, 3, 32, 32]),
     TypeError, "inputs: a shape is a tuple of sizes, e.g. (1, 3, 224, 224), got int"),
    ("summary_bad_symbol", lambda: api.summary(LENET, inputs=[(1, "a b", 64)]),
     TypeError, "inputs: sizes are ints or symbol names, got 'a b' in (1, 'a b', 64)"),
    ("summary_negative", lambda: api.summary(LENET, inputs=[[1, -3, 28, 28]]),
     ValueError, "inputs: sizes are between 0 and 2**48, got -3 in [1, -3, 28, 28]"),
    ("probe_shape_string", lambda: api.probe(LENET, "1,3,32,32"),
     TypeError, "input_shape: a shape is a tuple of sizes, e.g. (1, 3, 224, 224), got str"),
    ("probe_symbolic", lambda: api.probe(LENET, ("N", 3, 32, 32)),
     TypeError, "input_shape: sizes are ints, got 'N' in ('N', 3, 32, 32)"),
    ("probe_seed", lambda: api.probe(LENET, (1, 3, 32, 32), seed="0"),
     TypeError, "seed takes an int or None, got str"),
    ("load_device", lambda: netdsl.load(LENET, device="bogus"),
     ValueError, "device='bogus': Expected one of cpu"),
    ("load_bytes", lambda: netdsl.loads(b"model M { a = ReLU() }"),
     TypeError, "spec text is a str, got bytes (decode it first)"),
    ("load_none", lambda: netdsl.loads(None),  # type: ignore[arg-type]
     TypeError, "spec text is a str, got NoneType"),
    ("load_path_type", lambda: netdsl.load(3),  # type: ignore[arg-type]
     TypeError, "a spec path is a str or os.PathLike, got int"),
    ("model_type", lambda: netdsl.load(LENET, model=3),  # type: ignore[arg-type]
     TypeError, "model= takes a model's name (a str), got int"),
    ("limits_type", lambda: netdsl.check(LENET, limits=3),  # type: ignore[arg-type]
     TypeError, "limits= takes a netdsl.Limits, got int"),
]


@pytest.mark.parametrize(("call", "kind", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_wrong_argument(call: Callable[[], Any], kind: type[Exception], message: str) -> None:
    with pytest.raises(kind) as info:
        call()
    assert not isinstance(info.value, netdsl.InternalError)
    assert str(info.value).startswith(message)


def test_a_missing_device_is_a_device_problem() -> None:
    # No machine has a 100th GPU: refused as a device, before the spec is read.
    with pytest.raises(ValueError) as info:
        netdsl.load(LENET, device="cuda:99")
    assert str(info.value).startswith("device='cuda:99': ")
    assert "lenet.net" not in str(info.value)  # not blamed on a spec line


def test_custom_modules_must_be_module_classes() -> None:
    with pytest.raises(netdsl.NetDSLError) as info:
        netdsl.load(LENET, modules={"X": int})
    assert info.value.message == "custom module 'X' must be a torch.nn.Module subclass, got " \
                                 "<class 'int'>"
