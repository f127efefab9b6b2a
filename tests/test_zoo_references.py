"""netdsl's GPT, U-Net and seq2seq transformer against hand-written PyTorch references.

``examples/zoo/gpt.net`` against nanoGPT (tests/ref_nanogpt.py), ``examples/zoo/unet.net``
against the standard U-Net (tests/ref_unet.py) and ``examples/zoo/transformer.net`` against a
TransformerEncoder/TransformerDecoder model (tests/ref_seq2seq.py). The protocol is
tests/test_zoo.py's: both sides built right after ``torch.manual_seed(0)``; the same
``state_dict`` keys in the same order with bitwise-equal tensors; the reference's weights load
strictly into the netdsl model; identical outputs in eval mode; identical outputs and gradients
in train mode, with ``torch.manual_seed(1)`` before each forward so dropout draws the same masks.
Both models of a pair always run in the same grad mode: torch's encoder takes its fast path only
in eval mode under no_grad, and that path's numbers differ from the regular one's.

Then the GPT's weight tie, its default (GPT-2 124M) configuration on the meta device,
``torch.compile`` and ``torch.export`` of the compiled forward, ``netdsl check`` of the three
specs, and the located error for token ids declared without their dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ref_nanogpt
import ref_seq2seq
import ref_unet
import torch
from torch import nn

import netdsl
from netdsl.cli import main

ZOO = Path(__file__).resolve().parents[1] / "examples" / "zoo"
GPT, UNET, SEQ2SEQ = ZOO / "gpt.net", ZOO / "unet.net", ZOO / "transformer.net"

GPT_SMALL: dict[str, Any] = {"block_size": 16, "vocab_size": 97, "n_layer": 2, "n_head": 2,
                             "n_embd": 32}
SEQ2SEQ_SMALL: dict[str, Any] = {"src_vocab": 50, "tgt_vocab": 50, "d_model": 32, "nhead": 4,
                                 "num_encoder_layers": 2, "num_decoder_layers": 2,
                                 "dim_feedforward": 64}
GPT2_PARAMS = 124_475_904  # unique parameters of the default config (the tied matrix once)


# ---------------------------------------------------------------- helpers


def seeded(build: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return build()


def gpt_pair(**config: Any) -> tuple[nn.Module, nn.Module]:
    ref = seeded(lambda: ref_nanogpt.GPT(ref_nanogpt.GPTConfig(**config)))
    return ref, seeded(lambda: netdsl.load(GPT, **config))


def tokens(*shape: int, high: int, seed: int) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


def assert_same_state(ref: nn.Module, got: nn.Module) -> None:
    state_ref, state_got = ref.state_dict(), got.state_dict()
    assert list(state_ref) == list(state_got)
    for key, tensor in state_ref.items():
        other = state_got[key]
        assert (tensor.dtype, tensor.shape) == (other.dtype, other.shape), key
        assert torch.equal(tensor, other), f"{key}: values differ (bitwise init)"


def assert_equal(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    assert torch.equal(a, b), f"{what}: max abs difference {(a - b).abs().max().item():.3g}"


def train_step(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    out = model(*inputs)
    out.sum().backward()
    return out


def assert_equivalent(ref: nn.Module, got: nn.Module, *inputs: tuple[torch.Tensor, ...]) -> None:
    """State; then for each tuple of inputs, eval outputs, train outputs and gradients; then a
    strict load of the reference's weights."""
    assert_same_state(ref, got)
    for args in inputs:
        shapes = [tuple(a.shape) for a in args]
        ref.eval()
        got.eval()
        with torch.no_grad():
            assert_equal(ref(*args), got(*args), f"eval {shapes}")
        assert_equal(train_step(ref, args), train_step(got, args), f"train {shapes}")
        named_ref, named_got = list(ref.named_parameters()), list(got.named_parameters())
        assert [n for n, _ in named_ref] == [n for n, _ in named_got]
        for (name, p_ref), (_, p_got) in zip(named_ref, named_got, strict=True):
            assert p_ref.grad is not None and p_got.grad is not None, name
            assert_equal(p_ref.grad, p_got.grad, f"{name}.grad {shapes}")
    got.load_state_dict(ref.state_dict(), strict=True)


# ---------------------------------------------------------------- GPT


@pytest.mark.parametrize("config", [
    {"flash": True, "dropout": 0.0},
    {"flash": True, "dropout": 0.1},
    {"flash": False, "dropout": 0.0},
    {"flash": False, "dropout": 0.1},
    {"flash": False, "dropout": 0.1, "bias": False},
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gpt_matches_nanogpt(config: dict[str, Any]) -> None:
    ref, got = gpt_pair(**GPT_SMALL, **config)
    assert ("transformer.h.0.attn.bias" in got.state_dict()) is not config["flash"]
    # The full block, and a shorter sequence (the mask buffer sliced to [:T, :T]).
    full, short = tokens(2, 16, high=97, seed=3), tokens(2, 11, high=97, seed=4)
    assert_equivalent(ref, got, (full,), (short,))


@pytest.mark.parametrize("bias", [True, False])
def test_torch_layernorm_is_nanogpts(bias: bool) -> None:
    """gpt.net writes nanoGPT's LayerNorm(ndim, bias) as torch's LayerNorm(ndim, bias=bias)."""
    ours, theirs = nn.LayerNorm(8, bias=bias), ref_nanogpt.LayerNorm(8, bias)
    assert_same_state(theirs, ours)
    x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert_equal(theirs(x), ours(x), "LayerNorm")


def test_gpt_tie() -> None:
    ref, got = gpt_pair(**GPT_SMALL)
    assert got.transformer.wte.weight is got.lm_head.weight
    named = [name for name, _ in got.named_parameters()]
    assert named == [name for name, _ in ref.named_parameters()]
    assert "transformer.wte.weight" in named and "lm_head.weight" not in named
    assert sum(p is got.lm_head.weight for p in got.parameters()) == 1
    keys = list(got.state_dict())
    assert keys[0] == "transformer.wte.weight" and keys[-1] == "lm_head.weight"


def test_gpt_default_config_on_meta() -> None:
    with torch.device("meta"):
        ref = ref_nanogpt.GPT(ref_nanogpt.GPTConfig())
    got = netdsl.load(GPT, device="meta")
    assert [(k, tuple(v.shape)) for k, v in got.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    assert sum(p.numel() for p in got.parameters()) == GPT2_PARAMS
    assert sum(p.numel() for p in ref.parameters()) == GPT2_PARAMS
    assert netdsl.summary(GPT).total_params == GPT2_PARAMS


@pytest.mark.parametrize("flash", [True, False], ids=["flash", "masked"])
def test_gpt_compile_and_export(flash: bool) -> None:
    torch.manual_seed(0)
    model = netdsl.load(GPT, **GPT_SMALL, flash=flash).eval()
    idx, short = tokens(2, 16, high=97, seed=3), tokens(2, 11, high=97, seed=4)
    with torch.no_grad():
        eager, eager_short = model(idx), model(short)
        compiled = torch.compile(model, backend="eager", fullgraph=True)
        assert_equal(compiled(idx), eager, "torch.compile")
        assert_equal(compiled(short), eager_short, "torch.compile, T=11")
        exported = torch.export.export(model, (idx,)).module()
        assert_equal(exported(idx), eager, "torch.export")


# ---------------------------------------------------------------- U-Net and seq2seq


@pytest.mark.parametrize("bilinear", [False, True], ids=["transposed", "bilinear"])
def test_unet_matches_reference(bilinear: bool) -> None:
    ref = seeded(lambda: ref_unet.UNet(3, 2, bilinear))
    got = seeded(lambda: netdsl.load(UNET, bilinear=bilinear))
    # 57x75: odd sizes, so the up-sampled maps are padded to their skip connections.
    even, odd = (torch.randn(shape, generator=torch.Generator().manual_seed(1234))
                 for shape in [(1, 3, 64, 64), (1, 3, 57, 75)])
    assert_equivalent(ref, got, (even,), (odd,))


def test_seq2seq_matches_reference() -> None:
    ref = seeded(lambda: ref_seq2seq.Seq2Seq(**SEQ2SEQ_SMALL))
    got = seeded(lambda: netdsl.load(SEQ2SEQ, **SEQ2SEQ_SMALL))
    assert next(iter(got.state_dict())) == "pos"  # own parameters before the children's
    src, tgt = tokens(2, 7, high=50, seed=5), tokens(2, 5, high=50, seed=6)
    assert_equivalent(ref, got, (src, tgt))
    ref.eval()
    got.eval()  # and in eval mode with grad enabled: the encoder's regular path
    assert_equal(ref(src, tgt), got(src, tgt), "eval with grad")


# ---------------------------------------------------------------- check


def test_specs_pass_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(GPT), str(UNET), str(SEQ2SEQ)]) == 0
    assert capsys.readouterr().err == "netdsl: 3 valid\n"


def test_float_token_ids_are_a_located_error(tmp_path: Path) -> None:
    text = GPT.read_text()
    declared = "input idx: [B, T <= block_size] long"
    assert text.count(declared) == 1
    spec = tmp_path / "gpt_float.net"
    spec.write_text(text.replace(declared, "input idx: [B, T <= block_size]"))
    errors = netdsl.check(spec)
    assert len(errors) == 1
    error = errors[0]
    assert error.message == (
        "Embedding(50304, 768) cannot take its input (idx: [B, T]): Expected tensor for "
        "argument #1 'indices' to have one of the following scalar types: Long, Int; but got "
        "torch.float32 instead (it is float32, the dtype of an input that declares none: "
        "declare the dtype, as in input idx: [B, T] long)")
    assert error.source_line is not None
    assert error.source_line.strip() == "wte: Embedding(vocab_size, n_embd)"
    assert (error.line, error.column) == (text[:text.index("wte:")].count("\n") + 1, 14)
