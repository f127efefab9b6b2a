"""An encoder-decoder transformer, by hand: the truth that the netdsl seq2seq spec must reproduce.

Written the way a PyTorch user writes one around ``nn.TransformerEncoder`` and
``nn.TransformerDecoder`` (batch first, a learned positional embedding, a final ``LayerNorm`` on
each stack, a linear generator); not copied from a repository.

Two things about torch's modules that a reproduction must match:

- The encoder and decoder deep-copy the layer they are given, so the RNG is drawn once per stack,
  not once per layer, and all the layers of a stack start with the same weights.
- ``state_dict`` lists a module's own parameters before its children's, so ``pos`` comes first,
  before ``src_embed.weight``, although it is assigned after the embeddings.
"""

import math

import torch
import torch.nn as nn


class Seq2Seq(nn.Module):
    def __init__(
        self,
        src_vocab: int = 1000,
        tgt_vocab: int = 1000,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        max_len: int = 512,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.src_embed = nn.Embedding(src_vocab, d_model)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model)
        self.pos = nn.Parameter(torch.zeros(1, max_len, d_model))
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True),
            num_layers=num_encoder_layers,
            norm=nn.LayerNorm(d_model),
        )
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True),
            num_layers=num_decoder_layers,
            norm=nn.LayerNorm(d_model),
        )
        self.generator = nn.Linear(d_model, tgt_vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """``src`` [B, S] and ``tgt`` [B, T] token ids -> logits [B, T, tgt_vocab]."""
        S, T = src.size(1), tgt.size(1)
        s = self.src_embed(src) * math.sqrt(self.d_model) + self.pos[:, :S]
        t = self.tgt_embed(tgt) * math.sqrt(self.d_model) + self.pos[:, :T]
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=tgt.device)
        memory = self.encoder(s)
        out = self.decoder(t, memory, tgt_mask=mask, tgt_is_causal=True)
        return self.generator(out)
