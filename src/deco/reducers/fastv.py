"""FastV (ECCV 2024): inside the LLM, after layer K, keep the image tokens the last token attends to most."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deco.errors import ConfigError
from deco.reducers.base import Cues, Grid, Reduced, Reducer

if TYPE_CHECKING:
    from deco.model.multimodal import DecoModel


def decoder_layers(llm: nn.Module) -> nn.ModuleList:
    """The decoder layers of an HF causal LM (Llama, Qwen2, ...: `model.layers`)."""
    layers = getattr(getattr(llm, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(f"fastv: cannot find the decoder layers of a {type(llm).__name__}")
    return layers


def fastv_keep(scores: torch.Tensor, is_image: torch.Tensor, per_image: int, budget: int) -> torch.Tensor:
    """scores [B, T] (last token's attention at layer K-1, heads averaged), is_image [B, T] -> drop mask [B, T].

    Each image's block of `per_image` placeholders keeps its `budget` highest-scoring tokens; every other
    position (text, padding) is kept.
    """
    drop = torch.zeros_like(is_image)
    for row in range(is_image.shape[0]):
        positions = is_image[row].nonzero().flatten()
        for block in positions.split(per_image):
            top = scores[row, block].topk(budget).indices
            gone = torch.ones_like(block, dtype=torch.bool)
            gone[top] = False
            drop[row, block[gone]] = True
    return drop


class FastVReducer(Reducer):
    """FastV by attention masking: same outputs as dropping the tokens, any batch, HF's KV cache.

    Follows `FastVLlamaModel.forward` of pkunlp-icler/FastV (src/FastV/lmms-eval-with-kvcache/
    fastv_kvcache.py): at prefill, layer K-1's attention of the last token, averaged over heads, ranks the
    image tokens; layers K.. see only the top ones, at their original positions; layers < K and their
    cache keep everything. (That file hard-codes K=3 and ratio 0.5; the paper's default K=2 is used
    here, or K=1 in an LLM of 2 layers.)

    Differs in how, not what: the reference cuts the dropped tokens out of the hidden states (fewer
    FLOPs, batch size 1 only). Here layers K.. mask the dropped tokens as keys, for the prompt and every
    generated token: no kept token or answer token ever reads them, so every output is the reference's,
    with left-padded batches and the cache untouched; the compute is not saved, so `deco bench` counts
    FastV's FLOPs and KV bytes analytically. Needs eager attention in the LLM (the weights of layer K-1):
    attaching switches the LLM to it.
    """

    stage = "llm"

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.layer = int(spec.option("layer"))
        self.is_image: torch.Tensor | None = None
        self.drop: torch.Tensor | None = None  # [B, T] placeholders masked from layer K on
        self.handles: list[Any] = []
        self.kernel: str | None = None  # the LLM's attention kernel before attach

    def reduce(self, x: torch.Tensor, grid: Grid | None, cues: Cues) -> Reduced:
        raise ConfigError("fastv acts inside the LLM; it has no pre-LLM reduce step")

    def attach(self, model: DecoModel) -> None:
        super().attach(model)
        layers = decoder_layers(model.llm)
        if self.layer < 0:
            self.layer = min(2, len(layers) - 1)  # the paper's K=2; a 2-layer LLM (the demo's) can only take K=1
        if not 1 <= self.layer < len(layers):
            raise ConfigError(f"--reduce {self.spec}: layer must be in 1..{len(layers) - 1} for this "
                              f"{len(layers)}-layer LLM")
        self.kernel = model.llm.config._attn_implementation
        model.llm.set_attn_implementation("eager")
        for handle in self.handles:
            handle.remove()
        self.handles = [layers[self.layer - 1].self_attn.register_forward_hook(self._rank)]
        self.handles += [layer.self_attn.register_forward_pre_hook(self._mask, with_kwargs=True)
                         for layer in layers[self.layer:]]

    def detach(self, model: DecoModel) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.drop, self.is_image = [], None, None
        if self.kernel is not None:
            model.llm.set_attn_implementation(self.kernel)

    def prepare_llm(self, is_image: torch.Tensor) -> None:
        self.is_image, self.drop = is_image, None

    def _rank(self, module: nn.Module, args: Any, output: Any) -> None:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if self.is_image is None or weights is None or weights.shape[2] == 1:
            return  # decode steps keep the prefill's choice
        if weights.shape[-1] != self.is_image.shape[1] or weights.shape[0] != self.is_image.shape[0]:
            self.is_image = self.drop = None  # another sequence runs through this LLM (not embedded here)
            return
        scores = weights[:, :, -1, :].float().mean(dim=1)  # [B, T]
        per_image = self.input_tokens or 1
        self.drop = fastv_keep(scores, self.is_image, per_image, self.budget)

    def _mask(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
        mask = kwargs.get("attention_mask")
        if self.drop is None or mask is None or mask.dim() != 4 or mask.shape[-1] < self.drop.shape[1]:
            return None
        mask = mask.expand(self.drop.shape[0], *mask.shape[1:])
        keys = mask.shape[-1]
        drop = torch.zeros(mask.shape[0], keys, dtype=torch.bool, device=mask.device)
        drop[:, : self.drop.shape[1]] = self.drop
        cols = drop[:, None, None, :].expand(-1, 1, mask.shape[2], -1)
        if mask.shape[2] == self.drop.shape[1] == keys:
            # a dropped token still sees itself: its own row never goes all-masked (its output is unused)
            cols = cols & ~torch.eye(keys, dtype=torch.bool, device=mask.device)
        if mask.dtype == torch.bool:
            kwargs["attention_mask"] = mask & ~cols
        else:
            kwargs["attention_mask"] = mask.masked_fill(cols, torch.finfo(mask.dtype).min)
        return args, kwargs
