"""deco bench building blocks: memory probe, timing stats, FLOP split, KV bytes, HF Llava peer, plan."""

from __future__ import annotations

import pytest
import torch
from transformers import LlavaForConditionalGeneration

from deco.bench.flops import count_flops
from deco.bench.inference import cache_bytes, kv_bytes_per_token
from deco.bench.memory import MemoryProbe
from deco.bench.peer import build_peer, compare_logits
from deco.bench.sizes import get_size
from deco.bench.timing import rotated, summarize
from deco.bench.workload import Workbench, set_stage, trainable_parameters, variant_plan
from deco.errors import ConfigError


@pytest.fixture(scope="module")
def bench():
    """Tiny towers (1 image per batch) with the baseline mlp and deco at 64 tokens."""
    spec = get_size("tiny")
    spec.batch_size = 1
    wb = Workbench(spec, "cpu", "float32")
    wb.add_variant("mlp@576", "mlp", {})
    wb.add_variant("deco@64", "deco", {"grid": (8, 8)})
    for v in wb.variants.values():
        set_stage(v.model, None)
    return wb


def test_memory_probe_counts_new_storages_not_views_and_frees():
    with MemoryProbe("cpu") as probe:
        a = torch.empty(250_000)  # 1,000,000 bytes
        view = a.view(500, 500)
        a.add_(1.0)  # in place: no new storage
        assert probe.current() == 1_000_000
        b = view * 2  # a second 1,000,000 bytes: peak 2,000,000
        del a, view, b
        c = torch.empty(1000)
        assert probe.current() == 4000
    assert probe.peak == 2_000_000
    del c


def test_summarize_gives_median_and_iqr():
    stats = summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert stats["median"] == 3.0 and stats["q1"] == 2.0 and stats["q3"] == 4.0 and stats["iqr"] == 2.0
    assert stats["n"] == 5 and stats["min"] == 1.0 and stats["max"] == 5.0
    assert summarize([])["median"] is None


def test_rotated_order_puts_every_config_first_and_last():
    items = ["a", "b", "c"]
    orders = [rotated(items, r) for r in range(6)]
    assert all(sorted(o) == items for o in orders)
    assert {o[0] for o in orders} == set(items) and {o[-1] for o in orders} == set(items)


def test_flops_split_into_components_that_add_up(bench):
    v = bench.variants["mlp@576"]
    batch = {k: x for k, x in v.train_batch.items() if k != "labels"}
    with torch.no_grad():
        flops = count_flops(lambda: v.model(**batch), v.model)
    parts = flops["vision_tower"] + flops["projector"] + flops["llm"]
    assert flops["total"] == parts > 0
    # The projector is Linear(64->128), GELU, Linear(128->128) on 576 patches: 2 * 576 * (64*128 + 128*128).
    assert flops["projector"] == 2 * 576 * (64 * 128 + 128 * 128)
    layers = bench.llm.config.num_hidden_layers
    assert 0 < flops["per_layer"]["llm"] * layers < flops["llm"]  # the rest is the lm_head
    # Attention runs in the CPU flash kernel; its FLOPs must be counted (torch's table lacks it).
    # Per layer: 2 * seq * weights (q, o 128x128; k, v 128x64; 3 MLP 128x344) + 4 * heads * seq^2 * head_dim.
    seq = batch["input_ids"].shape[1]
    weights = 2 * 128 * 128 + 2 * 128 * 64 + 3 * 128 * 344
    assert flops["per_layer"]["llm"] == 2 * seq * weights + 4 * 4 * seq * seq * 32


def test_fewer_tokens_fewer_flops_and_kv_bytes(bench):
    mlp, deco = bench.variants["mlp@576"], bench.variants["deco@64"]
    assert deco.tokens == 64 and mlp.tokens == 576
    f = [count_flops(lambda v=v: v.model(**{k: x for k, x in v.train_batch.items() if k != "labels"}), v.model)
         for v in (mlp, deco)]
    assert f[1]["llm"] < f[0]["llm"] / 4 and f[1]["vision_tower"] == f[0]["vision_tower"]
    assert trainable_parameters(mlp.model, 1) == trainable_parameters(deco.model, 1)  # pooling has no params
    assert trainable_parameters(mlp.model, 2) == trainable_parameters(mlp.model, 1) + sum(
        p.numel() for p in bench.llm.parameters())


def test_kv_bytes_formula_matches_the_real_cache(bench):
    v = bench.variants["deco@64"]
    b = v.prompt_batch
    with torch.no_grad():
        out = v.model.llm(inputs_embeds=v.model.embed(b["input_ids"], b["pixel_values"]),
                          attention_mask=b["attention_mask"], use_cache=True)
    # 2 (K, V) x 2 layers x 2 kv heads x head_dim 32 x 4 bytes
    assert kv_bytes_per_token(bench.llm) == 2 * 2 * 2 * 32 * 4
    assert cache_bytes(out.cache) == kv_bytes_per_token(bench.llm) * b["input_ids"].numel()


def test_hf_llava_peer_gives_the_same_logits(bench):
    v = bench.variants["mlp@576"]
    peer = build_peer(v.model)
    assert isinstance(peer, LlavaForConditionalGeneration)
    assert peer.config.image_token_id == v.model.image_token_id and peer.config.vision_feature_layer == -2
    got = compare_logits(v.model, peer, v.train_batch)
    assert got["max_abs_logit_diff"] <= 1e-5
    # The projector weights were copied (not shared): changing ours must change only our logits.
    with torch.no_grad():
        v.model.projector.mlp[2].bias.add_(0.5)
    try:
        assert compare_logits(v.model, peer, v.train_batch)["max_abs_logit_diff"] > 1e-3
    finally:
        with torch.no_grad():
            v.model.projector.mlp[2].bias.sub_(0.5)


def test_peer_refuses_a_projector_llava_does_not_have(bench):
    with pytest.raises(ConfigError, match="needs our 'mlp' projector"):
        build_peer(bench.variants["deco@64"].model)


def test_plan_lists_fixed_token_projectors_once_and_checks_budgets():
    plan = variant_plan(["mlp", "deco", "qformer"], [144, 64], (24, 24))
    assert [k for k, _, _ in plan] == ["mlp@576", "deco@144", "deco@64", "qformer@144", "qformer@64"]
    assert dict((k, o) for k, _, o in plan)["qformer@64"] == {"num_queries": 64}
    with pytest.raises(ConfigError, match="perfect square"):
        variant_plan(["deco"], [150], (24, 24))
    with pytest.raises(ConfigError, match="does not fit the 6x6 grid"):
        variant_plan(["deco"], [144], (6, 6))
