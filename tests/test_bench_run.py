"""`deco bench` end to end on the tiny size: JSON schema, outputs, extrapolation, bad input."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from typer.testing import CliRunner

import deco.bench.runner as runner
from deco.bench.estimate import estimate_memory
from deco.bench.flops import count_flops
from deco.bench.report import check_schema, write_outputs
from deco.bench.runner import BenchOptions, run_bench
from deco.bench.sizes import get_size
from deco.bench.trainstep import Recipe
from deco.bench.workload import Workbench, variant_plan
from deco.cli import app
from deco.errors import ConfigError, DataError

DEEP = {"vision_layers": 4, "llm_layers": 5}


def _tiny_extrapolated():
    """The tiny size, measured at its 2 + 2 layers and extrapolated to 4 vision / 5 LLM layers."""
    return dataclasses.replace(get_size("tiny"), extrapolate_to=dict(DEEP), batch_size=1)


@pytest.fixture(scope="module")
def result():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "get_size", lambda name, layers=2: _tiny_extrapolated())
        return run_bench(BenchOptions(projectors=["deco", "mlp"], tokens=[64], repeats=2, warmup=0,
                                      peer_repeats=2, threads=1), log=lambda msg: None)


def test_result_follows_the_schema_and_writes_json_md_png(result, tmp_path):
    check_schema(result)
    paths = write_outputs(result, tmp_path / "out")
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    check_schema(data)
    assert data["machine"]["torch"] == torch.__version__ and data["machine"]["cpu"]
    assert "Extrapolated" in paths["md"].read_text(encoding="utf-8")
    assert paths["plot"].stat().st_size > 10_000


def test_schema_check_names_a_missing_key(result):
    broken = json.loads(json.dumps(result))
    del broken["variants"][1]["time_s"]["train_stage2"]["iqr"]
    with pytest.raises(DataError, match=r"variants\[1\]\.time_s\.train_stage2\.iqr"):
        check_schema(broken)


def test_baseline_first_and_ratios_against_it(result):
    keys = [v["key"] for v in result["variants"]]
    assert keys == ["mlp@576", "deco@64"] and result["baseline"] == "mlp@576"
    mlp, deco = result["variants"]
    assert mlp["ratios"]["time"]["train_stage2"] == 1.0
    assert deco["ratios"]["tokens"] == pytest.approx(64 / 576)
    assert deco["kv_cache"]["visual_bytes_per_image"] * 9 == mlp["kv_cache"]["visual_bytes_per_image"]
    assert deco["ratios"]["flops"]["train_stage2"] < 0.5
    for v in result["variants"]:
        assert all(v["time_s"][k]["n"] == 2 and v["time_s"][k]["median"] > 0 for k in v["time_s"])
        assert v["memory_bytes"]["train_stage2"]["dynamic_peak"] > 0
        assert v["memory_bytes"]["train_stage2"]["optimizer_state"] > v["memory_bytes"]["train_stage1"]["optimizer_state"]


def test_peer_logits_match_and_ratio_is_reported(result):
    peer = result["peer"]
    assert peer["logits_match_1e-5"] and peer["max_abs_logit_diff"] <= 1e-5
    assert peer["ratio"] > 0 and isinstance(peer["within_2_percent"], bool)


def test_extrapolated_params_and_flops_equal_a_really_deeper_model(result, tmp_path):
    """Per-layer figures x missing layers must reproduce a model that really has the extra layers."""
    spec = _tiny_extrapolated()
    spec.vision_config = {**spec.vision_config, "num_hidden_layers": DEEP["vision_layers"]}
    spec.llm_config = {**spec.llm_config, "num_hidden_layers": DEEP["llm_layers"]}
    wb = Workbench(spec, "cpu", "float32")
    v = wb.add_variant("mlp@576", "mlp", {})
    # The same deco-train step (tiny recipe: 2 micro-batches) on the same synthetic samples.
    wb.start_training(Recipe(accum=2, num_workers=0), tmp_path)
    wb.rig.start_stage(2, steps=2)
    flops = count_flops(lambda: wb.train_step(v, 2), v.model)
    extrapolated = result["variants"][0]["extrapolated"]
    assert extrapolated["params"]["total"] == sum(p.numel() for p in v.model.parameters())
    got = extrapolated["flops"]["train_stage2"]
    for part in ("vision_tower", "projector", "llm", "total"):
        assert got[part] == flops[part], part
    measured = result["variants"][0]
    assert extrapolated["time_s"]["train_stage2"]["median"] > measured["time_s"]["train_stage2"]["median"]
    assert extrapolated["kv_cache"]["visual_bytes_per_image"] == measured["kv_cache"]["visual_bytes_per_image"] * 5 // 2


def test_proxy_sizes_extrapolate_to_llama_2_7b():
    spec = get_size("7b-proxy")
    est = estimate_memory(spec, variant_plan(["mlp"], [], (24, 24)), "float32")
    per_layer = 4 * 4096 * 4096 + 3 * 4096 * 11008  # attention q/k/v/o + gate/up/down, norms below
    per_layer += 2 * 4096
    assert est["llm_params"] == 2 * 32000 * 4096 + 2 * per_layer + 4096
    assert est["llm_params"] + 30 * per_layer == 6_738_415_616  # Llama-2-7B / Vicuna-7B
    assert 8 * 2**30 < est["total_bytes"] < 20 * 2**30


@pytest.mark.parametrize(
    "opts,match",
    [
        (BenchOptions(projectors=["mlp", "dcoe"]), "unknown projector 'dcoe'"),
        (BenchOptions(projectors=["deco3d"]), "'deco3d' is a video projector; deco bench times single images"),
        (BenchOptions(size="huge"), "unknown size 'huge'"),
        (BenchOptions(dtype="float8"), "--dtype must be one of"),
        (BenchOptions(repeats=0), "--repeats must be at least 1"),
        (BenchOptions(size="7b-proxy", proxy_layers=1), "--proxy-layers must be an int from 2"),
        (BenchOptions(size="7b-proxy", proxy_layers=33), r"to 32 \(the full model\)"),
    ],
)
def test_bad_options_are_config_errors(opts, match):
    with pytest.raises(ConfigError, match=match):
        run_bench(opts, log=lambda msg: None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ConfigError, match="no CUDA device is available"):
        run_bench(BenchOptions(device="cuda"), log=lambda msg: None)


def test_too_big_for_memory_is_refused_with_the_estimate_before_building():
    with pytest.raises(ConfigError, match=r"needs an estimated \d+\.\d+ GiB but only 1\.00 GiB"):
        run_bench(BenchOptions(size="7b-proxy", memory_budget_gib=1.0), log=lambda msg: None)
    # The full model (32 LLM layers, ~13.5 GB of bf16 weights, ~4x that with AdamW and gradients) does
    # not fit 24 GiB: the refusal names what the estimate is made of.
    with pytest.raises(ConfigError, match="AdamW state"):
        run_bench(BenchOptions(size="7b-proxy", proxy_layers=32, dtype="bfloat16", memory_budget_gib=24.0),
                  log=lambda msg: None)


def test_cli_registers_bench_and_passes_bad_input_up_as_config_error():
    # deco.cli.main turns a DecoError into one line and exit code 2 (tested in test_cli.py).
    cli = CliRunner()
    assert "--proxy-layers" in cli.invoke(app, ["bench", "--help"]).output
    result = cli.invoke(app, ["bench", "--size", "huge"])
    assert isinstance(result.exception, ConfigError) and "unknown size 'huge'" in str(result.exception)
    result = cli.invoke(app, ["bench", "--tokens", "144,abc"])
    assert isinstance(result.exception, ConfigError) and "--tokens" in str(result.exception)


def test_all_means_every_image_projector():
    from deco.bench.runner import check_options
    from deco.projectors import get_projector_class, projector_names

    spec = check_options(BenchOptions(projectors=["all"]))
    images = [p for p in projector_names() if not getattr(get_projector_class(p), "supports_time", False)]
    assert sorted(spec.projectors) == sorted(images) and "deco3d" not in spec.projectors
