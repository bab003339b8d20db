"""Token reducers: the registry, each reducer against its reference algorithm, and reduced generation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPVisionConfig, CLIPVisionModel

from deco.config import load_config
from deco.errors import ConfigError
from deco.eval.generation import Generator
from deco.model import build_model
from deco.model.tiny_vit import TinyViTConfig, TinyViTTower
from deco.model.vision import HFVisionTower
from deco.reducers import apply_reducer, parse_reduce, reducer_names
from deco.reducers.base import Cues
from deco.reducers.divprune import divprune_indices
from deco.reducers.registry import build_reducer
from deco.reducers.tower import tower_attention, tower_cues
from deco.reducers.visionzip import contextual_count, visionzip
from deco.reducers.vispruner import vispruner_indices


def tiny(projector: str = "mlp", options: str = "{}"):
    torch.manual_seed(0)
    cfg = load_config("configs/tiny.yaml", [f"projector.name={projector}", f"projector.options={options}"])
    return build_model(cfg).eval()


# ---- registry -------------------------------------------------------------------------------------


def test_registry_names_are_exact_and_suggest_the_near_miss():
    assert reducer_names() == ["random", "pool", "divprune", "visionzip", "vispruner", "fastv"]
    with pytest.raises(ConfigError, match="Did you mean 'visionzip'"):
        parse_reduce("visonzip:64")
    with pytest.raises(ConfigError, match="unknown reducer 'zip'"):
        parse_reduce("zip:64")  # no substring matching


def test_reduce_spec_parses_budget_and_options_and_rejects_the_rest():
    spec = parse_reduce("fastv:64:layer=3")
    assert (spec.name, spec.budget, spec.option("layer")) == ("fastv", 64, 3) and str(spec) == "fastv:64:layer=3"
    assert parse_reduce("none") is None and parse_reduce(None) is None
    assert parse_reduce("visionzip:64").option("contextual") == -1  # the reference's split rule
    for bad, msg in [("visionzip", "NAME:TOKENS"), ("pool:abc", "not a whole number"), ("pool:0", ">= 1"),
                     ("fastv:8:depth=2", "--reduce .fastv:8:depth=2.: reducer .fastv. has no option .depth."), ("fastv:8:layer=x", "not a number")]:
        with pytest.raises(ConfigError, match=msg):
            parse_reduce(bad)


# ---- each reducer against its reference ----------------------------------------------------------


def _divprune_reference(x: torch.Tensor, k: int) -> list[int]:
    """vbdi/divprune's `DivPrune` loop as published: min over the chosen rows, recomputed every step."""
    unit = x / x.norm(dim=1, keepdim=True)
    dist = 1.0 - unit @ unit.T
    chosen: list[int] = []
    for i in range(k):
        scores = dist.topk(2, dim=0, largest=False).values[1, :] if i == 0 else dist[chosen].min(dim=0).values
        chosen.append(int(scores.argmax()))
    return chosen


def test_divprune_picks_the_far_points_of_a_hand_case_then_matches_the_reference_loop():
    # Directions at 0, 10, 20 and 90 degrees: 90 is farthest from its nearest neighbour, then 0 is farthest
    # from 90, then 20 (10 is close to both 0 and 20).
    angles = torch.tensor([0.0, 10.0, 20.0, 90.0]).deg2rad()
    x = torch.stack([angles.cos(), angles.sin()], dim=1)
    assert divprune_indices(x, 3).tolist() == [3, 0, 2]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 16, generator=g)
    assert divprune_indices(x, 12).tolist() == _divprune_reference(x, 12)


def test_visionzip_keeps_the_top_attended_patches_and_merges_the_rest_into_key_groups():
    # 6 patches, budget 2 + 2 contextual... here 2 dominant, 2 contextual.
    feats = torch.arange(6, dtype=torch.float32).repeat(3, 1).T.unsqueeze(0)  # patch i = [i, i, i]
    importance = torch.tensor([[0.1, 0.9, 0.0, 0.8, 0.2, 0.3]])
    keys = torch.tensor([[[1.0, 0], [0, 1], [1, 0.1], [0, 1], [0.1, 1], [1, 0]]])
    out = visionzip(feats, importance, keys, dominant=2, contextual=2)
    # dominant: patches 1 and 3 (raster order). Rest [0, 2, 4, 5], step 2 -> targets 0 and 4; 2 and 5 point
    # like 0 (key ~[1, 0]) and join it: (0 + 2 + 5) / 3; 4 stays alone.
    assert out.sources.tolist() == [[1, 3, -1, -1]]
    assert out.values[0, :, 0].tolist() == pytest.approx([1.0, 3.0, 7 / 3, 4.0])
    # the maps say the same: each output is its weights over the 6 patches times the patches
    maps = out.maps(6)
    assert torch.allclose(maps @ feats, out.values) and torch.allclose(maps.sum(-1), torch.ones(1, 4))
    assert contextual_count(64, -1) == 10 and contextual_count(128, -1) == 20 and contextual_count(64, 4) == 4


def _vispruner_reference(feat: torch.Tensor, attn: torch.Tensor, t: int) -> list[int]:
    """Theia-4869/VisPruner `encode_images` for one image (B = 1, where its indexing is well defined)."""
    fn = feat / feat.norm(dim=-1, keepdim=True)
    n_imp = int(t * 0.5)
    idx = attn.argsort(descending=True)
    important, residual = idx[:n_imp], idx[n_imp:]
    while True:
        toks = fn[residual]
        r = min(8, toks.shape[0] - (t - n_imp))
        if r <= 0:
            break
        a, b = toks[::2], toks[1::2]
        distinct = (a @ b.T).max(dim=-1).values.argsort(descending=True)[r:]
        residual = torch.cat([residual[::2][distinct], residual[1::2]])
    return torch.cat([important, residual]).sort().values.tolist()


def test_vispruner_matches_its_reference_per_image_in_a_batch():
    g = torch.Generator().manual_seed(2)
    feats, attn = torch.randn(3, 64, 8, generator=g), torch.rand(3, 64, generator=g)
    got = vispruner_indices(feats, attn, 20, 0.5)
    assert got.shape == (3, 20)
    for i in range(3):
        assert got[i].tolist() == _vispruner_reference(feats[i], attn[i], 20)
    top = attn[0].argsort(descending=True)[:10].tolist()
    assert set(top) <= set(got[0].tolist())  # the important half is the 10 most attended


def test_pool_averages_the_token_grid_and_random_keeps_one_seeded_sorted_subset():
    x = torch.arange(16, dtype=torch.float32).view(1, 16, 1)  # a 4x4 grid
    pooled = build_reducer("pool:4").reduce(x, (4, 4), Cues())
    assert pooled.values.flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    assert torch.allclose(pooled.maps(16) @ x, pooled.values)  # the pooling matrix
    with pytest.raises(ConfigError, match="perfect square"):
        build_reducer("pool:5").reduce(x, (4, 4), Cues())
    a = build_reducer("random:6").reduce(x.repeat(2, 1, 1), None, Cues())
    b = build_reducer("random:6:seed=1").reduce(x, None, Cues())
    assert a.sources[0].tolist() == sorted(a.sources[0].tolist()) == a.sources[1].tolist()
    assert a.sources[0].tolist() != b.sources[0].tolist()


def test_tower_attention_equals_hf_eager_attentions_and_cls_row_is_the_importance():
    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                           image_size=32, patch_size=8, attn_implementation="eager")
    tower = HFVisionTower(CLIPVisionModel(cfg).eval(), "clip", feature_layer=-2)
    pixels = torch.randn(2, 3, 32, 32)
    feats, probs, _ = tower_attention(tower, pixels)
    ref = tower.model(pixel_values=pixels, output_attentions=True, output_hidden_states=True)
    assert torch.allclose(probs, ref.attentions[-2], atol=1e-5)  # VisionZip's attentions[select_layer]
    assert torch.allclose(feats, ref.hidden_states[-2][:, 1:], atol=1e-5)
    _, cues = tower_cues(tower, pixels)
    assert torch.allclose(cues.importance, ref.attentions[-2][:, :, 0, 1:].sum(1), atol=1e-5)


def test_tower_attention_of_the_tiny_vit_equals_torch_multihead_weights():
    torch.manual_seed(0)
    tower = TinyViTTower(TinyViTConfig(image_size=16, patch_size=4, hidden_size=16, num_layers=2, num_heads=2),
                         feature_layer=-1).eval()
    pixels = torch.randn(2, 3, 16, 16)
    _, probs, _ = tower_attention(tower, pixels)
    block = tower.model.blocks[-1]
    h = block.norm1(tower.hidden_states(pixels)[-2])
    ref = block.attn(h, h, h, need_weights=True, average_attn_weights=False)[1]
    assert torch.allclose(probs, ref, atol=1e-5)


def _fastv_by_cutting(model, ids: torch.Tensor, pixels: torch.Tensor, k: int, budget: int) -> torch.Tensor:
    """FastV as fastv_kvcache.py does it: cut the dropped tokens out before layer K, keep positions."""
    llm = model.llm
    embeds = model.embed(ids, pixels)
    out = llm(inputs_embeds=embeds, output_hidden_states=True, output_attentions=True)
    scores = out.attentions[k - 1].mean(dim=1)[0, -1]  # last token, heads averaged
    image = (ids[0] == model.image_token_id).nonzero().flatten()
    top = image[scores[image].topk(budget).indices]
    keep = torch.cat([(ids[0] != model.image_token_id).nonzero().flatten(), top]).sort().values
    hidden = out.hidden_states[k][:, keep]
    pos = keep.unsqueeze(0)
    n = keep.numel()
    mask = torch.full((n, n), torch.finfo(hidden.dtype).min).triu(1)[None, None]
    rope = llm.model.rotary_emb(hidden, pos)
    for layer in llm.model.layers[k:]:
        hidden = layer(hidden, attention_mask=mask, position_ids=pos, position_embeddings=rope)
    return llm.lm_head(llm.model.norm(hidden))[0, -1]


def test_fastv_masking_gives_the_logits_of_cutting_the_tokens_out():
    model = tiny("mlp")
    model.llm.set_attn_implementation("eager")
    proc = model.processor()
    batch = proc(["<image>\nwhat colour is it?"], [Image.new("RGB", (48, 48), (200, 30, 30))])
    ids, pixels = batch["input_ids"], batch["pixel_values"]
    with torch.no_grad():
        full = model(input_ids=ids, pixel_values=pixels).logits[0, -1]
        expected = _fastv_by_cutting(model, ids, pixels, k=1, budget=16)
        apply_reducer(model, "fastv:16")
        got = model(input_ids=ids, pixel_values=pixels).logits[0, -1]
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, full, atol=1e-3)  # the masking did change something


# ---- in the model ----------------------------------------------------------------------------------


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((48, 48, 3)) * 255).astype("uint8")) for _ in range(n)]


@pytest.mark.parametrize("spec", ["random:16", "pool:16", "divprune:16", "visionzip:16", "vispruner:16",
                                  "fastv:16"])
def test_reduced_batch_answers_equal_reduced_one_by_one(spec):
    model = tiny("mlp")
    reducer = apply_reducer(model, spec)
    expected_tokens = 144 if reducer.stage == "llm" else 16
    assert model.num_image_tokens == expected_tokens
    gen = Generator(model, "vicuna_v1", "cpu")
    prompts = [gen.prompt("what is it?", 1), gen.prompt("describe the picture in a few words please", 1),
               gen.prompt("colour?", 1)]
    images = [[im] for im in _images(3)]
    proc_ids = gen.processor([prompts[0]], images[0])["input_ids"]
    assert int((proc_ids == model.image_token_id).sum()) == expected_tokens  # the processor lays out K
    batch = gen.generate(prompts, images, max_new_tokens=6)
    alone = [gen.generate([p], [im], max_new_tokens=6)[0] for p, im in zip(prompts, images, strict=True)]
    assert batch == alone


def test_attention_reducers_refuse_a_projector_that_mixes_patches_and_budgets_above_m():
    with pytest.raises(ConfigError, match="per-patch projector"):
        apply_reducer(tiny("deco", "{grid: 6x6}"), "visionzip:16")
    with pytest.raises(ConfigError, match="more than the 36 tokens"):
        apply_reducer(tiny("deco", "{grid: 6x6}"), "random:64")
    model = tiny("deco", "{grid: 6x6}")
    apply_reducer(model, "pool:9")  # after a compressing projector, on its 6x6 token grid
    assert model.num_image_tokens == 9
