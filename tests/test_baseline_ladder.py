"""The baselines' ladder (issue 24): C-Abstractor depth 0 is Honeybee's pooling + SiLU MLP, the
D-Abstractor's offsets can be held fixed, per-block training diagnostics, the ladder's jobs and report,
and the sweep over learning rates x warmups."""

from __future__ import annotations

import json

import pytest
import torch

from deco.config import load_config
from deco.demo.core import ladder, sweep
from deco.demo.kinds import load_settings, settings_from_dict
from deco.demo.pipeline import DemoOptions, resolve_settings
from deco.errors import ConfigError
from deco.projectors import build_projector
from deco.projectors.pooling import grid_pool
from deco.train.report.diagnostics import BlockDiagnostics, projector_blocks, read_diagnostics


def test_cabstractor_depth_zero_is_exactly_pooling_then_silu_mlp():
    torch.manual_seed(0)
    proj = build_projector("cabstractor", 32, 48, {"depth": 0, "grid": "3x3", "num_input_tokens": 36,
                                                    "hidden_size": 99}).eval()
    assert proj.readout[0].in_features == 32  # Honeybee: readout from the encoder width, hidden_size unused
    assert isinstance(proj.readout[1], torch.nn.SiLU)
    assert not list(proj.stage1.parameters()) and not list(proj.stage2.parameters())
    x = torch.randn(2, 36, 32)
    expected = proj.readout(grid_pool(x + proj.pos_emb, (6, 6), (3, 3)))
    assert torch.equal(proj(x, (6, 6)), expected)
    nopos = build_projector("cabstractor", 32, 48, {"depth": 0, "grid": "3x3", "num_input_tokens": 36,
                                                     "pos_emb": False}).eval()
    assert nopos.pos_emb is None
    assert torch.equal(nopos(x, (6, 6)), nopos.readout(grid_pool(x, (6, 6), (3, 3))))


def test_cabstractor_negative_depth_is_refused():
    with pytest.raises(ConfigError, match="depth"):
        build_projector("cabstractor", 32, 48, {"depth": -1})


def test_dabstractor_fixed_offsets_sample_the_initial_pattern_and_train_the_rest():
    torch.manual_seed(0)
    opts = {"num_layers": 1, "num_heads": 4, "ffn_width": 40, "dropout": 0.0, "hidden_size": 16, "grid": "2x2",
            "num_input_tokens": 64}
    learned = build_projector("dabstractor", 32, 48, opts)
    fixed = build_projector("dabstractor", 32, 48, {**opts, "learn_offsets": False})
    assert not any("sampling_offsets" in n for n, _ in fixed.named_parameters())
    fixed.load_state_dict(learned.state_dict(), strict=False)  # same weights except the offsets layer
    x = torch.randn(2, 64, 32)
    # At initialisation the learned offsets are their radial bias: both modules give the same output.
    torch.testing.assert_close(fixed(x, (8, 8)), learned(x, (8, 8)))
    fixed(x, (8, 8)).pow(2).mean().backward()
    assert all(p.grad is not None for p in fixed.parameters())
    loc = fixed.layers[0].cross_attn.last_sampling_locations
    fixed(torch.randn(2, 64, 32), (8, 8))  # another input: locations do not depend on the query
    assert torch.equal(loc, fixed.layers[0].cross_attn.last_sampling_locations)


def test_projector_blocks_open_containers():
    proj = build_projector("cabstractor", 32, 48, {"depth": 2, "hidden_size": 24, "grid": "3x3",
                                                    "num_input_tokens": 36})
    assert set(projector_blocks(proj)) == {"stage1.0", "stage1.1", "stage2.0", "stage2.1", "readout.0",
                                           "readout.1", "readout.2"}


def test_block_diagnostics_record_gradients_and_scales(tmp_path):
    torch.manual_seed(0)
    proj = build_projector("cabstractor", 32, 48, {"depth": 1, "hidden_size": 24, "grid": "3x3",
                                                    "num_input_tokens": 36})
    embed = torch.nn.Embedding(10, 48)
    diag = BlockDiagnostics(proj, embed, tmp_path / "d.jsonl")
    diag.start()
    out = proj(torch.randn(2, 36, 32), (6, 6))
    out.pow(2).sum().backward()
    record = diag.record(7)
    diag.close()
    assert record["step"] == 7 and set(record["blocks"]) >= {"stage1.0", "readout.2", "pos_emb"}
    readout = record["blocks"]["readout.2"]
    assert readout["grad_norm"] == pytest.approx(float(torch.cat([p.grad.flatten() for p in
                                                                proj.readout[2].parameters()]).norm()), rel=1e-5)
    assert record["projector_out_rms"] == pytest.approx(float(out.detach().pow(2).mean().sqrt()), rel=1e-5)
    assert record["llm_embed_rms"] == pytest.approx(float(embed.weight.detach().pow(2).mean().sqrt()), rel=1e-5)
    assert read_diagnostics(tmp_path / "d.jsonl") == [json.loads(json.dumps(record))]
    proj(torch.randn(2, 36, 32), (6, 6))  # hooks removed and inactive: nothing more is captured
    assert diag.outputs.get("stage1.0") == record["blocks"]["stage1.0"]["out_rms"]


def test_training_with_diagnostics_logs_them_and_keeps_the_trajectory(tmp_path, llava_data, torch_one_thread):
    from deco.train import run_training

    data_file, images = llava_data
    losses = {}
    for every in (0, 2):
        run = tmp_path / f"run{every}"
        config = load_config("configs/tiny.yaml", [
            f"data.train_file={data_file}", f"data.image_folder={images}", f"train.output_dir={run}",
            "train.max_steps=4", "train.global_batch_size=2", "train.per_device_batch_size=2", "train.quiet=true",
            f"train.diagnostics_every={every}"])
        run_training(config)
        losses[every] = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    records = read_diagnostics(tmp_path / "run2" / "diagnostics.jsonl")
    assert [r["step"] for r in records] == [2, 4]
    assert all(b["grad_norm"] is not None and b["grad_norm"] > 0 for r in records for b in r["blocks"].values()
               if b["param_rms"] is not None)
    assert not (tmp_path / "run0" / "diagnostics.jsonl").exists()
    assert losses[0] == losses[2]


def test_negative_diagnostics_every_is_refused(tmp_path):
    from deco.train import run_training

    config = load_config("configs/tiny.yaml", ["train.diagnostics_every=-1", f"train.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="diagnostics_every"):
        run_training(config)


def test_ladder_rungs_become_jobs_with_their_options(tmp_path):
    settings = resolve_settings(DemoOptions(ladder=True, rungs=["cabs-d0", "dabs-l2-fixed"]))
    jobs = ladder.ladder_jobs(settings, [40, 41], tmp_path)
    assert [(j["rung"], j["seed"]) for j in jobs] == [("cabs-d0", 40), ("cabs-d0", 41), ("dabs-l2-fixed", 40),
                                                        ("dabs-l2-fixed", 41)]
    assert jobs[0]["projector"] == "cabstractor" and jobs[0]["options"] == {"depth": 0} and "lr" not in jobs[0]
    assert jobs[2]["options"] == {"num_layers": 2, "pooled_v_target": "query", "learn_offsets": False}


def test_ladder_settings_are_checked_before_any_work():
    with pytest.raises(ConfigError, match="unknown rung"):
        resolve_settings(DemoOptions(ladder=True, rungs=["cabs-d9"]))
    data = load_settings().to_dict()
    data["ladder"]["rungs"] = {"bad": {"projector": "cabstractor", "options": {"depth": -2}}}
    with pytest.raises(ConfigError, match=r"ladder.rungs.bad.options"):
        settings_from_dict(data)
    data["ladder"]["rungs"] = {"bad": {"projector": "nope"}}
    with pytest.raises(ConfigError, match="ladder.rungs.bad.projector"):
        settings_from_dict(data)


def _result(name, lr, warmup, overall, collapsed=False, rung=None, seed=0):
    fam = {"column": overall, "exists": overall}
    return {"projector": name, "rung": rung or name, "lr": lr, "warmup": warmup, "seed": seed,
            "final": {"overall": overall, "spatial": overall, "families": fam, "questions": 10,
                      "counts": {"column": 5, "exists": 5}},
            "probe": [{"same_index_cos": 0.999 if collapsed else 0.5, "collapsed": collapsed}], "curve": [],
            "losses": {"stage2": []}, "visual_tokens": 4, "projector_params": 10, "eval_seconds": 1,
            "job_cpu_seconds": 1, "times": {"stage1": {"train_seconds": 1}, "stage2": {"train_seconds": 2}}}


def test_sweep_chooses_over_learning_rates_and_warmups():
    results = [_result("cabstractor", 1e-3, 0.03, 0.5), _result("cabstractor", 1e-3, 0.0, 0.7),
               _result("cabstractor", 1e-2, 0.0, 0.9, collapsed=True), _result("deco", 1e-3, 0.03, 0.9),
               _result("deco", 1e-3, 0.0, 0.9)]
    chosen = sweep.choose(results, 0.03)
    assert (chosen["cabstractor"]["chosen_lr"], chosen["cabstractor"]["chosen_warmup"]) == (1e-3, 0.0)
    assert chosen["deco"]["chosen_warmup"] == 0.03  # a tie keeps the longer warmup
    block = sweep.yaml_block(chosen, 0.03)
    assert "projector_lrs: {cabstractor: 0.001, deco: 0.001}" in block
    assert "projector_warmups: {cabstractor: 0}" in block


def test_ladder_summary_states_the_gap_to_the_reference_with_its_noise():
    settings = resolve_settings(DemoOptions(ladder=True, rungs=["deco", "cabs-d1"]))
    runs = [_result("deco", None, None, v, rung="deco", seed=s) for s, v in enumerate((0.95, 0.97, 0.96))]
    runs += [_result("cabstractor", None, None, v, rung="cabs-d1", seed=s) for s, v in enumerate((0.45, 0.47, 0.44))]
    summary = ladder.summarize_ladder(settings, runs, {"column": 300, "exists": 300})
    vs = summary["cabs-d1"]["vs_reference"]
    assert vs["reference"] == "deco" and vs["gap"] == pytest.approx(-0.506667, abs=1e-5) and vs["beyond_noise"]
    text = ladder.markdown(summary, {"seeds": [0, 1, 2], "majority_baseline": {"column": 0.3, "exists": 0.5},
                                     "settings": settings.to_dict()})
    assert "| cabs-d1 | cabstractor | depth=1, zero_init_last=False |" in text and "-0.51" in text
    ladder.add_relevance(summary, [{"model": "cabs-d1", "own_window_share": 0.4, "coverage": 0.9}])
    assert summary["cabs-d1"]["relevance"]["own_window_share"] == 0.4
    assert "| 0.40 |" in ladder.markdown(summary, {"seeds": [0, 1, 2], "majority_baseline": {},
                                                   "settings": settings.to_dict()})


def test_cabstractor_zero_init_last_starts_every_block_as_its_shortcut():
    torch.manual_seed(0)
    opts = {"depth": 2, "hidden_size": 24, "grid": "3x3", "num_input_tokens": 36}
    proj = build_projector("cabstractor", 32, 48, {**opts, "zero_init_last": True}).eval()
    assert all(not b.conv3[1].weight.detach().any() for b in [*proj.stage1, *proj.stage2])
    x = torch.randn(2, 32, 6, 6)
    block = proj.stage1[0]
    assert torch.equal(block(x), torch.nn.functional.silu(block.shortcut(x)))
    y = torch.randn(2, 24, 6, 6)
    assert torch.equal(proj.stage2[1](y), torch.nn.functional.silu(y))  # identity shortcut
    honeybee = build_projector("cabstractor", 32, 48, opts)
    assert all(bool((b.conv3[1].weight.detach() == 1).all()) for b in [*honeybee.stage1, *honeybee.stage2])


@pytest.mark.parametrize("target", ["query", "tgt", "none"])
def test_dabstractor_pooled_v_target_puts_pooled_features_where_honeybee_does(target):
    torch.manual_seed(0)
    opts = {"num_layers": 1, "num_heads": 4, "ffn_width": 40, "dropout": 0.0, "grid": "2x2", "num_input_tokens": 64,
            "pooled_v_target": target}
    proj = build_projector("dabstractor", 16, 16, opts).eval()  # d = Dv = Dl: no input/output projection
    seen = {}
    layer = proj.layers[0]
    layer.register_forward_pre_hook(lambda m, args: seen.update(x=args[0], pos=args[1]))
    feats = torch.randn(2, 64, 16)
    proj(feats, (8, 8))
    pooled = grid_pool(feats + proj.pos_emb, (8, 8), (2, 2))
    learned = proj.query_embed.expand(2, -1, -1)
    if target == "query":
        assert torch.equal(seen["pos"], pooled) and torch.equal(seen["x"], learned)
    elif target == "tgt":
        assert torch.equal(seen["x"], pooled) and torch.equal(seen["pos"], learned)
    else:
        assert proj.query_embed.shape == (4, 32)
        assert torch.equal(seen["pos"], learned[..., :16]) and torch.equal(seen["x"], learned[..., 16:])
    with pytest.raises(ConfigError, match="pooled_v_target"):
        build_projector("dabstractor", 16, 16, {**opts, "pooled_v_target": "key"})


def test_sweep_never_chooses_a_diverged_setting_and_says_so():
    diverged = _result("qformer", 3e-2, 0.0, 0.0)
    diverged["diverged"] = "non-finite loss nan at step 12"
    results = [_result("qformer", 1e-3, 0.03, 0.4), diverged]
    chosen = sweep.choose(results, 0.03)
    assert chosen["qformer"]["chosen_lr"] == 1e-3
    assert [s["diverged"] for s in chosen["qformer"]["settings"]] == [False, True]
    text = sweep.markdown(chosen, {"validation_questions": 10, "seed": 50,
                                   "settings": {"train": {"stage1_steps": 1, "stage2_steps": 2, "warmup_ratio": 0.03}}})
    assert "| qformer | 0.40 * | diverged |" in text
