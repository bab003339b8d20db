"""Options of BLIP-2's Q-Former projector (projectors/qformer.py)."""

from __future__ import annotations

from dataclasses import dataclass

from deco.errors import ConfigError
from deco.projectors.options.base import ProjectorConfig, require_positive


@dataclass
class QFormerConfig(ProjectorConfig):
    """DeCo's comparison Q-Former: 2 layers of BERT-base width, cross-attention in every layer.

    Dropout probabilities are BERT's (0.1), as in HF `Blip2QFormerConfig`; they act in training only.
    Queries are initialised N(0, query_init_std) as LAVIS does (HF uses zeros: set 0.0).
    The recipe configs set num_queries=144 to compare with DeCo at equal tokens.
    """

    num_queries: int = 32
    num_hidden_layers: int = 2
    cross_attention_frequency: int = 1
    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    query_init_std: float = 0.02
    initializer_range: float = 0.02
    # Start training from a BLIP-2 checkpoint's Q-Former (HF Blip2Model folder or id), as the paper
    # does; `blip2_layers` picks which of its layers to keep (default: the first num_hidden_layers).
    # Applied by the trainer at the start of a fresh run (deco.interop.blip2.init_qformer_from_blip2).
    blip2_checkpoint: str | None = None
    blip2_layers: list[int] | None = None

    def validate(self) -> None:
        for name in ("num_queries", "num_hidden_layers", "cross_attention_frequency", "hidden_size",
                     "num_attention_heads", "intermediate_size", "layer_norm_eps", "initializer_range"):
            require_positive(name, getattr(self, name))
        for name in ("num_queries", "num_hidden_layers", "cross_attention_frequency", "hidden_size",
                     "num_attention_heads", "intermediate_size"):
            if not isinstance(getattr(self, name), int):
                raise ConfigError(f"projector option '{name}' must be an int, got {getattr(self, name)!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"projector option 'hidden_size'={self.hidden_size} must be divisible by "
                f"'num_attention_heads'={self.num_attention_heads}"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            p = getattr(self, name)
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
                raise ConfigError(f"projector option '{name}' must be in [0, 1), got {p!r}")
        q = self.query_init_std
        if isinstance(q, bool) or not isinstance(q, (int, float)) or q < 0:
            raise ConfigError(f"projector option 'query_init_std' must be >= 0, got {q!r}")
