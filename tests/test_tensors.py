"""Parameters, buffers, ties, init passes, typed inputs, layer arguments and the forward's torch
functions, each against the hand-written PyTorch module it stands for.

Every comparison builds both sides after the same seed: the same ``state_dict`` keys in the
same order, bitwise-equal tensors, and equal outputs.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import same_state, seeded
from torch import nn

import netdsl
from netdsl import ops
from netdsl.limits import Limits

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- params and buffers

PATCHES = """
model Patches(dim: int = 8, seq: int = 5) {
    input x: [N, 3, 8, 8]
    conv = Conv2d(3, dim, 4, stride=4)
    param class_token = zeros(1, 1, dim)
    param pos = empty(1, seq, dim).normal_(std=0.02)
    buffer mask = tril(ones(seq, seq)).view(1, seq, seq)
    buffer(persistent=false) scale = full((1,), 0.5)
    param(requires_grad=false) frozen = randn(dim)
    head = Linear(dim, 2)
    forward(x) {
        x = conv(x).flatten(2).transpose(1, 2)
        n = x.shape[0]
        x = cat([class_token.expand(n, -1, -1), x], dim=1) + pos
        x = (mask @ x) * scale + frozen
        return head(x[:, 0])
    }
}
"""


class Patches(nn.Module):
    def __init__(self, dim: int = 8, seq: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, dim, 4, stride=4)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.empty(1, seq, dim).normal_(std=0.02))
        self.register_buffer("mask", torch.tril(torch.ones(seq, seq)).view(1, seq, seq))
        self.register_buffer("scale", torch.full((1,), 0.5), persistent=False)
        self.frozen = nn.Parameter(torch.randn(dim), requires_grad=False)
        self.head = nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).flatten(2).transpose(1, 2)
        n = x.shape[0]
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1) + self.pos
        x = (self.mask @ x) * self.scale + self.frozen
        return self.head(x[:, 0])


def test_params_and_buffers_are_the_hand_written_ones() -> None:
    ours = seeded(lambda: netdsl.loads(PATCHES))
    theirs = seeded(Patches)
    same_state(ours, theirs)
    assert list(ours.state_dict())[:4] == ["class_token", "pos", "frozen", "mask"]
    assert "scale" not in ours.state_dict() and torch.equal(ours.scale, theirs.scale)
    assert not ours.frozen.requires_grad
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(ours(x), theirs(x))
    # the RNG is where the hand-written __init__ left it: the next draw is the same
    torch.manual_seed(0)
    netdsl.loads(PATCHES)
    after_ours = torch.rand(3)
    torch.manual_seed(0)
    Patches()
    assert torch.equal(after_ours, torch.rand(3))


def test_meta_allocates_nothing_and_check_draws_nothing() -> None:
    model = netdsl.loads(PATCHES, device="meta")
    assert all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    torch.manual_seed(0)
    netdsl.loads(PATCHES, device="meta")
    drawn = torch.rand(2)
    torch.manual_seed(0)
    assert torch.equal(drawn, torch.rand(2))


def test_params_count_against_the_limit_before_allocation() -> None:
    spec = "model M { param big = zeros(100000, 1000)  fc = Linear(2, 2) }"
    with pytest.raises(netdsl.NetDSLError) as info:
        netdsl.loads(spec, limits=Limits(max_params=10**6))
    assert "M has 100,000,006 parameters, over the limit of 1,000,000" in str(info.value)
    assert netdsl.loads(spec, device="meta").big.shape == (100000, 1000)


def test_reinitialize_replays_declared_params() -> None:
    built = seeded(lambda: netdsl.loads(PATCHES))
    meta = netdsl.loads(PATCHES, device="meta").to_empty(device="cpu")
    torch.manual_seed(0)
    spec = Path("patches.net")
    try:
        spec.write_text(PATCHES, encoding="utf-8")
        netdsl.reinitialize(meta, spec)
    finally:
        spec.unlink()
    for key, value in built.state_dict().items():
        assert torch.equal(value, meta.state_dict()[key]), key


def test_params_are_matched_by_init_rules() -> None:
    spec = PATCHES.replace("    head = Linear(dim, 2)\n", """    head = Linear(dim, 2)
    init {
        Patches.class_token: normal(0.0, 1.0)
        "".pos: zeros()
    }
""")
    ours = seeded(lambda: netdsl.loads(spec))

    def hand_written() -> nn.Module:
        module = Patches()
        nn.init.normal_(module.class_token, 0.0, 1.0)
        nn.init.zeros_(module.pos)
        return module

    same_state(ours, seeded(hand_written))


# ---------------------------------------------------------------- ties and init passes

TIED = """
block Attn(d: int) {
    c_attn = Linear(d, 3 * d)
    c_proj = Linear(d, d)
    forward(x) {
        q, k, v = c_attn(x).split(d, dim=2)
        return c_proj(softmax(q @ k.transpose(-2, -1) / sqrt(k.size(-1)), dim=-1) @ v)
    }
}
model Tiny(vocab: int = 11, d: int = 8, n_layer: int = 2) {
    input idx: [B, T] long
    transformer = dict {
        wte: Embedding(vocab, d)
        h: list [ Attn(d) for i in range(n_layer) ]
    }
    lm_head = Linear(d, vocab, bias=false)
    tie transformer.wte.weight = lm_head.weight
    init {
        Linear.weight: normal(0.0, 0.02)
        Linear.bias: zeros()
        Embedding.weight: normal(0.0, 0.02)
    }
    init {
        "*.c_proj".weight: normal(0.0, 0.02 / sqrt(2 * n_layer))
    }
    forward(idx) {
        x = transformer.wte(idx)
        for block in transformer.h { x = x + block(x) }
        return lm_head(x)
    }
}
"""


class Attn(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.d = d
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.c_attn(x).split(self.d, dim=2)
        att = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(k.size(-1)), dim=-1)
        return self.c_proj(att @ v)


class Tiny(nn.Module):
    """nanoGPT's tying and two-pass init, in miniature."""

    def __init__(self, vocab: int = 11, d: int = 8, n_layer: int = 2) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict({"wte": nn.Embedding(vocab, d),
                                          "h": nn.ModuleList([Attn(d) for _ in range(n_layer)])})
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.transformer.wte(idx)
        for block in self.transformer.h:
            x = x + block(x)
        return self.lm_head(x)


def test_tie_and_init_passes_are_nanogpts() -> None:
    ours = seeded(lambda: netdsl.loads(TIED))
    theirs = seeded(Tiny)
    same_state(ours, theirs)
    assert ours.transformer.wte.weight is ours.lm_head.weight
    assert len(list(ours.parameters())) == len(list(theirs.parameters()))
    assert "transformer.wte.weight" in ours.state_dict() and "lm_head.weight" in ours.state_dict()
    idx = torch.randint(0, 11, (2, 5))
    assert torch.equal(ours(idx), theirs(idx))
    ours(idx).sum().backward()
    theirs(idx).sum().backward()
    assert torch.equal(ours.lm_head.weight.grad, theirs.lm_head.weight.grad)


def test_one_init_block_is_one_pass() -> None:
    """Without the second block the c_proj weights keep the first pass's std: 25 tensors
    differ in nanoGPT, here two."""
    single = TIED.replace('    }\n    init {\n        "*.c_proj"', '        "*.c_proj"')
    ours = seeded(lambda: netdsl.loads(single))
    theirs = seeded(Tiny)
    differing = [k for k, v in ours.state_dict().items()
                 if not torch.equal(v, theirs.state_dict()[k])]
    assert differing  # one pass: the c_proj rule wins over Linear.weight instead of re-drawing


def test_init_report_lists_every_rule_in_order(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.net"
    spec.write_text(TIED, encoding="utf-8")
    report = {e.parameter: e for e in netdsl.init_report(spec).entries}
    proj = report["transformer.h.0.c_proj.weight"].set_by
    assert proj.endswith("Linear.weight: normal(0.0, 0.02); then "
                         f'{spec}:24: "*.c_proj".weight: normal(0.0, 0.02 / sqrt(2 * n_layer))')
    tied = report["transformer.wte.weight"]
    assert tied.shared_with == ["lm_head.weight"]
    assert [r.rule.target for r in tied.rules] == ["Embedding", "Linear"]
    assert "lm_head.weight" not in report  # parameters() yields it once


def test_summary_counts_a_tied_parameter_once(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.net"
    spec.write_text(TIED, encoding="utf-8")
    summary = netdsl.summary(spec)
    assert summary.total_params == sum(p.numel() for p in Tiny().parameters())
    assert summary.shared == ["lm_head.weight = transformer.wte.weight (88)"]


# ---------------------------------------------------------------- typed inputs


@pytest.mark.parametrize("dtype", ["long", "int", "int64", "int32"])
def test_index_inputs_check(dtype: str) -> None:
    spec = f"model M {{ input x: [B, T] {dtype}  emb = Embedding(10, 4) }}"
    model = netdsl.loads(spec)
    torch_dtype = {"long": torch.long, "int": torch.int32}.get(dtype, getattr(torch, dtype))
    idx = torch.randint(0, 10, (2, 3), dtype=torch_dtype)
    assert torch.equal(model(idx), model.emb(idx))


def test_half_input_reaches_the_layer_as_half() -> None:
    spec = "model M { input x: [N, 4] float64  fc = Linear(4, 2, dtype=float64) }"
    assert netdsl.loads(spec)(torch.randn(3, 4, dtype=torch.float64)).dtype == torch.float64


def test_a_child_may_be_named_like_a_dtype() -> None:
    model = netdsl.loads("model M {\n  input x: [N, 4]\n  int64 = Linear(4, 2)\n}")
    assert isinstance(model.int64, nn.Linear)


# ---------------------------------------------------------------- layers as arguments


def test_layer_arguments_are_built_first_as_python_does() -> None:
    spec = """model M {
        input x: [N, 7, 16]
        enc = TransformerEncoder(TransformerEncoderLayer(16, 4, 32, 0.0, batch_first=true),
                                 num_layers=2, norm=LayerNorm(16))
    }"""
    ours = seeded(lambda: netdsl.loads(spec))

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.TransformerEncoder(
                nn.TransformerEncoderLayer(16, 4, 32, 0.0, batch_first=True), num_layers=2,
                norm=nn.LayerNorm(16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.enc(x)

    theirs = seeded(M)
    same_state(ours, theirs)
    x = torch.randn(2, 7, 16)
    assert torch.equal(ours(x), theirs(x))


# ---------------------------------------------------------------- the forward's functions

ATTENTION = """
model A(n_head: int = 2, flash: bool = true) {
    input x: [B, 6, 8]
    c_attn = Linear(8, 24)
    buffer bias = tril(ones(6, 6)).view(1, 1, 6, 6)
    forward(x) {
        B, T, C = x.size()
        q, k, v = c_attn(x).split(C, dim=2)
        q = q.view(B, T, n_head, C // n_head).transpose(1, 2)
        k = k.view(B, T, n_head, C // n_head).transpose(1, 2)
        v = v.view(B, T, n_head, C // n_head).transpose(1, 2)
        if flash {
            y = scaled_dot_product_attention(q, k, v, attn_mask=none, dropout_p=0.0,
                                             is_causal=true)
        } else {
            att = (q @ k.transpose(-2, -1)) * (1.0 / sqrt(k.size(-1)))
            att = att.masked_fill(bias[:, :, :T, :T] == 0, -inf)
            y = softmax(att, dim=-1) @ v
        }
        pos = arange(0, T, dtype=long, device=x.device)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return y + einsum("btc,t->btc", y, pos.to(y.dtype))
    }
}
"""


def _attention(x: torch.Tensor, c_attn: nn.Linear, bias: torch.Tensor, flash: bool
               ) -> torch.Tensor:
    B, T, C = x.size()  # nanoGPT's names
    q, k, v = c_attn(x).split(C, dim=2)
    q, k, v = (t.view(B, T, 2, C // 2).transpose(1, 2) for t in (q, k, v))
    if flash:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0,
                                           is_causal=True)
    else:
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(bias[:, :, :T, :T] == 0, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
    pos = torch.arange(0, T, dtype=torch.long, device=x.device)
    y = y.transpose(1, 2).contiguous().view(B, T, C)
    return y + torch.einsum("btc,t->btc", y, pos.to(y.dtype))


@pytest.mark.parametrize("flash", [True, False])
def test_attention_forward_is_the_hand_written_one(flash: bool) -> None:
    model = netdsl.loads(ATTENTION, flash=flash)
    x = torch.randn(2, 6, 8)
    assert torch.equal(model(x), _attention(x, model.c_attn, model.bias, flash))


def test_attention_compiles_and_exports() -> None:
    model = netdsl.loads(ATTENTION, flash=False).eval()
    x = torch.randn(2, 6, 8)
    expected = model(x)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    assert torch.equal(compiled(x), expected)
    exported = torch.export.export(model, (x,))
    assert torch.allclose(exported.module()(x), expected)


# ---------------------------------------------------------------- the allowlist


def test_the_allowlist_is_closed() -> None:
    assert not ops.DENIED & set(ops.OPS)
    assert not ops.DENIED & ops.METHODS
    assert all(name in dir(torch.Tensor) for name in ops.METHODS)
    assert not any(name.startswith("_") for name in (*ops.OPS, *ops.METHODS, *ops.ATTRIBUTES))
    for op in ops.OPS.values():
        if op.is_method:
            continue
        module, _, name = op.code.partition(".")
        found = ops.NAMESPACE[module]
        assert callable(getattr(found, name) if name else found), op.code


def test_forward_functions_doc_is_generated_from_the_allowlist() -> None:
    text = (ROOT / "docs" / "forward-functions.md").read_text(encoding="utf-8")
    assert text == ops.reference()


@pytest.mark.parametrize("forward, message", [
    ("fc(x).numpy()", "tensor method 'numpy' is not available in a spec"),
    ("fc(x).data_ptr()", "tensor method 'data_ptr' is not available in a spec"),
    ("fc(x).register_hook(fc)", "tensor method 'register_hook' is not available in a spec"),
    ("fc(x).apply_(fc)", "tensor method 'apply_' is not available in a spec"),
    ("fc(x).untyped_storage()", "tensor method 'untyped_storage' is not available in a spec"),
    ('load("weights.pt")', "'load' is not available in a spec"),
    ('from_file("x", size=4)', "'from_file' is not available in a spec"),
    ("manual_seed(0)", "'manual_seed' is not available in a spec"),
    ("fc(x).grad_fn", "unknown attribute 'grad_fn'"),
])
def test_the_forward_cannot_leave_the_tensor_world(forward: str, message: str) -> None:
    with pytest.raises(netdsl.NetDSLError) as info:
        netdsl.loads(f"model M {{ input x: [N, 4]  fc = Linear(4, 4)  forward(x) = {forward} }}")
    assert message in str(info.value)


# ---------------------------------------------------------------- asserts in the forward

CHECKED_LENGTH = """
model Length(block_size: int = 8) {
    input idx: [B, T <= block_size] long
    emb = Embedding(10, 4)
    forward(idx) {
        b, t = idx.size()
        assert t <= block_size,
            f"Cannot forward sequence of length {t}, block size is only {block_size}"
        assert block_size > 2, "decided now"
        return emb(idx)
    }
}
"""


def test_a_forward_assert_is_torch_assert() -> None:
    model = netdsl.loads(CHECKED_LENGTH)
    assert model(torch.zeros(2, 8, dtype=torch.long)).shape == (2, 8, 4)
    with pytest.raises(AssertionError, match="Cannot forward sequence of length 9, block size "
                                             "is only 8"):
        model(torch.zeros(2, 9, dtype=torch.long))
    traced = torch.fx.symbolic_trace(model)
    idx = torch.zeros(1, 3, dtype=torch.long)
    assert torch.equal(traced(idx), model(idx))
    compiled = torch.compile(model, backend="eager", fullgraph=True, dynamic=True)
    assert torch.equal(compiled(idx), model(idx))


def test_a_failing_assert_is_reported_at_check_time() -> None:
    spec = CHECKED_LENGTH.replace("[B, T <= block_size]", "[B, 12]")
    with pytest.raises(netdsl.NetDSLError) as info:
        netdsl.loads(spec)
    assert (info.value.message, info.value.line) == (
        "Cannot forward sequence of length 12, block size is only 8", 7)
    with pytest.raises(netdsl.NetDSLError) as info:
        netdsl.loads(CHECKED_LENGTH, block_size=2)
    assert (info.value.message, info.value.line) == ("decided now", 9)


def test_probe_refuses_token_inputs(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.net"
    spec.write_text(TIED, encoding="utf-8")
    with pytest.raises(netdsl.NetDSLError) as info:
        netdsl.probe(spec, (2, 5))
    assert info.value.message == (
        "probe feeds a standard-normal input, but 'idx' is declared int64 (token ids?): probe "
        "studies models that take float inputs")


def test_init_report_shows_a_params_declaration_first(tmp_path: Path) -> None:
    spec = tmp_path / "pos.net"
    spec.write_text("model M {\n    param pos = empty(1, 4, 8).normal_(std=0.02)\n"
                    "    fc = Linear(8, 8)\n    init {\n        M.pos: zeros()\n    }\n}\n",
                    encoding="utf-8")
    entry = netdsl.init_report(spec).entries[0]
    assert (entry.parameter, entry.set_by) == (
        "pos", f"{spec}:2: param pos = empty(1, 4, 8).normal_(std=0.02); then {spec}:5: "
               "M.pos: zeros()")


def test_augmented_assignment_is_in_place() -> None:
    spec = """
def total(n: int) -> int {
    s = 0
    for i in range(n) { s += i }
    return s
}
model M {
    input x: [N, 4]
    fc = Linear(4, 4)
    forward(x) {
        y = fc(x)
        y += x
        y *= total(4)
        return y
    }
}
"""
    model = netdsl.loads(spec)
    x = torch.randn(2, 4)
    expected = model.fc(x)
    expected += x
    expected *= 6
    assert torch.equal(model(x), expected)
    with pytest.raises(netdsl.NetDSLError) as info:
        netdsl.loads(spec.replace("y += x", "fc += x"))
    assert where_of(info.value) == ("'fc' is not a variable of the forward; += updates one", 12)


def where_of(err: netdsl.NetDSLError) -> tuple[str, int | None]:
    return err.message, err.line
