"""deco bench's reducer rows: counted FLOPs and KV bytes fall with the budget; FastV's follow its layer split."""

from __future__ import annotations

import pytest

from deco.bench.reducers import bench_reducers, reducer_specs
from deco.bench.report import _reducer_rows
from deco.bench.sizes import get_size
from deco.bench.workload import Workbench, set_stage
from deco.errors import ConfigError


@pytest.fixture(scope="module")
def rows():
    spec = get_size("tiny")
    spec.batch_size = 1
    wb = Workbench(spec, "cpu", "float32")
    base = wb.add_variant("mlp@576", "mlp", {})
    set_stage(base.model, None)
    specs = reducer_specs(["random", "visionzip", "fastv"], [144, 64])
    return {r["key"]: r for r in bench_reducers(wb, base, specs, repeats=1, warmup=0, log=lambda m: None)}, wb


def test_bare_names_expand_to_each_budget_and_bad_ones_fail():
    assert reducer_specs(["pool", "fastv:36"], [144, 64]) == ["pool:144", "pool:64", "fastv:36"]
    with pytest.raises(ConfigError, match="unknown reducer"):
        reducer_specs(["zip"], [64])


def test_reducer_rows_cost_less_with_fewer_tokens_and_fastv_splits_by_layer(rows):
    by_key, wb = rows
    none, r144, r64 = by_key["(none)"], by_key["random:144"], by_key["random:64"]
    assert none["tokens_kept"] == 576 and r64["tokens_in"] == 576 and by_key["fastv:64"]["tokens_in"] == 576
    assert none["prefill_flops"]["total"] > r144["prefill_flops"]["total"] > r64["prefill_flops"]["total"]
    assert none["kv_cache_bytes"] > r144["kv_cache_bytes"] > r64["kv_cache_bytes"]
    # same kept count, same LLM input: visionzip's prefill LLM FLOPs equal random's
    assert by_key["visionzip:64"]["prefill_flops"]["llm"] == pytest.approx(r64["prefill_flops"]["llm"])
    assert by_key["visionzip:64"]["selection_s_per_image"] > 0
    # FastV at K=1 of 2 layers: half the LLM at 576 tokens, half at 64
    fv = by_key["fastv:64"]
    assert fv["layer"] == 1 and not fv["measured_as_run"]
    assert fv["prefill_flops"]["llm"] == pytest.approx((none["prefill_flops"]["llm"] + r64["prefill_flops"]["llm"]) / 2)
    assert fv["kv_cache_bytes"] == (none["kv_cache_bytes"] + r64["kv_cache_bytes"]) // 2
    # FastV's hooks are gone afterwards: the shared LLM runs unmasked again
    assert all(not layer.self_attn._forward_pre_hooks for layer in wb.llm.model.layers)
    table = _reducer_rows({"reducers": list(by_key.values())})
    assert table[0][0] == "(none)" and any("†" in c for c in table[-1])
