"""Pickling compiled models (issue 11): ``pickle``, ``copy.deepcopy``, ``torch.save`` /
``torch.load(weights_only=False)`` and a spawned process give back the same model: the same
class structure, a bitwise-equal ``state_dict`` and the same outputs. Every example and one
builder of every zoo family are round-tripped; the reference is the model itself, as loaded."""

from __future__ import annotations

import copy
import io
import multiprocessing
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from test_examples import EXAMPLES, FILES, Input, declared_models, input_for, relative
from torch import nn

import netdsl
from netdsl import pickling

# One builder per zoo family, small enough to run on CPU at 64x64 (ViT needs its 224).
ZOO_MODELS = {"convnext.net": "convnext_tiny", "densenet.net": "densenet121",
              "efficientnet.net": "efficientnet_b0", "googlenet.net": "googlenet",
              "gpt.net": "GPT", "mobilenet_v2.net": "mobilenet_v2", "resnet.net": "resnet18",
              "shufflenet.net": "shufflenet_v2_x0_5", "squeezenet.net": "squeezenet1_1",
              "transformer.net": "Seq2Seq", "unet.net": "UNet", "vgg.net": "vgg11",
              "vit.net": "vit_b_32"}
SMALL_IMAGE = (1, 3, 64, 64)


def cases() -> list[Any]:
    found = []
    for path in FILES:
        name = relative(path)
        if name.startswith("zoo/"):
            found.append(pytest.param(path, ZOO_MODELS[path.name], id=name))
        else:
            found += [pytest.param(path, model, id=f"{name}:{model}")
                      for model in declared_models(path)]
    return found


def model_input(path: Path, model: str) -> tuple[torch.Tensor, tuple[Any, ...], dict[str, Any]]:
    spec = input_for(path, model)
    if relative(path).startswith("zoo/") and spec.dtype.is_floating_point:
        shape = (1, 3, 224, 224) if path.name == "vit.net" else SMALL_IMAGE
        if path.name == "unet.net":
            shape = (1, 3, 64, 64)
        spec = Input(shape)
    if spec.dtype.is_floating_point:
        x = torch.randn(spec.shape, generator=torch.Generator().manual_seed(0))
    else:
        x = torch.zeros(spec.shape, dtype=spec.dtype)
    return x, spec.args, spec.kwargs


def structure(model: nn.Module) -> list[tuple[str, str, str]]:
    return [(name, type(m).__module__, type(m).__qualname__) for name, m in model.named_modules()]


def assert_same_model(original: nn.Module, copied: nn.Module, path: Path, model: str) -> None:
    assert copied is not original
    assert structure(copied) == structure(original)
    mine, theirs = original.state_dict(), copied.state_dict()
    assert list(mine) == list(theirs)
    for key, value in mine.items():
        assert torch.equal(value, theirs[key]), key
    x, args, kwargs = model_input(path, model)
    with torch.no_grad():  # exactly equal; the seeds' normal(0, 1) MLP overflows to NaN alike
        torch.testing.assert_close(copied(x, *args, **kwargs), original(x, *args, **kwargs),
                                   rtol=0, atol=0, equal_nan=True)


def via_pickle(model: nn.Module) -> nn.Module:
    return pickle.loads(pickle.dumps(model))  # the test's own pickle


def via_torch_save(model: nn.Module) -> nn.Module:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def via_a_fresh_compile(model: nn.Module) -> nn.Module:
    """As a process that never compiled the spec unpickles it: the classes are made again from
    the recipe's texts (the cache of compiled classes is emptied meanwhile)."""
    data = pickle.dumps(model)
    saved = dict(pickling._CLASSES)
    pickling._CLASSES.clear()
    try:
        copied = pickle.loads(data)
    finally:
        pickling._CLASSES.clear()
        pickling._CLASSES.update(saved)
    assert type(copied) is not type(model)  # made again, not found
    return copied


ROUND_TRIPS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "pickle": via_pickle, "deepcopy": copy.deepcopy, "torch.save": via_torch_save,
    "fresh compile": via_a_fresh_compile}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("path", "model"), cases())
def test_round_trips_give_the_same_model(path: Path, model: str) -> None:
    torch.manual_seed(0)
    original = netdsl.load(path, model=model).eval()
    for name, trip in ROUND_TRIPS.items():
        copied = trip(original)
        assert copied.training is False, name
        assert_same_model(original, copied, path, model)
    assert type(copy.deepcopy(original)) is type(original)  # same process: the same class


def _child_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Runs in a spawned process: a fresh interpreter that has never compiled the spec."""
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("path, model", [
    (EXAMPLES / "resnet18.net", "ResNet18"),  # a spec that imports another file
    (EXAMPLES / "zoo" / "gpt.net", "GPT"),  # params, buffers and a tie
])
def test_a_spawned_process_receives_the_model(path: Path, model: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    original = netdsl.load(path, model=model).eval()
    x, _, _ = model_input(path, model)
    monkeypatch.chdir(tmp_path)  # the child cannot read the spec files: the pickle has them
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        received = pool.apply(_child_output, (original, x))
    with torch.no_grad():
        assert torch.equal(received, original(x))


def test_a_pickle_holds_the_spec_text_not_a_path_to_read(tmp_path: Path) -> None:
    spec = tmp_path / "m.net"
    spec.write_text("model M {\n    input x: [N, 4]\n    fc = Linear(4, 2)\n"
                    "    forward(x) = fc(x).relu()\n}\n", encoding="utf-8")
    original = netdsl.load(spec)
    assert b"fc(x).relu()" in pickle.dumps(original)
    spec.write_text("model M { }\n", encoding="utf-8")  # edited after saving: not re-read
    copied = via_a_fresh_compile(original)
    x = torch.randn(3, 4)
    assert torch.equal(copied(x), original(x))
