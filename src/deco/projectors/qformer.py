"""BLIP-2's Q-Former (arXiv 2301.12597) as a projector: learnable queries read the patches by cross-attention.

Written from the architecture, not by subclassing HF, but every weight carries the name that HF
`Blip2QFormerModel` gives it (under the submodule `qformer`), the queries are `query_tokens` [1, M, H]
and the output map is `language_projection`, all as in HF `Blip2Model`. So a BLIP-2 checkpoint loads
with `blip2_qformer_weights` (see there for the keys it drops and the ones that need re-initialising).

Layer i (BERT-style, post-LN): self-attention over the queries; cross-attention to the vision
features iff i % cross_attention_frequency == 0 (as HF); FFN of the query branch (`intermediate_query`,
`output_query`). The text branch of the original (`intermediate`, `output`, used only when text
tokens run through the Q-Former) is left out, as HF does by default (`use_qformer_text_input=False`);
the reference parameter counts (BLIP-2's Q-Former as DeCo's comparison uses it) are counted without it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from deco.projectors.attention import AttentionProbe, attend
from deco.projectors.base import Grid, Projector, init_normal_
from deco.projectors.options.qformer import QFormerConfig


class QFormerMultiHeadAttention(nn.Module):
    """Multi-head attention with HF's weight names (query/key/value); maps go through `probe`."""

    def __init__(self, config: QFormerConfig, kv_width: int, kind: str) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(kv_width, config.hidden_size)
        self.value = nn.Linear(kv_width, config.hidden_size)
        self.probe = AttentionProbe(kind)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # [B, heads, n, d/heads]

    def forward(self, hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(hidden)), self._split(self.key(context)), self._split(self.value(context))
        out = attend(q, k, v, self.probe, dropout=self.dropout)  # [B, heads, Q, d/heads]
        return out.transpose(1, 2).flatten(2)  # [B, Q, H]


class QFormerResidual(nn.Module):
    """BERT's post-LN residual: LayerNorm(x + dropout(dense(h))). HF: *SelfOutput / *Output."""

    def __init__(self, config: QFormerConfig, in_width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_width, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class QFormerAttention(nn.Module):
    """Attention block: `attention` (the heads) and `output` (post-LN residual), as HF names them."""

    def __init__(self, config: QFormerConfig, kv_width: int, kind: str) -> None:
        super().__init__()
        self.attention = QFormerMultiHeadAttention(config, kv_width, kind)
        self.output = QFormerResidual(config, config.hidden_size)

    def forward(self, hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.output(self.attention(hidden, context), hidden)


class QFormerIntermediate(nn.Module):
    """First FFN half, Linear(H -> I) + GELU (exact erf GELU, as BERT and HF)."""

    def __init__(self, config: QFormerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(hidden))


class QFormerLayer(nn.Module):
    """Self-attention, optional cross-attention, query FFN; each a post-LN residual block."""

    def __init__(self, config: QFormerConfig, encoder_width: int, index: int) -> None:
        super().__init__()
        self.attention = QFormerAttention(config, config.hidden_size, "self")
        self.has_cross_attention = index % config.cross_attention_frequency == 0
        if self.has_cross_attention:
            self.crossattention = QFormerAttention(config, encoder_width, "cross")
        self.intermediate_query = QFormerIntermediate(config)
        self.output_query = QFormerResidual(config, config.intermediate_size)

    def forward(self, hidden: torch.Tensor, encoder_states: torch.Tensor) -> torch.Tensor:
        hidden = self.attention(hidden, hidden)  # [B, M, H]
        if self.has_cross_attention:
            hidden = self.crossattention(hidden, encoder_states)  # [B, M, H]
        return self.output_query(self.intermediate_query(hidden), hidden)


class QFormerEncoder(nn.Module):
    """The layer stack; holds `layer` so names read `encoder.layer.{i}.*` as in HF."""

    def __init__(self, config: QFormerConfig, encoder_width: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            QFormerLayer(config, encoder_width, i) for i in range(config.num_hidden_layers)
        )

    def forward(self, hidden: torch.Tensor, encoder_states: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            hidden = layer(hidden, encoder_states)
        return hidden


class QFormerModel(nn.Module):
    """Counterpart of HF `Blip2QFormerModel` (query-only path): same state-dict keys, same outputs."""

    def __init__(self, config: QFormerConfig, encoder_width: int) -> None:
        super().__init__()
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.encoder = QFormerEncoder(config, encoder_width)

    def forward(self, query_embeds: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """[B, M, H] queries attend to [B, N, Dv] features -> [B, M, H]."""
        hidden = self.dropout(self.layernorm(query_embeds))
        return self.encoder(hidden, encoder_hidden_states)


class QFormerProjector(Projector):
    """Q-Former + Linear(H -> Dl): M = num_queries tokens for any input grid."""

    config_class = QFormerConfig
    description = "BLIP-2 Q-Former: learnable queries with self- and cross-attention, then Linear"

    def __init__(self, config: QFormerConfig, vision_width: int, llm_width: int) -> None:
        super().__init__(config, vision_width, llm_width)
        self.qformer = QFormerModel(config, vision_width)
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_queries, config.hidden_size))
        self.language_projection = nn.Linear(config.hidden_size, llm_width)
        # BERT/BLIP-2 init: N(0, 0.02) weights, zero biases, unit LayerNorms.
        init_normal_(self, config.initializer_range)
        if config.query_init_std > 0:
            nn.init.normal_(self.query_tokens, std=config.query_init_std)

    def num_tokens(self, grid: Grid) -> int:
        return self.config.num_queries

    def project(self, features: torch.Tensor, grid: Grid) -> torch.Tensor:
        queries = self.query_tokens.expand(features.shape[0], -1, -1)  # [B, M, H]
        hidden = self.qformer(queries, features)  # [B, M, H]
        return self.language_projection(hidden)  # [B, M, Dl]


# Keys of the Q-Former's text branch (BERT FFN for text tokens). HF checkpoints saved with
# use_qformer_text_input=True (e.g. Blip2ForImageTextRetrieval) and LAVIS stage-1 checkpoints carry
# them; Blip2Model / Blip2ForConditionalGeneration checkpoints do not.
_TEXT_BRANCH = re.compile(r"^encoder\.layer\.\d+\.(intermediate|output)\.")


def blip2_qformer_weights(
    state_dict: Mapping[str, torch.Tensor], prefix: str = "qformer."
) -> dict[str, torch.Tensor]:
    """Pick a BLIP-2 state dict's Q-Former and `query_tokens`, keyed for `QFormerProjector`.

    Keys under `prefix` (e.g. `qformer.` in `Blip2Model`; '' for a bare `Blip2QFormerModel`) become
    `qformer.*`; the text branch (`encoder.layer.*.intermediate|output.*`), which this projector does
    not have, is dropped; `language_projection.*` is kept; everything else (vision model, LLM) is
    ignored. The Q-Former part then loads with strict key matching. Tensors whose shapes differ must
    be removed before loading and stay re-initialised: `crossattention.attention.key/value` with a
    vision encoder of another width (CLIP-L 1024 vs EVA-g 1408), `language_projection` with another
    LLM width (then load with `strict=False`, which leaves it missing).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key == "query_tokens" or key.startswith("language_projection."):
            out[key] = value
        elif key.startswith(prefix):
            rest = key[len(prefix):]
            if not _TEXT_BRANCH.match(rest):
                out["qformer." + rest] = value
    return out
