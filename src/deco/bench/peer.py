"""The peer: HF LlavaForConditionalGeneration with our `mlp` model's weights, same inputs.

LLaVA-1.5 in HF is CLIP (hidden_states[-2], CLS dropped: strategy "default") -> linear_1, GELU,
linear_2 -> Llama. Our `mlp` model computes the same function, so with the same weights the logits
must agree and the forward time should too: any gap is overhead in our wrapper.

HF 5.x input format: `input_ids` with the image token already expanded to one id per image
feature (its processor does that), `image_token_index` naming that id, and `pixel_values`; the
model checks the placeholder count against the feature count. Our processor's ids are in that
format already, so both models get the very same tensors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import LlavaConfig, LlavaForConditionalGeneration

from deco.bench.timing import interleave, now, summarize
from deco.errors import ConfigError
from deco.model import DecoModel, HFVisionTower


def build_peer(model: DecoModel) -> LlavaForConditionalGeneration:
    """An HF Llava with our `mlp` model's weights.

    The vision tower and LLM modules are shared with ours (they are the very HF CLIPVisionModel
    and LlamaModel/lm_head Llava builds from the same configs, so the weights are identical
    by construction and no second copy of a 7B-shaped LLM is held); the projector weights are
    copied from our mlp.0 / mlp.2 into Llava's linear_1 / linear_2.
    """
    tower = model.vision_tower
    proj = model.projector
    if proj.name != "mlp" or len(getattr(proj, "mlp", [])) != 3 or not isinstance(proj.mlp[1], nn.GELU):
        raise ConfigError("the HF Llava peer needs our 'mlp' projector with depth 2 and GELU (LLaVA-1.5's)")
    if not isinstance(tower, HFVisionTower) or tower.arch != "clip":
        raise ConfigError("the HF Llava peer needs an HF CLIP vision tower")
    config = LlavaConfig(
        vision_config=tower.model.config.to_dict(),
        text_config=model.llm.config.to_dict(),
        image_token_index=model.image_token_id,
        image_seq_length=model.num_image_tokens,
        projector_hidden_act="gelu",
        vision_feature_layer=tower.feature_layer,
        vision_feature_select_strategy="default",  # drop CLS, as our tower does for CLIP
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(getattr(model.llm.config, "tie_word_embeddings", False)),
    )
    with torch.device("meta"):  # no weights allocated: every module is replaced or filled below
        peer = LlavaForConditionalGeneration(config)
    peer.model.vision_tower = tower.model
    peer.model.language_model = model.llm.model
    peer.lm_head = model.llm.lm_head
    weight = proj.mlp[0].weight
    mm = peer.model.multi_modal_projector.to_empty(device=weight.device).to(weight.dtype)
    with torch.no_grad():
        mm.linear_1.weight.copy_(proj.mlp[0].weight)
        mm.linear_1.bias.copy_(proj.mlp[0].bias)
        mm.linear_2.weight.copy_(proj.mlp[2].weight)
        mm.linear_2.bias.copy_(proj.mlp[2].bias)
    leftovers = [n for n, t in [*peer.named_parameters(), *peer.named_buffers()] if t.device.type == "meta"]
    if leftovers:  # pragma: no cover - would mean HF added a module this mapping does not know
        raise ConfigError(f"HF Llava peer has weights not taken from our model: {leftovers[:5]}")
    return peer.eval()


@torch.no_grad()
def compare_logits(model: DecoModel, peer: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Forward both on the same batch; max |difference| of the logits."""
    ours = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 pixel_values=batch["pixel_values"]).logits
    theirs = peer(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  pixel_values=batch["pixel_values"]).logits
    diff = (ours.float() - theirs.float()).abs().max().item()
    return {"max_abs_logit_diff": diff, "logits_shape": list(ours.shape)}


def time_forwards(
    model: DecoModel, peer: nn.Module, batch: dict[str, torch.Tensor], repeats: int, warmup: int = 1
) -> dict[str, Any]:
    """Interleaved forward timing (eval, no grad) of ours vs the peer; ratio = ours / peer (median of
    the per-round ratios), with the ratio of medians and of minimums alongside."""
    device = batch["input_ids"].device
    args = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}

    def job(fn: nn.Module) -> Any:
        def run() -> dict[str, float]:
            with torch.no_grad():
                t0 = now(device)
                fn(**args)
                return {"forward": now(device) - t0}
        return run

    samples = interleave({"deco": job(model), "hf_llava": job(peer)}, repeats, warmup)
    ours, theirs = samples["deco"]["forward"], samples["hf_llava"]["forward"]
    # Each round runs both back to back (order alternating), so the ratio within a round cancels
    # load that lasts longer than a round; its median over rounds is the headline ratio.
    paired = summarize([a / b for a, b in zip(ours, theirs, strict=True)])
    return {
        "deco_forward_s": summarize(ours),
        "hf_forward_s": summarize(theirs),
        "ratio": paired["median"],
        "paired_ratio": paired,
        "ratio_of_medians": summarize(ours)["median"] / summarize(theirs)["median"],
        "ratio_of_minimums": min(ours) / min(theirs),
        "within_2_percent": abs(paired["median"] - 1.0) <= 0.02,
    }
